package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func toWireRole(r authz.Role) wire.RoleDefinition {
	return wire.RoleDefinition{ID: r.ID, Name: r.Name, Description: r.Description, BuiltIn: r.BuiltIn,
		Actions: r.Actions, NotActions: r.NotActions, AssignableScopes: r.AssignableScopes}
}

func roleFromStore(rd store.RoleDefinition) authz.Role {
	return authz.Role{ID: rd.ID, Name: rd.Name, Description: rd.Description, Actions: rd.Actions,
		NotActions: rd.NotActions, AssignableScopes: rd.AssignableScopes}
}

func (a *API) listRoleDefinitions(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	out := wire.List[wire.RoleDefinition]{}
	for _, b := range authz.BuiltInRoles {
		out.Value = append(out.Value, toWireRole(b))
	}
	custom, err := a.Store.ListRoleDefinitions(r.Context())
	if err != nil {
		return err
	}
	for _, rd := range custom {
		out.Value = append(out.Value, toWireRole(roleFromStore(rd)))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getRoleDefinition(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	role, err := a.role(r.Context(), r.PathValue("id"))
	if err != nil {
		return notFoundAs(err, "role %q was not found", r.PathValue("id"))
	}
	writeJSON(w, http.StatusOK, toWireRole(role))
	return nil
}

func (a *API) putRoleDefinition(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.RoleDefinition
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	id := r.PathValue("id")
	setAuditScope(r, resource.RoleDefinition(id).String())
	if _, builtin := authz.BuiltInRole(id); builtin {
		return errValidation("id", "built-in role %q cannot be changed", id)
	}
	if _, builtin := authz.BuiltInRole(body.Name); builtin {
		return errValidation("name", "name %q is taken by a built-in role", body.Name)
	}
	if body.ID != "" && body.ID != id {
		return errValidation("id", "body id %q does not match the path id %q", body.ID, id)
	}
	if err := validateName("role", "id", id); err != nil {
		return err
	}
	role := authz.Role{ID: id, Name: strings.TrimSpace(body.Name), Description: body.Description, Actions: body.Actions,
		NotActions: body.NotActions, AssignableScopes: body.AssignableScopes}
	if err := authz.ValidateRole(role); err != nil {
		return errValidation("actions", "%s", err.Error())
	}
	rd := store.RoleDefinition{ID: id, Name: role.Name, Description: role.Description, Actions: role.Actions,
		NotActions: role.NotActions, AssignableScopes: role.AssignableScopes, CreatedAt: a.now(), CreatedBy: c.Name}
	status := http.StatusCreated
	_, err := a.Store.GetRoleDefinition(r.Context(), id)
	switch {
	case err == nil:
		status = http.StatusOK
		err = a.Store.UpdateRoleDefinition(r.Context(), rd)
	case errors.Is(err, store.ErrNotFound):
		err = a.Store.CreateRoleDefinition(r.Context(), rd)
	}
	if errors.Is(err, store.ErrConflict) {
		return errConflict("a role named %q already exists", role.Name)
	}
	if err != nil {
		return err
	}
	writeJSON(w, status, toWireRole(role))
	return nil
}

func (a *API) deleteRoleDefinition(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	id := r.PathValue("id")
	setAuditScope(r, resource.RoleDefinition(id).String())
	if _, builtin := authz.BuiltInRole(id); builtin {
		return errValidation("id", "built-in role %q cannot be deleted", id)
	}
	switch err := a.Store.DeleteRoleDefinition(r.Context(), id); {
	case errors.Is(err, store.ErrNotEmpty):
		return errConflict("role %q is still assigned; delete its assignments first", id)
	case err != nil:
		return notFoundAs(err, "role %q was not found", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) toWireAssignment(r *http.Request, ra store.RoleAssignment) wire.RoleAssignment {
	out := wire.RoleAssignment{ID: ra.ID, PrincipalID: ra.PrincipalID, PrincipalType: ra.PrincipalType, RoleID: ra.RoleID,
		Scope: ra.Scope, CreatedAt: ra.CreatedAt, CreatedBy: ra.CreatedBy}
	if role, err := a.role(r.Context(), ra.RoleID); err == nil {
		out.RoleName = role.Name
	}
	return out
}

func (a *API) listRoleAssignments(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	scope := scopeQuery(r)
	if err := authz.ValidateScope(scope); err != nil {
		return errValidation("scope", "%s", err.Error())
	}
	f := store.RoleAssignmentFilter{}
	if p := r.URL.Query().Get("principal"); p != "" {
		id, _, err := a.resolvePrincipal(r, p)
		if err != nil {
			return err
		}
		f.PrincipalID = id
	}
	ras, err := a.Store.ListRoleAssignments(r.Context(), f)
	if err != nil {
		return err
	}
	// At, above (inherited) and below the scope: who has access here.
	out := wire.List[wire.RoleAssignment]{Value: []wire.RoleAssignment{}}
	for _, ra := range ras {
		if authz.ScopeCovers(ra.Scope, scope) || authz.ScopeCovers(scope, ra.Scope) {
			out.Value = append(out.Value, a.toWireAssignment(r, ra))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// resolvePrincipal finds a principal by id, user name or client id.
func (a *API) resolvePrincipal(r *http.Request, p string) (id, typ string, err error) {
	ctx := r.Context()
	if strings.HasPrefix(p, "usr-") {
		if u, err := a.Store.GetUser(ctx, p); err == nil {
			return u.ID, wire.PrincipalUser, nil
		}
	}
	if sp, err := a.Store.GetServicePrincipal(ctx, p); err == nil {
		return sp.ClientID, wire.PrincipalServicePrincipal, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", "", err
	}
	u, err := a.Store.GetUserByName(ctx, p)
	if err == nil {
		return u.ID, wire.PrincipalUser, nil
	}
	return "", "", notFoundAs(err, "principal %q was not found (give a user name, user id or service principal client id)", p)
}

func (a *API) createRoleAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.RoleAssignmentCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := authz.ValidateScope(body.Scope); err != nil {
		return errValidation("scope", "%s", err.Error())
	}
	setAuditScope(r, body.Scope)
	if err := a.authorize(r.Context(), c, authz.ActRoleAssignmentsWrite, body.Scope); err != nil {
		return err
	}
	role, err := a.role(r.Context(), body.Role)
	if errors.Is(err, store.ErrNotFound) {
		role, err = a.roleByName(r, body.Role)
	}
	if err != nil {
		return notFoundAs(err, "role %q was not found", body.Role)
	}
	if len(role.AssignableScopes) > 0 && !coveredByAny(role.AssignableScopes, body.Scope) {
		return errValidation("scope", "role %q cannot be assigned at %q (assignable scopes: %s)", role.Name, body.Scope, strings.Join(role.AssignableScopes, ", "))
	}
	pid, ptype, err := a.resolvePrincipal(r, body.Principal)
	if err != nil {
		return err
	}
	ra := store.RoleAssignment{ID: newUUID(), PrincipalID: pid, PrincipalType: ptype, RoleID: role.ID, Scope: body.Scope,
		CreatedAt: a.now(), CreatedBy: c.Name}
	if err := a.Store.CreateRoleAssignment(r.Context(), ra); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errConflict("%s already has role %q at %q", body.Principal, role.Name, body.Scope)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, a.toWireAssignment(r, ra))
	return nil
}

func (a *API) roleByName(r *http.Request, name string) (authz.Role, error) {
	custom, err := a.Store.ListRoleDefinitions(r.Context())
	if err != nil {
		return authz.Role{}, err
	}
	for _, rd := range custom {
		if strings.EqualFold(rd.Name, name) {
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

func (a *API) assignmentChecked(r *http.Request, c *Caller, action string) (store.RoleAssignment, error) {
	ra, err := a.Store.GetRoleAssignment(r.Context(), r.PathValue("id"))
	if err != nil {
		return ra, notFoundAs(err, "role assignment %q was not found", r.PathValue("id"))
	}
	setAuditScope(r, ra.Scope)
	return ra, a.authorize(r.Context(), c, action, ra.Scope)
}

func (a *API) getRoleAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ra, err := a.assignmentChecked(r, c, authz.ActRoleAssignmentsRead)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.toWireAssignment(r, ra))
	return nil
}

func (a *API) deleteRoleAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ra, err := a.assignmentChecked(r, c, authz.ActRoleAssignmentsDelete)
	if err != nil {
		return err
	}
	if err := a.Store.DeleteRoleAssignment(r.Context(), ra.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
