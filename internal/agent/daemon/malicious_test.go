package daemon_test

// Regression tests of the agent against a malicious control plane
// (internal/testutil/evilcp): a server that sends crafted desired states,
// catalogs signed with its own keys, redirects and absurd intervals. Each
// proves one guarantee of the local lock-down (docs/security.md).

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/testutil/evilcp"
	"github.com/corralhq/corral/internal/wire"
)

// evilAgent enrolls a state directory with a malicious control plane and
// runs the real agent daemon against it; configure runs `corral-agent`
// commands before the daemon starts.
func evilAgent(t *testing.T, configure ...[]string) (*evilcp.Server, string, *agenttest.RunningAgent) {
	t.Helper()
	evil := evilcp.Start(t)
	state := filepath.Join(t.TempDir(), "state")
	evil.Enroll(t, state)
	for _, args := range configure {
		agentCommand(t, state, args...)
	}
	a := agenttest.StartAgent(t, daemon.Config{StateDir: state})
	return evil, state, a
}

// loggingManifest is a package whose handlers append "<handler> <P/T>" to log.
func loggingManifest(publisher, typ, version, log string) wire.ExtensionManifest {
	h := func(name string) string { return fmt.Sprintf(`echo "%s %s/%s" >> %s`, name, publisher, typ, log) }
	return wire.ExtensionManifest{Publisher: publisher, Type: typ, Version: version, Handlers: wire.ExtensionHandlers{
		Install: h("install"), Enable: h("enable"), Disable: h("disable"), Update: h("update"), Uninstall: h("uninstall")}}
}

// offer signs a catalog of man and returns the desired entry for it.
func offer(t *testing.T, evil *evilcp.Server, p *evilcp.Publisher, name string, seq int64, man wire.ExtensionManifest) wire.DesiredExtension {
	t.Helper()
	e := p.Package(t, evil, man)
	p.Catalog(t, evil, seq, time.Now().Add(time.Hour), e)
	return wire.DesiredExtension{Name: name, Publisher: p.Name, Type: man.Type, Version: man.Version, Digest: e.Digest, SeqNo: seq}
}

func waitExtension(t *testing.T, evil *evilcp.Server, name string, seq int64) wire.ExtensionStatus {
	t.Helper()
	var st wire.ExtensionStatus
	testutil.Eventually(t, 20*time.Second, func() string {
		var ok bool
		st, ok = evil.ExtensionStatus(name)
		if !ok || st.SeqNo != seq || (st.State != wire.ExtSucceeded && st.State != wire.ExtFailed) {
			return fmt.Sprintf("extension %s: %+v", name, st)
		}
		return ""
	})
	return st
}

func waitRun(t *testing.T, evil *evilcp.Server, name string) wire.RunCommandResult {
	t.Helper()
	var r wire.RunCommandResult
	testutil.Eventually(t, 20*time.Second, func() string {
		var ok bool
		if r, ok = evil.RunResult(name); !ok {
			return "no result for run " + name
		}
		return ""
	})
	return r
}

func readFile(path string) string { b, _ := os.ReadFile(path); return string(b) }

// 14.1: an installed extension renamed under another publisher/type never
// runs its own handlers with the new name's verdict.
func TestMaliciousRenameDoesNotBeatTheLists(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"blocklist", "monitor"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			evil, state, _ := evilAgent(t)
			log := filepath.Join(t.TempDir(), "handlers.log")
			acme := evilcp.NewPublisher(t, "Acme")
			d := offer(t, evil, acme, "monitor", 1, loggingManifest("Acme", "Monitor", "1.0.0", log))
			evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{acme.Key()}})
			if st := waitExtension(t, evil, "monitor", 1); st.State != wire.ExtSucceeded {
				t.Fatalf("install: %+v", st)
			}
			if mode == "blocklist" {
				agentCommand(t, state, "config", "set", "extensions.blocklist", "Acme/Monitor")
			} else {
				agentCommand(t, state, "config", "set", "config.mode", "monitor")
			}
			before := readFile(log)
			// Same name, same version, new seqNo, another identity that the
			// lists allow.
			renamed := wire.DesiredExtension{Name: "monitor", Publisher: "Fabrikam", Type: "Anything", Version: "1.0.0", Digest: d.Digest, SeqNo: 2,
				Settings: json.RawMessage(`{"evil":true}`)}
			if mode == "monitor" {
				renamed.Publisher, renamed.Type = wire.PublisherCorral, "EndpointProtection"
			}
			fab := evilcp.NewPublisher(t, renamed.Publisher)
			evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{renamed}, Publishers: []wire.PublisherKey{fab.Key()}})
			waitExtension(t, evil, "monitor", 2)
			after := strings.TrimPrefix(readFile(log), before)
			if strings.Contains(after, "update Acme/Monitor") || strings.Contains(after, "enable Acme/Monitor") {
				t.Errorf("Acme/Monitor's handlers ran under the renamed entry's verdict:\n%s", after)
			}
			if !strings.Contains(after, "uninstall Acme/Monitor") {
				t.Errorf("the installed extension was not removed before the other identity: %q", after)
			}
		})
	}
}

// 14.2: a publisher named in the allowlist is never trusted with a key the
// control plane presents; nothing is pinned from a desired state alone.
func TestMaliciousKeysAreNotPinned(t *testing.T) {
	t.Parallel()
	evil, state, _ := evilAgent(t, []string{"config", "set", "extensions.allowlist", "Contoso/Agent"})
	marker := filepath.Join(t.TempDir(), "ran")
	fake := evilcp.NewPublisher(t, "Contoso")
	man := wire.ExtensionManifest{Publisher: "Contoso", Type: "Agent", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "touch " + marker, Enable: "touch " + marker}}
	d := offer(t, evil, fake, "agent", 1, man)
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{fake.Key()}})
	st := waitExtension(t, evil, "agent", 1)
	if st.State != wire.ExtFailed || !strings.Contains(st.Message, "corral-agent publisher trust Contoso") {
		t.Errorf("allowlisted publisher with the server's key: %+v", st)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a package signed by the control plane's own key ran")
	}
	if pins := readFile(filepath.Join(state, "extensions", "pins.json")); strings.Contains(strings.ToLower(pins), "contoso") {
		t.Errorf("the server's key was pinned: %s", pins)
	}
	// Root trusts the real key: the fake one is refused, the real one runs.
	real := evilcp.NewPublisher(t, "Contoso")
	agentCommand(t, state, "publisher", "trust", "Contoso", extpkg.FormatPublicKey(real.Pub))
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{{Name: "agent", Publisher: "Contoso", Type: "Agent", Version: "1.0.0", Digest: d.Digest, SeqNo: 2}},
		Publishers: []wire.PublisherKey{fake.Key()}})
	if st := waitExtension(t, evil, "agent", 2); st.State != wire.ExtFailed || !strings.Contains(st.Message, "different from the one configured") {
		t.Errorf("a key other than the configured one: %+v", st)
	}
	good := offer(t, evil, real, "agent", 3, man)
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{good}, Publishers: []wire.PublisherKey{real.Key()}})
	if st := waitExtension(t, evil, "agent", 3); st.State != wire.ExtSucceeded {
		t.Errorf("the real publisher's package: %+v", st)
	}

	// With the extension manager disabled, nothing is pinned either.
	evil2, state2, _ := evilAgent(t, []string{"config", "set", "extensions.enabled", "false"})
	squat := evilcp.NewPublisher(t, "Squat")
	d2 := offer(t, evil2, squat, "x", 1, wire.ExtensionManifest{Publisher: "Squat", Type: "X", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "true", Enable: "true"}})
	evil2.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d2}, Publishers: []wire.PublisherKey{squat.Key()}})
	waitExtension(t, evil2, "x", 1)
	if _, err := os.Stat(filepath.Join(state2, "extensions", "pins.json")); err == nil {
		t.Errorf("a key was pinned while the extension manager is disabled: %s", readFile(filepath.Join(state2, "extensions", "pins.json")))
	}
}

// 14.3: monitor mode's first-party extensions come only with the agent: a
// Corral package the control plane signs itself never runs.
func TestMaliciousFirstPartyPackageNeverRuns(t *testing.T) {
	t.Parallel()
	evil, state, _ := evilAgent(t, []string{"config", "set", "config.mode", "monitor"})
	marker := filepath.Join(t.TempDir(), "ran")
	corral := evilcp.NewPublisher(t, wire.PublisherCorral)
	d := offer(t, evil, corral, "patch", 1, wire.ExtensionManifest{Publisher: wire.PublisherCorral, Type: "PatchManagement", Version: "9.9.9",
		Handlers: wire.ExtensionHandlers{Install: "touch " + marker, Enable: "touch " + marker}})
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{corral.Key()}})
	waitExtension(t, evil, "patch", 1)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a Corral package supplied by the control plane ran in monitor mode")
	}
	if entries, _ := os.ReadDir(filepath.Join(state, "extensions", "packages")); len(entries) != 0 {
		t.Errorf("a Corral package was unpacked: %v", entries)
	}
}

// 14.4: the agent never follows a redirect: nothing reaches a service only
// the machine can reach, and its answers never travel back.
func TestMaliciousRedirectsAreRefused(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	internal := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("SECRET-INTERNAL-ANSWER"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go internal.Serve(ln)
	t.Cleanup(func() { internal.Close() })
	target := "http://" + ln.Addr().String() + "/admin"

	evil, _, _ := evilAgent(t)
	acme := evilcp.NewPublisher(t, "Acme")
	d := offer(t, evil, acme, "monitor", 1, loggingManifest("Acme", "Monitor", "1.0.0", "/dev/null"))
	evil.Redirect(wire.PathCatalogs+"Acme", target, http.StatusFound)
	evil.Redirect(wire.PathPackages+d.Digest, target, http.StatusFound)
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{acme.Key()}})
	st := waitExtension(t, evil, "monitor", 1)
	if st.State != wire.ExtFailed || !strings.Contains(st.Message, "redirect") || strings.Contains(st.Message, "SECRET") {
		t.Errorf("redirected catalog: %+v", st)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the internal service got %d requests", n)
	}
}

// 14.5: a run command queued behind a slow handler is judged when it
// starts, under the configuration root set meanwhile.
func TestMaliciousQueueCannotOutwaitTheLockDown(t *testing.T) {
	t.Parallel()
	evil, state, _ := evilAgent(t)
	started := filepath.Join(t.TempDir(), "install-started")
	marker := filepath.Join(t.TempDir(), "run-ran")
	acme := evilcp.NewPublisher(t, "Acme")
	man := wire.ExtensionManifest{Publisher: "Acme", Type: "Slow", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "touch " + started + "; sleep 3", Enable: "true"}}
	d := offer(t, evil, acme, "slow", 1, man)
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{acme.Key()},
		RunCommands: []wire.DesiredRunCommand{{Name: "queued", Command: "touch " + marker}}})
	testutil.Eventually(t, 20*time.Second, func() string {
		if _, err := os.Stat(started); err != nil {
			return "the slow install has not started"
		}
		return ""
	})
	agentCommand(t, state, "config", "set", "extensions.blocklist", wire.ExtRunCommand)
	r := waitRun(t, evil, "queued")
	if r.State != wire.RunFailed || !strings.Contains(r.Message, "blocklist") {
		t.Errorf("queued run after the blocklist was set: %+v", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the queued run ran after root blocked run commands")
	}
}

// 14.6: refused work costs no disk, and heartbeats cannot be turned into a
// flood.
func TestMaliciousFloodIsBounded(t *testing.T) {
	t.Parallel()
	evil, state, a := evilAgent(t, []string{"config", "set", "extensions.blocklist", wire.ExtRunCommand})
	evil.SetHeartbeatInterval(time.Microsecond)
	runs := make([]wire.DesiredRunCommand, 20000)
	for i := range runs {
		runs[i] = wire.DesiredRunCommand{Name: fmt.Sprintf("r%05d", i), Command: "true"}
	}
	exts := make([]wire.DesiredExtension, 4000)
	for i := range exts {
		exts[i] = wire.DesiredExtension{Name: fmt.Sprintf("e%04d", i), Publisher: "Acme", Type: "Monitor", Version: "1.0.0",
			Digest: extpkg.Digest([]byte{byte(i)}), SeqNo: 1}
	}
	agentCommand(t, state, "config", "set", "extensions.blocklist", wire.ExtRunCommand+",Acme/Monitor")
	evil.SetDesired(wire.DesiredState{Extensions: exts, RunCommands: runs})
	testutil.Eventually(t, 60*time.Second, func() string {
		if n := len(evil.Reports(wire.ReportRunCommand)); n < feature.MaxDesiredRuns {
			return fmt.Sprintf("%d run reports", n)
		}
		return ""
	})
	// The same runs listed again (a new generation): refused once is final.
	evil.SetDesired(wire.DesiredState{Extensions: exts, RunCommands: runs})
	time.Sleep(2 * time.Second)
	if n := len(evil.Reports(wire.ReportRunCommand)); n > feature.MaxDesiredRuns {
		t.Errorf("%d run reports for one desired state, want at most %d", n, feature.MaxDesiredRuns)
	}
	if entries, _ := os.ReadDir(filepath.Join(state, "extensions", "runs")); len(entries) != 0 {
		t.Errorf("refused runs left %d files", len(entries))
	}
	var st struct{ Extensions map[string]any }
	json.Unmarshal([]byte(readFile(filepath.Join(state, "extensions", "state.json"))), &st)
	if len(st.Extensions) > feature.MaxDesiredExtensions {
		t.Errorf("%d extension records for one desired state, want at most %d", len(st.Extensions), feature.MaxDesiredExtensions)
	}
	if n := strings.Count(a.Logs.String(), "refused"); n > 100 {
		t.Errorf("%d log lines about refusals", n)
	}
	if n := evil.Heartbeats(); n > 2 {
		t.Errorf("%d heartbeats although at most one every %s is allowed", n, daemon.MinHeartbeatInterval)
	}
}

// 14.7: sealed settings open only for the publisher/type they were sealed
// for, not for another extension under the same name.
func TestMaliciousSealedSettingsCannotBeRerouted(t *testing.T) {
	t.Parallel()
	evil, _, _ := evilAgent(t)
	got := filepath.Join(t.TempDir(), "stdin")
	acme := evilcp.NewPublisher(t, "Acme")
	man := wire.ExtensionManifest{Publisher: "Acme", Type: "Monitor", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "cat > " + got, Enable: "true"}}
	d := offer(t, evil, acme, "monitor", 1, man)
	// Sealed for Contoso/Vault under the same name, routed to Acme/Monitor.
	sealed, err := sealing.Seal(evil.SealingKey, sealing.ExtensionAAD(evilcp.MachineID, "monitor", "Contoso", "Vault"), []byte(`{"db":"s3cret"}`))
	if err != nil {
		t.Fatal(err)
	}
	d.ProtectedSettings = sealed
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{acme.Key()}})
	if st := waitExtension(t, evil, "monitor", 1); st.State != wire.ExtFailed {
		t.Errorf("rerouted sealed settings: %+v", st)
	}
	if strings.Contains(readFile(got), "s3cret") {
		t.Fatal("the handler received settings sealed for another publisher/type")
	}
}

// 14.8: an expired catalog is refused, and a version the publisher withdrew
// gets no more update or enable runs.
func TestMaliciousStaleCatalogs(t *testing.T) {
	t.Parallel()
	evil, _, _ := evilAgent(t)
	log := filepath.Join(t.TempDir(), "handlers.log")
	acme := evilcp.NewPublisher(t, "Acme")
	man := loggingManifest("Acme", "Monitor", "1.0.0", log)
	e := acme.Package(t, evil, man)
	acme.Catalog(t, evil, 1, time.Now().Add(-time.Hour), e)
	d := wire.DesiredExtension{Name: "monitor", Publisher: "Acme", Type: "Monitor", Version: "1.0.0", Digest: e.Digest, SeqNo: 1}
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{acme.Key()}})
	if st := waitExtension(t, evil, "monitor", 1); st.State != wire.ExtFailed || !strings.Contains(st.Message, "expired") {
		t.Errorf("expired catalog: %+v", st)
	}
	acme.Catalog(t, evil, 2, time.Now().Add(time.Hour), e)
	d.SeqNo = 2
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{acme.Key()}})
	if st := waitExtension(t, evil, "monitor", 2); st.State != wire.ExtSucceeded {
		t.Fatalf("fresh catalog: %+v", st)
	}
	// Withdrawn: the next catalog no longer lists 1.0.0.
	acme.Catalog(t, evil, 3, time.Now().Add(time.Hour))
	before := readFile(log)
	d.SeqNo, d.Settings = 3, json.RawMessage(`{"new":1}`)
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{acme.Key()}})
	if st := waitExtension(t, evil, "monitor", 3); st.State != wire.ExtFailed || !strings.Contains(st.Message, "withdrawn") {
		t.Errorf("update of a withdrawn version: %+v", st)
	}
	if after := strings.TrimPrefix(readFile(log), before); after != "" {
		t.Errorf("handlers of a withdrawn version ran: %q", after)
	}
}

// 14.9: "allow/none" in any case means Allow/None.
func TestMaliciousAllowNoneInLowerCase(t *testing.T) {
	t.Parallel()
	evil, _, _ := evilAgent(t, []string{"config", "set", "extensions.allowlist", "allow/none"})
	acme := evilcp.NewPublisher(t, "Acme")
	d := offer(t, evil, acme, "monitor", 1, loggingManifest("Acme", "Monitor", "1.0.0", "/dev/null"))
	evil.SetDesired(wire.DesiredState{Extensions: []wire.DesiredExtension{d}, Publishers: []wire.PublisherKey{acme.Key()}})
	if st := waitExtension(t, evil, "monitor", 1); st.State != wire.ExtFailed || !strings.Contains(st.Message, "Allow/None") {
		t.Errorf("install under allow/none: %+v", st)
	}
}

// 14.10 and 14.11: names the server's rule refuses are never acted upon,
// and a run's command is not in any process's argv.
func TestMaliciousNamesAndArgv(t *testing.T) {
	t.Parallel()
	evil, _, a := evilAgent(t)
	marker := filepath.Join(t.TempDir(), "ran")
	long := strings.Repeat("r", 100)
	evil.SetDesired(wire.DesiredState{RunCommands: []wire.DesiredRunCommand{
		{Name: long, Command: "touch " + marker},
		{Name: "../../escape", Command: "touch " + marker},
		{Name: "argv", Command: "SECRET=t0ken-in-the-command; cat /proc/$$/cmdline | tr '\\0' ' '"},
	}})
	r := waitRun(t, evil, "argv")
	if r.State != wire.RunSucceeded || strings.Contains(r.Stdout, "t0ken") {
		t.Errorf("the command is in the shell's argv: %+v", r)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Error("a run with an invalid name ran")
	}
	if strings.Contains(a.Logs.String(), "file name too long") {
		t.Error("a long name reached the file system")
	}
}

// 14.12: local files fail closed.
func TestUnsafeStateFailsClosed(t *testing.T) {
	t.Parallel()
	evil := evilcp.Start(t)
	state := filepath.Join(t.TempDir(), "state")
	evil.Enroll(t, state)
	if err := os.Chmod(state, 0o777); err != nil {
		t.Fatal(err)
	}
	err := daemon.Run(t.Context(), daemon.Config{StateDir: state})
	if !errors.Is(err, statedir.ErrUnsafe) {
		t.Errorf("a world-writable state directory: %v", err)
	}
	os.Chmod(state, 0o700)
	if err := os.Remove(filepath.Join(state, statedir.CAFile)); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Run(t.Context(), daemon.Config{StateDir: state}); err == nil || !strings.Contains(err.Error(), "does not fall back to the system roots") {
		t.Errorf("a missing ca.pem: %v", err)
	}
}
