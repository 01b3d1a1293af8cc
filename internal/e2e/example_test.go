package e2e

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testutil"
)

// The example extension in the repository packs, publishes and installs
// through the real binaries, and reports the settings it received.
func TestExampleExtension(t *testing.T) {
	c := startServer(t)
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	corral := func(stdin string, args ...string) string {
		t.Helper()
		var out string
		var err error
		if stdin != "" {
			out, err = run(t, strings.NewReader(stdin), env, c.corral, args...)
		} else {
			out, err = run(t, nil, env, c.corral, args...)
		}
		if err != nil {
			t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	corral(adminPassword+"\n", "login", "--server", c.api.URL, "--username", "admin", "--password-stdin", "--ca-file", c.api.CAFile)
	clientID, secret := c.api.OnboardingPrincipal(t, "demo")
	state, root := t.TempDir(), t.TempDir()
	if out, err := run(t, nil, nil, c.agent, "--state-dir", state, "--root", root, "connect", "--server", c.api.URL,
		"--subscription-id", "default", "--resource-group", "demo", "--service-principal-id", clientID,
		"--service-principal-secret-file", testutil.WriteSecretFile(t, secret), "--ca-fingerprint", c.fingerprint(t), "--name", "demo-01"); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	start(t, nil, c.agent, "--state-dir", state, "--root", root, "run")

	_, self, _, _ := runtime.Caller(0)
	example := filepath.Join(filepath.Dir(self), "..", "..", "examples", "extensions", "hello")
	work := t.TempDir()
	corral("", "publisher", "create", "Example", "--key-file", filepath.Join(work, "example.key"))
	archive := filepath.Join(work, "hello-1.0.0.tar.gz")
	corral("", "extension", "pack", example, "--output", archive)
	corral("", "extension", "publish", "--package", archive, "--key", filepath.Join(work, "example.key"))
	out := corral(`{"token":"s3cret-token"}`, "machine", "extension", "set", "--machine", "demo-01", "--name", "hello", "--publisher", "Example", "--type", "Hello",
		"--settings", `{"greeting":"hi there"}`, "--protected-settings", "@-")
	if !strings.Contains(out, "Succeeded") {
		t.Fatalf("install:\n%s", out)
	}
	out = corral("", "machine", "extension", "show", "--machine", "demo-01", "--name", "hello")
	if !strings.Contains(out, "hello: greeting=hi there, protected token received: yes") {
		t.Errorf("the example's status message:\n%s", out)
	}
}
