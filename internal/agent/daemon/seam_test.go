package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/agentcli"
	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/features"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/testutil/evilcp"
	"github.com/corralhq/corral/internal/wire"
)

// agentCommand runs the real corral-agent command line on a state directory.
func agentCommand(t *testing.T, state string, args ...string) string {
	t.Helper()
	cmd := agentcli.NewRootCommand("2026.11.0")
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--state-dir", state}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("corral-agent %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// runToEnd requests a run command and waits for its final state.
func runToEnd(t *testing.T, s *testutil.Server, machine, name, command string) wire.RunCommand {
	t.Helper()
	path := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/" + machine + "/runCommands/" + name
	s.MustDo(t, http.StatusCreated, "PUT", path, s.AdminToken(t), wire.RunCommandCreate{Command: command}, nil)
	var run wire.RunCommand
	testutil.Eventually(t, 20*time.Second, func() string {
		run = wire.RunCommand{}
		s.MustDo(t, 200, "GET", path, s.AdminToken(t), nil, &run)
		if run.State == wire.RunPending || run.State == wire.RunRunning {
			return "run " + name + " is " + run.State
		}
		return ""
	})
	return run
}

// Root's word is in force from the moment `corral-agent config set`
// returns: a run command requested right after it (no sleep) is refused,
// every time; and one right after `config clear` runs, every time.
func TestLocalConfigurationIsInForceWhenConfigSetReturns(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "lock-01", "")
	// A slow poll: the guarantee must not depend on the watcher.
	agenttest.StartAgent(t, daemon.Config{StateDir: state, ConfigPollInterval: time.Hour})
	marker := filepath.Join(t.TempDir(), "ran")
	const rounds = 100
	for i := range rounds {
		agentCommand(t, state, "config", "set", "extensions.blocklist", wire.ExtRunCommand)
		run := runToEnd(t, s, "lock-01", fmt.Sprintf("blocked-%d", i), "echo x >> "+marker)
		if run.State != wire.RunFailed || !strings.Contains(run.Message, "blocklist") {
			t.Fatalf("round %d: a run requested right after the blocklist was set: %+v", i, run)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a blocked run command ran")
	}
	for i := range rounds {
		agentCommand(t, state, "config", "clear", "extensions.blocklist")
		run := runToEnd(t, s, "lock-01", fmt.Sprintf("allowed-%d", i), "echo x >> "+marker)
		if run.State != wire.RunSucceeded {
			t.Fatalf("round %d: a run requested right after the blocklist was cleared: %+v", i, run)
		}
		// Block again for the next round so that each clear is a change.
		agentCommand(t, state, "config", "set", "extensions.blocklist", wire.ExtRunCommand)
	}
	b, _ := os.ReadFile(marker)
	if n := strings.Count(string(b), "x"); n != rounds {
		t.Errorf("%d allowed runs ran, want %d", n, rounds)
	}
}

// A local change is applied from the cached desired state without the
// server, and an extension removed locally is put back while the server is
// down (from the catalog and archive the agent verified and kept).
func TestLocalRepairAndConfigChangesWorkWhileTheServerIsDown(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	pub := s.NewPublisher(t, "Acme")
	man := wire.ExtensionManifest{Publisher: "Acme", Type: "Monitor", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "true", Enable: "echo enabled", Disable: "true", Uninstall: "true"}}
	pub.Publish(t, s.API, man)
	state := agenttest.ConnectAgent(t, s.API, "rg1", "cache-01", "")
	agenttest.StartAgent(t, daemon.Config{StateDir: state, ReconcileInterval: 200 * time.Millisecond, ConfigPollInterval: time.Hour})
	ext := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/cache-01/extensions/monitor"
	s.MustDo(t, http.StatusCreated, "PUT", ext, s.AdminToken(t),
		wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor", Version: "1.0.0"}, nil)
	packages := filepath.Join(state, "extensions", "packages")
	// Installed: one unpacked package (an install in progress also holds a
	// hidden ".unpacking" directory, which does not count).
	installed := func() string {
		entries, _ := os.ReadDir(packages)
		n := 0
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				n++
			}
		}
		if n != 1 {
			return fmt.Sprintf("%d package directories", n)
		}
		return ""
	}
	testutil.Eventually(t, 20*time.Second, installed)
	// And reported: the install is over, so nothing below races it.
	testutil.Eventually(t, 20*time.Second, func() string {
		var e wire.MachineExtension
		s.MustDo(t, http.StatusOK, "GET", ext, s.AdminToken(t), nil, &e)
		if e.State != wire.ExtSucceeded {
			return "extension " + e.State
		}
		return ""
	})

	s.Stop(t) // the control plane goes away
	// Root blocks it and someone deletes it: it is not put back.
	agentCommand(t, state, "config", "set", "extensions.blocklist", "Acme/Monitor")
	if err := os.RemoveAll(packages); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(packages, 0o700)
	time.Sleep(time.Second) // several repair passes
	if installed() == "" {
		t.Fatal("a blocked extension was put back")
	}
	// Root allows it again: put back at once from what the agent kept,
	// with the server still down.
	agentCommand(t, state, "config", "clear", "extensions.blocklist")
	testutil.Eventually(t, 20*time.Second, installed)
	// Wait until that install is over (its handlers ran and it is recorded):
	// a package removed under a running install fails that attempt.
	testutil.Eventually(t, 20*time.Second, func() string {
		var st struct {
			Extensions map[string]struct {
				Installed  bool `json:"installed"`
				InProgress bool `json:"inProgress"`
			} `json:"extensions"`
		}
		b, _ := os.ReadFile(filepath.Join(state, "extensions", "state.json"))
		if err := json.Unmarshal(b, &st); err != nil || !st.Extensions["monitor"].Installed || st.Extensions["monitor"].InProgress {
			return fmt.Sprintf("local record: %s (%v)", b, err)
		}
		return ""
	})
	// Removed locally again: the periodic repair puts it back.
	if err := os.RemoveAll(packages); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(packages, 0o700)
	testutil.Eventually(t, 20*time.Second, installed)
}

// faulty is a feature that fails: its Start or Apply returns an error or
// panics, as told.
type faulty struct {
	name     string
	startErr error
	panicIn  string
	applied  atomic.Int32
}

func (f *faulty) Name() string { return f.name }
func (f *faulty) Start(context.Context, feature.Env) error {
	if f.panicIn == "start" {
		panic("boom in start")
	}
	return f.startErr
}
func (f *faulty) Apply(context.Context, feature.Desired) error {
	f.applied.Add(1)
	if f.panicIn == "apply" {
		panic("boom in apply")
	}
	return nil
}
func (f *faulty) Close() error { return nil }

// A feature that fails to start or panics is contained: the daemon and its
// other features keep working, and the failure is reported.
func TestFailingFeaturesAreContained(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "faulty-01", "")
	startFails := &faulty{name: "startFails", startErr: errors.New("cannot open its state")}
	startPanics := &faulty{name: "startPanics", panicIn: "start"}
	applyPanics := &faulty{name: "applyPanics", panicIn: "apply"}
	fs := append([]feature.Feature{startFails, startPanics, applyPanics}, features.Default()...)
	agent := agenttest.StartAgent(t, daemon.Config{StateDir: state, Features: fs})
	// The real features still work: a run command runs.
	if run := runToEnd(t, s, "faulty-01", "still-works", "true"); run.State != wire.RunSucceeded {
		t.Fatalf("run with failing features beside it: %+v", run)
	}
	if startFails.applied.Load() != 0 || startPanics.applied.Load() != 0 {
		t.Error("a feature that failed to start was handed desired state")
	}
	if applyPanics.applied.Load() == 0 {
		t.Error("the feature that panics in Apply was never called")
	}
	select {
	case <-agent.Done():
		t.Fatalf("the daemon stopped: %v", agent.Err())
	default:
	}
	for _, want := range []string{"cannot open its state", "boom in start", "boom in apply"} {
		if !strings.Contains(agent.Logs.String(), want) {
			t.Errorf("the log does not tell %q", want)
		}
	}
}

// The push channel rides HTTP/2 on the agent's one connection; where the
// way to the server speaks only HTTP/1.1 it falls back to a WebSocket, and
// pushes still arrive.
func TestPushChannelTransports(t *testing.T) {
	t.Parallel()
	for name, start := range map[string]func(testing.TB) *evilcp.Server{"http2": evilcp.Start, "websocket": evilcp.StartHTTP1} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cp := start(t)
			state := filepath.Join(t.TempDir(), "state")
			cp.Enroll(t, state)
			a := agenttest.StartAgent(t, daemon.Config{StateDir: state})
			testutil.Eventually(t, 10*time.Second, func() string {
				if !strings.Contains(a.Logs.String(), `"transport":"`+name+`"`) {
					return "not connected over " + name
				}
				return ""
			})
			cp.SetDesired(wire.DesiredState{RunCommands: []wire.DesiredRunCommand{{Name: "pushed", Command: "true"}}})
			testutil.Eventually(t, 10*time.Second, func() string {
				if _, ok := cp.RunResult("pushed"); !ok {
					return "the pushed run did not run"
				}
				return ""
			})
		})
	}
}
