// Package roles is the control plane's role administration context: custom
// role definitions (the built-in roles live in package authz) and role
// assignments of principals at scopes, and the assignments a caller's
// requests are authorized with.
//
// Authorization of the administration itself stays with the caller: calls
// whose scope is known only from the body or a stored assignment take an
// authz.ScopeCheck and run it before they change or reveal anything.
//
// Refusals the caller can act on are *refusal.Error; any other error is
// internal. The Service is safe for concurrent use; it holds no state of
// its own.
package roles

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Store is what the context needs from persistence.
type Store interface {
	store.Authorization
}

// Principals finds principals by id or name; the identity context
// implements it.
type Principals interface {
	ResolvePrincipal(ctx context.Context, p string) (id, typ string, err error)
}

// Service implements the role administration context.
type Service struct {
	store      Store
	principals Principals
	clock      func() time.Time
	log        *slog.Logger
}

// New returns a Service. clock is the injected time source.
func New(st Store, principals Principals, clock func() time.Time, log *slog.Logger) *Service {
	return &Service{store: st, principals: principals, clock: clock, log: log}
}

func (s *Service) now() time.Time { return s.clock().UTC() }

func notFoundAs(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return refusal.NotFound(format, args...)
	}
	return err
}

func toWireRole(r authz.Role) wire.RoleDefinition {
	return wire.RoleDefinition{ID: r.ID, Name: r.Name, Description: r.Description, BuiltIn: r.BuiltIn,
		Actions: r.Actions, NotActions: r.NotActions, AssignableScopes: r.AssignableScopes}
}

func roleFromStore(rd store.RoleDefinition) authz.Role {
	return authz.Role{ID: rd.ID, Name: rd.Name, Description: rd.Description, Actions: rd.Actions,
		NotActions: rd.NotActions, AssignableScopes: rd.AssignableScopes}
}

// Role finds a built-in or custom role by id; store.ErrNotFound if none.
func (s *Service) Role(ctx context.Context, id string) (authz.Role, error) {
	if r, ok := authz.BuiltInRole(id); ok {
		return r, nil
	}
	rd, err := s.store.GetRoleDefinition(ctx, id)
	if err != nil {
		return authz.Role{}, err
	}
	return roleFromStore(rd), nil
}

// Assignments resolves a principal's role assignments with their roles,
// for authorizing its requests. A dangling assignment grants nothing.
func (s *Service) Assignments(ctx context.Context, principalID string) ([]authz.Assignment, error) {
	ras, err := s.store.ListRoleAssignments(ctx, store.RoleAssignmentFilter{PrincipalID: principalID})
	if err != nil {
		return nil, err
	}
	out := make([]authz.Assignment, 0, len(ras))
	for _, ra := range ras {
		role, err := s.Role(ctx, ra.RoleID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, authz.Assignment{Role: role, Scope: ra.Scope})
	}
	return out, nil
}

// ListRoleDefinitions lists the built-in roles, then the custom ones.
func (s *Service) ListRoleDefinitions(ctx context.Context) ([]wire.RoleDefinition, error) {
	var out []wire.RoleDefinition
	for _, b := range authz.BuiltInRoles {
		out = append(out, toWireRole(b))
	}
	custom, err := s.store.ListRoleDefinitions(ctx)
	if err != nil {
		return nil, err
	}
	for _, rd := range custom {
		out = append(out, toWireRole(roleFromStore(rd)))
	}
	return out, nil
}

// GetRoleDefinition reads a built-in or custom role.
func (s *Service) GetRoleDefinition(ctx context.Context, id string) (wire.RoleDefinition, error) {
	role, err := s.Role(ctx, id)
	if err != nil {
		return wire.RoleDefinition{}, notFoundAs(err, "role %q was not found", id)
	}
	return toWireRole(role), nil
}

// PutRoleDefinition creates or replaces custom role id; created says which.
func (s *Service) PutRoleDefinition(ctx context.Context, id string, body wire.RoleDefinition, by string) (wire.RoleDefinition, bool, error) {
	if _, builtin := authz.BuiltInRole(id); builtin {
		return wire.RoleDefinition{}, false, refusal.Invalid("id", "built-in role %q cannot be changed", id)
	}
	if _, builtin := authz.BuiltInRole(body.Name); builtin {
		return wire.RoleDefinition{}, false, refusal.Invalid("name", "name %q is taken by a built-in role", body.Name)
	}
	if body.ID != "" && body.ID != id {
		return wire.RoleDefinition{}, false, refusal.Invalid("id", "body id %q does not match the path id %q", body.ID, id)
	}
	if err := resource.CheckName("role", id); err != nil {
		return wire.RoleDefinition{}, false, refusal.Invalid("id", "%v", err)
	}
	role := authz.Role{ID: id, Name: strings.TrimSpace(body.Name), Description: body.Description, Actions: body.Actions,
		NotActions: body.NotActions, AssignableScopes: body.AssignableScopes}
	if err := authz.ValidateRole(role); err != nil {
		return wire.RoleDefinition{}, false, refusal.Invalid("actions", "%v", err)
	}
	rd := store.RoleDefinition{ID: id, Name: role.Name, Description: role.Description, Actions: role.Actions,
		NotActions: role.NotActions, AssignableScopes: role.AssignableScopes, CreatedAt: s.now(), CreatedBy: by}
	created := false
	_, err := s.store.GetRoleDefinition(ctx, id)
	switch {
	case err == nil:
		err = s.store.UpdateRoleDefinition(ctx, rd)
	case errors.Is(err, store.ErrNotFound):
		created = true
		err = s.store.CreateRoleDefinition(ctx, rd)
	}
	if errors.Is(err, store.ErrConflict) {
		return wire.RoleDefinition{}, false, refusal.Conflict("a role named %q already exists", role.Name)
	}
	if err != nil {
		return wire.RoleDefinition{}, false, err
	}
	return toWireRole(role), created, nil
}

// DeleteRoleDefinition deletes an unassigned custom role.
func (s *Service) DeleteRoleDefinition(ctx context.Context, id string) error {
	if _, builtin := authz.BuiltInRole(id); builtin {
		return refusal.Invalid("id", "built-in role %q cannot be deleted", id)
	}
	switch err := s.store.DeleteRoleDefinition(ctx, id); {
	case errors.Is(err, store.ErrNotEmpty):
		return refusal.Conflict("role %q is still assigned; delete its assignments first", id)
	case err != nil:
		return notFoundAs(err, "role %q was not found", id)
	}
	return nil
}
