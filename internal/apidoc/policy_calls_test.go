package apidoc

import (
	"encoding/json"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// policyCalls makes a successful call of each policy operation: a custom
// definition, an assignment of the built-in linux-passwd-0644 with an
// exemption, m1's agent reporting compliance and a remediation, the
// states, summary, evaluation and the rollback of the remediation.
func (k *docChecker) policyCalls() {
	t := k.t
	const js = "application/json"
	must := func(c apiCall) []byte {
		t.Helper()
		st, b := k.do(c)
		if st < 200 || st > 299 {
			t.Fatalf("%s %s (as %s): %d, want success: %s", c.method, c.pattern, c.as, st, b)
		}
		return b
	}
	at := func(k, v string) map[string]string { return map[string]string{k: v} }
	rg := "/subscriptions/default/resourceGroups/rg1"
	must(apiCall{method: "GET", pattern: "/api/v1/policyDefinitions", query: "builtin=true&$top=2", as: "admin"})
	must(apiCall{method: "POST", pattern: "/api/v1/policyDefinitions", as: "admin", contentType: js, body: []byte(`{"name":"need-env","properties":{
		"mode":"Indexed","policyRule":{"if":{"field":"tags['env']","exists":false},"then":{"effect":"audit"}}}}`)})
	must(apiCall{method: "GET", pattern: "/api/v1/policyDefinitions", as: "admin"})
	must(apiCall{method: "GET", pattern: "/api/v1/policyDefinitions/{name}", params: at("name", "linux-passwd-0644"), as: "admin"})
	must(apiCall{method: "PUT", pattern: "/api/v1/policyAssignments/{name}", params: at("name", "env"), as: "admin", contentType: js,
		body: []byte(`{"definition":"need-env","scope":"` + rg + `","nonComplianceMessage":"tag env"}`)})
	must(apiCall{method: "PUT", pattern: "/api/v1/policyAssignments/{name}", params: at("name", "passwd"), as: "admin", contentType: js,
		body: []byte(`{"definition":"linux-passwd-0644","scope":"` + rg + `","assignmentType":"ApplyAndAutoCorrect","nonComplianceMessage":"fix passwd"}`)})
	must(apiCall{method: "GET", pattern: "/api/v1/policyAssignments", query: "scope=/subscriptions/default", as: "admin"})
	must(apiCall{method: "GET", pattern: "/api/v1/policyAssignments/{name}", params: at("name", "passwd"), as: "admin"})
	must(apiCall{method: "PUT", pattern: "/api/v1/policyExemptions/{name}", params: at("name", "waive"), as: "admin", contentType: js,
		body: []byte(`{"assignment":"env","scope":"` + rg + `/machines/m1","category":"Waiver","expiresOn":"2099-01-01T00:00:00Z"}`)})
	must(apiCall{method: "GET", pattern: "/api/v1/policyExemptions", query: "assignment=env", as: "admin"})
	must(apiCall{method: "GET", pattern: "/api/v1/policyExemptions/{name}", params: at("name", "waive"), as: "admin"})

	now := time.Now().UTC()
	body := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	must(apiCall{method: "POST", pattern: wire.PathReports, as: "m1", contentType: js, body: jsonBody(t, wire.ReportBatch{Reports: []wire.Report{
		{ID: "gc-1", Kind: wire.ReportGuestCompliance, TakenAt: now, Body: body(wire.GuestComplianceReport{Assignment: rg + "/providers/Corral.Authorization/policyAssignments/passwd",
			Configuration: "linux-passwd-0644", AssignmentType: wire.AssignmentTypeApplyAndAutoCorrect, Trigger: wire.TriggerFileChange, EvaluatedAt: now,
			Rules: []wire.GuestRuleResult{{Rule: "file-passwd-permissions", ComplianceState: wire.ComplianceCompliant, Evidence: "/etc/passwd mode 0644"}}})},
		{ID: "gc-2", Kind: wire.ReportGuestRemediation, TakenAt: now, Body: body(wire.GuestRemediationReport{ID: "rem-1", Assignment: "passwd",
			Rule: "file-passwd-permissions", Result: wire.ResultSucceeded, EvidenceBefore: "/etc/passwd mode 0666, want 0644", EvidenceAfter: "/etc/passwd mode 0644",
			Files: []wire.GuestFileChange{{Path: "/etc/passwd", ModeBefore: "0666", ModeAfter: "0644"}}, At: now})},
	}})})
	must(apiCall{method: "GET", pattern: "/api/v1/policyStates", query: "scope=/subscriptions/default&$top=10", as: "admin"})
	must(apiCall{method: "GET", pattern: "/api/v1/policyStates/summary", query: "scope=" + rg, as: "admin"})
	var states wire.List[wire.PolicyState]
	if err := json.Unmarshal(must(apiCall{method: "GET", pattern: "/api/v1/policyStates", query: "assignment=passwd", as: "admin"}), &states); err != nil || len(states.Value) == 0 {
		t.Fatalf("states of passwd: %v %+v", err, states)
	}
	must(apiCall{method: "GET", pattern: "/api/v1/policyStates/history", query: "assignment=passwd&machineId=" + states.Value[0].MachineID +
		"&rule=file-passwd-permissions", as: "admin"})
	var ev wire.PolicyEvaluation
	if err := json.Unmarshal(must(apiCall{method: "POST", pattern: "/api/v1/policyEvaluations", as: "admin", contentType: js,
		body: []byte(`{"scope":"` + rg + `"}`)}), &ev); err != nil {
		t.Fatal(err)
	}
	must(apiCall{method: "GET", pattern: "/api/v1/policyEvaluations/{id}", params: at("id", ev.ID), as: "admin"})
	must(apiCall{method: "GET", pattern: "/api/v1/policyRemediations", query: "scope=" + rg, as: "admin"})
	must(apiCall{method: "GET", pattern: "/api/v1/policyRemediations/{id}", params: at("id", "rem-1"), as: "admin"})
	must(apiCall{method: "POST", pattern: "/api/v1/policyRemediations/{id}/rollback", params: at("id", "rem-1"), as: "admin", contentType: js,
		body: []byte(`{"force":false}`)})
	must(apiCall{method: "DELETE", pattern: "/api/v1/policyExemptions/{name}", params: at("name", "waive"), as: "admin"})
	must(apiCall{method: "DELETE", pattern: "/api/v1/policyAssignments/{name}", params: at("name", "env"), as: "admin"})
	must(apiCall{method: "DELETE", pattern: "/api/v1/policyDefinitions/{name}", params: at("name", "need-env"), as: "admin"})
}
