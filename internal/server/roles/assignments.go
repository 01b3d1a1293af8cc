package roles

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func (s *Service) toWireAssignment(ctx context.Context, ra store.RoleAssignment) wire.RoleAssignment {
	out := wire.RoleAssignment{ID: ra.ID, PrincipalID: ra.PrincipalID, PrincipalType: ra.PrincipalType, RoleID: ra.RoleID,
		Scope: ra.Scope, CreatedAt: ra.CreatedAt, CreatedBy: ra.CreatedBy}
	if role, err := s.Role(ctx, ra.RoleID); err == nil {
		out.RoleName = role.Name
	}
	return out
}

// PrincipalAssignments lists the role assignments of one principal.
func (s *Service) PrincipalAssignments(ctx context.Context, principalID string) ([]wire.RoleAssignment, error) {
	ras, err := s.store.ListRoleAssignments(ctx, store.RoleAssignmentFilter{PrincipalID: principalID})
	if err != nil {
		return nil, err
	}
	out := make([]wire.RoleAssignment, 0, len(ras))
	for _, ra := range ras {
		out = append(out, s.toWireAssignment(ctx, ra))
	}
	return out, nil
}

// ListRoleAssignments lists who has access at scope: assignments at it,
// above it (inherited) and below it, of principal ("" for everyone; a user
// name, user id or service principal client id).
func (s *Service) ListRoleAssignments(ctx context.Context, scope, principal string) ([]wire.RoleAssignment, error) {
	if _, err := resource.ParseScope(scope); err != nil {
		return nil, refusal.Invalid("scope", "%v", err)
	}
	f := store.RoleAssignmentFilter{}
	if principal != "" {
		id, _, err := s.principals.ResolvePrincipal(ctx, principal)
		if err != nil {
			return nil, err
		}
		f.PrincipalID = id
	}
	ras, err := s.store.ListRoleAssignments(ctx, f)
	if err != nil {
		return nil, err
	}
	out := []wire.RoleAssignment{}
	for _, ra := range ras {
		if authz.ScopeCovers(ra.Scope, scope) || authz.ScopeCovers(scope, ra.Scope) {
			out = append(out, s.toWireAssignment(ctx, ra))
		}
	}
	return out, nil
}

// roleByIDOrName finds a role by id, else a custom role by name.
func (s *Service) roleByIDOrName(ctx context.Context, v string) (authz.Role, error) {
	role, err := s.Role(ctx, v)
	if !errors.Is(err, store.ErrNotFound) {
		return role, err
	}
	custom, err := s.store.ListRoleDefinitions(ctx)
	if err != nil {
		return authz.Role{}, err
	}
	for _, rd := range custom {
		if strings.EqualFold(rd.Name, v) {
			return roleFromStore(rd), nil
		}
	}
	return authz.Role{}, store.ErrNotFound
}

func coveredByAny(scopes []string, target string) bool {
	for _, s := range scopes {
		if authz.ScopeCovers(s, target) {
			return true
		}
	}
	return false
}

// CreateRoleAssignment assigns a role (by id or name) to a principal at a
// scope, after authorize accepted the scope.
func (s *Service) CreateRoleAssignment(ctx context.Context, in wire.RoleAssignmentCreate, by string, authorize authz.ScopeCheck) (wire.RoleAssignment, error) {
	scope, err := resource.ParseScope(in.Scope)
	if err != nil {
		return wire.RoleAssignment{}, refusal.Invalid("scope", "%v", err)
	}
	if err := authorize(scope); err != nil {
		return wire.RoleAssignment{}, err
	}
	role, err := s.roleByIDOrName(ctx, in.Role)
	if err != nil {
		return wire.RoleAssignment{}, notFoundAs(err, "role %q was not found", in.Role)
	}
	if len(role.AssignableScopes) > 0 && !coveredByAny(role.AssignableScopes, in.Scope) {
		return wire.RoleAssignment{}, refusal.Invalid("scope", "role %q cannot be assigned at %q (assignable scopes: %s)",
			role.Name, in.Scope, strings.Join(role.AssignableScopes, ", "))
	}
	pid, ptype, err := s.principals.ResolvePrincipal(ctx, in.Principal)
	if err != nil {
		return wire.RoleAssignment{}, err
	}
	ra := store.RoleAssignment{ID: uuid.NewString(), PrincipalID: pid, PrincipalType: ptype, RoleID: role.ID, Scope: in.Scope,
		CreatedAt: s.now(), CreatedBy: by}
	if err := s.store.CreateRoleAssignment(ctx, ra); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return wire.RoleAssignment{}, refusal.Conflict("%s already has role %q at %q", in.Principal, role.Name, in.Scope)
		}
		return wire.RoleAssignment{}, err
	}
	return s.toWireAssignment(ctx, ra), nil
}

// assignment loads an assignment and runs authorize at its scope.
func (s *Service) assignment(ctx context.Context, id string, authorize authz.ScopeCheck) (store.RoleAssignment, error) {
	ra, err := s.store.GetRoleAssignment(ctx, id)
	if err != nil {
		return ra, notFoundAs(err, "role assignment %q was not found", id)
	}
	scope, err := resource.ParseScope(ra.Scope)
	if err != nil {
		return ra, err
	}
	return ra, authorize(scope)
}

// GetRoleAssignment reads an assignment, after authorize accepted its scope.
func (s *Service) GetRoleAssignment(ctx context.Context, id string, authorize authz.ScopeCheck) (wire.RoleAssignment, error) {
	ra, err := s.assignment(ctx, id, authorize)
	if err != nil {
		return wire.RoleAssignment{}, err
	}
	return s.toWireAssignment(ctx, ra), nil
}

// DeleteRoleAssignment deletes an assignment, after authorize accepted its
// scope.
func (s *Service) DeleteRoleAssignment(ctx context.Context, id string, authorize authz.ScopeCheck) error {
	ra, err := s.assignment(ctx, id, authorize)
	if err != nil {
		return err
	}
	return notFoundAs(s.store.DeleteRoleAssignment(ctx, ra.ID), "role assignment %q was not found", id)
}
