package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeviceCodeOnboardingWithTheCLI: the agent prints a code, an operator
// approves it with `corral machine approve`, the agent finishes onboarding.
func TestDeviceCodeOnboardingWithTheCLI(t *testing.T) {
	c := startServer(t)
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	if out, err := run(t, strings.NewReader(adminPassword+"\n"), env, c.corral, "login", "--server", c.api.URL, "--username", "admin",
		"--password-stdin", "--ca-file", c.api.CAFile); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if out, err := run(t, nil, env, c.corral, "group", "create", "edge"); err != nil {
		t.Fatalf("group create: %v\n%s", err, out)
	}
	state := t.TempDir()
	connect := start(t, nil, c.agent, "--state-dir", state, "--root", t.TempDir(), "connect", "--server", c.api.URL,
		"--subscription-id", "default", "--resource-group", "edge", "--use-device-code", "--ca-file", c.api.CAFile, "--name", "kiosk-7")
	code := connect.waitFor(t, "    corral machine approve ", 20*time.Second)
	if out, err := run(t, nil, env, c.corral, "machine", "approve", code); err != nil {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	select {
	case <-connect.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("connect did not finish after approval:\n%s", connect.out.String())
	}
	if connect.waited != nil {
		t.Fatalf("connect: %v\n%s", connect.waited, connect.out.String())
	}
	if m, status := c.machine(t, "edge", "kiosk-7"); status != 200 || m.CreatedBy != "admin" {
		t.Errorf("machine after device-code onboarding: %d %+v", status, m)
	}
}
