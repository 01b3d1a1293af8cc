package roles_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/server/roles"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// principals knows one user, as the identity context would.
type principals struct{}

func (principals) ResolvePrincipal(_ context.Context, p string) (string, string, error) {
	if p == "alice" || p == "usr-1" {
		return "usr-1", wire.PrincipalUser, nil
	}
	return "", "", refusal.NotFound("principal %q was not found", p)
}

func newService(t *testing.T) (*roles.Service, store.Store) {
	t.Helper()
	st := testutil.Store(t)
	return roles.New(st, principals{}, func() time.Time { return time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC) },
		slog.New(slog.NewTextHandler(io.Discard, nil))), st
}

func TestAssignmentsAreAuthorizedAtTheirScope(t *testing.T) {
	t.Parallel()
	svc, st := newService(t)
	ctx := t.Context()
	var asked []string
	check := func(scope resource.ID) error {
		asked = append(asked, scope.String())
		if scope.Name(resource.ResourceGroups) == "secret" {
			return errors.New("denied")
		}
		return nil
	}
	in := wire.RoleAssignmentCreate{Principal: "alice", Role: "Reader", Scope: "/subscriptions/default/resourceGroups/secret"}
	if _, err := svc.CreateRoleAssignment(ctx, in, "admin", check); err == nil || err.Error() != "denied" {
		t.Fatalf("got %v, want the check's refusal", err)
	}
	if ras, _ := st.ListRoleAssignments(ctx, store.RoleAssignmentFilter{}); len(ras) != 0 {
		t.Fatalf("a refused assignment was stored: %+v", ras)
	}
	for _, bad := range []wire.RoleAssignmentCreate{
		{Principal: "alice", Role: "Reader", Scope: "/subscriptions/"},
		{Principal: "alice", Role: "No Such Role", Scope: "/"},
		{Principal: "nobody", Role: "Reader", Scope: "/"},
	} {
		if _, err := svc.CreateRoleAssignment(ctx, bad, "admin", check); !errors.Is(err, refusal.ErrInvalid) && !errors.Is(err, refusal.ErrNotFound) {
			t.Errorf("%+v: %v, want a refusal", bad, err)
		}
	}
	ra, err := svc.CreateRoleAssignment(ctx, wire.RoleAssignmentCreate{Principal: "alice", Role: authz.RoleReader, Scope: "/subscriptions/default"}, "admin", check)
	if err != nil || ra.PrincipalID != "usr-1" || ra.RoleName == "" {
		t.Fatalf("%+v %v", ra, err)
	}
	if _, err := svc.CreateRoleAssignment(ctx, wire.RoleAssignmentCreate{Principal: "usr-1", Role: authz.RoleReader, Scope: "/subscriptions/default"}, "admin", check); !errors.Is(err, refusal.ErrConflict) {
		t.Errorf("the same assignment twice: %v", err)
	}
	asked = nil
	if err := svc.DeleteRoleAssignment(ctx, ra.ID, func(resource.ID) error { return errors.New("denied") }); err == nil {
		t.Error("deleted without rights at the assignment's scope")
	}
	if err := svc.DeleteRoleAssignment(ctx, ra.ID, check); err != nil || len(asked) != 1 || asked[0] != "/subscriptions/default" {
		t.Errorf("delete: %v, checked at %v", err, asked)
	}
	as, err := svc.Assignments(ctx, "usr-1")
	if err != nil || len(as) != 0 {
		t.Errorf("assignments after the delete: %+v %v", as, err)
	}
}

func TestCustomRoles(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	ctx := t.Context()
	role := wire.RoleDefinition{Name: "Web Operator", Actions: []string{"Corral.HybridCompute/machines/read"}, AssignableScopes: []string{"/subscriptions/default"}}
	if _, created, err := svc.PutRoleDefinition(ctx, "web-operator", role, "admin"); err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	role.Description = "reads machines"
	if rd, created, err := svc.PutRoleDefinition(ctx, "web-operator", role, "admin"); err != nil || created || rd.Description != "reads machines" {
		t.Fatalf("update: %+v %v %v", rd, created, err)
	}
	if _, _, err := svc.PutRoleDefinition(ctx, authz.RoleOwner, role, "admin"); !errors.Is(err, refusal.ErrInvalid) {
		t.Errorf("changing a built-in role: %v", err)
	}
	if _, err := svc.CreateRoleAssignment(ctx, wire.RoleAssignmentCreate{Principal: "alice", Role: "web operator", Scope: "/"}, "admin",
		func(resource.ID) error { return nil }); !errors.Is(err, refusal.ErrInvalid) {
		t.Errorf("assigning outside the assignable scopes: %v", err)
	}
	if _, err := svc.CreateRoleAssignment(ctx, wire.RoleAssignmentCreate{Principal: "alice", Role: "web operator", Scope: "/subscriptions/default/resourceGroups/web"}, "admin",
		func(resource.ID) error { return nil }); err != nil {
		t.Fatalf("assign by name: %v", err)
	}
	if err := svc.DeleteRoleDefinition(ctx, "web-operator"); !errors.Is(err, refusal.ErrConflict) {
		t.Errorf("deleting an assigned role: %v", err)
	}
	as, err := svc.Assignments(ctx, "usr-1")
	if err != nil || len(as) != 1 || !authz.Allowed(as, "Corral.HybridCompute/machines/read", "/subscriptions/default/resourceGroups/web/machines/m") {
		t.Errorf("the caller's assignments do not grant the role: %+v %v", as, err)
	}
}
