package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// MinPasswordLength is the shortest password a user may have.
const MinPasswordLength = 12

func (a *API) getMe(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ras, err := a.Store.ListRoleAssignments(r.Context(), store.RoleAssignmentFilter{PrincipalID: c.ID})
	if err != nil {
		return err
	}
	me := wire.Me{ID: c.ID, Name: c.Name, Type: c.Type, Assignments: []wire.RoleAssignment{}}
	for _, ra := range ras {
		me.Assignments = append(me.Assignments, a.toWireAssignment(r, ra))
	}
	writeJSON(w, http.StatusOK, me)
	return nil
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	users, err := a.Store.ListUsers(r.Context())
	if err != nil {
		return err
	}
	out := wire.List[wire.User]{Value: []wire.User{}}
	for _, u := range users {
		out.Value = append(out.Value, wire.User{ID: u.ID, Name: u.Name, CreatedAt: u.CreatedAt, Disabled: u.Disabled})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	var body wire.UserCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := validateName("user", "name", body.Name); err != nil {
		return err
	}
	if len(body.Password) < MinPasswordLength {
		return errValidation("password", "password must have at least %d characters", MinPasswordLength)
	}
	hash, err := authn.HashPassword(body.Password)
	if err != nil {
		return err
	}
	u := store.User{ID: "usr-" + newUUID(), Name: body.Name, PasswordHash: hash, CreatedAt: a.now()}
	if err := a.Store.CreateUser(r.Context(), u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errConflict("user %q already exists", body.Name)
		}
		return err
	}
	setAuditScope(r, resource.User(u.Name).String())
	writeJSON(w, http.StatusCreated, wire.User{ID: u.ID, Name: u.Name, CreatedAt: u.CreatedAt})
	return nil
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, c *Caller) error {
	u, err := a.Store.GetUserByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return notFoundAs(err, "user %q was not found", r.PathValue("name"))
	}
	if u.ID == c.ID {
		return errValidation("name", "you cannot delete your own user")
	}
	setAuditScope(r, resource.User(u.Name).String())
	if err := a.Store.DeleteUser(r.Context(), u.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func toWireSP(sp store.ServicePrincipal) wire.ServicePrincipal {
	return wire.ServicePrincipal{ID: resource.ServicePrincipal(sp.ClientID).String(), ClientID: sp.ClientID, DisplayName: sp.DisplayName,
		CreatedAt: sp.CreatedAt, CreatedBy: sp.CreatedBy, ExpiresAt: sp.ExpiresAt}
}

func (a *API) listServicePrincipals(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sps, err := a.Store.ListServicePrincipals(r.Context())
	if err != nil {
		return err
	}
	out := wire.List[wire.ServicePrincipal]{Value: []wire.ServicePrincipal{}}
	for _, sp := range sps {
		out.Value = append(out.Value, toWireSP(sp))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// parseLifetime reads an optional Go duration between a minute and max.
func parseLifetime(target, v string, def, max time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute || d > max {
		return 0, errValidation(target, "%s must be a duration between 1m and %s (e.g. \"720h\")", target, max)
	}
	return d, nil
}

func (a *API) createServicePrincipal(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.ServicePrincipalCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	body.DisplayName = strings.TrimSpace(body.DisplayName)
	if body.DisplayName == "" || len(body.DisplayName) > 128 {
		return errValidation("displayName", "displayName is required (at most 128 characters)")
	}
	life, err := parseLifetime("expiresIn", body.ExpiresIn, 365*24*time.Hour, 2*365*24*time.Hour)
	if err != nil {
		return err
	}
	secret, err := authn.NewSecret("crl_sps_")
	if err != nil {
		return err
	}
	now := a.now()
	sp := store.ServicePrincipal{ClientID: newUUID(), DisplayName: body.DisplayName, SecretHash: authn.HashSecret(secret),
		ExpiresAt: now.Add(life), CreatedAt: now, CreatedBy: c.Name}
	if err := a.Store.CreateServicePrincipal(r.Context(), sp); err != nil {
		return err
	}
	setAuditScope(r, resource.ServicePrincipal(sp.ClientID).String())
	writeJSON(w, http.StatusCreated, wire.ServicePrincipalCreated{ServicePrincipal: toWireSP(sp), ClientSecret: secret})
	return nil
}

func (a *API) getServicePrincipal(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sp, err := a.Store.GetServicePrincipal(r.Context(), r.PathValue("id"))
	if err != nil {
		return notFoundAs(err, "service principal %q was not found", r.PathValue("id"))
	}
	writeJSON(w, http.StatusOK, toWireSP(sp))
	return nil
}

func (a *API) deleteServicePrincipal(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	id := r.PathValue("id")
	setAuditScope(r, resource.ServicePrincipal(id).String())
	if _, err := a.Store.GetServicePrincipal(r.Context(), id); err != nil {
		return notFoundAs(err, "service principal %q was not found", id)
	}
	if err := a.Store.DeleteServicePrincipal(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func toWireToken(t store.APIToken) wire.APIToken {
	return wire.APIToken{ID: t.ID, Name: t.Name, PrincipalID: t.PrincipalID, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ts, err := a.Store.ListAPITokens(r.Context(), c.ID)
	if err != nil {
		return err
	}
	out := wire.List[wire.APIToken]{Value: []wire.APIToken{}}
	for _, t := range ts {
		out.Value = append(out.Value, toWireToken(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.APITokenCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := validateName("token", "name", body.Name); err != nil {
		return err
	}
	life, err := parseLifetime("expiresIn", body.ExpiresIn, 30*24*time.Hour, 365*24*time.Hour)
	if err != nil {
		return err
	}
	secret, err := authn.NewSecret(apiTokenPrefix)
	if err != nil {
		return err
	}
	now := a.now()
	t := store.APIToken{ID: newUUID(), Name: body.Name, PrincipalID: c.ID, Hash: authn.HashSecret(secret), CreatedAt: now, ExpiresAt: now.Add(life)}
	if err := a.Store.CreateAPIToken(r.Context(), t); err != nil {
		return err
	}
	setAuditScope(r, resource.Token(t.ID).String())
	writeJSON(w, http.StatusCreated, wire.APITokenCreated{APIToken: toWireToken(t), Token: secret})
	return nil
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request, c *Caller) error {
	id := r.PathValue("id")
	setAuditScope(r, resource.Token(id).String())
	ts, err := a.Store.ListAPITokens(r.Context(), c.ID)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if t.ID == id {
			if err := a.Store.DeleteAPIToken(r.Context(), id); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	}
	return errNotFound("token %q was not found among your tokens", id)
}
