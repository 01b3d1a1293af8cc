package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func TestBulkFlagErrors(t *testing.T) {
	isolate(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"bulk", "run-command", "-g", "rg1"}, "exactly one of --script and --command"},
		{[]string{"bulk", "run-command", "--scope", "rg1", "--command", "id"}, "is not /subscriptions/S"},
		{[]string{"bulk", "run-command", "--scope", "/subscriptions/s", "-g", "rg", "--command", "id"}, "not both"},
		{[]string{"bulk", "extension", "set", "-g", "rg1", "--name", "a", "--publisher", "P"}, "--type"},
		{[]string{"bulk", "extension", "set", "-g", "rg1", "--name", "a", "--publisher", "P", "--type", "T", "--protected-settings", `{"k":"v"}`}, "@FILE"},
		{[]string{"bulk", "extension", "delete", "-g", "rg1"}, "--name"},
		{[]string{"bulk", "machines", "x", "--result", "Maybe"}, "--result"},
	} {
		_, _, err := run(t, "", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}

// TestBulkIntegration drives "corral bulk" against a real server: a run on
// every machine of a group, waited for with progress while the agents
// report, then one that fails on a machine (exit error, the machine listed).
func TestBulkIntegration(t *testing.T) {
	dir := isolate(t)
	t.Setenv(EnvConfig, filepath.Join(dir, "cfg", "credentials.json"))
	s := testutil.StartServer(t)
	mustRun(t, testutil.AdminPassword+"\n", "login", "--server", s.URL, "--username", "admin", "--password-stdin", "--ca-file", s.CAFile)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	tok := s.ClientToken(t, id, secret)
	var ms []*testutil.Machine
	for i := range 3 {
		ms = append(ms, s.OnboardMachine(t, tok, "rg1", fmt.Sprintf("m%d", i), wire.MachineProperties{}))
	}

	// The agents answer every run named "hi" (reports of a run they do not
	// have yet are acknowledged and dropped, so they keep sending).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	report := func(m *testutil.Machine, name, state string, code int) {
		n := 0
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			n++
			b, _ := json.Marshal(wire.RunCommandResult{Name: name, State: state, ExitCode: &code})
			s.DoMachine(t, m, "POST", wire.PathReports, wire.ReportBatch{Reports: []wire.Report{{ID: fmt.Sprintf("%s-%d", name, n),
				Kind: wire.ReportRunCommand, TakenAt: time.Now(), Body: b}}})
		}
	}
	for _, m := range ms {
		wg.Go(func() { report(m, "hi", wire.RunSucceeded, 0) })
	}
	out, stderr, err := run(t, "", "bulk", "run-command", "-g", "rg1", "--command", "echo hi", "--name", "hi", "-o", "json")
	if err != nil {
		t.Fatalf("bulk run-command: %v\n%s", err, stderr)
	}
	op := decodeOut[wire.BulkOperation](t, out)
	if !op.Done || op.Totals != (wire.BulkTotals{Succeeded: 3}) || op.Machines != 3 || !strings.Contains(stderr, "3/3 done: 3 succeeded") {
		t.Errorf("operation %+v, progress %q", op, stderr)
	}

	// One machine fails the next run.
	wg.Go(func() { report(ms[0], "bad", wire.RunFailed, 7) })
	for _, m := range ms[1:] {
		wg.Go(func() { report(m, "bad", wire.RunSucceeded, 0) })
	}
	out, _, err = run(t, "", "bulk", "run-command", "--scope", "/subscriptions/default/resourceGroups/rg1", "--command", "false", "--name", "bad")
	if err == nil || !strings.Contains(err.Error(), "1 of 3 machines failed") {
		t.Errorf("a failed machine: %v", err)
	}
	if !strings.Contains(out, "m0") || !strings.Contains(out, "Failed") || !strings.Contains(out, "7") {
		t.Errorf("the failed machine is not listed:\n%s", out)
	}
	close(stop)
	wg.Wait()

	out = mustRun(t, "", "bulk", "list", "-o", "json")
	if ops := decodeOut[[]wire.BulkOperation](t, out); len(ops) != 2 || ops[0].Target != "bad" {
		t.Errorf("list %+v", ops)
	}
	out = mustRun(t, "", "bulk", "machines", op.Name, "--result", "succeeded")
	if strings.Count(out, "Succeeded   Succeeded") != 3 {
		t.Errorf("machines:\n%s", out)
	}
	if _, _, err := run(t, "", "bulk", "show", "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("show an unknown operation: %v", err)
	}
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?caller=admin&$top=50", s.AdminToken(t), nil, &acts)
	n := 0
	for _, a := range acts.Value {
		if strings.HasPrefix(a.Message, "bulk runCommand") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d activity entries for the two bulk requests", n)
	}
}
