package cli

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func decodeOut[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, out, err)
	}
	return v
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, stderr, err := run(t, stdin, args...)
	if err != nil {
		t.Fatalf("corral %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func TestIntegration(t *testing.T) {
	dir := isolate(t)
	credPath := filepath.Join(dir, "cfg", "credentials.json")
	t.Setenv(EnvConfig, credPath)
	s := testutil.StartServer(t)

	// Wrong password: a clear OAuth error, no secret in it.
	_, stderr, err := run(t, "wrong-password-xyz\n", "login", "--server", s.URL, "--username", "admin", "--password-stdin", "--ca-file", s.CAFile)
	if err == nil || !strings.Contains(err.Error(), wire.CodeInvalidGrant) || strings.Contains(stderr, "wrong-password-xyz") {
		t.Fatalf("bad login: err=%v stderr=%q", err, stderr)
	}
	// Without the CA the server is not trusted.
	if _, _, err := run(t, testutil.AdminPassword+"\n", "login", "--server", s.URL, "--username", "admin", "--password-stdin"); err == nil ||
		!strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("login without CA: %v", err)
	}

	out := mustRun(t, testutil.AdminPassword+"\n", "login", "--server", s.URL, "--username", "admin", "--password-stdin", "--ca-file", s.CAFile)
	if !strings.Contains(out, "Logged in") {
		t.Errorf("login output %q", out)
	}
	st, err := os.Stat(credPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", st, err)
	}
	creds, _, err := LoadCredentials()
	if err != nil || creds.Token == "" || creds.CAPEM == "" || creds.Username != "admin" || creds.ExpiresAt.IsZero() {
		t.Fatalf("saved credentials incomplete: %+v %v", creds, err)
	}

	// Resource group.
	g := decodeOut[wire.ResourceGroup](t, mustRun(t, "", "group", "create", "web", "--tags", "env=prod,team=a", "-o", "json"))
	if g.Name != "web" || g.Tags["team"] != "a" {
		t.Errorf("group = %+v", g)
	}
	if _, _, err := run(t, "", "group", "create", "web"); err == nil || !strings.Contains(err.Error(), wire.CodeConflict) {
		t.Errorf("duplicate group: %v", err)
	}
	groups := decodeOut[[]wire.ResourceGroup](t, mustRun(t, "", "group", "list", "-o", "json"))
	if len(groups) == 0 {
		t.Errorf("group list empty")
	}

	// Service principal with the onboarding role.
	out, stderr, err = run(t, "", "sp", "create", "--name", "onboard-web", "--role", "Connected Machine Onboarding",
		"--scope", "/subscriptions/default/resourceGroups/web", "-o", "json")
	if err != nil {
		t.Fatalf("sp create: %v %s", err, stderr)
	}
	if !strings.Contains(stderr, "shown only once") {
		t.Errorf("no warning about the secret: %q", stderr)
	}
	sp := decodeOut[wire.ServicePrincipalCreated](t, out)
	if sp.ClientID == "" || sp.ClientSecret == "" {
		t.Fatalf("sp = %+v", sp)
	}
	ras := decodeOut[[]wire.RoleAssignment](t, mustRun(t, "", "role", "assignment", "list", "--assignee", sp.ClientID, "-o", "json"))
	if len(ras) != 1 || ras[0].RoleName != "Connected Machine Onboarding" {
		t.Errorf("assignments of the sp = %+v", ras)
	}
	shown := decodeOut[wire.ServicePrincipal](t, mustRun(t, "", "sp", "show", sp.ClientID, "-o", "json"))
	if shown.DisplayName != "onboard-web" {
		t.Errorf("sp show = %+v", shown)
	}

	// A failed role assignment removes the new service principal.
	_, _, err = run(t, "", "sp", "create", "--name", "doomed", "--role", "No Such Role", "--scope", "/subscriptions/default")
	if err == nil || !strings.Contains(err.Error(), "was deleted") || !strings.Contains(err.Error(), wire.CodeNotFound) {
		t.Fatalf("sp create with a bad role: %v", err)
	}
	// A scope that does not exist is refused before anything is created.
	_, _, err = run(t, "", "sp", "create", "--name", "ghost", "--role", "Reader", "--scope", "/subscriptions/default/resourceGroups/nowhere")
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("sp create with a missing resource group: %v", err)
	}
	for _, p := range decodeOut[[]wire.ServicePrincipal](t, mustRun(t, "", "sp", "list", "-o", "json")) {
		if p.DisplayName == "doomed" || p.DisplayName == "ghost" {
			t.Errorf("service principal %s survived a failed role assignment", p.ClientID)
		}
	}

	// Onboard a machine with the new principal and list it.
	tok := s.ClientToken(t, sp.ClientID, sp.ClientSecret)
	s.OnboardMachine(t, tok, "web", "web-1", wire.MachineProperties{OSName: "debian", OSVersion: "12", OSType: "linux", Environment: wire.EnvAWS})
	ms := decodeOut[[]wire.Machine](t, mustRun(t, "", "machine", "list", "-o", "json"))
	if len(ms) != 1 || ms[0].Name != "web-1" || ms[0].ResourceGroup != "web" {
		t.Fatalf("machine list = %+v", ms)
	}
	ms = decodeOut[[]wire.Machine](t, mustRun(t, "", "machine", "list", "--environment", "gcp", "-o", "json"))
	if len(ms) != 0 {
		t.Errorf("environment filter: %+v", ms)
	}
	table := mustRun(t, "", "machine", "list", "--resource-group", "web")
	if !strings.HasPrefix(table, "NAME ") || !strings.Contains(table, "web-1") || !strings.Contains(table, "debian 12") {
		t.Errorf("machine table:\n%s", table)
	}
	m := decodeOut[wire.Machine](t, mustRun(t, "", "machine", "tag", "set", "web-1", "-g", "web", "owner=ops", "-o", "json"))
	if m.Tags["owner"] != "ops" {
		t.Errorf("tags = %v", m.Tags)
	}
	ms = decodeOut[[]wire.Machine](t, mustRun(t, "", "machine", "list", "--tag", "owner=ops", "-o", "json"))
	if len(ms) != 1 {
		t.Errorf("tag filter: %d machines", len(ms))
	}
	if _, _, err := run(t, "", "machine", "show", "nope", "-g", "web"); err == nil || !strings.Contains(err.Error(), "NotFound: ") {
		t.Errorf("missing machine: %v", err)
	}
	// Every machine command finds the machine by a unique name; show is a
	// readable detail view, not the list row.
	detail := mustRun(t, "", "machine", "show", "web-1")
	for _, want := range []string{"Resource ID:", "/resourceGroups/web/machines/web-1", "Status:", "Tags:", "owner=ops", "OS:"} {
		if !strings.Contains(detail, want) {
			t.Errorf("machine show lacks %q:\n%s", want, detail)
		}
	}
	mustRun(t, "", "machine", "tag", "set", "web-1", "team=blue")
	// Shell completion offers machine names and resource groups.
	if out := mustRun(t, "", "__complete", "machine", "show", "web"); !strings.Contains(out, "web-1") {
		t.Errorf("completion of machine names:\n%s", out)
	}
	if out := mustRun(t, "", "__complete", "machine", "list", "--resource-group", ""); !strings.Contains(out, "web") {
		t.Errorf("completion of resource groups:\n%s", out)
	}
	if out := mustRun(t, "", "__complete", "machine", "list", "--environment", ""); !strings.Contains(out, "OnPrem") {
		t.Errorf("completion of environments:\n%s", out)
	}
	if _, _, err := run(t, "", "machine", "show", "nope"); err == nil || !strings.Contains(err.Error(), `no machine named "nope"`) {
		t.Errorf("missing machine by name: %v", err)
	}

	// Device code onboarding approved from the CLI.
	resp, err := s.Client.PostForm(s.URL+wire.PathDeviceCode, url.Values{"subscription_id": {"default"}, "resource_group": {"web"}, "machine_name": {"web-2"}})
	if err != nil {
		t.Fatal(err)
	}
	var dc wire.DeviceCodeResponse
	if err := json.NewDecoder(resp.Body).Decode(&dc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("device code: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	pending := decodeOut[[]wire.PendingDeviceCode](t, mustRun(t, "", "machine", "pending", "-o", "json"))
	if len(pending) != 1 || pending[0].UserCode != dc.UserCode {
		t.Fatalf("pending = %+v, want %s", pending, dc.UserCode)
	}
	out = mustRun(t, "", "machine", "approve", dc.UserCode)
	if !strings.Contains(out, "Approved device code "+dc.UserCode) {
		t.Errorf("approve output %q", out)
	}
	if _, _, err := run(t, "", "machine", "approve", dc.UserCode); err == nil || !strings.Contains(err.Error(), wire.CodeConflict) {
		t.Errorf("second approval: %v", err)
	}

	// A user without roles is denied, and the denial shows in the activity log.
	mustRun(t, "a-long-password-for-bob\n", "user", "create", "bob", "--password-stdin")
	bobTok := s.PasswordToken(t, "bob", "a-long-password-for-bob")
	t.Setenv(EnvToken, bobTok)
	_, stderr, err = run(t, "", "user", "list")
	if err == nil || !strings.Contains(stderr, "Error: "+wire.CodeForbidden+": ") {
		t.Fatalf("bob user list: %v %q", err, stderr)
	}
	t.Setenv(EnvToken, "")
	es := decodeOut[[]wire.ActivityEntry](t, mustRun(t, "", "activity", "list", "--result", "denied", "--since", "1h", "-o", "json"))
	found := false
	for _, e := range es {
		if e.Result == wire.ResultDenied && e.Caller == "bob" {
			found = true
		}
	}
	if !found {
		t.Errorf("no denied entry of bob in %+v", es)
	}
	table = mustRun(t, "", "activity", "list", "--top", "5")
	if lines := strings.Count(table, "\n"); lines < 2 || lines > 6 {
		t.Errorf("activity table with --top 5 has %d lines:\n%s", lines, table)
	}

	// Tokens: the created token works as CORRAL_TOKEN.
	tc := decodeOut[wire.APITokenCreated](t, mustRun(t, "", "token", "create", "--name", "ci", "--expires-in", "24h", "-o", "json"))
	if tc.Token == "" {
		t.Fatal("no token")
	}
	t.Setenv(EnvToken, tc.Token)
	if toks := decodeOut[[]wire.APIToken](t, mustRun(t, "", "token", "list", "-o", "json")); len(toks) != 1 || toks[0].Name != "ci" {
		t.Errorf("token list = %+v", toks)
	}
	t.Setenv(EnvToken, "")
	mustRun(t, "", "token", "delete", tc.ID)

	// Roles.
	rolePath := filepath.Join(dir, "role.json")
	if err := os.WriteFile(rolePath, []byte(`{"name":"Machine Reader X","actions":["Corral.HybridCompute/machines/read"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	rd := decodeOut[wire.RoleDefinition](t, mustRun(t, "", "role", "create", "--file", rolePath, "-o", "json"))
	ra := decodeOut[wire.RoleAssignment](t, mustRun(t, "", "role", "assignment", "create", "--assignee", "bob", "--role", rd.Name,
		"--scope", "/subscriptions/default", "-o", "json"))
	mustRun(t, "", "role", "assignment", "delete", ra.ID)
	mustRun(t, "", "role", "delete", rd.ID)
	if roles := mustRun(t, "", "role", "list"); !strings.Contains(roles, "Owner") {
		t.Errorf("role list:\n%s", roles)
	}

	// Cleanup commands.
	mustRun(t, "", "machine", "delete", "web-1", "-g", "web")
	mustRun(t, "", "sp", "delete", sp.ClientID)
	mustRun(t, "", "user", "delete", "bob")
	mustRun(t, "", "group", "delete", "web")
	out = mustRun(t, "", "logout")
	if !strings.Contains(out, "Logged out") {
		t.Errorf("logout: %q", out)
	}
	if _, _, err := run(t, "", "machine", "list"); err == nil || !strings.Contains(err.Error(), "not logged in") {
		t.Errorf("after logout: %v", err)
	}

	// Nothing secret in the server log or the credentials' absence.
	if strings.Contains(s.Logs.String(), sp.ClientSecret) {
		t.Error("client secret in server logs")
	}
}
