package loadgen_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/loadgen"
	"github.com/corralhq/corral/internal/testutil"
)

// TestSmallRun drives 50 simulated agents against a real in-process server:
// all onboard, all connect, every timed push arrives, and an extension set
// on 20 of them reaches Succeeded on every one, and a JIT grant on 20 of
// them is reported applied by every one, and a policy assignment shows
// every machine's compliance.
func TestSmallRun(t *testing.T) {
	s := testutil.StartServer(t, testutil.FastLifecycle())
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		Server: s.URL, CAFile: s.CAFile, Username: "admin", Password: testutil.AdminPassword,
		Agents: 50, Concurrency: 8, HeartbeatInterval: 200 * time.Millisecond, Steady: time.Second,
		Pushes: 20, PushTimeout: 5 * time.Second, ServerPID: os.Getpid(), ExtensionFanout: 20, Protection: true, JITGrants: 20, Policy: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Onboarded != 50 || res.Connected != 50 || res.Errors != 0 || res.PushLost != 0 || res.PushSamples == 0 {
		t.Fatalf("result %+v", res)
	}
	if res.ExtMachines != 20 || res.ExtSamples != 20 || res.ExtLost != 0 || res.ExtP99 <= 0 {
		t.Fatalf("extension fan-out %+v (first error %s)", res, res.FirstError)
	}
	if p := res.Protection; p.Machines != 50 || p.Samples != 50 || p.Lost != 0 || p.SetDownloads != 50 || p.StatusListMachines != 50 || p.P99 <= 0 {
		t.Fatalf("protection phase %+v (first error %s)", p, res.FirstError)
	}
	if res.JITMachines != 20 || res.JITSamples != 20 || res.JITLost != 0 || res.JITP99 <= 0 {
		t.Fatalf("JIT grants %+v (first error %s)", res, res.FirstError)
	}
	if p := res.Policy; p == nil || p.Machines != 50 || p.Evaluated != 50 || p.Left != 0 || p.AllDone <= 0 {
		t.Fatalf("policy phase %+v (first error %s)", p, res.FirstError)
	}
	if res.HeartbeatsPerSec < 50 || res.ServerRSSBytes == 0 {
		t.Fatalf("heartbeats %.0f/s, rss %d", res.HeartbeatsPerSec, res.ServerRSSBytes)
	}
}

// TestSmallBulkFanout: the extension phase through one bulk request
// reaches Succeeded on every one of 40 simulated agents, and the server's
// account of the operation agrees.
func TestSmallBulkFanout(t *testing.T) {
	s := testutil.StartServer(t, testutil.FastLifecycle())
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		Server: s.URL, CAFile: s.CAFile, Username: "admin", Password: testutil.AdminPassword,
		Agents: 40, Concurrency: 8, HeartbeatInterval: 200 * time.Millisecond, Steady: 200 * time.Millisecond,
		Pushes: 5, PushTimeout: 5 * time.Second, ServerPID: os.Getpid(), ExtensionFanout: 1, ExtensionBulk: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Onboarded != 40 || res.Errors != 0 {
		t.Fatalf("result %+v (first error %s)", res, res.FirstError)
	}
	if res.ExtMachines != 40 || res.ExtSamples != 40 || res.ExtLost != 0 || res.ExtP99 <= 0 || res.ExtPeakRSS == 0 {
		t.Fatalf("bulk fan-out %+v (first error %s)", res, res.FirstError)
	}
	if b := res.ExtBulk; b == nil || b.Machines != 40 || b.Totals.Succeeded != 40 || !b.Done {
		t.Fatalf("the server's account of the operation: %+v", b)
	}
}
