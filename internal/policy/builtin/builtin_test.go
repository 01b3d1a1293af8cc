package builtin

import (
	"context"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/policy/guest"
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
	_ = guest.Compliant
	_ = context.Background
}
