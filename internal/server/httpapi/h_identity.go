package httpapi

import (
	"net/http"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/identity"
	"github.com/corralhq/corral/internal/wire"
)

func (a *API) getMe(w http.ResponseWriter, r *http.Request, c *Caller) error {
	as, err := a.Roles.PrincipalAssignments(r.Context(), c.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.Me{ID: c.ID, Name: c.Name, Type: c.Type, Assignments: as,
		PasswordChangeRequired: c.Restriction == identity.RestrictPasswordChange})
	return nil
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	us, err := a.Identity.ListUsers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.User]{Value: us})
	return nil
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	var body wire.UserCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	release, err := a.hashSlot(r)
	if err != nil {
		return err
	}
	defer release()
	u, err := a.Identity.CreateUser(r.Context(), body.Name, body.Password, body.MustChangePassword)
	if err != nil {
		return err
	}
	setAuditScope(r, resource.User(u.Name).String())
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, c *Caller) error {
	u, err := a.Identity.DeleteUser(r.Context(), r.PathValue("name"), c.ID)
	if err != nil {
		return err
	}
	setAuditScope(r, resource.User(u.Name).String())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listServicePrincipals(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sps, err := a.Identity.ListServicePrincipals(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.ServicePrincipal]{Value: sps})
	return nil
}

func (a *API) createServicePrincipal(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.ServicePrincipalCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	sp, err := a.Identity.CreateServicePrincipal(r.Context(), body, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, sp.ID)
	writeJSON(w, http.StatusCreated, sp)
	return nil
}

func (a *API) getServicePrincipal(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sp, err := a.Identity.GetServicePrincipal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sp)
	return nil
}

func (a *API) deleteServicePrincipal(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	id := r.PathValue("id")
	setAuditScope(r, resource.ServicePrincipal(id).String())
	if err := a.Identity.DeleteServicePrincipal(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ts, err := a.Identity.ListTokens(r.Context(), c.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.APIToken]{Value: ts})
	return nil
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.APITokenCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := a.mayMintTokens(r, c); err != nil {
		return err
	}
	t, err := a.Identity.CreateToken(r.Context(), c.principal(), body)
	if err != nil {
		return err
	}
	setAuditScope(r, resource.Token(t.ID).String())
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request, c *Caller) error {
	id := r.PathValue("id")
	setAuditScope(r, resource.Token(id).String())
	if err := a.Identity.DeleteToken(r.Context(), c.ID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
