package agentcli_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/agent/agentcli"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/publishers"
	"github.com/corralhq/corral/internal/testutil"
)

// agent runs corral-agent in-process with args and returns its output.
func agent(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := agentcli.NewRootCommand("2026.11.0")
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestBadInputIsRefusedClearly(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("  \n"), 0o600)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--state-dir", state, "show", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"--state-dir", state, "connect"}, "--server is required"},
		{[]string{"--state-dir", state, "connect", "--server", "https://cp:8443", "--subscription-id", "default", "--resource-group", "rg",
			"--service-principal-id", "abc"}, "never taken on the command line"},
		{[]string{"--state-dir", state, "connect", "--server", "https://cp:8443", "--subscription-id", "default", "--resource-group", "rg",
			"--service-principal-id", "abc", "--service-principal-secret-file", secret}, "is empty"},
		{[]string{"--state-dir", state, "connect", "--server", "ftp://cp", "--subscription-id", "s", "--resource-group", "rg", "--use-device-code"}, "scheme must be https"},
		{[]string{"--state-dir", state, "connect", "--server", "https://cp", "--subscription-id", "s", "--resource-group", "rg", "--use-device-code",
			"--tags", "novalue"}, "not key=value"},
		{[]string{"--state-dir", state, "config", "set", "config.mode", "paranoid"}, `must be "full" or "monitor"`},
		{[]string{"--state-dir", state, "config", "get", "no.such.key"}, "unknown configuration key"},
		{[]string{"--state-dir", state, "show", "-o", "yaml"}, "--output must be table or json"},
		{[]string{"--state-dir", state, "disconnect"}, "not connected"},
		{[]string{"--state-dir", "", "show"}, "--state-dir must not be empty"},
		{[]string{"--state-dir", state, "publisher", "trust", "Contoso", "ed25519:short"}, "not an ed25519 public key"},
		{[]string{"--state-dir", state, "publisher", "trust", "../x", "ed25519:" + strings.Repeat("A", 43) + "="}, "not of the form Publisher=ed25519:KEY"},
		{[]string{"--state-dir", state, "publisher", "forget", "Nobody"}, "no key of publisher Nobody"},
	}
	for _, tt := range tests {
		out, err := agent(t, "", tt.args...)
		if err == nil || !strings.Contains(err.Error()+out, tt.want) {
			t.Errorf("corral-agent %s: %v\n%s\nwant an error with %q", strings.Join(tt.args, " "), err, out, tt.want)
		}
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("refused commands left files in the state directory: %v", entries)
	}
}

func TestConfigCommands(t *testing.T) { // not parallel: it sets an environment variable
	state := filepath.Join(t.TempDir(), "state")
	run := func(args ...string) string {
		t.Helper()
		out, err := agent(t, "", append([]string{"--state-dir", state}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	run("config", "set", "extensions.blocklist", "Corral/RunCommand, Acme/Shell")
	if got := run("config", "get", "extensions.blocklist"); got != "Corral/RunCommand,Acme/Shell\n" {
		t.Errorf("get = %q", got)
	}
	run("config", "set", "config.mode", "monitor")
	if _, err := agent(t, "", "--state-dir", state, "config", "clear", "extensions.blocklist"); err == nil || !strings.Contains(err.Error(), "config.mode full") {
		t.Errorf("clear in monitor mode: %v", err)
	}
	var entries []struct {
		Key, Value string
		Set        bool
	}
	if err := json.Unmarshal([]byte(run("config", "list", "-o", "json")), &entries); err != nil || len(entries) != len(localconfig.Keys()) {
		t.Fatalf("list json: %v %+v", err, entries)
	}
	run("config", "set", "config.mode", "full")
	run("config", "clear", "extensions.blocklist")
	if got := run("config", "get", "extensions.blocklist"); got != "\n" {
		t.Errorf("after clear = %q", got)
	}
	fi, err := os.Stat(filepath.Join(state, "config.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config file: %v %v", fi, err)
	}
	// Every flag also reads CORRAL_<FLAG>.
	t.Setenv("CORRAL_STATE_DIR", state)
	if out, err := agent(t, "", "config", "get", "config.mode"); err != nil || out != "full\n" {
		t.Errorf("with CORRAL_STATE_DIR: %q %v", out, err)
	}
}

// TestConnectShowCheckDisconnect drives the commands an operator runs on a
// server against a real control plane.
func TestConnectShowCheckDisconnect(t *testing.T) {
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	secretFile := testutil.WriteSecretFile(t, secret)
	state, root := t.TempDir(), t.TempDir()
	g := []string{"--state-dir", state, "--root", root}
	out, err := agent(t, "", append(g, "connect", "--server", s.URL, "--subscription-id", "default", "--resource-group", "rg1",
		"--service-principal-id", id, "--service-principal-secret-file", secretFile, "--ca-file", s.CAFile, "--name", "db-01",
		"--tags", "env=prod")...)
	if err != nil || !strings.Contains(out, "Connected /subscriptions/default/resourceGroups/rg1/machines/db-01") {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	if strings.Contains(out, secret) {
		t.Error("connect printed the secret")
	}
	// The follow-up hint repeats the flags the daemon needs; full mode with
	// no lists is root for whoever may run commands: connect says so, with
	// the line that locks it down (issue 7, finding 9).
	if !strings.Contains(out, "corral-agent --state-dir "+state+" --root "+root+" run") {
		t.Errorf("connect's hint:\n%s", out)
	}
	if !strings.Contains(out, agentcli.LockdownAdvice) {
		t.Errorf("connect in full mode does not print the lock-down line:\n%s", out)
	}
	out, err = agent(t, "", append(g, "show", "-o", "json")...)
	var show agentcli.Show
	if err != nil || json.Unmarshal([]byte(out), &show) != nil {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if show.Status != "Disconnected" || show.DaemonRunning || show.ResourceID == "" || show.CertificateNotAfter.IsZero() {
		t.Errorf("show without a daemon: %+v", show)
	}
	out, err = agent(t, "", append(g, "check")...)
	if err != nil || !strings.Contains(out, "machine identity") || strings.Contains(out, "FAIL") {
		t.Errorf("check: %v\n%s", err, out)
	}
	bundle := filepath.Join(t.TempDir(), "b.tar.gz")
	if out, err := agent(t, "", append(g, "logs", "--output", bundle)...); err != nil {
		t.Fatalf("logs: %v\n%s", err, out)
	}
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bundle: %v %v", fi, err)
	}
	// Disconnect goes through proxy.url like every call of the agent.
	proxy, tunnels := testutil.ConnectProxy(t, nil)
	if out, err := agent(t, "", append(g, "config", "set", "proxy.url", proxy)...); err != nil {
		t.Fatalf("config set proxy.url: %v\n%s", err, out)
	}
	if out, err := agent(t, "", append(g, "disconnect")...); err != nil {
		t.Fatalf("disconnect: %v\n%s", err, out)
	}
	if tunnels.Load() == 0 {
		t.Error("disconnect did not go through the configured proxy")
	}
	if status, _ := s.Do(t, "GET", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/db-01", s.AdminToken(t), nil); status != 404 {
		t.Errorf("machine still exists after disconnect: %d", status)
	}
	if identity.Exists(state) {
		t.Error("identity left after disconnect")
	}
	for _, f := range []string{identity.FileKey, identity.FileSealingKey} {
		if _, err := os.Stat(filepath.Join(state, f)); err == nil {
			t.Errorf("%s left after disconnect", f)
		}
	}
}

func TestPublisherTrustListForget(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state")
	key := "ed25519:" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	run := func(args ...string) string {
		t.Helper()
		out, err := agent(t, "", append([]string{"--state-dir", state}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	run("publisher", "trust", "Contoso", key)
	var entries []publishers.Entry
	if err := json.Unmarshal([]byte(run("publisher", "list", "-o", "json")), &entries); err != nil ||
		len(entries) != 1 || entries[0].Publisher != "Contoso" || entries[0].Key != key || entries[0].Source != publishers.SourceConfigured {
		t.Fatalf("list after trust: %v %+v", err, entries)
	}
	if got := run("config", "get", "extensions.publisherkeys"); got != "Contoso="+key+"\n" {
		t.Errorf("the trusted key is not in the local configuration: %q", got)
	}
	run("publisher", "forget", "contoso")
	if err := json.Unmarshal([]byte(run("publisher", "list", "-o", "json")), &entries); err != nil || len(entries) != 0 {
		t.Fatalf("list after forget: %v %+v", err, entries)
	}
}

func TestLockdownOpen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kv   []string
		open bool
	}{
		{nil, true},
		{[]string{localconfig.KeyMode, localconfig.ModeMonitor}, false},
		{[]string{localconfig.KeyBlocklist, "Corral/RunCommand"}, false},
		{[]string{localconfig.KeyAllowlist, "Corral/EndpointProtection"}, false},
		{[]string{localconfig.KeyAllowlist, "Corral/RunCommand"}, true},
		{[]string{localconfig.KeyExtensionsEnabled, "false"}, false},
		{[]string{localconfig.KeyBlocklist, "Acme/Tool"}, true},
	} {
		var c localconfig.Config
		for i := 0; i < len(tc.kv); i += 2 {
			if err := c.Set(tc.kv[i], tc.kv[i+1]); err != nil {
				t.Fatal(err)
			}
		}
		if got := agentcli.LockdownOpen(c.Effective()); got != tc.open {
			t.Errorf("%v: open %t, want %t", tc.kv, got, tc.open)
		}
	}
}
