package httpapi

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// formLimit caps OAuth2 form bodies.
const formLimit = 16 << 10

// oauthError is written in the RFC 6749 §5.2 shape.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func writeOAuth(w http.ResponseWriter, r *http.Request, err error) error {
	var oe *oauthError
	if !errors.As(err, &oe) {
		return err
	}
	info(r).auditMessage = oe.desc
	if oe.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="corral"`)
	}
	writeJSON(w, oe.status, wire.OAuthError{Error: oe.code, ErrorDescription: oe.desc})
	return nil
}

func (a *API) postToken(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	if err := parseForm(w, r, formLimit); err != nil {
		return err
	}
	var (
		resp wire.TokenResponse
		err  error
	)
	account := ""
	switch gt := r.PostForm.Get("grant_type"); gt {
	case wire.GrantClientCredentials, wire.GrantPassword:
		account = gt + ":" + strings.ToLower(r.PostForm.Get("client_id")+r.PostForm.Get("username"))
		if id, _, ok := r.BasicAuth(); ok {
			account = gt + ":" + strings.ToLower(id)
		}
		// Per account and source address: guessing is bounded, and a stranger
		// elsewhere cannot lock a legitimate user out.
		account += "@" + info(r).sourceIP
		if until, locked := a.throttle.blocked(account, a.now()); locked {
			err = &oauthError{http.StatusTooManyRequests, "temporarily_locked",
				"too many failed sign-ins for this account; try again after " + until.UTC().Format(time.RFC3339)}
			break
		}
		if gt == wire.GrantPassword {
			resp, err = a.grantPassword(r)
		} else {
			resp, err = a.grantClientCredentials(r)
		}
		var oe *oauthError
		switch {
		case errors.As(err, &oe) && oe.status == http.StatusUnauthorized:
			a.throttle.fail(account, a.now())
		case err == nil:
			a.throttle.succeed(account)
		}
	case wire.GrantDeviceCode:
		resp, err = a.grantDeviceCode(r)
	case "":
		err = &oauthError{http.StatusBadRequest, "invalid_request", "grant_type is required"}
	default:
		err = &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials, password or " + wire.GrantDeviceCode}
	}
	if err != nil {
		return writeOAuth(w, r, err)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *API) issue(r *http.Request, c *Caller, ttl time.Duration, restriction string) (wire.TokenResponse, error) {
	now := a.now()
	tok, err := a.Tokens.Issue(authn.Claims{Subject: c.ID, PrincipalType: c.Type, Name: c.Name, Restriction: restriction,
		ID: newUUID(), IssuedAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		return wire.TokenResponse{}, err
	}
	info(r).caller = c
	return wire.TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(ttl.Seconds())}, nil
}

func (a *API) grantClientCredentials(r *http.Request) (wire.TokenResponse, error) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	bad := &oauthError{http.StatusUnauthorized, wire.CodeInvalidClient, "client authentication failed: unknown client or wrong secret"}
	if id == "" || secret == "" {
		return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_request", "client_id and client_secret are required"}
	}
	sp, err := a.Store.GetServicePrincipal(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return wire.TokenResponse{}, bad
	}
	if err != nil {
		return wire.TokenResponse{}, err
	}
	if subtle.ConstantTimeCompare([]byte(authn.HashSecret(secret)), []byte(sp.SecretHash)) != 1 {
		return wire.TokenResponse{}, bad
	}
	now := a.now()
	if !now.Before(sp.ExpiresAt) {
		return wire.TokenResponse{}, &oauthError{http.StatusUnauthorized, wire.CodeInvalidClient, "the client secret has expired; create a new service principal secret"}
	}
	ttl := min(a.Settings.ServiceTokenTTL, sp.ExpiresAt.Sub(now))
	return a.issue(r, &Caller{ID: sp.ClientID, Name: sp.DisplayName, Type: wire.PrincipalServicePrincipal}, ttl, "")
}

// dummyHash is verified when the user does not exist, so that a missing user
// and a wrong password take the same time.
var dummyHash, _ = authn.HashPassword("corral-timing-equalizer")

func (a *API) grantPassword(r *http.Request) (wire.TokenResponse, error) {
	name, pw := r.PostForm.Get("username"), r.PostForm.Get("password")
	if name == "" || pw == "" {
		return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_request", "username and password are required"}
	}
	bad := &oauthError{http.StatusUnauthorized, wire.CodeInvalidGrant, "wrong user name or password"}
	u, err := a.Store.GetUserByName(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		_, _ = authn.VerifyPassword(dummyHash, pw)
		return wire.TokenResponse{}, bad
	}
	if err != nil {
		return wire.TokenResponse{}, err
	}
	ok, err := authn.VerifyPassword(u.PasswordHash, pw)
	if err != nil {
		return wire.TokenResponse{}, err
	}
	if !ok || u.Disabled {
		return wire.TokenResponse{}, bad
	}
	return a.issue(r, &Caller{ID: u.ID, Name: u.Name, Type: wire.PrincipalUser}, a.Settings.UserTokenTTL, "")
}

// grantDeviceCode turns an approved device code into a token that acts as the
// approver but is restricted to onboarding into the code's resource group.
func (a *API) grantDeviceCode(r *http.Request) (wire.TokenResponse, error) {
	code := r.PostForm.Get("device_code")
	if code == "" {
		return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, "invalid_request", "device_code is required"}
	}
	d, err := a.Store.GetDeviceCodeByHash(r.Context(), authn.HashSecret(code))
	if errors.Is(err, store.ErrNotFound) {
		return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, wire.CodeInvalidGrant, "unknown device code"}
	}
	if err != nil {
		return wire.TokenResponse{}, err
	}
	switch {
	case d.Consumed:
		return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, wire.CodeInvalidGrant, "the device code was already used"}
	case !a.now().Before(d.ExpiresAt):
		return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, wire.CodeExpiredToken, "the device code expired before it was approved"}
	case d.ApprovedBy == "":
		return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, wire.CodeAuthorizationPending, "waiting for an operator to approve the code"}
	}
	if err := a.Store.ConsumeDeviceCode(r.Context(), d.DeviceCodeHash); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, wire.CodeInvalidGrant, "the device code was already used"}
		}
		return wire.TokenResponse{}, err
	}
	approver, err := a.principal(r.Context(), d.ApprovedBy, principalTypeOf(d.ApprovedBy))
	if err != nil {
		return wire.TokenResponse{}, &oauthError{http.StatusBadRequest, wire.CodeInvalidGrant, "the approver no longer exists"}
	}
	return a.issue(r, approver, 10*time.Minute, "onboard:"+resource.ResourceGroup(d.Subscription, d.ResourceGroup).String())
}

func principalTypeOf(id string) string {
	if strings.HasPrefix(id, "usr-") {
		return wire.PrincipalUser
	}
	return wire.PrincipalServicePrincipal
}

func (a *API) postDeviceCode(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	if err := parseForm(w, r, formLimit); err != nil {
		return err
	}
	sub, rg, name := r.PostForm.Get("subscription_id"), r.PostForm.Get("resource_group"), r.PostForm.Get("machine_name")
	for _, v := range []struct{ kind, target, val string }{{"subscription", "subscription_id", sub}, {"resource group", "resource_group", rg}} {
		if err := validateName(v.kind, v.target, v.val); err != nil {
			return err
		}
	}
	if name != "" {
		if err := validateName("machine", "machine_name", name); err != nil {
			return err
		}
	}
	setAuditScope(r, resource.ResourceGroup(sub, rg).String())
	deviceCode, err := authn.NewSecret("crl_dc_")
	if err != nil {
		return err
	}
	userCode, err := authn.NewUserCode()
	if err != nil {
		return err
	}
	now := a.now()
	d := store.DeviceCode{UserCode: userCode, DeviceCodeHash: authn.HashSecret(deviceCode), Subscription: sub, ResourceGroup: rg,
		MachineName: name, SourceIP: info(r).sourceIP, ExpiresAt: now.Add(a.Settings.DeviceCodeTTL), CreatedAt: now}
	if err := a.Store.CreateDeviceCode(r.Context(), d); err != nil {
		return err
	}
	info(r).auditMessage = "device code " + userCode + " requested"
	writeJSON(w, http.StatusOK, wire.DeviceCodeResponse{DeviceCode: deviceCode, UserCode: userCode,
		VerificationURI: "https://" + r.Host + "/ui/devicecodes", ExpiresIn: int(a.Settings.DeviceCodeTTL.Seconds()), Interval: 2})
	return nil
}

func (a *API) listDeviceCodes(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ds, err := a.Store.ListPendingDeviceCodes(r.Context(), a.now())
	if err != nil {
		return err
	}
	out := wire.List[wire.PendingDeviceCode]{Value: []wire.PendingDeviceCode{}}
	for _, d := range ds {
		ok, err := a.allowed(r.Context(), c, authz.ActMachinesOnboard, resource.ResourceGroup(d.Subscription, d.ResourceGroup).String())
		if err != nil {
			return err
		}
		if ok {
			out.Value = append(out.Value, wire.PendingDeviceCode{UserCode: d.UserCode, Subscription: d.Subscription,
				ResourceGroup: d.ResourceGroup, MachineName: d.MachineName, SourceIP: d.SourceIP, ExpiresAt: d.ExpiresAt})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) approveDeviceCode(w http.ResponseWriter, r *http.Request, c *Caller) error {
	code := strings.ToUpper(strings.TrimSpace(r.PathValue("code")))
	if len(code) == 8 && !strings.Contains(code, "-") {
		code = code[:4] + "-" + code[4:]
	}
	d, err := a.Store.GetDeviceCodeByUserCode(r.Context(), code)
	if err != nil {
		return notFoundAs(err, "device code %q was not found", code)
	}
	scope := resource.ResourceGroup(d.Subscription, d.ResourceGroup).String()
	setAuditScope(r, scope)
	if err := a.authorize(r.Context(), c, authz.ActMachinesOnboard, scope); err != nil {
		return err
	}
	if d.ApprovedBy != "" || !a.now().Before(d.ExpiresAt) {
		return errConflict("device code %q was already approved or has expired", code)
	}
	if err := a.Store.ApproveDeviceCode(r.Context(), code, c.ID, a.now()); err != nil {
		return notFoundAs(err, "device code %q is no longer pending", code)
	}
	writeJSON(w, http.StatusOK, wire.DeviceCodeApproval{UserCode: code, Subscription: d.Subscription, ResourceGroup: d.ResourceGroup,
		MachineName: d.MachineName, ApprovedBy: c.Name})
	return nil
}
