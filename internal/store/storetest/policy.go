package storetest

import (
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func testPolicyDefinitionsAndAssignments(t *testing.T, s store.Store) {
	ctx := t.Context()
	d := store.PolicyDefinition{Name: "Require-Tag", DisplayName: "Require a tag", Mode: "All", Effect: "Deny",
		Document: []byte(`{"properties":{}}`), CreatedAt: t0, CreatedBy: "alice"}
	ok(t, s.CreatePolicyDefinition(ctx, d), "create definition")
	dup := d
	dup.Name = "require-tag"
	isErr(t, s.CreatePolicyDefinition(ctx, dup), store.ErrConflict, "same name in other casing")
	got, err := s.GetPolicyDefinition(ctx, "REQUIRE-TAG")
	ok(t, err, "get definition")
	diff(t, got, d, "definition")
	list, err := s.ListPolicyDefinitions(ctx, store.Page{})
	ok(t, err, "list definitions")
	if len(list) != 1 {
		t.Fatalf("definitions: %d, want 1", len(list))
	}

	a := store.PolicyAssignment{Name: "tags", Scope: "/subscriptions/s1/resourceGroups/rg1", Definition: "require-tag",
		Parameters: []byte(`{"tagName":"env"}`), NonComplianceMessage: "tag it", AssignmentType: "", NotScopes: []string{"/subscriptions/s1/resourceGroups/rg1/machines/vm9"},
		CreatedAt: t0, CreatedBy: "alice"}
	ok(t, s.CreatePolicyAssignment(ctx, a, false), "create assignment")
	isErr(t, s.CreatePolicyAssignment(ctx, a, false), store.ErrConflict, "same assignment twice")
	missing := a
	missing.Name, missing.Definition = "other", "nope"
	isErr(t, s.CreatePolicyAssignment(ctx, missing, false), store.ErrNotFound, "assignment of a missing definition")
	builtin := a
	builtin.Name, builtin.Definition, builtin.Scope, builtin.AssignmentType, builtin.NotScopes = "passwd", "linux-passwd-0644", "/subscriptions/s1", wire.AssignmentTypeAudit, nil
	builtin.Parameters = nil
	ok(t, s.CreatePolicyAssignment(ctx, builtin, true), "assignment of a built-in")
	gotA, err := s.GetPolicyAssignment(ctx, "TAGS")
	ok(t, err, "get assignment")
	diff(t, gotA, a, "assignment")
	under, err := s.ListPolicyAssignments(ctx, "/subscriptions/s1/resourceGroups/RG1", store.Page{})
	ok(t, err, "list under a group")
	if len(under) != 1 || under[0].Name != "tags" {
		t.Errorf("assignments under rg1: %+v", under)
	}
	at, err := s.PolicyAssignmentsAt(ctx, []string{"/", "/subscriptions/S1", "/subscriptions/s1/resourceGroups/rg1"})
	ok(t, err, "assignments at ancestors")
	if len(at) != 2 {
		t.Errorf("assignments at a machine's ancestors: %d, want 2", len(at))
	}
	isErr(t, s.DeletePolicyDefinition(ctx, "require-tag"), store.ErrNotEmpty, "delete a definition in use")

	e := store.PolicyExemption{Name: "waive", Assignment: "tags", Scope: "/subscriptions/s1/resourceGroups/rg1/machines/vm1",
		Category: wire.ExemptionWaiver, ExpiresAt: t0.Add(time.Hour), CreatedAt: t0, CreatedBy: "bob"}
	ok(t, s.CreatePolicyExemption(ctx, e), "create exemption")
	noA := e
	noA.Name, noA.Assignment = "x", "nope"
	isErr(t, s.CreatePolicyExemption(ctx, noA), store.ErrNotFound, "exemption of a missing assignment")
	es, err := s.ListPolicyExemptions(ctx, "TAGS")
	ok(t, err, "list exemptions")
	diff(t, es, []store.PolicyExemption{e}, "exemptions")

	ok(t, s.DeletePolicyAssignment(ctx, "tags"), "delete assignment")
	es, err = s.ListPolicyExemptions(ctx, "")
	ok(t, err, "list exemptions after")
	if len(es) != 0 {
		t.Errorf("exemptions outlived their assignment: %v", es)
	}
	isErr(t, s.DeletePolicyAssignment(ctx, "tags"), store.ErrNotFound, "delete again")
	ok(t, s.DeletePolicyDefinition(ctx, "require-tag"), "delete the unused definition")
	isErr(t, s.DeletePolicyDefinition(ctx, "require-tag"), store.ErrNotFound, "delete definition again")
}

func testPolicyStates(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg1", "s1/rg2")
	createMachines(t, s, machine("m1", "s1/rg1/vm1"), machine("m2", "s1/rg2/vm2"))
	ok(t, s.CreatePolicyAssignment(ctx, store.PolicyAssignment{Name: "passwd", Scope: "/subscriptions/s1", Definition: "linux-passwd-0644",
		AssignmentType: wire.AssignmentTypeApplyAndAutoCorrect, CreatedAt: t0, CreatedBy: "alice"}, true), "assign")
	scope1 := "/subscriptions/s1/resourceGroups/rg1/machines/vm1"
	scope2 := "/subscriptions/s1/resourceGroups/rg2/machines/vm2"
	put := func(machineID, scope, state, evidence string, at time.Time) {
		t.Helper()
		st := store.PolicyMachineStatus{Assignment: "PASSWD", MachineID: machineID, MachineScope: scope, Definition: "linux-passwd-0644",
			ComplianceState: state, EvaluatedAt: at}
		rules := []store.PolicyRuleState{
			{MachineScope: scope, Definition: "linux-passwd-0644", Rule: "passwd-mode", Title: "t", Severity: "medium", ComplianceState: state,
				Evidence: evidence, SSGRuleID: "xccdf_x", Timestamp: at},
			{MachineScope: scope, Definition: "linux-passwd-0644", Rule: "passwd-owner", ComplianceState: wire.ComplianceCompliant, Evidence: "root", Timestamp: at},
		}
		ok(t, s.PutPolicyStates(ctx, st, rules), "put states")
	}
	put("m1", scope1, wire.ComplianceCompliant, "/etc/passwd mode 0644", t0)
	put("m2", scope2, wire.ComplianceCompliant, "/etc/passwd mode 0644", t0)
	put("m1", scope1, wire.ComplianceNonCompliant, "/etc/passwd mode 0666, want 0644", t0.Add(time.Minute))
	put("m1", scope1, wire.ComplianceNonCompliant, "/etc/passwd mode 0666, want 0644", t0.Add(2*time.Minute))

	all, err := s.ListPolicyStates(ctx, store.PolicyStateFilter{})
	ok(t, err, "list states")
	if len(all) != 4 {
		t.Fatalf("states: %d, want 4", len(all))
	}
	if all[0].Assignment != "passwd" {
		t.Errorf("assignment spelled %q, want the stored passwd", all[0].Assignment)
	}
	rg1, err := s.ListPolicyStates(ctx, store.PolicyStateFilter{ScopePrefix: "/subscriptions/s1/resourceGroups/rg1"})
	ok(t, err, "list states of rg1")
	want := store.PolicyRuleState{Assignment: "passwd", MachineID: "m1", MachineScope: scope1, Definition: "linux-passwd-0644", Rule: "passwd-mode",
		Title: "t", Severity: "medium", ComplianceState: wire.ComplianceNonCompliant, Evidence: "/etc/passwd mode 0666, want 0644", SSGRuleID: "xccdf_x",
		Timestamp: t0.Add(2 * time.Minute)}
	if len(rg1) != 2 {
		t.Fatalf("rg1 states: %d, want 2", len(rg1))
	}
	diff(t, rg1[0], want, "rule state")
	page1, err := s.ListPolicyStates(ctx, store.PolicyStateFilter{Page: store.Page{Limit: 3}})
	ok(t, err, "page 1")
	page2, err := s.ListPolicyStates(ctx, store.PolicyStateFilter{Page: store.Page{Limit: 3, After: store.PolicyStateKey(page1[2])}})
	ok(t, err, "page 2")
	if len(page1) != 3 || len(page2) != 1 {
		t.Errorf("pages: %d + %d, want 3 + 1", len(page1), len(page2))
	}
	hist, err := s.PolicyStateHistory(ctx, "passwd", "m1", "passwd-mode", 10)
	ok(t, err, "history")
	if len(hist) != 2 || hist[0].ComplianceState != wire.ComplianceNonCompliant || hist[1].ComplianceState != wire.ComplianceCompliant {
		t.Errorf("history (newest first, changes only): %+v", hist)
	}
	sts, err := s.ListPolicyMachineStatus(ctx, store.PolicyStateFilter{Assignment: "passwd"})
	ok(t, err, "machine status")
	if len(sts) != 2 || sts[0].MachineID != "m1" || sts[0].ComplianceState != wire.ComplianceNonCompliant || !sts[0].EvaluatedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("machine status: %+v", sts)
	}
	isErr(t, s.PutPolicyStates(ctx, store.PolicyMachineStatus{Assignment: "nope", MachineID: "m1", EvaluatedAt: t0}, nil), store.ErrNotFound,
		"states of a missing assignment")

	r := store.PolicyRemediation{ID: "r1", Assignment: "passwd", MachineID: "m1", MachineScope: scope1, Rule: "passwd-mode",
		State: wire.RemediationApplied, Result: wire.ResultSucceeded, EvidenceBefore: "0666", EvidenceAfter: "0644",
		Files: []byte(`[{"path":"/etc/passwd"}]`), CreatedAt: t0, UpdatedAt: t0}
	created, err := s.PutPolicyRemediation(ctx, r)
	ok(t, err, "put remediation")
	if !created {
		t.Error("first put: created false")
	}
	created, err = s.PutPolicyRemediation(ctx, r)
	ok(t, err, "put remediation twice")
	if created {
		t.Error("second put: created true")
	}
	r.State, r.RollbackRequestedAt, r.RollbackRequestedBy, r.Force, r.UpdatedAt = wire.RemediationRollbackRequested, t0.Add(time.Minute), "bob", true, t0.Add(time.Minute)
	r.Origin = []byte(`{"caller":"bob"}`)
	ok(t, s.UpdatePolicyRemediation(ctx, r), "request rollback")
	gotR, err := s.GetPolicyRemediation(ctx, "r1")
	ok(t, err, "get remediation")
	diff(t, gotR, r, "remediation")
	pending, err := s.ListPolicyRemediations(ctx, store.PolicyRemediationFilter{MachineID: "m1", State: wire.RemediationRollbackRequested})
	ok(t, err, "pending rollbacks")
	if len(pending) != 1 {
		t.Errorf("pending rollbacks: %d", len(pending))
	}
	none, err := s.ListPolicyRemediations(ctx, store.PolicyRemediationFilter{ScopePrefix: "/subscriptions/s1/resourceGroups/rg2"})
	ok(t, err, "remediations of rg2")
	if len(none) != 0 {
		t.Errorf("remediations of rg2: %d", len(none))
	}

	ok(t, s.CreatePolicyEvaluation(ctx, store.PolicyEvaluation{ID: "e1", Scope: "/subscriptions/s1", RequestedAt: t0, RequestedBy: "alice"}), "evaluation 1")
	ok(t, s.CreatePolicyEvaluation(ctx, store.PolicyEvaluation{ID: "e2", Scope: "/subscriptions/s1/resourceGroups/rg2", RequestedAt: t0, RequestedBy: "alice"}), "evaluation 2")
	latest, err := s.LatestPolicyEvaluation(ctx, []string{"/", "/subscriptions/S1", "/subscriptions/s1/resourceGroups/RG1"})
	ok(t, err, "latest evaluation for rg1")
	if latest.ID != "e1" {
		t.Errorf("latest for rg1: %s, want e1", latest.ID)
	}
	_, err = s.LatestPolicyEvaluation(ctx, []string{"/subscriptions/s9"})
	isErr(t, err, store.ErrNotFound, "no evaluation")

	ok(t, s.DeletePolicyAssignment(ctx, "passwd"), "delete assignment")
	all, err = s.ListPolicyStates(ctx, store.PolicyStateFilter{})
	ok(t, err, "states after delete")
	if len(all) != 0 {
		t.Errorf("states outlived their assignment: %d", len(all))
	}
	_, err = s.GetPolicyRemediation(ctx, "r1")
	isErr(t, err, store.ErrNotFound, "remediation after the assignment went")
}
