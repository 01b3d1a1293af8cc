package runcommand

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

type harness struct {
	t       *testing.T
	f       *Feature
	state   string
	mu      sync.Mutex
	reports []wire.RunCommandResult
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, state: t.TempDir()}
	h.open()
	return h
}

func (h *harness) open() {
	f := New()
	err := f.Start(context.Background(), feature.Env{
		Logger: slog.New(slog.DiscardHandler), StateDir: statedir.Dir(h.state),
		Report: func(_ string, body any, _ string) {
			h.mu.Lock()
			h.reports = append(h.reports, body.(wire.RunCommandResult))
			h.mu.Unlock()
		},
		Config: func() localconfig.Effective { e, _ := localconfig.Current(h.state); return e },
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.f = f
	h.t.Cleanup(func() { f.Close() })
}

func (h *harness) set(kv ...string) {
	h.t.Helper()
	c, err := localconfig.Load(h.state)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if err := c.Set(kv[i], kv[i+1]); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := localconfig.Save(h.state, c); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) apply(fresh bool, runs ...wire.DesiredRunCommand) {
	h.t.Helper()
	if err := h.f.Apply(context.Background(), feature.Desired{State: wire.DesiredState{RunCommands: runs}, Fresh: fresh}); err != nil {
		h.t.Fatal(err)
	}
}

// final is the final result of each run reported so far.
func (h *harness) final() map[string]wire.RunCommandResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]wire.RunCommandResult{}
	for _, r := range h.reports {
		if r.State != wire.RunRunning {
			out[r.Name] = r
		}
	}
	return out
}

func (h *harness) waitFinal(n int) map[string]wire.RunCommandResult {
	h.t.Helper()
	testutil.Eventually(h.t, 20*time.Second, func() string {
		if got := len(h.final()); got < n {
			return fmt.Sprintf("%d of %d runs finished", got, n)
		}
		return ""
	})
	return h.final()
}

func exitCode(r wire.RunCommandResult) string {
	if r.ExitCode == nil {
		return "nil"
	}
	return fmt.Sprint(*r.ExitCode)
}

func TestRunCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	runs := []wire.DesiredRunCommand{
		{Name: "hello", Script: "echo hello $WHO\necho oops >&2\nexit 3\n", Parameters: map[string]string{"WHO": "world"}},
		{Name: "whoami", Command: "id -un", RunAsUser: "nobody"},
		{Name: "slow", Command: "sleep 20", Timeout: wire.Duration(300 * time.Millisecond)},
		{Name: "loud", Command: "head -c 200000 /dev/zero | tr '\\0' a"},
	}
	h.apply(true, runs...)
	got := h.waitFinal(4)
	if r := got["hello"]; r.State != wire.RunFailed || exitCode(r) != "3" || r.Stdout != "hello world\n" || r.Stderr != "oops\n" {
		t.Errorf("hello: %+v", r)
	}
	if r := got["whoami"]; r.State != wire.RunSucceeded || strings.TrimSpace(r.Stdout) != "nobody" {
		t.Errorf("whoami: %+v", r)
	}
	if r := got["slow"]; r.State != wire.RunTimedOut {
		t.Errorf("slow: %+v", r)
	}
	if r := got["loud"]; len(r.Stdout) > wire.MaxHandlerOutputBytes+100 || !strings.Contains(r.Stdout, "truncated") {
		t.Errorf("loud output %d bytes", len(r.Stdout))
	}
	// At most once: the same desired state does not run them again.
	h.mu.Lock()
	n := len(h.reports)
	h.mu.Unlock()
	h.apply(true, runs...)
	time.Sleep(100 * time.Millisecond)
	h.mu.Lock()
	if len(h.reports) != n {
		t.Errorf("run commands ran twice: %+v", h.reports[n:])
	}
	h.mu.Unlock()
}

func TestRunsStartOnlyFromAFreshDesiredState(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	marker := filepath.Join(t.TempDir(), "ran")
	h.apply(false, wire.DesiredRunCommand{Name: "cached", Command: "touch " + marker})
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil || len(h.final()) != 0 {
		t.Fatal("a run started from a cached desired state")
	}
}

// The local configuration is read when a run starts: a blocklist written a
// moment before refuses it, with nothing written to the state directory.
func TestBlockedRunIsRefusedAndNotRecorded(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.set(localconfig.KeyBlocklist, wire.ExtRunCommand)
	marker := filepath.Join(t.TempDir(), "ran")
	h.apply(true, wire.DesiredRunCommand{Name: "blocked", Command: "touch " + marker})
	r := h.waitFinal(1)["blocked"]
	if r.State != wire.RunFailed || !strings.Contains(r.Message, "blocklist") {
		t.Errorf("blocked run: %+v", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a blocked run command ran")
	}
	if entries, _ := os.ReadDir(filepath.Join(h.state, "extensions", "runs")); len(entries) != 0 {
		t.Errorf("a refused run left %d records on disk", len(entries))
	}
}

// A run in progress when root forbids run commands is stopped at once and
// reported with the reason.
func TestConfigChangeStopsARunningCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	started := filepath.Join(t.TempDir(), "started")
	h.apply(true, wire.DesiredRunCommand{Name: "long", Command: "touch " + started + "; sleep 60"})
	testutil.Eventually(t, 10*time.Second, func() string {
		if _, err := os.Stat(started); err != nil {
			return "not started"
		}
		return ""
	})
	h.set(localconfig.KeyExtensionsEnabled, "false")
	cfg, _ := localconfig.Current(h.state)
	begin := time.Now()
	h.f.ConfigChanged(context.Background(), cfg)
	r := h.waitFinal(1)["long"]
	if r.State != wire.RunFailed || !strings.Contains(r.Message, "stopped") || !strings.Contains(r.Message, "extensions.enabled=false") {
		t.Errorf("stopped run: %+v", r)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("stopping took %s", d)
	}
}

// A run's command never appears in any process's argv, where every local
// user could read it.
func TestCommandIsNotInArgv(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const secret = "s3cr3t-token-in-the-command"
	h.apply(true, wire.DesiredRunCommand{Name: "argv", Command: "X=" + secret + "; cat /proc/$$/cmdline | tr '\\0' ' '"})
	r := h.waitFinal(1)["argv"]
	if r.State != wire.RunSucceeded {
		t.Fatalf("run: %+v", r)
	}
	if strings.Contains(r.Stdout, secret) {
		t.Errorf("the shell's argv holds the command: %q", r.Stdout)
	}
}

func TestAnInterruptedRunIsReportedNotRepeated(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// As if the agent died while "half" ran.
	if err := h.f.save("half", runRecord{State: wire.RunRunning}); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	h.open()
	h.apply(true, wire.DesiredRunCommand{Name: "half", Command: "touch " + marker})
	r := h.waitFinal(1)["half"]
	if r.State != wire.RunFailed || !strings.Contains(r.Message, "not run again") {
		t.Errorf("interrupted run: %+v", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("an interrupted run ran a second time")
	}
}
