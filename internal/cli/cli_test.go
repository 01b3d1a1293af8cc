package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// run executes the corral root command in-process with stdin, and returns
// stdout, stderr and the error.
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := NewRootCommand("test")
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read golden %s (run go test -update): %v", p, err)
	}
	if got != string(want) {
		t.Errorf("%s mismatch:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// isolate points every credential location into a temp dir and clears the
// environment overrides.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv(EnvConfig, "")
	t.Setenv(EnvServer, "")
	t.Setenv(EnvToken, "")
	t.Setenv(EnvCAFile, "")
	return dir
}

var t0 = time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)

func sampleMachines() []wire.Machine {
	return []wire.Machine{
		{ID: "/subscriptions/default/resourceGroups/web/machines/web-1", Name: "web-1", SubscriptionID: "default", ResourceGroup: "web",
			MachineID: "8f0c1f7e-0000-4000-8000-000000000001", Tags: map[string]string{"env": "prod", "team": "a"}, Status: wire.StatusConnected,
			LastHeartbeat: t0, AgentVersion: "2026.11.0", AgentSupported: true,
			Properties: wire.MachineProperties{OSName: "debian", OSVersion: "12", OSType: "linux", Environment: wire.EnvAWS}, CreatedAt: t0.Add(-time.Hour)},
		{ID: "/subscriptions/default/resourceGroups/db/machines/db-1", Name: "db-1", SubscriptionID: "default", ResourceGroup: "db",
			MachineID: "8f0c1f7e-0000-4000-8000-000000000002", Status: wire.StatusDisconnected, AgentVersion: "2024.01.0",
			Properties: wire.MachineProperties{OSName: "rocky", OSType: "linux", Environment: wire.EnvOnPrem}, CreatedAt: t0.Add(-2 * time.Hour)},
	}
}

func TestGoldenMachines(t *testing.T) {
	for _, o := range []string{outTable, outJSON} {
		var b bytes.Buffer
		if err := renderMachines(&b, o, sampleMachines()); err != nil {
			t.Fatal(err)
		}
		golden(t, "machines."+o+".golden", b.String())
	}
	var b bytes.Buffer
	if err := renderMachines(&b, outJSON, nil); err != nil {
		t.Fatal(err)
	}
	if b.String() != "[]\n" {
		t.Errorf("empty JSON list = %q, want []", b.String())
	}
}

func TestGoldenOtherTables(t *testing.T) {
	var b bytes.Buffer
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(renderGroups(&b, outTable, []wire.ResourceGroup{{ID: "/subscriptions/default/resourceGroups/web", Name: "web", SubscriptionID: "default",
		Tags: map[string]string{"b": "2", "a": "1"}, CreatedAt: t0}}))
	b.WriteString("\n")
	must(renderSPs(&b, outTable, []wire.ServicePrincipal{{ID: "/servicePrincipals/1111", ClientID: "1111", DisplayName: "onboard", ExpiresAt: t0, CreatedBy: "admin"}}))
	b.WriteString("\n")
	must(renderRoles(&b, outTable, []wire.RoleDefinition{{ID: "Owner", Name: "Owner", BuiltIn: true, Description: "Full access", Actions: []string{"*"}}}))
	b.WriteString("\n")
	must(renderAssignments(&b, outTable, []wire.RoleAssignment{{ID: "ra-1", PrincipalID: "usr-1", PrincipalType: wire.PrincipalUser, RoleID: "Owner", RoleName: "Owner", Scope: "/"}}))
	b.WriteString("\n")
	must(renderDeviceCodes(&b, outTable, []wire.PendingDeviceCode{{UserCode: "ABCD-EFGH", Subscription: "default", ResourceGroup: "web", MachineName: "web-9", SourceIP: "10.0.0.9", ExpiresAt: t0}}))
	b.WriteString("\n")
	must(renderUsers(&b, outTable, []wire.User{{ID: "usr-1", Name: "alice", CreatedAt: t0}}))
	b.WriteString("\n")
	must(renderTokens(&b, outTable, []wire.APIToken{{ID: "tok-1", Name: "ci", PrincipalID: "usr-1", CreatedAt: t0, ExpiresAt: t0.Add(720 * time.Hour)}}))
	b.WriteString("\n")
	must(renderActivity(&b, outTable, []wire.ActivityEntry{{ID: "1", Time: t0, CallerID: "usr-1", Caller: "alice", Action: "Corral.HybridCompute/machines/read",
		Scope: "/subscriptions/default", Result: wire.ResultDenied, Status: 403}}))
	golden(t, "tables.golden", b.String())

	b.Reset()
	must(renderActivity(&b, outJSON, []wire.ActivityEntry{{ID: "1", Time: t0, CallerID: "usr-1", Caller: "alice", Action: "Corral.HybridCompute/machines/read",
		Scope: "/subscriptions/default", Result: wire.ResultDenied, Status: 403, CorrelationID: "c-1", SourceIP: "127.0.0.1"}}))
	golden(t, "activity.json.golden", b.String())
}

func TestFlagValidation(t *testing.T) {
	isolate(t)
	cases := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"machine", "list", "--status", "Sleeping"}, `invalid --status "Sleeping": must be one of Connected, Disconnected, Expired`},
		{[]string{"machine", "list", "--environment", "mars"}, `invalid --environment "mars"`},
		{[]string{"machine", "list", "--tag", "=x"}, `invalid --tag "=x"`},
		{[]string{"machine", "list", "-o", "yaml"}, `invalid --output "yaml": must be table or json`},
		{[]string{"machine", "show", "web-1", "-o", "yaml"}, `invalid --output "yaml"`},
		{[]string{"machine", "tag", "set", "web-1", "-g", "web", "novalue"}, `invalid tag "novalue": use KEY=VALUE`},
		{[]string{"machine", "tag", "set", "web-1", "-g", "web"}, "give at least one KEY=VALUE"},
		{[]string{"sp", "create"}, "--name is required"},
		{[]string{"sp", "create", "--name", "x", "--role", "Owner"}, "--role and --scope must be given together"},
		{[]string{"sp", "create", "--name", "x", "--role", "Owner", "--scope", "subscriptions/x"}, `invalid --scope "subscriptions/x"`},
		{[]string{"sp", "create", "--name", "x", "--expires-in", "soon"}, `invalid --expires-in "soon"`},
		{[]string{"role", "create"}, "--file is required"},
		{[]string{"role", "assignment", "create", "--role", "Owner", "--scope", "/"}, "--assignee is required"},
		{[]string{"group", "create", "g", "--tags", "a"}, `invalid tag "a": use KEY=VALUE`},
		{[]string{"user", "create", "bob"}, "--password-stdin is required"},
		{[]string{"token", "create"}, "--name is required"},
		{[]string{"activity", "list", "--since", "1h", "--from", "2026-11-24T08:00:00Z"}, "--since and --from cannot be used together"},
		{[]string{"activity", "list", "--from", "yesterday"}, `invalid --from "yesterday"`},
		{[]string{"activity", "list", "--since", "-1h"}, `invalid --since "-1h"`},
		{[]string{"activity", "list", "--result", "ok"}, `invalid --result "ok"`},
		{[]string{"activity", "list", "--top", "0"}, "invalid --top 0"},
		{[]string{"activity", "list", "--action", "a*b"}, `invalid --action "a*b"`},
		{[]string{"login", "--username", "admin", "--password-stdin"}, "--server is required"},
		{[]string{"login", "--server", "https://x", "--password-stdin"}, "--username is required"},
		{[]string{"login", "--server", "https://x", "--username", "admin"}, "--password-stdin is required"},
		{[]string{"login", "--server", "ftp://x", "--username", "admin", "--password-stdin"}, "scheme must be https"},
		{[]string{"machine", "list"}, "not logged in"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, stderr, err := run(t, "", c.args...)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, c.wantErr)
			}
			if !strings.Contains(stderr, "Error: ") {
				t.Errorf("stderr %q does not start with Error:", stderr)
			}
		})
	}
}

func TestLoginFlagsWithBadCAFile(t *testing.T) {
	dir := isolate(t)
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "pw\n", "login", "--server", "https://127.0.0.1:1", "--username", "a", "--password-stdin", "--ca-file", p)
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("err = %v", err)
	}
}

func TestCredentialsFileModes(t *testing.T) {
	dir := isolate(t)
	xdg := filepath.Join(dir, "xdg")
	t.Setenv("XDG_CONFIG_HOME", xdg)
	p, err := SaveCredentials(Credentials{Server: "https://a.example", Token: "tok-secret", Username: "admin", ExpiresAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(xdg, "corral", "credentials.json"); p != want {
		t.Errorf("path = %s, want %s", p, want)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", st.Mode().Perm())
	}
	dst, err := os.Stat(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", dst.Mode().Perm())
	}
	// Overwrite keeps 0600 even if someone loosened it.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := SaveCredentials(Credentials{Server: "https://a.example", Token: "t2"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode after rewrite = %v", st.Mode().Perm())
	}

	// HOME fallback.
	t.Setenv("XDG_CONFIG_HOME", "")
	if p, _ := CredentialsPath(); p != filepath.Join(dir, ".config", "corral", "credentials.json") {
		t.Errorf("home path = %s", p)
	}
	// CORRAL_CONFIG wins.
	t.Setenv(EnvConfig, filepath.Join(dir, "c.json"))
	if p, _ := CredentialsPath(); p != filepath.Join(dir, "c.json") {
		t.Errorf("CORRAL_CONFIG path = %s", p)
	}
	out, _, err := run(t, "", "logout")
	if err != nil || !strings.Contains(out, "Not logged in") {
		t.Errorf("logout without credentials: %q %v", out, err)
	}
}

func TestSessionEnvOverrides(t *testing.T) {
	dir := isolate(t)
	t.Setenv(EnvConfig, filepath.Join(dir, "creds.json"))
	a := &app{now: func() time.Time { return t0 }}

	if _, err := a.resolveSession(); err == nil || !strings.Contains(err.Error(), "not logged in") {
		t.Fatalf("no credentials: %v", err)
	}
	if _, err := SaveCredentials(Credentials{Server: "https://a.example", CAPEM: "PEM-A", Token: "tok-a", ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s, err := a.resolveSession()
	if err != nil || s.Server != "https://a.example" || s.Token != "tok-a" || string(s.CAPEM) != "PEM-A" {
		t.Fatalf("saved session = %+v, %v", s, err)
	}
	t.Setenv(EnvToken, "tok-env")
	if s, _ := a.resolveSession(); s.Token != "tok-env" || s.Server != "https://a.example" {
		t.Errorf("CORRAL_TOKEN override = %+v", s)
	}
	t.Setenv(EnvToken, "")
	// Another server never receives the saved token or CA.
	t.Setenv(EnvServer, "https://b.example")
	if _, err := a.resolveSession(); err == nil || !strings.Contains(err.Error(), "not logged in") {
		t.Errorf("other server with saved token: %v", err)
	}
	t.Setenv(EnvToken, "tok-b")
	s, err = a.resolveSession()
	if err != nil || s.Server != "https://b.example" || s.Token != "tok-b" || len(s.CAPEM) != 0 {
		t.Errorf("env session = %+v, %v", s, err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, []byte("PEM-B"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvCAFile, caFile)
	if s, _ := a.resolveSession(); string(s.CAPEM) != "PEM-B" {
		t.Errorf("CORRAL_CA_FILE override = %q", s.CAPEM)
	}
	t.Setenv(EnvCAFile, filepath.Join(dir, "missing.pem"))
	if _, err := a.resolveSession(); err == nil || !strings.Contains(err.Error(), EnvCAFile) {
		t.Errorf("missing CA file: %v", err)
	}
	t.Setenv(EnvCAFile, "")
	t.Setenv(EnvServer, "https://a.example/")
	t.Setenv(EnvToken, "")
	if s, err := a.resolveSession(); err != nil || s.Token != "tok-a" {
		t.Errorf("same server with trailing slash: %+v %v", s, err)
	}

	// Expired session.
	t.Setenv(EnvServer, "")
	late := &app{now: func() time.Time { return t0.Add(2 * time.Hour) }}
	if _, err := late.resolveSession(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
	// Damaged file.
	if err := os.WriteFile(filepath.Join(dir, "creds.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.resolveSession(); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged: %v", err)
	}
}

func TestReadRoleFile(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "role.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := readRoleFile(write(`{"name":"R","actions":["Corral.HybridCompute/machines/read"]}`)); err != nil {
		t.Errorf("valid role: %v", err)
	}
	for _, bad := range []string{`{"name":"R"}`, `{"actions":["x"]}`, `{"name":"R","actions":["x"],"bogus":1}`, `nope`,
		`{"name":"R","actions":["Corral.HybridCompute/machines/read"]} {"name":"S"}`} {
		if _, err := readRoleFile(write(bad)); err == nil {
			t.Errorf("role %s accepted", bad)
		}
	}
}
