package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// TestKilledMidInstallConverges kills the agent process (SIGKILL) while an
// extension's install handler runs; the restarted agent redoes the
// operation and the control plane ends with Succeeded.
func TestKilledMidInstallConverges(t *testing.T) {
	c := startServer(t)
	clientID, secret := c.api.OnboardingPrincipal(t, "rg1")
	secretFile := testutil.WriteSecretFile(t, secret)
	state, root := t.TempDir(), t.TempDir()
	agentArgs := func(args ...string) []string { return append([]string{"--state-dir", state, "--root", root}, args...) }
	if out, err := run(t, nil, nil, c.agent, agentArgs("connect", "--server", c.api.URL, "--subscription-id", "default",
		"--resource-group", "rg1", "--service-principal-id", clientID, "--service-principal-secret-file", secretFile,
		"--ca-file", c.api.CAFile, "--name", "db-01")...); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	work := t.TempDir()
	started, finished := filepath.Join(work, "started"), filepath.Join(work, "finished")
	pub := c.api.NewPublisher(t, "Acme")
	pub.Publish(t, c.api, wire.ExtensionManifest{Publisher: "Acme", Type: "Slow", Version: "1.0.0", Handlers: wire.ExtensionHandlers{
		// The first attempt hangs; the agent is killed during it.
		Install: fmt.Sprintf(`if [ ! -e %[1]s ]; then sleep 60 & echo $! > %[1]s; wait; fi; touch %[2]s`, started, finished),
		Enable:  "echo enabled",
	}})
	daemon := start(t, nil, c.agent, agentArgs("run")...)
	path := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/db-01/extensions/slow"
	var e wire.MachineExtension
	c.api.MustDo(t, 201, "PUT", path, c.api.AdminToken(t), wire.MachineExtensionSet{Publisher: "Acme", Type: "Slow"}, &e)
	testutil.Eventually(t, 15*time.Second, func() string {
		if _, err := os.Stat(started); err != nil {
			return "install handler not started"
		}
		return ""
	})
	if err := daemon.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-daemon.done
	start(t, nil, c.agent, agentArgs("run")...)
	testutil.Eventually(t, 20*time.Second, func() string {
		var cur wire.MachineExtension
		c.api.MustDo(t, 200, "GET", path, c.api.AdminToken(t), nil, &cur)
		if cur.State != wire.ExtSucceeded || cur.SeqNo != e.SeqNo {
			b, _ := json.Marshal(cur)
			return string(b)
		}
		return ""
	})
	if _, err := os.Stat(finished); err != nil {
		t.Error("the install handler never completed")
	}
	// What the killed agent's handler started is gone too.
	b, _ := os.ReadFile(started)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q", b)
	}
	testutil.Eventually(t, 5*time.Second, func() string {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") { // gone, or a zombie waiting for its reaper
			return ""
		}
		return fmt.Sprintf("the first attempt's handler process %d outlived the agent: %s", pid, stat)
	})
}

// TestExtensionJourneyWithTheCLI is issue 3 as a user does it, with the real
// binaries: publish a signed package, install it with settings and
// protected settings, run a command, lock the machine down locally, see the
// refusal on the server and in the activity log, remove the extension —
// then scan everything for the protected settings.
func TestExtensionJourneyWithTheCLI(t *testing.T) {
	c := startServer(t)
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	corral := func(stdin string, args ...string) (string, error) {
		t.Helper()
		var in io.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		return run(t, in, env, c.corral, args...)
	}
	mustCorral := func(stdin string, args ...string) string {
		t.Helper()
		out, err := corral(stdin, args...)
		if err != nil {
			t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	mustCorral(adminPassword+"\n", "login", "--server", c.api.URL, "--username", "admin", "--password-stdin", "--ca-file", c.api.CAFile)

	// Onboard and run an agent.
	clientID, secret := c.api.OnboardingPrincipal(t, "web")
	secretFile := testutil.WriteSecretFile(t, secret)
	state, root := t.TempDir(), t.TempDir()
	agentArgs := func(args ...string) []string { return append([]string{"--state-dir", state, "--root", root}, args...) }
	if out, err := run(t, nil, nil, c.agent, agentArgs("connect", "--server", c.api.URL, "--subscription-id", "default",
		"--resource-group", "web", "--service-principal-id", clientID, "--service-principal-secret-file", secretFile,
		"--ca-fingerprint", c.fingerprint(t), "--name", "web-01")...); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	daemon := start(t, nil, c.agent, agentArgs("run", "--config-poll-interval", "200ms")...)

	// A publisher packs, signs and publishes an extension.
	work := t.TempDir()
	pkgDir := filepath.Join(work, "pkg")
	received := filepath.Join(work, "received")
	os.MkdirAll(pkgDir, 0o755)
	writeFile(t, filepath.Join(pkgDir, "manifest.json"), `{"publisher":"Acme","type":"Monitor","version":"1.0.0",
		"handlers":{"install":"./handler.sh install","enable":"./handler.sh enable","disable":"./handler.sh disable","uninstall":"./handler.sh uninstall"},
		"os":["linux"],"timeouts":{"install":"2m"}}`)
	writeFile(t, filepath.Join(pkgDir, "handler.sh"), "#!/bin/sh\n# Keep only a digest of what arrived on stdin.\nsha256sum | cut -c1-16 > "+received+"\necho \"$1 ok\"\n")
	os.Chmod(filepath.Join(pkgDir, "handler.sh"), 0o755)
	keyFile := filepath.Join(work, "acme.key")
	mustCorral("", "publisher", "create", "Acme", "--key-file", keyFile)
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("publisher key file: %v %v", fi, err)
	}
	archive := filepath.Join(work, "acme-monitor-1.0.0.tar.gz")
	mustCorral("", "extension", "pack", pkgDir, "--output", archive)
	mustCorral("", "extension", "publish", "--package", archive, "--key", keyFile)
	if out := mustCorral("", "extension", "list-available"); !strings.Contains(out, "Acme") || !strings.Contains(out, "1.0.0") {
		t.Fatalf("list-available:\n%s", out)
	}

	// Install with settings and protected settings (from stdin).
	const protected = `{"apiKey":"pk-live-7d1e0c5b9a"}`
	out := mustCorral(protected, "machine", "extension", "set", "--machine", "web-01", "--resource-group", "web", "--name", "monitor",
		"--publisher", "Acme", "--type", "Monitor", "--settings", `{"interval":30}`, "--protected-settings", "@-")
	if !strings.Contains(out, "Succeeded") {
		t.Fatalf("extension set:\n%s", out)
	}
	if b, _ := os.ReadFile(received); len(strings.TrimSpace(string(b))) != 16 {
		t.Errorf("the handler received nothing on stdin: %q", b)
	}
	out = mustCorral("", "machine", "extension", "list", "--machine", "web-01", "--resource-group", "web")
	if !strings.Contains(out, "monitor") || !strings.Contains(out, "Succeeded") {
		t.Errorf("extension list:\n%s", out)
	}

	// Run a command and get its output and exit code back.
	// (The resource group is found from the machine's name.)
	out, err := corral("", "machine", "run-command", "--machine", "web-01",
		"--command", "echo from $(hostname) as $(id -un); exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out, "from ") || !strings.Contains(out, "as root") {
		t.Errorf("run-command: %v\n%s", err, out)
	}

	// Root locks the machine down; the control plane's request is refused.
	if out, err := run(t, nil, nil, c.agent, agentArgs("config", "set", "extensions.blocklist", "Corral/RunCommand")...); err != nil {
		t.Fatalf("config set: %v\n%s", err, out)
	}
	testutil.Eventually(t, 10*time.Second, func() string { // the daemon polls its configuration and reports it
		m, _ := c.machine(t, "web", "web-01")
		if m.AgentConfig == nil || len(m.AgentConfig.ExtensionsBlocklist) == 0 {
			return "blocklist not reported yet"
		}
		return ""
	})
	out, err = corral("", "machine", "extension", "set", "--machine", "web-01", "--resource-group", "web", "--name", "runner",
		"--publisher", "Corral", "--type", "RunCommand", "--timeout", "30s")
	if err == nil || !strings.Contains(out, "Failed") || !strings.Contains(out, "extensions.blocklist") {
		t.Errorf("blocked extension set: %v\n%s", err, out)
	}
	out, err = corral("", "machine", "run-command", "--machine", "web-01", "--resource-group", "web", "--command", "id", "--timeout", "30s")
	if err == nil || !strings.Contains(out, "extensions.blocklist") {
		t.Errorf("blocked run-command: %v\n%s", err, out)
	}
	if out := mustCorral("", "activity", "list", "--scope", "/subscriptions/default/resourceGroups/web", "-o", "json"); !strings.Contains(out, "Corral/RunCommand") ||
		!strings.Contains(out, "Acme/Monitor") {
		t.Errorf("activity log lacks the extension operations:\n%.2000s", out)
	}
	// The machine's refusals are in the activity log as the operations'
	// outcomes, Failed with the reason, linked to their requests.
	var failed []wire.ActivityEntry
	if err := json.Unmarshal([]byte(mustCorral("", "activity", "list", "--result", "Failed", "-o", "json")), &failed); err != nil {
		t.Fatal(err)
	}
	var installRefused, runRefused bool
	for _, e := range failed {
		blocked := strings.Contains(e.Message, "extensions.blocklist") && e.Caller == "admin" && e.CorrelationID != ""
		installRefused = installRefused || blocked && strings.Contains(e.Message, "install Corral/RunCommand") && strings.HasSuffix(e.Scope, "/extensions/runner")
		runRefused = runRefused || blocked && strings.Contains(e.Message, "run command") && strings.Contains(e.Scope, "/runCommands/")
	}
	if !installRefused || !runRefused {
		t.Errorf("Failed outcomes in the activity log (install refused %v, run refused %v):\n%+v", installRefused, runRefused, failed)
	}

	// Removal is always allowed.
	mustCorral("", "machine", "extension", "delete", "--machine", "web-01", "--resource-group", "web", "--name", "monitor")
	if out := mustCorral("", "machine", "extension", "list", "--machine", "web-01", "--resource-group", "web"); strings.Contains(out, "Acme") {
		t.Errorf("extension still listed after delete:\n%s", out)
	}

	bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if out, err := run(t, nil, nil, c.agent, agentArgs("logs", "--output", bundle)...); err != nil {
		t.Fatalf("logs: %v\n%s", err, out)
	}
	daemon.stop(t)
	c.server.stop(t)
	secrets := map[string]string{"protected settings": "pk-live-7d1e0c5b9a", "client secret": secret}
	scanForSecrets(t, secrets, c.server.out.String(), "server log")
	scanForSecrets(t, secrets, daemon.out.String(), "agent output")
	scanTree(t, secrets, c.dataDir)
	scanTree(t, secrets, state)
	scanTree(t, secrets, home)
	scanTarGz(t, secrets, bundle)
}

func writeFile(t *testing.T, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
