package daemon_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/bundle"
	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/outbox"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/wire"
)

func getMachine(t *testing.T, s *testutil.Server, rg, name string) wire.Machine {
	t.Helper()
	var m wire.Machine
	s.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/"+rg+"/machines/"+name, s.AdminToken(t), nil, &m)
	return m
}

func TestDaemonReportsConfigAndAppliesPushedDesiredState(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "m1", "")
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	testutil.Eventually(t, 5*time.Second, func() string {
		st, _ := daemon.ReadStatus(state)
		if !st.Connected {
			return "not connected"
		}
		return ""
	})

	// Local configuration reaches the server read-only.
	c, _ := localconfig.Load(state)
	if err := c.Set(localconfig.KeyMode, "monitor"); err != nil {
		t.Fatal(err)
	}
	if err := localconfig.Save(state, c); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() string {
		m := getMachine(t, s, "rg1", "m1")
		if m.AgentConfig == nil || m.AgentConfig.Mode != "monitor" || m.AgentConfig.GuestConfigurationEnabled {
			return fmt.Sprintf("server sees %+v", m.AgentConfig)
		}
		return ""
	})

	// A tag change is pushed, fetched and acknowledged with its generation.
	s.MustDo(t, 200, "PATCH", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1", s.AdminToken(t),
		wire.MachineUpdate{Tags: map[string]string{"pushed": "1"}}, nil)
	testutil.Eventually(t, 5*time.Second, func() string {
		b, _ := os.ReadFile(filepath.Join(state, daemon.DesiredFile))
		var ds wire.DesiredState
		_ = json.Unmarshal(b, &ds)
		if ds.Tags["pushed"] != "1" {
			return "desired state " + string(b)
		}
		if st, _ := daemon.ReadStatus(state); st.AppliedGeneration != ds.Generation {
			return fmt.Sprintf("applied %d, desired %d", st.AppliedGeneration, ds.Generation)
		}
		return ""
	})
}

func TestDaemonStopsWhenTheMachineIsDeleted(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "gone", "")
	a := agenttest.StartAgent(t, daemon.Config{StateDir: state})
	testutil.Eventually(t, 5*time.Second, func() string {
		if st, _ := daemon.ReadStatus(state); !st.Connected {
			return "not connected"
		}
		return ""
	})
	s.MustDo(t, 204, "DELETE", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/gone", s.AdminToken(t), nil, nil)
	select {
	case <-a.Done():
		if err := a.Err(); !errors.Is(err, daemon.ErrRevoked) {
			t.Fatalf("daemon returned %v, want ErrRevoked", a.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("daemon kept running after its machine was deleted")
	}
	// It refuses to start again until reconnected.
	if err := daemon.Run(t.Context(), daemon.Config{StateDir: state}); !errors.Is(err, daemon.ErrRevoked) {
		t.Fatalf("second run: %v, want ErrRevoked", err)
	}
}

func TestDaemonRenewsItsCertificate(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "renew", "")
	before, err := identity.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	oldSerial := before.Leaf().SerialNumber
	// The agent's clock says two thirds of the certificate's life passed.
	later := func() time.Time { return time.Now().Add(70 * 24 * time.Hour) }
	agenttest.StartAgent(t, daemon.Config{StateDir: state, Clock: later, RenewCheckInterval: 100 * time.Millisecond})
	testutil.Eventually(t, 10*time.Second, func() string {
		st, _ := daemon.ReadStatus(state)
		if st.CertRenewedAt.IsZero() {
			return "not renewed"
		}
		return ""
	})
	after, err := identity.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if after.Leaf().SerialNumber.Cmp(oldSerial) == 0 || after.Leaf().SerialNumber.Sign() <= 0 {
		t.Fatalf("serial after renewal %v (before %v)", after.Leaf().SerialNumber, oldSerial)
	}
	// The old certificate no longer authenticates; the new one does.
	m := getMachine(t, s, "rg1", "renew")
	if !m.CertificateNotAfter.Equal(after.Leaf().NotAfter.UTC()) {
		t.Errorf("server records certificate until %s, agent holds one until %s", m.CertificateNotAfter, after.Leaf().NotAfter)
	}
	oldCfg, _ := before.TLSConfig()
	c := agenttest.MachineHTTPClient(oldCfg)
	status, _ := s.DoWith(t, c, "GET", wire.PathDesiredState, "", nil)
	if status != 401 {
		t.Errorf("old certificate after renewal: status %d, want 401", status)
	}
}

func TestReportsWaitOnDiskWhileTheServerIsAway(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "offline", "")
	id, _ := identity.Load(state)
	// Point the identity at a dead address: the agent cannot deliver.
	live := id.State.Server
	id.State.Server = "https://127.0.0.1:1"
	if err := id.SaveState(); err != nil {
		t.Fatal(err)
	}
	a := agenttest.StartAgent(t, daemon.Config{StateDir: state})
	c, _ := localconfig.Load(state)
	_ = c.Set(localconfig.KeyBlocklist, "Corral/RunCommand")
	_ = localconfig.Save(state, c)
	testutil.Eventually(t, 5*time.Second, func() string {
		files, _ := os.ReadDir(filepath.Join(state, "outbox"))
		if len(files) < 2 { // inventory and configuration
			return fmt.Sprintf("%d reports queued", len(files))
		}
		return ""
	})
	_ = a.Stop(t)
	// Back online: the queued configuration arrives.
	id.State.Server = live
	if err := id.SaveState(); err != nil {
		t.Fatal(err)
	}
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	testutil.Eventually(t, 5*time.Second, func() string {
		m := getMachine(t, s, "rg1", "offline")
		if m.AgentConfig == nil || len(m.AgentConfig.ExtensionsBlocklist) != 1 {
			return fmt.Sprintf("server sees %+v", m.AgentConfig)
		}
		files, _ := os.ReadDir(filepath.Join(state, "outbox"))
		if len(files) != 0 {
			return fmt.Sprintf("%d reports still queued", len(files))
		}
		return ""
	})
}

// A run command's script and parameters may hold secrets; the cached
// desired state is never used for runs (they run only from a fresh fetch),
// so neither desired.json nor the support bundle made from the state
// directory may hold them.
func TestCachedDesiredStateHoldsNoRunCommands(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "runs", "")
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	const secret = "rc-param-9f3e1d7c"
	path := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/runs/runCommands/with-secret"
	s.MustDo(t, 201, "PUT", path, s.AdminToken(t), wire.RunCommandCreate{
		Script: "# uses " + secret + "\ntest -n \"$API_KEY\"\n", Parameters: map[string]string{"API_KEY": secret}}, nil)
	testutil.Eventually(t, 10*time.Second, func() string {
		var run wire.RunCommand
		s.MustDo(t, 200, "GET", path, s.AdminToken(t), nil, &run)
		if run.State != wire.RunSucceeded {
			return "run " + run.State + " " + run.Message
		}
		return ""
	})
	b, err := os.ReadFile(filepath.Join(state, daemon.DesiredFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) {
		t.Errorf("%s holds a run command's script or parameters: %s", daemon.DesiredFile, b)
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, state, time.Now()); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(zr)
	if strings.Contains(string(all), secret) {
		t.Error("the support bundle holds a run command's script or parameters")
	}
}

// The server caps a report batch's body; reports queued while it was
// away (run results carry up to 64 KiB of stdout and stderr each, more
// once JSON-escaped) can exceed that cap in one batch of 100. The agent
// must send smaller batches, not retry the same refused one forever while
// every later report waits behind it.
func TestOutboxDrainsWhenABatchIsTooLargeForTheServer(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "chatty", "")
	out, err := outbox.Open(filepath.Join(state, "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("<", wire.MaxHandlerOutputBytes) // 6 bytes each once JSON-escaped
	for i := range 8 {
		body, _ := json.Marshal(wire.RunCommandResult{Name: fmt.Sprintf("gone-%d", i), State: wire.RunSucceeded, Stdout: big, Stderr: big})
		if err := out.Add(wire.Report{ID: outbox.NewID(), Kind: wire.ReportRunCommand, TakenAt: time.Now(), Body: body}, ""); err != nil {
			t.Fatal(err)
		}
	}
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	testutil.Eventually(t, 15*time.Second, func() string {
		files, _ := os.ReadDir(filepath.Join(state, "outbox"))
		if len(files) > 0 {
			return fmt.Sprintf("%d reports still pending", len(files))
		}
		return ""
	})
}
