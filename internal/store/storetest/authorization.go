package storetest

import (
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
)

func testRoleDefinitions(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := store.RoleDefinition{ID: "role-web", Name: "Web Operator", Description: "runs the web tier",
		Actions:          []string{"Corral.HybridCompute/machines/read", "Corral.HybridCompute/machines/*/action"},
		NotActions:       []string{"Corral.HybridCompute/machines/delete"},
		AssignableScopes: []string{"/subscriptions/s1"},
		CreatedAt:        t0, CreatedBy: "alice"}
	audit := store.RoleDefinition{ID: "role-audit", Name: "auditor", CreatedAt: t0, CreatedBy: "alice"}
	ok(t, s.CreateRoleDefinition(ctx, web), "create role")
	ok(t, s.CreateRoleDefinition(ctx, audit), "create role without lists")
	isErr(t, s.CreateRoleDefinition(ctx, store.RoleDefinition{ID: "role-web", Name: "Other", CreatedAt: t0}), store.ErrConflict, "duplicate id")
	isErr(t, s.CreateRoleDefinition(ctx, store.RoleDefinition{ID: "role-x", Name: "WEB OPERATOR", CreatedAt: t0}), store.ErrConflict, "duplicate name, other casing")

	got, err := s.GetRoleDefinition(ctx, "role-web")
	ok(t, err, "get role")
	diff(t, got, web, "role")
	got, err = s.GetRoleDefinition(ctx, "role-audit")
	ok(t, err, "get role")
	diff(t, got, audit, "role without lists")
	_, err = s.GetRoleDefinition(ctx, "missing")
	isErr(t, err, store.ErrNotFound, "get missing role")

	list, err := s.ListRoleDefinitions(ctx)
	ok(t, err, "list roles")
	diff(t, list, []store.RoleDefinition{audit, web}, "roles by name")

	upd := web
	upd.Name, upd.Description, upd.Actions, upd.NotActions, upd.AssignableScopes = "Web Admin", "more", []string{"*"}, nil, []string{"/"}
	upd.CreatedAt, upd.CreatedBy = t0.Add(time.Hour), "mallory" // not updatable
	ok(t, s.UpdateRoleDefinition(ctx, upd), "update role")
	want := upd
	want.CreatedAt, want.CreatedBy = web.CreatedAt, web.CreatedBy
	got, err = s.GetRoleDefinition(ctx, "role-web")
	ok(t, err, "get updated role")
	diff(t, got, want, "updated role keeps its creation fields")
	upd.Name = "AUDITOR"
	isErr(t, s.UpdateRoleDefinition(ctx, upd), store.ErrConflict, "rename to another role's name")
	isErr(t, s.UpdateRoleDefinition(ctx, store.RoleDefinition{ID: "missing", Name: "x"}), store.ErrNotFound, "update missing role")

	ok(t, s.CreateRoleAssignment(ctx, store.RoleAssignment{ID: "ra-1", PrincipalID: "usr-1", PrincipalType: "User",
		RoleID: "role-web", Scope: "/subscriptions/s1", CreatedAt: t0}), "assign role")
	isErr(t, s.DeleteRoleDefinition(ctx, "role-web"), store.ErrNotEmpty, "delete an assigned role")
	getRole := func() error { _, err := s.GetRoleDefinition(ctx, "role-web"); return err }
	ok(t, getRole(), "the assigned role survives")
	ok(t, s.DeleteRoleAssignment(ctx, "ra-1"), "remove the assignment")
	ok(t, s.DeleteRoleDefinition(ctx, "role-web"), "delete the unassigned role")
	isErr(t, getRole(), store.ErrNotFound, "get deleted role")
	isErr(t, s.DeleteRoleDefinition(ctx, "role-web"), store.ErrNotFound, "delete role twice")
}

func testRoleAssignments(t *testing.T, s store.Store) {
	ctx := t.Context()
	ra := func(id, principal, role, scope string, created time.Duration) store.RoleAssignment {
		return store.RoleAssignment{ID: id, PrincipalID: principal, PrincipalType: "User", RoleID: role, Scope: scope,
			CreatedAt: t0.Add(created), CreatedBy: "alice"}
	}
	all := []store.RoleAssignment{
		ra("a1", "p1", "owner", "/subscriptions/a", 0),
		ra("a2", "p1", "reader", "/subscriptions/a/resourceGroups/rg1", time.Second),
		ra("a3", "p2", "owner", "/subscriptions/ab", 2*time.Second),
		ra("a4", "p2", "owner", "/", 3*time.Second),
		ra("a5", "p3", "owner", "/subscriptions/A/resourceGroups/RG2/machines/m1", 4*time.Second),
		ra("a6", "p4", "reader", "/subscriptions/ab/resourceGroups/x", 5*time.Second),
	}
	for _, a := range all {
		ok(t, s.CreateRoleAssignment(ctx, a), "create assignment %s", a.ID)
	}
	isErr(t, s.CreateRoleAssignment(ctx, ra("a7", "p1", "owner", "/SUBSCRIPTIONS/A", 0)), store.ErrConflict, "same principal, role and scope (other casing)")
	isErr(t, s.CreateRoleAssignment(ctx, ra("a1", "p9", "owner", "/", 0)), store.ErrConflict, "duplicate id")
	ok(t, s.CreateRoleAssignment(ctx, ra("a8", "p1", "reader", "/subscriptions/a", 6*time.Second)), "same principal and scope, other role")

	got, err := s.GetRoleAssignment(ctx, "a5")
	ok(t, err, "get assignment")
	diff(t, got, all[4], "assignment")
	_, err = s.GetRoleAssignment(ctx, "missing")
	isErr(t, err, store.ErrNotFound, "get missing assignment")

	for _, tc := range []struct {
		name string
		f    store.RoleAssignmentFilter
		want []string
	}{
		{"everything", store.RoleAssignmentFilter{}, []string{"a1", "a2", "a3", "a4", "a5", "a6", "a8"}},
		{"root scope is everything", store.RoleAssignmentFilter{ScopePrefix: "/"}, []string{"a1", "a2", "a3", "a4", "a5", "a6", "a8"}},
		{"principal", store.RoleAssignmentFilter{PrincipalID: "p1"}, []string{"a1", "a2", "a8"}},
		{"role", store.RoleAssignmentFilter{RoleID: "owner"}, []string{"a1", "a3", "a4", "a5"}},
		{"scope and below, by segment", store.RoleAssignmentFilter{ScopePrefix: "/subscriptions/a"}, []string{"a1", "a2", "a5", "a8"}},
		{"scope other casing, trailing slash", store.RoleAssignmentFilter{ScopePrefix: "/SUBSCRIPTIONS/A/"}, []string{"a1", "a2", "a5", "a8"}},
		{"resource group scope", store.RoleAssignmentFilter{ScopePrefix: "/subscriptions/a/resourceGroups/rg1"}, []string{"a2"}},
		{"underscore is literal", store.RoleAssignmentFilter{ScopePrefix: "/subscriptions/a_"}, []string{}},
		{"all filters", store.RoleAssignmentFilter{PrincipalID: "p2", RoleID: "owner", ScopePrefix: "/subscriptions/ab"}, []string{"a3"}},
		{"no match", store.RoleAssignmentFilter{PrincipalID: "p9"}, []string{}},
	} {
		list, err := s.ListRoleAssignments(ctx, tc.f)
		ok(t, err, "%s: list assignments", tc.name)
		ids := []string{}
		for _, a := range list {
			ids = append(ids, a.ID)
		}
		diff(t, sorted(ids), tc.want, "%s", tc.name)
	}

	ok(t, s.DeleteRoleAssignment(ctx, "a1"), "delete assignment")
	isErr(t, s.DeleteRoleAssignment(ctx, "a1"), store.ErrNotFound, "delete assignment twice")
	list, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{})
	ok(t, err, "list assignments")
	ids := []string{}
	for _, a := range list {
		ids = append(ids, a.ID)
	}
	diff(t, sorted(ids), []string{"a2", "a3", "a4", "a5", "a6", "a8"}, "after deletes")
}
