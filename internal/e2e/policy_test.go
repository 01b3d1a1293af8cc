package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// policyCluster is a server, a logged-in CLI and one agent whose --root is
// a small OS tree.
type policyCluster struct {
	*cluster
	root, state string
	env         []string
}

func (p *policyCluster) corral(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, nil, p.env, p.cluster.corral, args...)
}

func (p *policyCluster) mustCorral(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.corral(t, args...)
	if err != nil {
		t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (p *policyCluster) agentCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, nil, nil, p.cluster.agent, append([]string{"--state-dir", p.state, "--root", p.root}, args...)...)
	if err != nil {
		t.Fatalf("corral-agent %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// states is `corral policy state list -o json` for one assignment.
func (p *policyCluster) states(t *testing.T, assignment string) []wire.PolicyState {
	t.Helper()
	out := p.mustCorral(t, "policy", "state", "list", "--assignment", assignment, "--machine", "web-01", "-o", "json")
	var ss []wire.PolicyState
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		t.Fatalf("state list -o json: %v\n%s", err, out)
	}
	return ss
}

// waitState polls until the assignment's passwd rule is in state want
// (and evidence holds evidence), and returns it with how long it took.
func (p *policyCluster) waitState(t *testing.T, assignment, want, evidence string, bound time.Duration) (wire.PolicyState, time.Duration) {
	t.Helper()
	start := time.Now()
	var got wire.PolicyState
	testutil.Eventually(t, bound, func() string {
		ss := p.states(t, assignment)
		if len(ss) != 1 {
			return "states: " + strings.Repeat("x", len(ss))
		}
		got = ss[0]
		if got.ComplianceState != want || !strings.Contains(got.Evidence, evidence) {
			return got.ComplianceState + ": " + got.Evidence
		}
		return ""
	})
	return got, time.Since(start)
}

func modeOf(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestPolicyPasswdJourney is journey 3 with the real binaries: security
// assigns the built-in linux-passwd-0644 to a resource group with a
// message; the machine is Compliant; mode 0666 under the agent's root turns
// it NonCompliant with evidence and the message (watched by inotify, so in
// seconds); ApplyAndAutoCorrect restores 0644 and records the remediation;
// rollback brings 0666 back, and is refused over a file changed since
// unless forced; the local off switch turns every rule Unknown with why.
// Bad input of every kind is refused clearly and stores nothing.
func TestPolicyPasswdJourney(t *testing.T) {
	c := startServer(t)
	home := t.TempDir()
	p := &policyCluster{cluster: c, root: t.TempDir(), state: t.TempDir(),
		env: []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}}
	for name, body := range map[string]string{
		"etc/os-release": "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
		"etc/passwd":     "root:x:0:0:root:/root:/bin/bash\n",
		"etc/group":      "root:x:0:\n",
	} {
		path := filepath.Join(p.root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	passwd := filepath.Join(p.root, "etc/passwd")
	if err := os.Chmod(passwd, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, strings.NewReader(c.api.AdminPassword+"\n"), p.env, c.corral, "login", "--server", c.api.URL, "--username", "admin",
		"--password-stdin", "--ca-file", c.api.CAFile); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	clientID, secret := c.api.OnboardingPrincipal(t, "sec")
	p.agentCmd(t, "connect", "--server", c.api.URL, "--subscription-id", "default", "--resource-group", "sec",
		"--service-principal-id", clientID, "--service-principal-secret-file", testutil.WriteSecretFile(t, secret),
		"--ca-file", c.api.CAFile, "--name", "web-01")
	agent := start(t, nil, c.agent, "--state-dir", p.state, "--root", p.root, "run")
	t.Cleanup(func() { agent.stop(t) })
	testutil.Eventually(t, 20*time.Second, func() string {
		if m, _ := c.machine(t, "sec", "web-01"); m.Status != wire.StatusConnected {
			return "status " + m.Status
		}
		return ""
	})

	// Bad input: a clear 400-class error naming the problem, nothing stored.
	dir := t.TempDir()
	file := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	rule := func(cond, effect string) string {
		return `{"name":"bad","properties":{"mode":"All","policyRule":{"if":` + cond + `,"then":{"effect":"` + effect + `"}}}}`
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"invalid JSON", []string{"policy", "definition", "create", "--file", file("a.json", `{"properties": {`)}, "not valid JSON"},
		{"unknown effect", []string{"policy", "definition", "create", "--file", file("b.json", rule(`{"field":"type","equals":"x"}`, "explode"))}, "effect"},
		{"unknown operator", []string{"policy", "definition", "create", "--file", file("c.json", rule(`{"field":"type","resembles":"x"}`, "audit"))}, "resembles"},
		{"unknown alias", []string{"policy", "definition", "create", "--file", file("d.json", rule(`{"field":"Corral.HybridCompute/machines/osFoo","equals":"x"}`, "audit"))}, "osFoo"},
		{"wrong parameter type", []string{"policy", "assignment", "create", "--name", "x", "--definition", "require-tag-on-machines", "--scope", "sec",
			"--params", `{"tagName": 42}`}, "tagName"},
		{"missing scope", []string{"policy", "assignment", "create", "--name", "x", "--definition", "linux-passwd-0644", "--scope", "nowhere"}, `"nowhere" was not found`},
		{"missing definition", []string{"policy", "assignment", "create", "--name", "x", "--definition", "no-such-definition", "--scope", "sec"}, "no-such-definition"},
		{"bad assignment type", []string{"policy", "assignment", "create", "--name", "x", "--definition", "linux-passwd-0644", "--scope", "sec",
			"--assignment-type", "Sometimes"}, "Sometimes"},
	} {
		out, err := p.corral(t, tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: corral %s: %v, want an error with %q:\n%s", tc.name, strings.Join(tc.args, " "), err, tc.want, out)
		}
	}
	if out := p.mustCorral(t, "policy", "definition", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("definitions stored after refusals: %s", out)
	}
	if out := p.mustCorral(t, "policy", "assignment", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("assignments stored after refusals: %s", out)
	}

	// Audit: Compliant, then NonCompliant within seconds of the chmod.
	const msg = "passwd must be 0644: see the security runbook"
	p.mustCorral(t, "policy", "assignment", "create", "--name", "passwd", "--definition", "linux-passwd-0644", "--scope", "sec",
		"--non-compliance-message", msg)
	st, took := p.waitState(t, "passwd", wire.ComplianceCompliant, "", 30*time.Second)
	t.Logf("assignment created -> Compliant shown in %s", took.Round(time.Millisecond))
	if st.SSGRuleID != "xccdf_org.ssgproject.content_rule_file_permissions_etc_passwd" || st.Definition != "linux-passwd-0644" ||
		!strings.HasSuffix(st.Machine, "/resourceGroups/sec/machines/web-01") || st.Timestamp.IsZero() || st.Rule == "" {
		t.Errorf("state fields: %+v", st)
	}
	if err := os.Chmod(passwd, 0o666); err != nil {
		t.Fatal(err)
	}
	st, took = p.waitState(t, "passwd", wire.ComplianceNonCompliant, "0666", 20*time.Second)
	t.Logf("chmod 0666 -> NonCompliant shown in %s (target 5 s)", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("NonCompliant took %s, want within 5 s", took)
	}
	if st.NonComplianceMessage != msg {
		t.Errorf("non-compliance message %q, want %q", st.NonComplianceMessage, msg)
	}
	if modeOf(t, passwd) != 0o666 {
		t.Error("Audit changed the file")
	}
	out := p.mustCorral(t, "policy", "state", "summary", "--scope", "sec", "-o", "json")
	if !strings.Contains(out, `"nonCompliant": 1`) {
		t.Errorf("summary: %s", out)
	}

	// ApplyAndAutoCorrect restores 0644 and records the change.
	p.mustCorral(t, "policy", "assignment", "delete", "passwd")
	p.mustCorral(t, "policy", "assignment", "create", "--name", "passwd-fix", "--definition", "linux-passwd-0644", "--scope", "sec",
		"--non-compliance-message", msg, "--assignment-type", "ApplyAndAutoCorrect")
	_, took = p.waitState(t, "passwd-fix", wire.ComplianceCompliant, "", 20*time.Second)
	t.Logf("ApplyAndAutoCorrect assigned -> fixed and Compliant in %s", took.Round(time.Millisecond))
	if m := modeOf(t, passwd); m != 0o644 {
		t.Fatalf("mode after ApplyAndAutoCorrect: %o, want 644", m)
	}
	// Drift again: corrected within seconds.
	if err := os.Chmod(passwd, 0o666); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testutil.Eventually(t, 20*time.Second, func() string {
		if m := modeOf(t, passwd); m != 0o644 {
			return "mode " + m.String()
		}
		return ""
	})
	t.Logf("chmod 0666 under ApplyAndAutoCorrect -> 0644 again in %s (target 5 s)", time.Since(start).Round(time.Millisecond))
	var rems []wire.PolicyRemediation
	testutil.Eventually(t, 20*time.Second, func() string {
		out := p.mustCorral(t, "policy", "remediation", "list", "-o", "json")
		rems = nil
		_ = json.Unmarshal([]byte(out), &rems)
		if len(rems) < 2 {
			return out
		}
		return ""
	})
	latest := rems[0]
	if latest.State != wire.RemediationApplied || !strings.Contains(latest.EvidenceBefore, "0666") || len(latest.Files) != 1 ||
		latest.Files[0].ModeBefore != "0666" || latest.Files[0].ModeAfter != "0644" {
		t.Errorf("remediation: %+v", latest)
	}

	// Rollback brings 0666 back (and auto-correction leaves it alone).
	out = p.mustCorral(t, "policy", "remediation", "rollback", latest.ID)
	if !strings.Contains(out, "Rolled back") {
		t.Errorf("rollback: %s", out)
	}
	if m := modeOf(t, passwd); m != 0o666 {
		t.Fatalf("mode after rollback: %o, want 666", m)
	}
	st, _ = p.waitState(t, "passwd-fix", wire.ComplianceNonCompliant, "rolled back", 20*time.Second)
	time.Sleep(time.Second)
	if m := modeOf(t, passwd); m != 0o666 {
		t.Errorf("auto-correction undid the rollback: mode %o", m)
	}

	// A new assignment corrects again; a rollback over a file changed
	// since is refused unless --force.
	p.mustCorral(t, "policy", "assignment", "delete", "passwd-fix")
	p.mustCorral(t, "policy", "assignment", "create", "--name", "passwd-fix2", "--definition", "linux-passwd-0644", "--scope", "sec",
		"--assignment-type", "ApplyAndAutoCorrect")
	p.waitState(t, "passwd-fix2", wire.ComplianceCompliant, "", 20*time.Second)
	rems = nil
	_ = json.Unmarshal([]byte(p.mustCorral(t, "policy", "remediation", "list", "-o", "json")), &rems)
	if len(rems) == 0 {
		t.Fatal("no remediation of the new assignment")
	}
	if err := os.Chmod(passwd, 0o600); err != nil { // compliant, but not what the remediation left
		t.Fatal(err)
	}
	out, err := p.corral(t, "policy", "remediation", "rollback", rems[0].ID)
	if err == nil || !strings.Contains(out, "changed since") {
		t.Errorf("rollback over a changed file: %v\n%s", err, out)
	}
	if m := modeOf(t, passwd); m != 0o600 {
		t.Errorf("refused rollback changed the file: %o", m)
	}
	p.mustCorral(t, "policy", "remediation", "rollback", rems[0].ID, "--force")
	if m := modeOf(t, passwd); m != 0o666 {
		t.Errorf("forced rollback: mode %o, want 666", m)
	}

	// The local off switch: every rule Unknown with the reason, no apply.
	p.agentCmd(t, "config", "set", "guestconfiguration.enabled", "false")
	st, _ = p.waitState(t, "passwd-fix2", wire.ComplianceUnknown, "guestconfiguration.enabled is false", 20*time.Second)
	if err := os.Chmod(passwd, 0o666); err != nil {
		t.Fatal(err)
	}
	p.mustCorral(t, "policy", "evaluate", "--scope", "sec", "--wait", "--timeout", "30s")
	if m := modeOf(t, passwd); m != 0o666 {
		t.Errorf("guest configuration off, yet the file changed: %o", m)
	}
	if ss := p.states(t, "passwd-fix2"); len(ss) != 1 || ss[0].ComplianceState != wire.ComplianceUnknown {
		t.Errorf("states while off: %+v", ss)
	}

	// The activity log holds the machine's outcomes.
	out = p.mustCorral(t, "activity", "list", "-o", "json")
	for _, want := range []string{"remediated rule", "rolled back remediation", "refused by the machine"} {
		if !strings.Contains(out, want) {
			t.Errorf("activity log lacks %q", want)
		}
	}
}
