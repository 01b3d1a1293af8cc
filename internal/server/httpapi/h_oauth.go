package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
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
	return &oauthError{status: ae.status, code: code, desc: re.Message}, true
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
	writeJSON(w, oe.status, wire.OAuthError{Error: oe.code, ErrorDescription: oe.desc})
	return nil
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
		account := gt + ":" + strings.ToLower(r.PostForm.Get("client_id")+r.PostForm.Get("username"))
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
			resp, p, err = a.Identity.PasswordGrant(r.Context(), r.PostForm.Get("username"), r.PostForm.Get("password"))
		} else {
			id, secret, ok := r.BasicAuth()
			if !ok {
				id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
			}
			resp, p, err = a.Identity.ClientCredentialsGrant(r.Context(), id, secret)
		}
		switch {
		case errors.Is(err, refusal.ErrUnauthenticated):
			a.throttle.fail(account, a.now())
		case err == nil:
			a.throttle.succeed(account)
		}
	case wire.GrantDeviceCode:
		resp, p, err = a.Onboarding.RedeemDeviceCode(r.Context(), r.PostForm.Get("device_code"))
	case "":
		err = &oauthError{http.StatusBadRequest, "invalid_request", "grant_type is required"}
	default:
		err = &oauthError{http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials, password or " + wire.GrantDeviceCode}
	}
	if err != nil {
		return writeOAuth(w, r, err)
	}
	info(r).caller = callerOf(p)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *API) postDeviceCode(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	if err := parseForm(w, r, formLimit); err != nil {
		return err
	}
	req := onboarding.DeviceCodeRequest{Subscription: r.PostForm.Get("subscription_id"), ResourceGroup: r.PostForm.Get("resource_group"),
		MachineName: r.PostForm.Get("machine_name"), SourceIP: info(r).sourceIP, VerificationURI: "https://" + r.Host + "/ui/devicecodes"}
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
