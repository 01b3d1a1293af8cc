package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

const apiTokenPrefix = "crl_pat_"

// authenticateBearer resolves the Authorization header to a principal that
// still exists. Every failure is a 401 with a message that does not say
// which part of the credential was wrong beyond what helps an honest caller.
func (a *API) authenticateBearer(r *http.Request) (*Caller, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errUnauthenticated("authentication required: send Authorization: Bearer <token>")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, errUnauthenticated("the Authorization header must be \"Bearer <token>\"")
	}
	if authn.LooksLikeJWT(tok) {
		return a.callerFromJWT(r.Context(), tok)
	}
	if strings.HasPrefix(tok, apiTokenPrefix) {
		return a.callerFromAPIToken(r.Context(), tok)
	}
	return nil, errUnauthenticated("the bearer token is not valid")
}

func (a *API) callerFromJWT(ctx context.Context, tok string) (*Caller, error) {
	claims, err := a.Tokens.Verify(tok, a.now())
	if errors.Is(err, authn.ErrTokenExpired) {
		return nil, &apiError{status: http.StatusUnauthorized, code: wire.CodeExpiredToken, message: "the access token has expired; request a new one"}
	}
	if err != nil {
		return nil, errUnauthenticated("the bearer token is not valid")
	}
	c, err := a.principal(ctx, claims.Subject, claims.PrincipalType)
	if err != nil {
		return nil, err
	}
	c.Restriction = claims.Restriction
	return c, nil
}

func (a *API) callerFromAPIToken(ctx context.Context, tok string) (*Caller, error) {
	t, err := a.Store.GetAPITokenByHash(ctx, authn.HashSecret(tok))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnauthenticated("the bearer token is not valid")
	}
	if err != nil {
		return nil, err
	}
	if !a.now().Before(t.ExpiresAt) {
		return nil, &apiError{status: http.StatusUnauthorized, code: wire.CodeExpiredToken, message: "the API token has expired"}
	}
	typ := wire.PrincipalUser
	if !strings.HasPrefix(t.PrincipalID, "usr-") {
		typ = wire.PrincipalServicePrincipal
	}
	return a.principal(ctx, t.PrincipalID, typ)
}

// principal loads a user or service principal and checks it may still sign in.
func (a *API) principal(ctx context.Context, id, typ string) (*Caller, error) {
	switch typ {
	case wire.PrincipalUser:
		u, err := a.Store.GetUser(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errUnauthenticated("the principal of this token no longer exists")
		}
		if err != nil {
			return nil, err
		}
		if u.Disabled {
			return nil, errUnauthenticated("the user is disabled")
		}
		return &Caller{ID: u.ID, Name: u.Name, Type: wire.PrincipalUser}, nil
	case wire.PrincipalServicePrincipal:
		sp, err := a.Store.GetServicePrincipal(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errUnauthenticated("the principal of this token no longer exists")
		}
		if err != nil {
			return nil, err
		}
		return &Caller{ID: sp.ClientID, Name: sp.DisplayName, Type: wire.PrincipalServicePrincipal}, nil
	}
	return nil, errUnauthenticated("the bearer token is not valid")
}

// authenticateMachine verifies the TLS client certificate: it must chain to
// the server CA, have a positive serial, be the machine's current
// certificate, and the machine must not be Expired.
func (a *API) authenticateMachine(r *http.Request) (*Caller, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, &apiError{status: http.StatusUnauthorized, code: wire.CodeInvalidCertificate, message: "this endpoint requires the machine's client certificate"}
	}
	machineID, serial, err := a.CA.VerifyMachineCert(r.TLS.PeerCertificates, a.now())
	if err != nil {
		a.Metrics.certRejections.Inc()
		return nil, &apiError{status: http.StatusUnauthorized, code: wire.CodeInvalidCertificate, message: "the client certificate is not valid: " + err.Error()}
	}
	m, err := a.Store.GetMachineByID(r.Context(), machineID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &apiError{status: http.StatusUnauthorized, code: wire.CodeInvalidCertificate, message: "the machine of this certificate no longer exists; onboard it again"}
	}
	if err != nil {
		return nil, err
	}
	if m.CertSerial != serial.String() {
		a.Metrics.certRejections.Inc()
		return nil, &apiError{status: http.StatusUnauthorized, code: wire.CodeInvalidCertificate, message: "the client certificate has been superseded"}
	}
	c := &Caller{ID: m.ID, Name: m.Name, Type: wire.PrincipalMachine, Machine: &m}
	if m.Status == wire.StatusExpired {
		info(r).caller = c
		return nil, &apiError{status: http.StatusForbidden, code: wire.CodeMachineExpired, message: "the machine identity expired after a long time without contact; onboard it again"}
	}
	return c, nil
}

func encodeSkipToken(after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(after))
}

func decodeSkipToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	return string(b), err
}
