package httpapi

import (
	"net/http"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/wire"
)

func (a *API) listRoleDefinitions(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	rs, err := a.Roles.ListRoleDefinitions(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.RoleDefinition]{Value: rs})
	return nil
}

func (a *API) getRoleDefinition(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	rd, err := a.Roles.GetRoleDefinition(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rd)
	return nil
}

func (a *API) putRoleDefinition(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.RoleDefinition
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	id := r.PathValue("id")
	setAuditScope(r, resource.RoleDefinition(id).String())
	rd, created, err := a.Roles.PutRoleDefinition(r.Context(), id, body, c.Name)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, rd)
	return nil
}

func (a *API) deleteRoleDefinition(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	id := r.PathValue("id")
	setAuditScope(r, resource.RoleDefinition(id).String())
	if err := a.Roles.DeleteRoleDefinition(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listRoleAssignments(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	ras, err := a.Roles.ListRoleAssignments(r.Context(), scopeQuery(r), r.URL.Query().Get("principal"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.RoleAssignment]{Value: ras})
	return nil
}

// scopeCheck authorizes c for action at a scope a service finds while it
// works, and records that scope in the activity log.
func (a *API) scopeCheck(r *http.Request, c *Caller, action string) authz.ScopeCheck {
	return func(scope resource.ID) error {
		setAuditScope(r, scope.String())
		return a.authorize(r.Context(), c, action, scope.String())
	}
}

func (a *API) createRoleAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.RoleAssignmentCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	ra, err := a.Roles.CreateRoleAssignment(r.Context(), body, c.Name, a.scopeCheck(r, c, authz.ActRoleAssignmentsWrite))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, ra)
	return nil
}

func (a *API) getRoleAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ra, err := a.Roles.GetRoleAssignment(r.Context(), r.PathValue("id"), a.scopeCheck(r, c, authz.ActRoleAssignmentsRead))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ra)
	return nil
}

func (a *API) deleteRoleAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.Roles.DeleteRoleAssignment(r.Context(), r.PathValue("id"), a.scopeCheck(r, c, authz.ActRoleAssignmentsDelete)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
