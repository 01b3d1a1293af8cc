package policy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const rgWeb = "/subscriptions/default/resourceGroups/web"

type env struct {
	t     *testing.T
	s     *testutil.Server
	admin string
	onb   string
	seq   int
}

func newEnv(t *testing.T) *env {
	s := testutil.StartServer(t)
	e := &env{t: t, s: s, admin: s.AdminToken(t)}
	id, secret := s.OnboardingPrincipal(t, "web")
	e.onb = s.ClientToken(t, id, secret)
	return e
}

func (e *env) onboard(name string, tags map[string]string) *testutil.Machine {
	e.t.Helper()
	m := e.s.OnboardMachine(e.t, e.onb, "web", name, wire.MachineProperties{OSType: "linux", OSName: "debian", Hostname: name})
	if tags != nil {
		e.s.MustDo(e.t, http.StatusOK, "PATCH", "/api/v1"+rgWeb+"/machines/"+name, e.admin, map[string]any{"tags": tags}, nil)
	}
	return m
}

func (e *env) guestSlice(m *testutil.Machine) wire.GuestConfigurationDesired {
	e.t.Helper()
	status, b := e.s.DoMachine(e.t, m, "GET", wire.PathDesiredState, nil)
	if status != 200 {
		e.t.Fatalf("desired state: %d %s", status, b)
	}
	var ds wire.DesiredState
	if err := json.Unmarshal(b, &ds); err != nil {
		e.t.Fatal(err)
	}
	var gd wire.GuestConfigurationDesired
	if raw := ds.Features[wire.FeatureGuestConfiguration]; raw != nil {
		if err := json.Unmarshal(raw, &gd); err != nil {
			e.t.Fatal(err)
		}
	}
	return gd
}

func (e *env) states(scope string) []wire.PolicyState {
	e.t.Helper()
	var l wire.List[wire.PolicyState]
	e.s.MustDo(e.t, http.StatusOK, "GET", "/api/v1/policyStates?scope="+scope, e.admin, nil, &l)
	return l.Value
}

func rule(cond, effect string) string {
	return `{"name":"bad","properties":{"mode":"All","policyRule":{"if":` + cond + `,"then":{"effect":"` + effect + `"}}}}`
}

// TestBadInputStoresNothing: every refusal is a 400-class error naming the
// problem (the JSON path for definitions), and nothing is stored.
func TestBadInputStoresNothing(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"invalid JSON", `{"properties": {`, 400, "JSON"},
		{"unknown effect", rule(`{"field":"type","equals":"x"}`, "explode"), 400, "properties.policyRule.then.effect"},
		{"unknown operator", rule(`{"field":"type","resembles":"x"}`, "audit"), 400, "resembles"},
		{"unknown alias", rule(`{"field":"Corral.HybridCompute/machines/osFoo","equals":"x"}`, "audit"), 400, "properties.policyRule.if.field"},
		{"no name", `{"properties":{"mode":"All","policyRule":{"if":{"field":"type","equals":"x"},"then":{"effect":"audit"}}}}`, 400, "name"},
		{"guest configuration not built in", `{"name":"x","properties":{"mode":"All","metadata":{"guestConfiguration":{"name":"AzureLinuxBaseline"}},
			"policyRule":{"if":{"field":"type","equals":"Microsoft.HybridCompute/machines"},"then":{"effect":"auditIfNotExists","details":{
			"type":"Microsoft.GuestConfiguration/guestConfigurationAssignments","name":"AzureLinuxBaseline"}}}}}`, 400, "guestConfiguration.name"},
		{"built-in name", strings.Replace(rule(`{"field":"type","equals":"x"}`, "audit"), `"bad"`, `"linux-passwd-0644"`, 1), 409, "built in"},
	} {
		status, b := e.s.Do(t, "POST", "/api/v1/policyDefinitions", e.admin, tc.body)
		if status != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, status, b, tc.status, tc.want)
		}
	}
	for _, tc := range []struct {
		name   string
		body   wire.PolicyAssignmentCreate
		status int
		want   string
	}{
		{"wrong parameter type", wire.PolicyAssignmentCreate{Definition: "require-tag-on-machines", Scope: rgWeb, Parameters: json.RawMessage(`{"tagName":42}`)}, 400, "tagName"},
		{"unknown parameter", wire.PolicyAssignmentCreate{Definition: "require-tag-on-machines", Scope: rgWeb, Parameters: json.RawMessage(`{"nope":"x"}`)}, 400, "nope"},
		{"missing scope", wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644", Scope: "/subscriptions/default/resourceGroups/nowhere"}, 404, "nowhere"},
		{"malformed scope", wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644", Scope: "web"}, 400, "scope"},
		{"missing definition", wire.PolicyAssignmentCreate{Definition: "no-such", Scope: rgWeb}, 400, "no-such"},
		{"control character", wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644", Scope: rgWeb, NonComplianceMessage: "a\x01b"}, 400, "nonComplianceMessage"},
		{"bad assignment type", wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644", Scope: rgWeb, AssignmentType: "Never"}, 400, "assignmentType"},
		{"assignment type on a server definition", wire.PolicyAssignmentCreate{Definition: "require-tag-on-machines", Scope: rgWeb,
			Parameters: json.RawMessage(`{"tagName":"env"}`), AssignmentType: "Audit"}, 400, "assignmentType"},
		{"notScope outside", wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644", Scope: rgWeb, NotScopes: []string{"/subscriptions/other"}}, 400, "notScopes[0]"},
	} {
		status, b := e.s.Do(t, "PUT", "/api/v1/policyAssignments/x", e.admin, tc.body)
		if status != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s, want %d naming %q", tc.name, status, b, tc.status, tc.want)
		}
	}
	status, b := e.s.Do(t, "PUT", "/api/v1/policyAssignments/x", e.admin, `{"definition":"linux-passwd-0644","scope":"`+rgWeb+`","nonComplianceMessage":"a\u0000b"}`)
	if status != 400 {
		t.Errorf("NUL in a message: %d %s", status, b)
	}
	var defs wire.List[wire.PolicyDefinition]
	e.s.MustDo(t, 200, "GET", "/api/v1/policyDefinitions", e.admin, nil, &defs)
	var as wire.List[wire.PolicyAssignment]
	e.s.MustDo(t, 200, "GET", "/api/v1/policyAssignments", e.admin, nil, &as)
	if len(defs.Value) != 0 || len(as.Value) != 0 {
		t.Errorf("stored after refusals: %d definitions, %d assignments", len(defs.Value), len(as.Value))
	}
}

// TestServerSideEvaluationExemptionsAndSlice: a definition without a
// machine configuration is evaluated by the server with evidence; an
// exemption makes it Exempt until it expires; a guest definition reaches
// the machine's desired state unless a notScope excludes it; the roll-up
// counts machines; Reader reads compliance but cannot assign; Resource
// Policy Contributor can.
func TestServerSideEvaluationExemptionsAndSlice(t *testing.T) {
	e := newEnv(t)
	m1 := e.onboard("vm1", map[string]string{"env": "prod"})
	m2 := e.onboard("vm2", nil)
	e.s.MustDo(t, 201, "POST", "/api/v1/policyDefinitions", e.admin, `{"name":"need-env","properties":{"displayName":"Machines need env",
		"mode":"Indexed","policyRule":{"if":{"field":"tags['env']","exists":false},"then":{"effect":"audit"}}}}`, nil)
	e.s.MustDo(t, 201, "PUT", "/api/v1/policyAssignments/env", e.admin, wire.PolicyAssignmentCreate{Definition: "need-env", Scope: rgWeb,
		NonComplianceMessage: "tag it"}, nil)
	byMachine := map[string]wire.PolicyState{}
	for _, s := range e.states(rgWeb) {
		byMachine[s.Machine[strings.LastIndexByte(s.Machine, '/')+1:]] = s
	}
	if s := byMachine["vm1"]; s.ComplianceState != wire.ComplianceCompliant {
		t.Errorf("vm1: %+v", s)
	}
	if s := byMachine["vm2"]; s.ComplianceState != wire.ComplianceNonCompliant || s.NonComplianceMessage != "tag it" || s.Evidence == "" {
		t.Errorf("vm2: %+v", s)
	}
	var sum wire.List[wire.PolicyComplianceSummary]
	e.s.MustDo(t, 200, "GET", "/api/v1/policyStates/summary?scope="+rgWeb, e.admin, nil, &sum)
	if len(sum.Value) != 1 || sum.Value[0].Compliant != 1 || sum.Value[0].NonCompliant != 1 {
		t.Errorf("summary: %+v", sum.Value)
	}

	exp := time.Now().Add(time.Hour).UTC()
	e.s.MustDo(t, 201, "PUT", "/api/v1/policyExemptions/vm2-waiver", e.admin, wire.PolicyExemptionCreate{Assignment: "env",
		Scope: rgWeb + "/machines/vm2", Category: wire.ExemptionWaiver, ExpiresOn: &exp}, nil)
	for _, s := range e.states(rgWeb + "/machines/vm2") {
		if s.ComplianceState != wire.ComplianceExempt || s.Exemption != "vm2-waiver" {
			t.Errorf("exempted state: %+v", s)
		}
	}
	past := time.Now().Add(-time.Hour).UTC()
	if status, b := e.s.Do(t, "PUT", "/api/v1/policyExemptions/old", e.admin, wire.PolicyExemptionCreate{Assignment: "env",
		Scope: rgWeb, Category: wire.ExemptionMitigated, ExpiresOn: &past}); status != 400 || !strings.Contains(string(b), "expiresOn") {
		t.Errorf("expired exemption: %d %s", status, b)
	}

	// A guest definition reaches the machines' desired state, not vm2's
	// (excluded).
	e.s.MustDo(t, 201, "PUT", "/api/v1/policyAssignments/passwd", e.admin, wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644",
		Scope: rgWeb, AssignmentType: wire.AssignmentTypeApplyAndAutoCorrect, NotScopes: []string{rgWeb + "/machines/vm2"}}, nil)
	gd := e.guestSlice(m1)
	if len(gd.Assignments) != 1 || gd.Assignments[0].Configuration != "linux-passwd-0644" || gd.Assignments[0].AssignmentType != wire.AssignmentTypeApplyAndAutoCorrect ||
		gd.Assignments[0].ID != rgWeb+"/providers/Corral.Authorization/policyAssignments/passwd" {
		t.Errorf("vm1 slice: %+v", gd)
	}
	if gd := e.guestSlice(m2); len(gd.Assignments) != 0 {
		t.Errorf("vm2 (excluded) slice: %+v", gd)
	}

	// An agent's report: states per rule, a malformed one dropped.
	e.s.Report(t, m1, wire.ReportGuestCompliance, wire.GuestComplianceReport{Assignment: gd.Assignments[0].ID, Configuration: "linux-passwd-0644",
		EvaluatedAt: time.Now().UTC(), Rules: []wire.GuestRuleResult{{Rule: "file-passwd-permissions", ComplianceState: "NonCompliant",
			Evidence: "/etc/passwd mode 0666, want 0644 or stricter"}}})
	e.s.Report(t, m1, wire.ReportGuestCompliance, wire.GuestComplianceReport{Assignment: gd.Assignments[0].ID,
		Rules: []wire.GuestRuleResult{{Rule: "x", ComplianceState: "Maybe"}}})
	var got []wire.PolicyState
	for _, s := range e.states(rgWeb + "/machines/vm1") {
		if s.Rule == "file-passwd-permissions" {
			got = append(got, s)
		}
	}
	if len(got) != 1 || got[0].ComplianceState != wire.ComplianceNonCompliant || !strings.Contains(got[0].Evidence, "0666") {
		t.Errorf("guest states: %+v", got)
	}

	// Roles: Reader reads compliance, cannot assign; Resource Policy
	// Contributor assigns.
	reader := e.s.RolePrincipal(t, "Reader", rgWeb)
	if status, _ := e.s.Do(t, "GET", "/api/v1/policyStates?scope="+rgWeb, reader, nil); status != 200 {
		t.Errorf("Reader reading states: %d", status)
	}
	if status, _ := e.s.Do(t, "PUT", "/api/v1/policyAssignments/r", reader, wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644", Scope: rgWeb}); status != 403 {
		t.Errorf("Reader assigning: %d, want 403", status)
	}
	contrib := e.s.RolePrincipal(t, "Contributor", rgWeb)
	if status, _ := e.s.Do(t, "PUT", "/api/v1/policyAssignments/c", contrib, wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644", Scope: rgWeb}); status != 403 {
		t.Errorf("Contributor assigning: %d, want 403 (as in Azure)", status)
	}
	rpc := e.s.RolePrincipal(t, "Resource Policy Contributor", rgWeb)
	if status, b := e.s.Do(t, "PUT", "/api/v1/policyAssignments/p", rpc, wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644", Scope: rgWeb}); status != 201 {
		t.Errorf("Resource Policy Contributor assigning: %d %s", status, b)
	}
	if status, _ := e.s.Do(t, "PUT", "/api/v1/policyAssignments/p2", rpc, wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644",
		Scope: "/subscriptions/default"}); status != 403 {
		t.Errorf("Resource Policy Contributor of a group assigning at the subscription: %d, want 403", status)
	}
}

// TestDenyModifyAndDeploy: deny refuses tag changes and onboardings that
// break it, with the message in the error and the activity log; modify
// adds a tag to existing machines and to changes; deployIfNotExists
// installs Corral/EndpointProtection through the extensions path.
func TestDenyModifyAndDeploy(t *testing.T) {
	e := newEnv(t)
	e.onboard("vm1", map[string]string{"env": "prod"})
	const msg = "every machine needs an env tag (ticket SEC-12)"
	e.s.MustDo(t, 201, "PUT", "/api/v1/policyAssignments/need-env", e.admin, wire.PolicyAssignmentCreate{Definition: "require-tag-on-machines",
		Scope: rgWeb, Parameters: json.RawMessage(`{"tagName":"env","effect":"Deny"}`), NonComplianceMessage: msg}, nil)
	status, b := e.s.Do(t, "PATCH", "/api/v1"+rgWeb+"/machines/vm1", e.admin, map[string]any{"tags": map[string]string{"team": "web"}})
	if status != 400 || !strings.Contains(string(b), msg) || !strings.Contains(string(b), "RequestDisallowedByPolicy") {
		t.Errorf("tag change breaking deny: %d %s", status, b)
	}
	var m wire.Machine
	e.s.MustDo(t, 200, "GET", "/api/v1"+rgWeb+"/machines/vm1", e.admin, nil, &m)
	if m.Tags["env"] != "prod" {
		t.Errorf("denied change was stored: %v", m.Tags)
	}
	var acts wire.List[wire.ActivityEntry]
	e.s.MustDo(t, 200, "GET", "/api/v1/activityLogs?$top=20", e.admin, nil, &acts)
	found := false
	for _, a := range acts.Value {
		if strings.Contains(a.Message, msg) {
			found = true
		}
	}
	if !found {
		t.Errorf("the denial's message is not in the activity log")
	}
	status, b = e.s.Do(t, "POST", wire.PathConnect, e.onb, wire.ConnectRequest{ProtocolVersion: wire.ProtocolVersion, SubscriptionID: "default",
		ResourceGroup: "web", Name: "vm9", CSR: "x", AgentVersion: "2026.11.0"})
	if status != 400 || !strings.Contains(string(b), msg) {
		t.Errorf("onboarding without the tag: %d %s", status, b)
	}

	// Modify adds owner=secops to existing machines and to changes.
	e.s.MustDo(t, 201, "POST", "/api/v1/policyDefinitions", e.admin, `{"name":"owner-tag","properties":{"mode":"Indexed","policyRule":{
		"if":{"field":"tags['owner']","exists":false},"then":{"effect":"modify","details":{"roleDefinitionIds":["Contributor"],
		"operations":[{"operation":"addOrReplace","field":"tags['owner']","value":"secops"}]}}}}}`, nil)
	e.s.MustDo(t, 201, "PUT", "/api/v1/policyAssignments/owner", e.admin, wire.PolicyAssignmentCreate{Definition: "owner-tag", Scope: rgWeb}, nil)
	e.s.MustDo(t, 200, "GET", "/api/v1"+rgWeb+"/machines/vm1", e.admin, nil, &m)
	if m.Tags["owner"] != "secops" || m.Tags["env"] != "prod" {
		t.Errorf("modify remediation of an existing machine: %v", m.Tags)
	}
	e.s.MustDo(t, 200, "PATCH", "/api/v1"+rgWeb+"/machines/vm1", e.admin, map[string]any{"tags": map[string]string{"env": "dev"}}, &m)
	if m.Tags["owner"] != "secops" || m.Tags["env"] != "dev" {
		t.Errorf("modify on a change: %v", m.Tags)
	}

	// deployIfNotExists installs the endpoint protection extension.
	e.s.MustDo(t, 201, "PUT", "/api/v1/policyAssignments/ep", e.admin, wire.PolicyAssignmentCreate{Definition: "deploy-endpoint-protection", Scope: rgWeb}, nil)
	var exts wire.List[wire.MachineExtension]
	e.s.MustDo(t, 200, "GET", "/api/v1"+rgWeb+"/machines/vm1/extensions", e.admin, nil, &exts)
	ok := false
	for _, x := range exts.Value {
		if x.Publisher == wire.PublisherCorral && x.Type == "EndpointProtection" {
			ok = true
		}
	}
	if !ok {
		t.Errorf("deployIfNotExists did not install EndpointProtection: %+v", exts.Value)
	}
}
