package e2e

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testutil"
)

// A standalone agent can be kept off the host for a trial, with a flag or
// with the local key that survives restarts: a run command is refused with
// the reason, through the real binaries.
func TestTrialModeRefusesHostChanges(t *testing.T) {
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
	if out, err := corral(adminPassword+"\n", "login", "--server", c.api.URL, "--username", "admin", "--password-stdin", "--ca-file", c.api.CAFile); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	clientID, secret := c.api.OnboardingPrincipal(t, "trial")
	state, root := t.TempDir(), t.TempDir()
	agentArgs := func(args ...string) []string { return append([]string{"--state-dir", state, "--root", root}, args...) }
	if out, err := run(t, nil, nil, c.agent, agentArgs("connect", "--server", c.api.URL, "--subscription-id", "default",
		"--resource-group", "trial", "--service-principal-id", clientID, "--service-principal-secret-file", testutil.WriteSecretFile(t, secret),
		"--ca-fingerprint", c.fingerprint(t), "--name", "trial-01")...); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	marker := filepath.Join(t.TempDir(), "ran")

	daemon := start(t, nil, c.agent, agentArgs("run", "--host-changes=false")...)
	out, err := corral("", "machine", "run-command", "--machine", "trial-01", "--command", "touch "+marker, "--timeout", "30s")
	if err == nil || !strings.Contains(out, "--host-changes=false") {
		t.Errorf("run command with --host-changes=false: %v\n%s", err, out)
	}
	daemon.stop(t)

	if out, err := run(t, nil, nil, c.agent, agentArgs("config", "set", "hostchanges.enabled", "false")...); err != nil {
		t.Fatalf("config set: %v\n%s", err, out)
	}
	daemon = start(t, nil, c.agent, agentArgs("run")...)
	out, err = corral("", "machine", "run-command", "--machine", "trial-01", "--command", "touch "+marker, "--timeout", "30s")
	if err == nil || !strings.Contains(out, "hostchanges.enabled") {
		t.Errorf("run command with hostchanges.enabled=false: %v\n%s", err, out)
	}
	daemon.stop(t)
	if _, err := run(t, nil, nil, "test", "-e", marker); err == nil {
		t.Error("a run command changed the host in trial mode")
	}
}
