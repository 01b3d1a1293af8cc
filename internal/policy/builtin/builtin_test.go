package builtin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/policy/guest"
	"github.com/corralhq/corral/internal/testutil/hosttools"
	"github.com/corralhq/corral/internal/wire"
)

func TestLoad(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range c.Definitions() {
		names = append(names, d.Name)
	}
	want := "allowed-environments allowed-extensions deploy-endpoint-protection linux-passwd-0644 linux-security-baseline require-tag-on-machines"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("definitions %q, want %q", got, want)
	}
	d, _ := c.Definition("linux-passwd-0644")
	if d.DisplayName != "Audit Linux machines that do not have the passwd file permissions set to 0644" {
		t.Errorf("display name %q", d.DisplayName)
	}
}

func TestBaselineCoverage(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	b, ok := c.Configuration("linux-security-baseline")
	if !ok {
		t.Fatal("no baseline")
	}
	if len(b.Rules) < 60 {
		t.Errorf("%d rules, want at least 60", len(b.Rules))
	}
	kinds := map[string]int{}
	for _, r := range b.Rules {
		kinds[r.Kind()]++
		if r.Rationale == "" || r.Remediation == "" || len(r.Controls.NIST80053) == 0 {
			t.Errorf("rule %s lacks rationale, remediation or a NIST SP 800-53 mapping", r.ID)
		}
	}
	// The CIS level 1 server areas.
	for _, k := range []string{"file", "accounts", "configValue", "sshd", "sysctl", "kernelModule", "mount", "systemdUnit", "package", "fileContent", "listeningPorts"} {
		if kinds[k] == 0 {
			t.Errorf("no %s rule", k)
		}
	}
	t.Logf("%d rules: %v", len(b.Rules), kinds)
}

func TestBuiltinDefinitionsEvaluate(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	m := wire.Machine{ID: "/subscriptions/s/resourceGroups/rg/machines/m1", Name: "m1", SubscriptionID: "s", ResourceGroup: "rg",
		Tags: map[string]string{"env": "prod"}, Properties: wire.MachineProperties{OSType: "linux", Environment: "OnPrem"}}
	exts := []wire.MachineExtension{{Name: "rc", Publisher: "Corral", Type: "RunCommand", State: wire.ExtSucceeded}}
	res := policy.MachineResource(m, exts, []policy.GuestAssignmentStatus{{Name: "linux-passwd-0644", Configuration: "linux-passwd-0644", ComplianceStatus: "NonCompliant"}})
	tests := []struct {
		def    string
		params map[string]any
		state  policy.ComplianceState
		effect policy.Effect
	}{
		{"linux-passwd-0644", nil, policy.NonCompliant, policy.EffectAuditIfNotExists},
		{"linux-security-baseline", nil, policy.NonCompliant, policy.EffectAuditIfNotExists},
		{"require-tag-on-machines", map[string]any{"tagName": "env"}, policy.Compliant, policy.EffectDeny},
		{"require-tag-on-machines", map[string]any{"tagName": "owner"}, policy.NonCompliant, policy.EffectDeny},
		{"allowed-environments", map[string]any{"listOfAllowedEnvironments": []any{"OnPrem", "AWS"}}, policy.Compliant, policy.EffectDeny},
		{"allowed-environments", map[string]any{"listOfAllowedEnvironments": []any{"AWS"}, "effect": "Audit"}, policy.NonCompliant, policy.EffectAudit},
		{"allowed-extensions", map[string]any{"listOfAllowedExtensions": []any{"Corral/RunCommand"}}, policy.Compliant, policy.EffectDeny},
		{"allowed-extensions", map[string]any{"listOfAllowedExtensions": []any{"Corral/EndpointProtection"}}, policy.NonCompliant, policy.EffectDeny},
		{"deploy-endpoint-protection", nil, policy.NonCompliant, policy.EffectDeployIfNotExists},
	}
	for _, tc := range tests {
		d, _ := c.Definition(tc.def)
		p, err := d.BindParameters(tc.params)
		if err != nil {
			t.Fatalf("%s: %v", tc.def, err)
		}
		r, err := d.Evaluate(res, &p)
		if err != nil {
			t.Fatalf("%s: %v", tc.def, err)
		}
		if r.ComplianceState != tc.state || r.Effect != tc.effect {
			t.Errorf("%s %v: %s %s (%s), want %s %s", tc.def, tc.params, r.Effect, r.ComplianceState, r.Reason, tc.effect, tc.state)
		}
		if tc.def == "deploy-endpoint-protection" {
			if r.Deployment == nil || len(r.Deployment.Extensions) != 1 || r.Deployment.Extensions[0].Publisher != "Corral" || r.Deployment.Extensions[0].Type != "EndpointProtection" || r.Deployment.Extensions[0].Name != "EndpointProtection" {
				t.Errorf("deployment %+v", r.Deployment)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	g, def, err := c.Resolve("linux-passwd-0644")
	if err != nil || g.Name != "linux-passwd-0644" || def != "linux-passwd-0644" {
		t.Errorf("Resolve(linux-passwd-0644) = %v %q %v", g, def, err)
	}
	if _, _, err := c.Resolve("require-tag-on-machines"); err == nil || !strings.Contains(err.Error(), "no machine configuration") {
		t.Errorf("Resolve of a definition without guest configuration: %v", err)
	}
	if _, _, err := c.Resolve("no-such-thing"); err == nil || !strings.Contains(err.Error(), "neither a built-in definition") {
		t.Errorf("Resolve of nothing: %v", err)
	}
}

// TestPasswdRemediationOnDebian is the seed's story on a real Debian tree:
// chmod a+w /etc/passwd turns linux-passwd-0644 NonCompliant with evidence,
// Apply restores 0644, Rollback brings 0666 back, and a rollback over a
// later change is refused unless forced.
func TestPasswdRemediationOnDebian(t *testing.T) {
	root := hosttools.DebianRoot(t)
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := c.Configuration("linux-passwd-0644")
	env := guest.NewEnv(root)
	ctx := context.Background()
	if r := cfg.Evaluate(ctx, env)[0]; r.State != guest.Compliant {
		t.Fatalf("pristine tree: %s %s", r.State, r.Evidence)
	}
	passwd := filepath.Join(root, "etc/passwd")
	os.Chmod(passwd, 0o666)
	r := cfg.Evaluate(ctx, env)[0]
	if r.State != guest.NonCompliant || r.Evidence != "/etc/passwd mode 0666, want 0644 or stricter" {
		t.Fatalf("after chmod 0666: %s %q", r.State, r.Evidence)
	}
	ch, err := cfg.Rules[0].Apply(ctx, env)
	if err != nil || ch == nil {
		t.Fatalf("Apply: %v %v", ch, err)
	}
	if fi, _ := os.Stat(passwd); fi.Mode().Perm() != 0o644 {
		t.Fatalf("after Apply: %o", fi.Mode().Perm())
	}
	if err := guest.Rollback(ctx, env, ch, false); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(passwd); fi.Mode().Perm() != 0o666 {
		t.Fatalf("after Rollback: %o", fi.Mode().Perm())
	}
	ch, err = cfg.Rules[0].Apply(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(passwd, 0o600)
	if err := guest.Rollback(ctx, env, ch, false); !errors.Is(err, guest.ErrChangedSinceApply) {
		t.Fatalf("rollback over a later chmod: %v", err)
	}
}

// TestBaselineRemediationOnDebian applies every remediable rule of the
// baseline that is NonCompliant on a real server tree, checks each becomes
// Compliant, then rolls everything back and checks every file the
// remediations touched is exactly as before.
func TestBaselineRemediationOnDebian(t *testing.T) {
	root := hosttools.DebianRoot(t, "openssh-server", "auditd", "cron")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := c.Configuration("linux-security-baseline")
	env := guest.NewEnv(root)
	ctx := context.Background()
	os.Chmod(filepath.Join(root, "etc/shadow"), 0o644)
	before := snapshotTree(t, root)
	var changes []*guest.Change
	fixed := 0
	for _, r := range cfg.Rules {
		if !r.Remediable() {
			continue
		}
		ch, err := r.Apply(ctx, env)
		if err != nil {
			t.Errorf("Apply %s: %v", r.ID, err)
			continue
		}
		if ch == nil {
			continue
		}
		fixed++
		changes = append(changes, ch)
		if res := r.Evaluate(ctx, env); res.State != guest.Compliant {
			t.Errorf("%s after Apply: %s %s", r.ID, res.State, res.Evidence)
		}
	}
	after := cfg.Evaluate(ctx, env)
	counts := map[guest.State]int{}
	for _, r := range after {
		counts[r.State]++
	}
	t.Logf("remediated %d rules; baseline now %v", fixed, counts)
	if fixed < 40 {
		t.Errorf("only %d rules remediated", fixed)
	}
	// sshd accepts the configuration the remediations wrote.
	if _, err := exec.LookPath("chroot"); err == nil {
		os.MkdirAll(filepath.Join(root, "run/sshd"), 0o755)
		if out, err := exec.Command("chroot", root, "/usr/sbin/sshd", "-t").CombinedOutput(); err != nil {
			t.Errorf("sshd -t after remediation: %v\n%s", err, out)
		}
		os.Remove(filepath.Join(root, "run/sshd"))
	}
	for i := len(changes) - 1; i >= 0; i-- {
		if err := guest.Rollback(ctx, env, changes[i], false); err != nil {
			t.Fatalf("Rollback %s: %v", changes[i].Rule, err)
		}
	}
	if diff := cmp.Diff(before, snapshotTree(t, root)); diff != "" {
		t.Errorf("the tree differs after rolling everything back (-before +after):\n%s", diff)
	}
}

// snapshotTree records path -> mode, owner and content hash of /etc.
func snapshotTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(filepath.Join(root, "etc"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[strings.TrimPrefix(p, root)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
