package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/wire"
)

// writeTree writes files (name -> body; a name ending in ".sh" is
// executable) under a new directory and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestExtensionsEndToEnd drives publishers, packages, extensions and run
// commands through the CLI against a real control plane and a real agent.
func TestExtensionsEndToEnd(t *testing.T) {
	dir := isolate(t)
	t.Setenv(EnvConfig, filepath.Join(dir, "cfg", "credentials.json"))
	s := testutil.StartServer(t)
	mustRun(t, testutil.AdminPassword+"\n", "login", "--server", s.URL, "--username", "admin", "--password-stdin", "--ca-file", s.CAFile)
	state := agenttest.ConnectAgent(t, s.API, "web", "web-1", "")
	agent := agenttest.StartAgent(t, daemon.Config{StateDir: state})
	on := []string{"--machine", "web-1", "-g", "web"}

	// Publisher: the key is made here, written 0600 and never overwritten.
	keyFile := filepath.Join(dir, "contoso.key")
	out := mustRun(t, "", "publisher", "create", "Contoso", "--key-file", keyFile)
	if !strings.Contains(out, keyFile) {
		t.Errorf("publisher create output: %q", out)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	keyBefore, _ := os.ReadFile(keyFile)
	if _, _, err := run(t, "", "publisher", "create", "Other", "--key-file", keyFile); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("overwrite of a key file: %v", err)
	}
	if keyAfter, _ := os.ReadFile(keyFile); !bytes.Equal(keyBefore, keyAfter) {
		t.Error("the key file changed")
	}
	if _, _, err := run(t, "", "publisher", "create", "contoso", "--key-file", filepath.Join(dir, "again.key")); err == nil ||
		!strings.Contains(err.Error(), wire.CodeConflict) {
		t.Errorf("second publisher of the same name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "again.key")); !os.IsNotExist(err) {
		t.Error("the key of a refused publisher was left behind")
	}
	pubs := decodeOut[[]wire.Publisher](t, mustRun(t, "", "publisher", "list", "-o", "json"))
	if len(pubs) != 2 {
		t.Errorf("publishers = %+v", pubs)
	}

	// Pack and publish a package whose handlers record what they were given.
	marker := filepath.Join(dir, "installed")
	pkgDir := writeTree(t, map[string]string{
		"manifest.json": `{"publisher":"Contoso","type":"Agent","version":"1.0.0","handlers":{"install":"./install.sh","enable":"./enable.sh"},"os":["linux"]}`,
		"install.sh":    "#!/bin/sh\ncat > " + marker + "\necho installed\n",
		"enable.sh":     "#!/bin/sh\necho enabled\n",
		"lib/data.txt":  "data\n",
	})
	pkgFile := filepath.Join(dir, "agent-1.0.0.tar.gz")
	out = mustRun(t, "", "extension", "pack", pkgDir, "--output", pkgFile)
	if !strings.Contains(out, "Contoso/Agent 1.0.0") || !strings.Contains(out, "4 files") {
		t.Errorf("pack output: %q", out)
	}
	linked := writeTree(t, map[string]string{"manifest.json": "{}"})
	if err := os.Symlink("/etc/passwd", filepath.Join(linked, "passwd")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "", "extension", "pack", linked, "--output", filepath.Join(dir, "x.tgz")); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("pack with a symlink: %v", err)
	}
	otherKey := filepath.Join(dir, "other.key")
	mustRun(t, "", "publisher", "create", "Fabrikam", "--key-file", otherKey)
	if _, _, err := run(t, "", "extension", "publish", "--package", pkgFile, "--key", otherKey); err == nil || !strings.Contains(err.Error(), "not the signing key") {
		t.Errorf("publish with another publisher's key: %v", err)
	}
	out = mustRun(t, "", "extension", "publish", "--package", pkgFile, "--key", keyFile)
	if !strings.Contains(out, "catalog serial 1") {
		t.Errorf("publish output: %q", out)
	}
	failing := writeTree(t, map[string]string{
		"manifest.json": `{"publisher":"Contoso","type":"Broken","version":"1.0.0","handlers":{"install":"./install.sh","enable":"./install.sh"}}`,
		"install.sh":    "#!/bin/sh\necho 'disk full' >&2\nexit 4\n",
	})
	mustRun(t, "", "extension", "pack", failing, "--output", filepath.Join(dir, "broken.tgz"))
	out = mustRun(t, "", "extension", "publish", "--package", filepath.Join(dir, "broken.tgz"), "--key", keyFile)
	if !strings.Contains(out, "catalog serial 2") {
		t.Errorf("second publish output: %q", out)
	}
	avail := decodeOut[[]wire.ExtensionPackage](t, mustRun(t, "", "extension", "list-available", "-o", "json"))
	var names []string
	for _, p := range avail {
		names = append(names, p.Publisher+"/"+p.Type+" "+p.Version)
	}
	if strings.Join(names, ",") != "Contoso/Agent 1.0.0,Contoso/Broken 1.0.0,Corral/EndpointProtection 1.0.0,Corral/PatchManagement 1.0.0,Corral/RunCommand 1.0.0" {
		t.Errorf("list-available = %v", names)
	}
	if table := mustRun(t, "", "extension", "list-available", "--publisher", "corral"); !strings.Contains(table, "RunCommand") || strings.Contains(table, "Contoso") {
		t.Errorf("list-available table:\n%s", table)
	}

	// Install with protected settings from a file; the agent runs the handler.
	secretFile := filepath.Join(dir, "protected.json")
	secret := "cli-secret-value-42"
	if err := os.WriteFile(secretFile, []byte(`{"token":"`+secret+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "", append([]string{"machine", "extension", "set", "--name", "agent", "--publisher", "Contoso", "--type", "Agent",
		"--settings", `{"level":2}`, "--protected-settings", "@" + secretFile, "--timeout", "1m"}, on...)...)
	if !strings.Contains(out, "Succeeded") {
		t.Fatalf("extension set output: %q\nagent log: %s", out, agent.Logs.String())
	}
	got, err := os.ReadFile(marker)
	if err != nil || !strings.Contains(string(got), secret) || !strings.Contains(string(got), `"level":2`) {
		t.Errorf("the handler got %q (%v)", got, err)
	}
	exts := decodeOut[[]wire.MachineExtension](t, mustRun(t, "", append([]string{"machine", "extension", "list", "-o", "json"}, on...)...))
	if len(exts) != 1 || exts[0].State != wire.ExtSucceeded || !exts[0].HasProtectedSettings {
		t.Errorf("extension list = %+v", exts)
	}
	show := mustRun(t, "", append([]string{"machine", "extension", "show", "--name", "agent"}, on...)...)
	if !strings.Contains(show, "sealed to the machine") || strings.Contains(show, secret) {
		t.Errorf("extension show:\n%s", show)
	}
	// A change without --settings keeps them; --clear-settings removes them.
	again := decodeOut[wire.MachineExtension](t, mustRun(t, "", append([]string{"machine", "extension", "set", "--name", "agent", "--publisher", "Contoso",
		"--type", "Agent", "--timeout", "1m", "-o", "json"}, on...)...))
	if strings.Join(strings.Fields(string(again.Settings)), "") != `{"level":2}` {
		t.Errorf("a change without --settings dropped them: %s", again.Settings)
	}
	kept := decodeOut[wire.MachineExtension](t, mustRun(t, "", append([]string{"machine", "extension", "set", "--name", "agent", "--publisher", "Contoso",
		"--type", "Agent", "--clear-settings", "--timeout", "1m", "-o", "json"}, on...)...))
	if len(kept.Settings) != 0 {
		t.Errorf("--clear-settings kept %s", kept.Settings)
	}

	// A failing handler: set exits non-zero with the handler's message.
	_, _, err = run(t, "", append([]string{"machine", "extension", "set", "--name", "broken", "--publisher", "Contoso", "--type", "Broken", "--timeout", "1m"}, on...)...)
	if err == nil || !strings.Contains(err.Error(), "failed") || ExitCode(err) != 1 {
		t.Errorf("failing extension: %v", err)
	}

	// Run commands: output and the remote exit code come back.
	stdout, stderr, err := run(t, "", append([]string{"machine", "run-command", "--command", "echo hello; echo oops >&2; exit 3", "--name", "r1"}, on...)...)
	if stdout != "hello\n" || !strings.Contains(stderr, "oops") || ExitCode(err) != 3 || strings.Contains(stderr, "Error:") {
		t.Errorf("run-command: stdout %q stderr %q err %v (exit %d)", stdout, stderr, err, ExitCode(err))
	}
	script := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(script, []byte("echo \"hi $WHO\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout = mustRun(t, "", append([]string{"machine", "run-command", "--script", "@" + script, "--param", "WHO=corral"}, on...)...)
	if stdout != "hi corral\n" {
		t.Errorf("script run stdout %q", stdout)
	}
	runs := decodeOut[[]wire.RunCommand](t, mustRun(t, "", append([]string{"machine", "run-command", "list", "-o", "json"}, on...)...))
	if len(runs) != 2 || runs[1].Name != "r1" || runs[1].ExitCode == nil || *runs[1].ExitCode != 3 {
		t.Errorf("run list = %+v", runs)
	}
	detail := mustRun(t, "", append([]string{"machine", "run-command", "show", "r1"}, on...)...)
	if !strings.Contains(detail, "Exit code: 3") || !strings.Contains(detail, "--- stdout ---\nhello") {
		t.Errorf("run show:\n%s", detail)
	}

	// Delete waits until the agent removed it.
	out = mustRun(t, "", append([]string{"machine", "extension", "delete", "--name", "agent", "--timeout", "1m"}, on...)...)
	if !strings.Contains(out, "Removed extension agent") {
		t.Errorf("delete output %q", out)
	}
	if _, _, err := run(t, "", append([]string{"machine", "extension", "show", "--name", "agent"}, on...)...); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("show after delete: %v", err)
	}
	if strings.Contains(s.Logs.String(), secret) || strings.Contains(agent.Logs.String(), secret) {
		t.Error("the protected settings are in a log")
	}
}
