package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/corralhq/corral/internal/server/access"
	"github.com/corralhq/corral/internal/server/relay"
	"github.com/corralhq/corral/internal/wire"
)

// postAgentTunnel serves the agent's side of a tunnel the server asked it
// for: its verdict, then bytes, handed to the user's side by the relay.
func (a *API) postAgentTunnel(w http.ResponseWriter, r *http.Request, c *Caller) error {
	id := r.PathValue("id")
	if !wire.ValidResourceName(id) {
		return errValidation("id", "tunnel id %q is not valid", truncate(id, 80))
	}
	conn, err := relay.Accept(w, r)
	if err != nil {
		return nil // Accept answered
	}
	defer conn.Close()
	if err := a.Relay.ServeAgent(r.Context(), c.Machine.ID, id, conn); err != nil {
		a.Logger.WarnContext(r.Context(), "agent tunnel not served", "machine", c.Machine.ID, "tunnel", id, "err", err)
	}
	return nil
}

// tunnelQuery describes the query of the machine tunnel route.
var tunnelQuery = []QueryParam{
	{Name: "port", Description: "the machine's local port; the machine must allow it in incomingconnections.ports", Type: "integer", Min: 1, Max: 65535},
	{Name: "certificate", Type: "string", Description: "the id of the SSH certificate the session logs in with (from sshCertificate): " +
		"checked to be the caller's, for this machine and still valid; the session's login is then known."},
}

// postMachineTunnel connects the caller's byte stream (HTTP/2, both bodies
// open) to a local port of the machine through its agent's outbound
// connection: `corral ssh-proxy` and `corral ssh` use it. The machine's
// agent decides under its local configuration (incomingconnections.*).
// Each tunnel is an SSH session of the access context: recorded when it
// starts (with the login, when ?certificate= names the certificate it logs
// in with), its bytes refreshed while it runs, and ended from the server
// on request whichever replica relays it. The activity entry, written when
// the session ends, says who, as which account, from where, how long and
// how many bytes went each way.
func (a *API) postMachineTunnel(w http.ResponseWriter, r *http.Request, c *Caller) error {
	port := 22
	if v := r.URL.Query().Get("port"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return errValidation("port", "port must be a number between 1 and 65535")
		}
		port = n
	}
	if r.ProtoMajor < 2 {
		return &apiError{status: http.StatusUpgradeRequired, code: "HTTP2Required",
			message: "a tunnel needs HTTP/2 to the control plane; something on the way speaks only HTTP/1.1"}
	}
	m, err := a.Inventory.Machine(r.Context(), machineRef(r))
	if err != nil {
		return err
	}
	caller := accessCaller(r, c)
	var login string
	certID := r.URL.Query().Get("certificate")
	if certID != "" {
		if login, err = a.Access.SessionLogin(r.Context(), certID, caller, m.ID, m.Name); err != nil {
			return err
		}
	}
	if m.Status != wire.StatusConnected {
		return &apiError{status: http.StatusConflict, code: "MachineNotConnected", message: fmt.Sprintf("machine %q is %s: a tunnel needs its agent connected", m.Name, m.Status)}
	}
	id, tun, err := a.Relay.Open(r.Context(), m.ID, port)
	switch {
	case errors.Is(err, relay.ErrRefused):
		return &apiError{status: http.StatusForbidden, code: "TunnelRefused", message: fmt.Sprintf("machine %q: %v", m.Name, err)}
	case errors.Is(err, relay.ErrNoAnswer):
		return &apiError{status: http.StatusServiceUnavailable, code: "MachineDidNotAnswer", message: err.Error()}
	case err != nil:
		return err
	}
	user, err := relay.Accept(w, r)
	if err != nil {
		tun.Close()
		return nil
	}
	live, err := a.Access.StartSession(r.Context(), access.SessionStart{ID: id, MachineID: m.ID, MachineScope: m.ResourceID().String(),
		MachineName: m.Name, Port: port, Caller: caller, CertificateID: certID, Login: login},
		func() { user.Close(); tun.Close() })
	if err != nil {
		user.Close()
		tun.Close()
		return err
	}
	relay.Splice(user, tun, func(fromUser bool, p []byte) { live.Count(fromUser, len(p)) })
	x := live.Finish(context.WithoutCancel(r.Context()))
	setAuditMessage(r, access.SessionSummary(x))
	return nil
}
