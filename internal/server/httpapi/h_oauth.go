package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/admission"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/onboarding"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/wire"
)

// formLimit caps OAuth2 form bodies.
const formLimit = 16 << 10

// oauthError is written in the RFC 6749 §5.2 shape.
type oauthError struct {
	status int
	code   string
	desc   string
	// retryAfter is sent as Retry-After (throttled and busy answers).
	retryAfter time.Duration
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

// toOAuthError maps the refusals of the grants to the OAuth2 error shape;
// any other error is left for the API error path (a 500).
func toOAuthError(err error) (*oauthError, bool) {
	var oe *oauthError
	if errors.As(err, &oe) {
		return oe, true
	}
	re, ok := refusal.As(err)
	if !ok {
		return nil, false
	}
	ae := refusalError(re)
	code := re.Code
	if code == "" {
		code = "invalid_request"
	}
	return &oauthError{status: ae.status, code: code, desc: re.Message, retryAfter: re.RetryAfter}, true
}

func writeOAuth(w http.ResponseWriter, r *http.Request, err error) error {
	oe, ok := toOAuthError(err)
	if !ok {
		return err
	}
	info(r).auditMessage = oe.desc
	if oe.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="corral"`)
	}
	setRetryAfter(w, oe.retryAfter)
	writeJSON(w, oe.status, wire.OAuthError{Error: oe.code, ErrorDescription: oe.desc})
	return nil
}

func invalidRequest(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

// signInAccount is the identity a password or client_credentials grant
// verifies — the user name, or the client id — which the lockout is keyed
// on. A request that names more than that one identity is refused: a
// password grant carries no client credentials, a client_credentials grant
// no user name or password, and client credentials come once (RFC 6749
// §2.3), so a changing extra field cannot open a fresh lockout count.
func signInAccount(r *http.Request, grant string) (account, id, secret string, err error) {
	form := r.PostForm
	basicID, basicSecret, basic := r.BasicAuth()
	if grant == wire.GrantPassword {
		if basic || form.Has("client_id") || form.Has("client_secret") {
			return "", "", "", invalidRequest("a password grant takes username and password only; it must not carry client credentials")
		}
		return "user:" + strings.ToLower(form.Get("username")), form.Get("username"), form.Get("password"), nil
	}
	if form.Has("username") || form.Has("password") {
		return "", "", "", invalidRequest("a client_credentials grant takes the client id and secret only; it must not carry a username or password")
	}
	if basic {
		if form.Has("client_id") || form.Has("client_secret") {
			return "", "", "", invalidRequest("send the client credentials once: in the Authorization header or in the form, not both")
		}
		return "client:" + strings.ToLower(basicID), basicID, basicSecret, nil
	}
	return "client:" + strings.ToLower(form.Get("client_id")), form.Get("client_id"), form.Get("client_secret"), nil
}

func (a *API) postToken(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	if err := parseForm(w, r, formLimit); err != nil {
		return err
	}
	var (
		resp wire.TokenResponse
		p    authn.Principal
		err  error
	)
	switch gt := r.PostForm.Get("grant_type"); gt {
	case wire.GrantClientCredentials, wire.GrantPassword:
		resp, p, err = a.signIn(r, gt)
	case wire.GrantDeviceCode:
		resp, p, err = a.Onboarding.RedeemDeviceCode(r.Context(), r.PostForm.Get("device_code"))
	case "":
		err = invalidRequest("grant_type is required")
	default:
		err = &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type", desc: "grant_type must be client_credentials, password or " + wire.GrantDeviceCode}
	}
	if err != nil {
		return writeOAuth(w, r, err)
	}
	info(r).caller = callerOf(p)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// signIn runs a password or client_credentials grant under the sign-in
// throttles (per account and source address, and per source address across
// accounts) and, for passwords, the hash gate.
func (a *API) signIn(r *http.Request, grant string) (wire.TokenResponse, authn.Principal, error) {
	account, id, secret, err := signInAccount(r, grant)
	if err != nil {
		return wire.TokenResponse{}, authn.Principal{}, err
	}
	src := info(r).sourceIP
	now := a.now()
	if until, locked := a.sourceThrottle.blocked(src, now); locked {
		return wire.TokenResponse{}, authn.Principal{}, &oauthError{http.StatusTooManyRequests, "temporarily_locked",
			"too many failed sign-ins from this address; try again after " + until.UTC().Format(time.RFC3339), until.Sub(now)}
	}
	// Per account and source address: guessing is bounded, and a stranger
	// elsewhere cannot lock a legitimate user out.
	key := account + "@" + src
	if until, locked := a.throttle.blocked(key, now); locked {
		return wire.TokenResponse{}, authn.Principal{}, &oauthError{http.StatusTooManyRequests, "temporarily_locked",
			"too many failed sign-ins for this account; try again after " + until.UTC().Format(time.RFC3339), until.Sub(now)}
	}
	var (
		resp wire.TokenResponse
		p    authn.Principal
	)
	if grant == wire.GrantPassword {
		release, gerr := a.Hashes.Acquire(r.Context(), src)
		if gerr != nil {
			return wire.TokenResponse{}, authn.Principal{}, busy(gerr)
		}
		resp, p, err = a.Identity.PasswordGrant(r.Context(), id, secret)
		release()
	} else {
		resp, p, err = a.Identity.ClientCredentialsGrant(r.Context(), id, secret)
	}
	switch {
	case errors.Is(err, refusal.ErrUnauthenticated):
		a.throttle.fail(key, a.now())
		a.sourceThrottle.fail(src, a.now())
	case err == nil:
		a.throttle.succeed(key)
	}
	return resp, p, err
}

// busy is the answer when the hash gate refused: 503 when every slot is
// taken, 429 when this source address has its share.
func busy(err error) *oauthError {
	if errors.Is(err, admission.ErrKeyBusy) {
		return &oauthError{http.StatusTooManyRequests, "slow_down", "too many sign-ins from this address are in progress; try again in a moment", time.Second}
	}
	return &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", "too many sign-ins are in progress; try again in a moment", time.Second}
}

func (a *API) postDeviceCode(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	if err := parseForm(w, r, formLimit); err != nil {
		return err
	}
	src := info(r).sourceIP
	if ok, retry := a.deviceCodes.Allow(src, a.now()); !ok {
		return writeOAuth(w, r, &oauthError{http.StatusTooManyRequests, "slow_down",
			fmt.Sprintf("too many device-code requests from this address (at most %d a minute)", a.Settings.Limits.DeviceCodesPerSource), retry})
	}
	req := onboarding.DeviceCodeRequest{Subscription: r.PostForm.Get("subscription_id"), ResourceGroup: r.PostForm.Get("resource_group"),
		MachineName: r.PostForm.Get("machine_name"), SourceIP: src, VerificationURI: "https://" + r.Host + "/ui/devicecodes",
		MaxPending: a.Settings.Limits.MaxPendingDeviceCodes}
	resp, err := a.Onboarding.RequestDeviceCode(r.Context(), req)
	if err != nil {
		return err
	}
	setAuditScope(r, resource.ResourceGroup(req.Subscription, req.ResourceGroup).String())
	info(r).auditMessage = "device code " + resp.UserCode + " requested"
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *API) listDeviceCodes(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ds, err := a.Onboarding.PendingDeviceCodes(r.Context())
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
			out.Value = append(out.Value, d)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) approveDeviceCode(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ap, err := a.Onboarding.ApproveDeviceCode(r.Context(), r.PathValue("code"), c.principal(), a.scopeCheck(r, c, authz.ActMachinesOnboard))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ap)
	return nil
}
