package extensions_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/wire"
)

func extPath(rg, machine, ext string) string {
	return "/api/v1/subscriptions/default/resourceGroups/" + rg + "/machines/" + machine + "/extensions/" + ext
}

// setExtension PUTs an extension and waits until the agent has answered
// this very request (its seqNo) with Succeeded or Failed.
func setExtension(t *testing.T, s *testutil.Server, rg, machine, ext string, body wire.MachineExtensionSet) wire.MachineExtension {
	t.Helper()
	status, b := s.Do(t, "PUT", extPath(rg, machine, ext), s.AdminToken(t), body)
	if status != http.StatusOK && status != http.StatusCreated {
		t.Fatalf("set %s on %s: %d %s", ext, machine, status, b)
	}
	var e wire.MachineExtension
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return waitExtension(t, s, rg, machine, ext, e.SeqNo)
}

func waitExtension(t *testing.T, s *testutil.Server, rg, machine, ext string, seq int64) wire.MachineExtension {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var e wire.MachineExtension
	for time.Now().Before(deadline) {
		status, b := s.Do(t, "GET", extPath(rg, machine, ext), s.AdminToken(t), nil)
		if status == http.StatusOK {
			_ = json.Unmarshal(b, &e)
			if e.SeqNo == seq && (e.State == wire.ExtSucceeded || e.State == wire.ExtFailed) {
				return e
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s on %s did not finish request %d: %+v", ext, machine, seq, e)
	return e
}

// deleteExtension DELETEs and waits until the resource is gone (true) or
// the agent refused the removal (false).
func deleteExtension(t *testing.T, s *testutil.Server, rg, machine, ext string) (gone bool, e wire.MachineExtension) {
	t.Helper()
	s.MustDo(t, http.StatusAccepted, "DELETE", extPath(rg, machine, ext), s.AdminToken(t), nil, nil)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		status, b := s.Do(t, "GET", extPath(rg, machine, ext), s.AdminToken(t), nil)
		if status == http.StatusNotFound {
			return true, e
		}
		_ = json.Unmarshal(b, &e)
		if e.State == wire.ExtFailed {
			return false, e
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s on %s neither removed nor refused: %+v", ext, machine, e)
	return false, e
}

// setLocalConfig writes the agent's local configuration as root would, and
// waits until the control plane's read-only view shows it (the daemon
// has then applied it).
func setLocalConfig(t *testing.T, s *testutil.Server, state, rg, machine string, kv ...string) {
	t.Helper()
	c, err := localconfig.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if err := c.Set(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := localconfig.Save(state, c); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(c.Effective().Wire())
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var m wire.Machine
		s.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/"+rg+"/machines/"+machine, s.AdminToken(t), nil, &m)
		if got, _ := json.Marshal(m.AgentConfig); string(got) == string(want) {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("the control plane never saw the local configuration %s", want)
}

func monitorManifest(version string) wire.ExtensionManifest {
	return wire.ExtensionManifest{Publisher: "Acme", Type: "Monitor", Version: version, Handlers: wire.ExtensionHandlers{
		Install: "echo installed " + version, Enable: "echo enabled " + version, Disable: "true", Update: "true", Uninstall: "true"}}
}

// TestLockDownTableThroughServerAndAgent checks SEEDS-DIGEST §001's table
// exactly, through the real control plane and the real agent daemon:
//
//	operation  in allowlist  in blocklist  in both  in neither, allowlist set
//	install    allowed       blocked       blocked  blocked
//	update     allowed       blocked       blocked  blocked
//	upgrade    allowed       blocked       blocked  blocked
//	remove     allowed       allowed       allowed  allowed
//
// plus no lists (all allowed) and Allow/None (nothing but removal).
func TestLockDownTableThroughServerAndAgent(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	pub := s.NewPublisher(t, "Acme")
	pub.Publish(t, s.API, monitorManifest("1.0.0"))
	pub.Publish(t, s.API, monitorManifest("2.0.0"))

	const ext = "Acme/Monitor"
	lists := []struct {
		name         string
		allow, block string
		allowed      bool // install, update and upgrade
		reason       string
	}{
		{"in allowlist", ext, "", true, ""},
		{"in blocklist", "", ext, false, "is in extensions.blocklist"},
		{"in both", ext, ext, false, "is in extensions.blocklist"},
		{"in neither, allowlist configured", "Corral/EndpointProtection", "", false, "is not in extensions.allowlist"},
		{"no lists", "", "", true, ""},
		{"Allow/None", localconfig.AllowNone, "", false, "Allow/None"},
	}
	for i, l := range lists {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			rg := fmt.Sprintf("lock%d", i)
			keys := func() []string {
				var kv []string
				if l.allow != "" {
					// An allowlist naming a publisher needs its key too.
					kv = append(kv, localconfig.KeyAllowlist, l.allow, localconfig.KeyPublisherKeys, "Acme="+extpkg.FormatPublicKey(pub.Pub))
				}
				if l.block != "" {
					kv = append(kv, localconfig.KeyBlocklist, l.block)
				}
				return kv
			}
			check := func(op string, e wire.MachineExtension) {
				t.Helper()
				if l.allowed && e.State != wire.ExtSucceeded {
					t.Errorf("%s: %s (%s), want Succeeded", op, e.State, e.Message)
				}
				if !l.allowed && (e.State != wire.ExtFailed || !strings.Contains(e.Message, l.reason)) {
					t.Errorf("%s: %s (%s), want Failed with %q", op, e.State, e.Message, l.reason)
				}
			}

			// Install, with the lists set from the start.
			stateA := agenttest.ConnectAgent(t, s.API, rg, "fresh", "")
			agenttest.StartAgent(t, daemon.Config{StateDir: stateA})
			if kv := keys(); kv != nil {
				setLocalConfig(t, s, stateA, rg, "fresh", kv...)
			}
			check("install", setExtension(t, s, rg, "fresh", "monitor", wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor", Version: "1.0.0"}))

			// Update, upgrade and remove of an extension installed before
			// the lists were set.
			stateB := agenttest.ConnectAgent(t, s.API, rg, "preinstalled", "")
			agenttest.StartAgent(t, daemon.Config{StateDir: stateB})
			if e := setExtension(t, s, rg, "preinstalled", "monitor", wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor", Version: "1.0.0"}); e.State != wire.ExtSucceeded {
				t.Fatalf("install before the lists: %+v", e)
			}
			if kv := keys(); kv != nil {
				setLocalConfig(t, s, stateB, rg, "preinstalled", kv...)
			}
			check("update", setExtension(t, s, rg, "preinstalled", "monitor", wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor",
				Version: "1.0.0", Settings: json.RawMessage(`{"interval":30}`)}))
			up := setExtension(t, s, rg, "preinstalled", "monitor", wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor", Version: "2.0.0"})
			check("upgrade", up)
			if !l.allowed && up.Version != "1.0.0" {
				t.Errorf("a refused upgrade shows version %s, want the installed 1.0.0", up.Version)
			}
			// Installed before the lists, so not removed by them; removal
			// itself is always accepted.
			if gone, e := deleteExtension(t, s, rg, "preinstalled", "monitor"); !gone {
				t.Errorf("remove refused: %+v", e)
			}
			if dirs, _ := os.ReadDir(filepath.Join(stateB, "extensions", "packages")); len(dirs) != 0 {
				t.Errorf("package directories left after remove: %d", len(dirs))
			}
		})
	}
}

// TestMonitorModeAndDisabledManager: monitor mode refuses what is not a
// monitoring or security extension and freezes the lists;
// extensions.enabled=false refuses everything, removal included, and
// leaves installed extensions in place.
func TestMonitorModeAndDisabledManager(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	pub := s.NewPublisher(t, "Acme")
	pub.Publish(t, s.API, monitorManifest("1.0.0"))
	state := agenttest.ConnectAgent(t, s.API, "rg1", "dc01", "")
	agenttest.StartAgent(t, daemon.Config{StateDir: state})

	if e := setExtension(t, s, "rg1", "dc01", "monitor", wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor"}); e.State != wire.ExtSucceeded {
		t.Fatalf("install: %+v", e)
	}
	setLocalConfig(t, s, state, "rg1", "dc01", localconfig.KeyMode, localconfig.ModeMonitor)
	e := setExtension(t, s, "rg1", "dc01", "runner", wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand"})
	if e.State != wire.ExtFailed || !strings.Contains(e.Message, "monitor") {
		t.Errorf("run command in monitor mode: %+v", e)
	}
	// The activity log names the caller of the refused operation's request.
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, 200, "GET", "/api/v1/activityLogs?scope=/subscriptions/default/resourceGroups/rg1/machines/dc01", s.AdminToken(t), nil, &acts)
	found := false
	for _, a := range acts.Value {
		found = found || (strings.Contains(a.Action, "extensions/write") && a.Caller == "admin" && strings.Contains(a.Message, "Corral/RunCommand"))
	}
	if !found {
		t.Errorf("the extension request is not in the activity log: %+v", acts.Value)
	}

	setLocalConfig(t, s, state, "rg1", "dc01", localconfig.KeyMode, localconfig.ModeFull, localconfig.KeyExtensionsEnabled, "false")
	if gone, e := deleteExtension(t, s, "rg1", "dc01", "monitor"); gone || !strings.Contains(e.Message, "disabled") {
		t.Errorf("remove with the extension manager disabled: gone=%v %+v", gone, e)
	}
	if dirs, _ := os.ReadDir(filepath.Join(state, "extensions", "packages")); len(dirs) != 1 {
		t.Errorf("the installed extension did not stay: %d package directories", len(dirs))
	}
}

// TestRefusedRemovalStaysVisibleWhenDeletedAgain: a removal the local
// configuration refuses is Failed on the server; deleting it again (state
// Deleting, a new desired-state generation) must end Failed again, not
// make the extension vanish from the control plane while it is still
// installed on the machine.
func TestRefusedRemovalStaysVisibleWhenDeletedAgain(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	pub := s.NewPublisher(t, "Acme")
	pub.Publish(t, s.API, monitorManifest("1.0.0"))
	state := agenttest.ConnectAgent(t, s.API, "rg1", "db01", "")
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	if e := setExtension(t, s, "rg1", "db01", "monitor", wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor"}); e.State != wire.ExtSucceeded {
		t.Fatalf("install: %+v", e)
	}
	setLocalConfig(t, s, state, "rg1", "db01", localconfig.KeyExtensionsEnabled, "false")
	for i := range 2 {
		if gone, e := deleteExtension(t, s, "rg1", "db01", "monitor"); gone || !strings.Contains(e.Message, "disabled") {
			t.Fatalf("delete %d with the extension manager disabled: gone=%v %+v", i+1, gone, e)
		}
	}
	if dirs, _ := os.ReadDir(filepath.Join(state, "extensions", "packages")); len(dirs) != 1 {
		t.Errorf("the installed extension did not stay: %d package directories", len(dirs))
	}
}

// TestRunCommandThroughServerAndAgent runs a script on the agent and reads
// its result from the run's record.
func TestRunCommandThroughServerAndAgent(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "web-01", "")
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	path := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/web-01/runCommands/"
	s.MustDo(t, http.StatusCreated, "PUT", path+"hello", s.AdminToken(t), wire.RunCommandCreate{
		Script: "echo \"hello $NAME\"\necho warn >&2\nexit 4\n", Parameters: map[string]string{"NAME": "corral"}}, nil)
	var run wire.RunCommand
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.MustDo(t, 200, "GET", path+"hello", s.AdminToken(t), nil, &run)
		if run.State != wire.RunPending && run.State != wire.RunRunning {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if run.State != wire.RunFailed || run.ExitCode == nil || *run.ExitCode != 4 || run.Stdout != "hello corral\n" || run.Stderr != "warn\n" {
		t.Errorf("run record %+v", run)
	}

	// Blocked locally like any extension.
	setLocalConfig(t, s, state, "rg1", "web-01", localconfig.KeyBlocklist, wire.ExtRunCommand)
	s.MustDo(t, http.StatusCreated, "PUT", path+"blocked", s.AdminToken(t), wire.RunCommandCreate{Command: "id"}, nil)
	deadline = time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		run = wire.RunCommand{}
		s.MustDo(t, 200, "GET", path+"blocked", s.AdminToken(t), nil, &run)
		if run.State != wire.RunPending && run.State != wire.RunRunning {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if run.State != wire.RunFailed || !strings.Contains(run.Message, "blocklist") || run.Stdout != "" {
		t.Errorf("blocked run %+v", run)
	}
}

// TestProtectedSettingsLeakNowhere: the plaintext reaches the handler and
// nothing else — not the server's database, not its logs, not the agent's
// state directory or logs.
func TestProtectedSettingsLeakNowhere(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	got := filepath.Join(t.TempDir(), "received.sha256")
	pub := s.NewPublisher(t, "Acme")
	man := monitorManifest("1.0.0")
	// The handler proves it received the secret by storing its hash only.
	man.Handlers.Install = `sed -n 's/.*"protectedSettings":\({[^}]*}\).*/\1/p' | sha256sum | cut -d' ' -f1 > ` + got
	pub.Publish(t, s.API, man)
	state := agenttest.ConnectAgent(t, s.API, "rg1", "pci-01", "")
	agent := agenttest.StartAgent(t, daemon.Config{StateDir: state})

	const secret = "s3cr3t-db-password-9f8e7d"
	protected := `{"dbPassword":"` + secret + `"}`
	e := setExtension(t, s, "rg1", "pci-01", "monitor", wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor",
		ProtectedSettings: json.RawMessage(protected)})
	if e.State != wire.ExtSucceeded || !e.HasProtectedSettings {
		t.Fatalf("install: %+v", e)
	}
	want := fmt.Sprintf("%x", sha256Sum(protected))
	if b, _ := os.ReadFile(got); strings.TrimSpace(string(b)) != want {
		t.Errorf("the handler received %q, want the hash of the protected settings %s", b, want)
	}
	agent.Stop(t)
	s.Stop(t)
	scan := func(where, text string) {
		if strings.Contains(text, secret) {
			t.Errorf("the protected settings appear in %s", where)
		}
	}
	for _, dir := range []string{s.DataDir, state} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(p)
				scan(p, string(b))
			}
			return nil
		})
	}
	scan("the server log", s.Logs.String())
	scan("the agent log", agent.Logs.String())
}

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// BenchmarkExtensionSetToSucceeded times one extension operation end to
// end: the API call, the push to the agent, the agent's verification,
// unpack and handlers, and the report until the server shows Succeeded.
func BenchmarkExtensionSetToSucceeded(b *testing.B) {
	s := testutil.StartServer(b, testutil.FastLifecycle())
	pub := s.NewPublisher(b, "Acme")
	pub.Publish(b, s.API, monitorManifest("1.0.0"))
	state := agenttest.ConnectAgent(b, s.API, "rg1", "bench", "")
	agenttest.StartAgent(b, daemon.Config{StateDir: state})
	var samples []time.Duration
	tok := s.AdminToken(b)
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		body := wire.MachineExtensionSet{Publisher: "Acme", Type: "Monitor", Settings: json.RawMessage(fmt.Sprintf(`{"run":%d}`, i))}
		var e wire.MachineExtension
		status, raw := s.Do(b, "PUT", extPath("rg1", "bench", "monitor"), tok, body)
		if status != http.StatusOK && status != http.StatusCreated {
			b.Fatalf("set: %d %s", status, raw)
		}
		_ = json.Unmarshal(raw, &e)
		for {
			var cur wire.MachineExtension
			s.MustDo(b, 200, "GET", extPath("rg1", "bench", "monitor"), tok, nil, &cur)
			if cur.SeqNo == e.SeqNo && cur.State == wire.ExtSucceeded {
				break
			}
			if cur.SeqNo == e.SeqNo && cur.State == wire.ExtFailed {
				b.Fatalf("failed: %s", cur.Message)
			}
			time.Sleep(2 * time.Millisecond)
		}
		samples = append(samples, time.Since(start))
	}
	slices.Sort(samples)
	n := len(samples)
	b.ReportMetric(float64(samples[n/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(samples[min(n-1, n*99/100)].Microseconds())/1000, "p99-ms")
}

// TestHostilePackagesAndConfigWrites: a package the agent would refuse is
// refused when published, with a clear reason; and nothing in the API can
// write a machine's local configuration.
func TestHostilePackagesAndConfigWrites(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	s.NewPublisher(t, "Acme")
	man := monitorManifest("1.0.0")
	traversal, _ := extpkg.BuildArchive(&man, extpkg.File{Name: "../../etc/cron.d/evil", Body: []byte("* * * * * root id")})
	if status, b := s.UploadPackage(t, "Acme", traversal); status != http.StatusBadRequest || !strings.Contains(string(b), "leaves the package directory") {
		t.Errorf("path traversal package: %d %s", status, b)
	}
	huge := make([]byte, wire.MaxPackageBytes+1)
	if status, b := s.UploadPackage(t, "Acme", huge); status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized package: %d %.200s", status, b)
	}
	var pkgs wire.List[wire.ExtensionPackage]
	s.MustDo(t, 200, "GET", "/api/v1/extensionPackages?publisher=Acme", s.AdminToken(t), nil, &pkgs)
	if len(pkgs.Value) != 0 {
		t.Errorf("a refused package was stored: %+v", pkgs.Value)
	}

	state := agenttest.ConnectAgent(t, s.API, "rg1", "locked", "")
	c, _ := localconfig.Load(state)
	_ = c.Set(localconfig.KeyAllowlist, localconfig.AllowNone)
	_ = localconfig.Save(state, c)
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	machine := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/locked"
	status, b := s.Do(t, "PATCH", machine, s.AdminToken(t), map[string]any{
		"tags": map[string]string{}, "agentConfiguration": map[string]any{"extensions.allowlist": []string{}}})
	if status != http.StatusBadRequest {
		t.Errorf("PATCH with agentConfiguration: %d %s", status, b)
	}
	if after, _ := localconfig.Load(state); !slices.Equal(after.Effective().Allowlist, []string{localconfig.AllowNone}) {
		t.Errorf("the local configuration changed: %+v", after)
	}
}

// TestOverdueRunNeverStartsLater: a run asked of a machine that is away is
// failed by the control plane once its timeout passes, and the agent that
// comes back afterwards does not run it — neither from the server nor from
// its own cached desired state.
func TestOverdueRunNeverStartsLater(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "laptop", "")
	marker := filepath.Join(t.TempDir(), "ran")
	path := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/laptop/runCommands/"

	// While the agent runs once, a run is cached in its desired state...
	a := agenttest.StartAgent(t, daemon.Config{StateDir: state})
	s.MustDo(t, http.StatusCreated, "PUT", path+"first", s.AdminToken(t), wire.RunCommandCreate{Command: "true"}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var run wire.RunCommand
		s.MustDo(t, 200, "GET", path+"first", s.AdminToken(t), nil, &run)
		if run.State == wire.RunSucceeded {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	a.Stop(t)

	// ...then, with the agent away, another run is asked for and expires.
	s.MustDo(t, http.StatusCreated, "PUT", path+"late", s.AdminToken(t), wire.RunCommandCreate{Command: "touch " + marker, Timeout: wire.Duration(time.Second)}, nil)
	var run wire.RunCommand
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		run = wire.RunCommand{}
		s.MustDo(t, 200, "GET", path+"late", s.AdminToken(t), nil, &run)
		if run.State != wire.RunPending {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if run.State != wire.RunFailed || run.Message != store.RunNotStartedMessage {
		t.Fatalf("overdue run: %+v", run)
	}
	// A cached desired state that still lists it (as if fetched just before)
	// must not start it either.
	b, _ := os.ReadFile(filepath.Join(state, daemon.DesiredFile))
	var ds wire.DesiredState
	_ = json.Unmarshal(b, &ds)
	ds.RunCommands = append(ds.RunCommands, wire.DesiredRunCommand{Name: "late", Command: "touch " + marker, Timeout: wire.Duration(time.Second)})
	b, _ = json.Marshal(ds)
	os.WriteFile(filepath.Join(state, daemon.DesiredFile), b, 0o600)

	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := daemon.ReadStatus(state); st.Connected && st.AppliedGeneration > ds.Generation {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the overdue run ran when the agent came back")
	}
}
