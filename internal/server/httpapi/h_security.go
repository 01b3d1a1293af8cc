package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/admission"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/wire"
)

// securityRoutes are the routes of the identity hardening: password
// changes and disabling users.
func (a *API) securityRoutes() []Route {
	return []Route{
		{Method: "PUT", Pattern: wire.PathMyPassword, Action: authz.ActSelfWrite, Auth: AuthBearer, Scope: scopeRoot, ForPasswordChange: true,
			Summary: "Change your own password (the current one proves it is you); every session of yours ends.", Handle: a.changeMyPassword,
			Request: wire.PasswordChange{}, Status: http.StatusNoContent, Errors: []int{http.StatusBadRequest, http.StatusTooManyRequests, http.StatusServiceUnavailable}},
		{Method: "PUT", Pattern: "/api/v1/users/{name}/password", Action: authz.ActUsersWrite, Auth: AuthBearer, Scope: scopeRoot,
			Summary: "Set a user's password, optionally to be changed at the next sign-in; every session of the user ends.", Handle: a.setUserPassword,
			Request: wire.PasswordSet{}, Response: wire.User{}, Errors: []int{http.StatusBadRequest, http.StatusNotFound, http.StatusTooManyRequests, http.StatusServiceUnavailable}},
		{Method: "PATCH", Pattern: "/api/v1/users/{name}", Action: authz.ActUsersWrite, Auth: AuthBearer, Scope: scopeRoot,
			Summary: "Disable or enable a user: a disabled user's sessions, sign-ins and API tokens are refused.", Handle: a.patchUser,
			Request: wire.UserUpdate{}, Response: wire.User{}, Errors: []int{http.StatusBadRequest, http.StatusNotFound}},
	}
}

// hashSlot takes a slot of the password-hash gate for the request's source
// address, or refuses with 503 (every slot busy) or 429 (this address has
// its share), with a Retry-After.
func (a *API) hashSlot(r *http.Request) (func(), error) {
	release, err := a.Hashes.Acquire(r.Context(), info(r).sourceIP)
	switch {
	case err == nil:
		return release, nil
	case errors.Is(err, admission.ErrKeyBusy):
		return nil, &apiError{status: http.StatusTooManyRequests, code: wire.CodeTooManyRequests, retryAfter: time.Second,
			message: "too many password operations from this address are in progress; try again in a moment"}
	case errors.Is(err, admission.ErrBusy):
		return nil, &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable, retryAfter: time.Second, paced: true,
			message: "too many password operations are in progress; try again in a moment"}
	}
	return nil, err
}

func (a *API) changeMyPassword(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.PasswordChange
	err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body)
	if err != nil {
		return err
	}
	setAuditScope(r, resource.User(c.Name).String())
	release, err := a.hashSlot(r)
	if err != nil {
		return err
	}
	defer release()
	if err := a.Identity.ChangeOwnPassword(r.Context(), c.principal(), body.CurrentPassword, body.NewPassword); err != nil {
		return err
	}
	setAuditMessage(r, "password changed; every session of the user ended")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) setUserPassword(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	var body wire.PasswordSet
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	setAuditScope(r, resource.User(r.PathValue("name")).String())
	release, err := a.hashSlot(r)
	if err != nil {
		return err
	}
	defer release()
	u, err := a.Identity.SetPassword(r.Context(), r.PathValue("name"), body.Password, body.MustChangePassword)
	if err != nil {
		return err
	}
	msg := "password set; every session of the user ended"
	if body.MustChangePassword {
		msg += "; it must be changed at the next sign-in"
	}
	setAuditMessage(r, msg)
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (a *API) patchUser(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.UserUpdate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	setAuditScope(r, resource.User(r.PathValue("name")).String())
	if body.Disabled == nil {
		return errValidation("disabled", "give \"disabled\": true or false")
	}
	u, err := a.Identity.SetDisabled(r.Context(), r.PathValue("name"), *body.Disabled, c.ID)
	if err != nil {
		return err
	}
	if u.Disabled {
		setAuditMessage(r, "user disabled; their sessions, sign-ins and API tokens are refused")
	} else {
		setAuditMessage(r, "user enabled")
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// mayMintTokens refuses API token creation to a caller that presented an
// API token (a token must not mint tokens that outlive it) and to a
// principal whose roles grant nothing but onboarding: a leaked onboarding
// secret must not turn into a long-lived credential.
func (a *API) mayMintTokens(r *http.Request, c *Caller) error {
	if c.ViaAPIToken {
		return errForbidden("an API token cannot create API tokens: sign in with a password or client secret to create one")
	}
	if err := a.loadCallerAssignments(r.Context(), c); err != nil {
		return err
	}
	if authz.OnlyOnboarding(c.assignments) {
		return errForbidden("%s %q may only onboard machines and cannot create API tokens", c.Type, c.Name)
	}
	return nil
}
