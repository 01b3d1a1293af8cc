package httpapi

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// callerOf is the caller a credential proved.
func callerOf(p authn.Principal) *Caller {
	return &Caller{ID: p.ID, Name: p.Name, Type: p.Type, Restriction: p.Restriction, ViaAPIToken: p.ViaAPIToken}
}

// principal is c as the contexts know it.
func (c *Caller) principal() authn.Principal {
	return authn.Principal{ID: c.ID, Name: c.Name, Type: c.Type, Restriction: c.Restriction, ViaAPIToken: c.ViaAPIToken}
}

// authenticateBearer resolves the Authorization header to a principal that
// still exists (identity.Authenticate). Every failure is a 401 with a
// message that does not say which part of the credential was wrong beyond
// what helps an honest caller.
func (a *API) authenticateBearer(r *http.Request) (*Caller, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errUnauthenticated("authentication required: send Authorization: Bearer <token>")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, errUnauthenticated("the Authorization header must be \"Bearer <token>\"")
	}
	p, err := a.Identity.Authenticate(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	return callerOf(p), nil
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
	// Without the inventory: no agent request reads it, and copying it was
	// a fifth of what an agent request allocated.
	m, err := a.Inventory.MachineForAgent(r.Context(), machineID)
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
