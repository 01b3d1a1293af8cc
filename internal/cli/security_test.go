package cli

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// Issue 7, finding 10: a value from an agent, a failed sign-in or another
// person never reaches the terminal as a control sequence: every table
// escapes C0/C1 controls and bidirectional overrides.
func TestTablesEscapeControlCharacters(t *testing.T) {
	t.Parallel()
	evil := "\x1b]0;owned\a\x1b[2J"
	var out bytes.Buffer
	entries := []wire.ActivityEntry{{Time: t0, Caller: "unverified:" + evil, Action: "a\u202eb", Scope: "/", Result: "Denied", Status: 401}}
	if err := renderActivity(&out, outTable, entries); err != nil {
		t.Fatal(err)
	}
	ms := []wire.Machine{{Name: "m1", Properties: wire.MachineProperties{OSName: "deb\u009bian\xff"}}}
	if err := renderMachines(&out, outTable, ms); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, c := range got {
		if c != '\n' && wire.UnsafeRune(c) {
			t.Fatalf("a table holds the control character %U:\n%q", c, got)
		}
	}
	for _, want := range []string{`unverified:\x1b]0;owned\x07\x1b[2J`, `a\u202eb`, `deb\x9bian\ufffd`} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks the escaped %s:\n%s", want, got)
		}
	}
}

// Issue 7, finding 14: protected parameters come from files or standard
// input, never from the command line.
func TestProtectedParamsNeverFromArgv(t *testing.T) {
	isolate(t)
	secret := filepath.Join(t.TempDir(), "dbpass")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"--protected-param", "DBPASS=hunter2-secret"}, "", "never on the command line"},
		{[]string{"--protected-param", "DBPASS"}, "", "is not KEY=@FILE"},
		{[]string{"--protected-param", "A=@" + secret, "--protected-param", "A=@" + secret}, "", "A is given twice"},
		{[]string{"--protected-param", "A=@-", "--protected-param", "B=@-"}, "x", "standard input is already taken"},
		{[]string{"--protected-param", "A=@/nonexistent/file"}, "", "--protected-param A"},
	} {
		args := append([]string{"machine", "run-command", "--machine", "m", "--command", "id"}, tc.args...)
		_, stderr, err := run(t, tc.stdin, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error with %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error()+stderr, "hunter2") {
			t.Errorf("%q: the error repeats the value", tc.args)
		}
	}
	got, err := readProtectedParams(NewRootCommand("test"), []string{"DBPASS=@" + secret}, false)
	if err != nil || got["DBPASS"] != "s3cret" {
		t.Errorf("read from a file: %v %v", got, err)
	}
}

// Issue 7, findings 8, 11 and 14 through the CLI against a real server:
// password change and reset, disable, a run with protected parameters, and
// `activity list --top 5000` past 1,000 entries.
func TestSecurityCommands(t *testing.T) {
	dir := isolate(t)
	t.Setenv(EnvConfig, filepath.Join(dir, "cfg", "credentials.json"))
	s := testutil.StartServer(t)
	mustRun(t, testutil.AdminPassword+"\n", "login", "--server", s.URL, "--username", "admin", "--password-stdin", "--ca-file", s.CAFile)

	mustRun(t, "bob-password-123\n", "user", "create", "bob", "--password-stdin", "--must-change-password")
	bobTok := s.PasswordToken(t, "bob", "bob-password-123")
	if st, b := s.Do(t, "GET", "/api/v1/tokens", bobTok, nil); st != 403 || !strings.Contains(string(b), wire.CodePasswordChangeRequired) {
		t.Errorf("bob before changing the password: %d %s", st, b)
	}
	out := mustRun(t, "bob-new-password-1\n", "user", "password", "bob", "--password-stdin")
	if !strings.Contains(out, "Set the password of user bob") {
		t.Errorf("reset: %q", out)
	}
	if out := mustRun(t, "", "user", "disable", "bob"); !strings.Contains(out, "Disabled user bob") {
		t.Errorf("disable: %q", out)
	}
	if _, _, err := run(t, "", "user", "disable", "admin"); err == nil {
		t.Error("the admin disabled themself")
	}
	list := decodeOut[[]wire.User](t, mustRun(t, "", "user", "list", "-o", "json"))
	if len(list) != 2 || !list[1].Disabled {
		t.Errorf("users: %+v", list)
	}
	mustRun(t, "", "user", "enable", "bob")

	// A run with a protected parameter read from a file: the argv and the
	// API's answers never hold it.
	id, secret := s.OnboardingPrincipal(t, "rg1")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("db-s3cret-value\n"), 0o600)
	out = mustRun(t, "", "machine", "run-command", "--machine", "m1", "--resource-group", "rg1", "--command", "echo $DBPASS",
		"--protected-param", "DBPASS=@"+pw, "--name", "withsecret", "--no-wait", "-o", "json")
	rc := decodeOut[wire.RunCommand](t, out)
	if !rc.HasProtectedParameters || strings.Contains(out, "db-s3cret-value") {
		t.Errorf("run: %s", out)
	}
	stored, err := s.Srv.Store.GetRunCommand(t.Context(), m.MachineID, "withsecret")
	if err != nil || len(stored.ProtectedParameters) == 0 || bytes.Contains(stored.ProtectedParameters, []byte("db-s3cret-value")) {
		t.Errorf("stored run: %v", err)
	}

	// activity list --top 5000 returns every entry past the first 1,000.
	at := time.Now().UTC()
	var es []store.ActivityEntry
	for i := range 1500 {
		es = append(es, store.ActivityEntry{ID: fmt.Sprintf("00000000-cli-%05d", i), Time: at, CallerID: "t", Caller: "t",
			Action: "Test.Cli/write", Scope: "/", Result: wire.ResultSucceeded, Status: http.StatusOK})
	}
	if err := s.Srv.Store.AppendActivity(t.Context(), es...); err != nil {
		t.Fatal(err)
	}
	got := decodeOut[[]wire.ActivityEntry](t, mustRun(t, "", "activity", "list", "--action", "Test.Cli/*", "--top", "5000", "-o", "json"))
	if len(got) != 1500 {
		t.Errorf("activity list --top 5000: %d entries, want 1500", len(got))
	}
	got = decodeOut[[]wire.ActivityEntry](t, mustRun(t, "", "activity", "list", "--action", "Test.Cli/*", "--top", "1000", "-o", "json"))
	if len(got) != 1000 {
		t.Errorf("activity list --top 1000: %d entries, want 1000", len(got))
	}
	// Self-service (last: it ends the test helper's admin session too): the CLI signs in again with the new password.
	out = mustRun(t, testutil.AdminPassword+"\nadmin-new-password-1\n", "user", "password", "--password-stdin")
	if !strings.Contains(out, "Password changed") || !strings.Contains(out, "Signed in again") {
		t.Errorf("self-service change: %q", out)
	}
	mustRun(t, "", "user", "list")
}
