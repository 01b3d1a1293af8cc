package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

// TestFirstStartAdminPasswordAndLockdownLine runs the real binaries
// (issue 7, findings 8 and 9): without CORRAL_ADMIN_PASSWORD the server
// writes the generated password to a 0600 file and never prints it; the
// CLI signs in from the file and changes it; an agent connected in full
// mode prints the line that locks the machine down.
func TestFirstStartAdminPasswordAndLockdownLine(t *testing.T) {
	corral, agent := binaries(t)
	dir := t.TempDir()
	srv := start(t, []string{"CORRAL_ADMIN_PASSWORD="}, corral, "server", "--data-dir", dir, "--listen", "127.0.0.1:0", "--log-format", "json")
	url := srv.waitFor(t, "Corral control plane at ", 30*time.Second)
	pwFile := filepath.Join(dir, "admin-password")
	srv.waitFor(t, "Created user \"admin\"; its generated password is in "+pwFile, 5*time.Second)
	fi, err := os.Stat(pwFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", err, fi)
	}
	pw, _ := os.ReadFile(pwFile)
	password := strings.TrimSpace(string(pw))
	if len(password) < 20 || strings.Contains(srv.out.String(), password) {
		t.Fatalf("the generated password is printed or weak (%d characters)", len(password))
	}
	env := []string{"HOME=" + t.TempDir(), "XDG_CONFIG_HOME=", "CORRAL_SERVER=", "CORRAL_TOKEN=", "CORRAL_CA_FILE="}
	f, _ := os.Open(pwFile)
	defer f.Close()
	if out, err := run(t, f, env, corral, "login", "--server", url, "--username", "admin", "--password-stdin", "--ca-file", filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatalf("login from the password file: %v\n%s", err, out)
	}
	out, err := run(t, strings.NewReader(password+"\nthe-admins-own-password-1\n"), env, corral, "user", "password", "--password-stdin")
	if err != nil || !strings.Contains(out, "Signed in again") {
		t.Fatalf("change the generated password: %v\n%s", err, out)
	}
	if out, err := run(t, nil, env, corral, "group", "create", "web"); err != nil {
		t.Fatalf("group create with the new session: %v\n%s", err, out)
	}
	out, err = run(t, nil, env, corral, "sp", "create", "--name", "onboard-web", "--role", "Connected Machine Onboarding",
		"--scope", "/subscriptions/default/resourceGroups/web", "-o", "json")
	if err != nil {
		t.Fatalf("sp create: %v\n%s", err, out)
	}
	var sp struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	// The warning goes to standard error, which run combines: the JSON
	// object starts at the first brace.
	if err := json.Unmarshal([]byte(out[max(strings.Index(out, "{"), 0):]), &sp); err != nil || sp.ClientSecret == "" {
		t.Fatalf("sp create output: %v\n%s", err, out)
	}
	clientID := sp.ClientID
	secretFile := testutil.WriteSecretFile(t, sp.ClientSecret)
	state, root := t.TempDir(), t.TempDir()
	out, err = run(t, nil, nil, agent, "--state-dir", state, "--root", root, "connect", "--server", url, "--subscription-id", "default",
		"--resource-group", "web", "--service-principal-id", clientID, "--service-principal-secret-file", secretFile,
		"--ca-file", filepath.Join(dir, "ca.crt"), "--name", "web-01")
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	if !strings.Contains(out, "is root here") || !strings.Contains(out, "corral-agent config set config.mode monitor") {
		t.Errorf("connect in full mode does not print the lock-down line:\n%s", out)
	}
}
