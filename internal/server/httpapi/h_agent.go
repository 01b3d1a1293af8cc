package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/onboarding"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// agentBodyLimit caps agent request bodies (reports carry inventory).
const agentBodyLimit = 4 << 20

func (a *API) postConnect(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req wire.ConnectRequest
	if err := decodeJSON(w, r, agentBodyLimit, &req); err != nil {
		return err
	}
	resp, err := a.Onboarding.Connect(r.Context(), req, c.principal(), func(scope resource.ID) error {
		setAuditScope(r, scope.Child(resource.Machines, req.Name).String())
		if !onboarding.RestrictionAllows(c.Restriction, scope) {
			return errForbidden("this device-code token was approved for %s, not for %s", onboarding.RestrictedScope(c.Restriction), scope)
		}
		return a.authorize(r.Context(), c, authz.ActMachinesOnboard, scope.String())
	})
	if err != nil {
		return err
	}
	a.Metrics.onboarded.Inc()
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

func (a *API) getDesired(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ds, err := a.Capabilities.DesiredState(r.Context(), *c.Machine)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ds)
	return nil
}

func (a *API) postReports(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var batch wire.ReportBatch
	// A NUL is left to each report's handler (run output may hold one and
	// is cleaned; properties refuse it): one bad report never refuses its
	// batch.
	if err := decodeJSONBody(w, r, agentBodyLimit, &batch, false); err != nil {
		return err
	}
	ack, err := a.Capabilities.ApplyReports(r.Context(), *c.Machine, batch.Reports, a.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ack)
	return nil
}

func (a *API) postRenew(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req wire.RenewRequest
	if err := decodeJSON(w, r, agentBodyLimit, &req); err != nil {
		return err
	}
	resp, err := a.Onboarding.Renew(r.Context(), c.ID, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *API) deleteSelf(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.Inventory.Disconnect(r.Context(), c.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getStream upgrades to the WebSocket push channel. The handler owns the
// connection: a reader loop takes heartbeats and pongs; the writer sends
// what the hub queues. Either side failing ends both.
func (a *API) getStream(w http.ResponseWriter, r *http.Request, c *Caller) error {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{})
	if err != nil {
		return nil // Accept already wrote the HTTP error
	}
	conn.SetReadLimit(64 << 10)
	defer conn.CloseNow()
	ctx := r.Context()

	helloCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	var hello wire.StreamMessage
	err = wsjson.Read(helloCtx, conn, &hello)
	cancel()
	if err != nil || hello.Type != wire.MsgHello {
		conn.Close(websocket.StatusPolicyViolation, "first message must be hello")
		return nil
	}
	if hello.ProtocolVersion < 1 || hello.ProtocolVersion > wire.ProtocolVersion {
		conn.Close(websocket.StatusPolicyViolation, "unsupported protocol version")
		return nil
	}
	m := c.Machine
	a.Heartbeats.Add(store.Heartbeat{MachineID: m.ID, At: a.now(), AgentVersion: wire.CleanReported(hello.AgentVersion, 64)})
	stream := a.Hub.Register(m.ID)
	defer a.Hub.Unregister(stream)
	welcome := wire.StreamMessage{Type: wire.MsgWelcome, ProtocolVersion: wire.ProtocolVersion, Generation: m.Generation,
		HeartbeatInterval: wire.Duration(a.Settings.HeartbeatInterval), SentAt: a.now()}
	if err := writeMsg(ctx, conn, welcome); err != nil {
		return nil
	}

	readErr := make(chan error, 1)
	// The reader must not watch ctx: the library closes the connection
	// abruptly when a read's context ends, which would race the "going
	// away" close below at shutdown. It ends when the connection closes
	// (CloseNow is deferred above).
	go func() { readErr <- a.readStream(context.WithoutCancel(ctx), conn, m.ID, hello.AgentVersion) }()
	for {
		select {
		case <-ctx.Done():
			conn.Close(websocket.StatusGoingAway, "server shutting down")
			return nil
		case <-readErr:
			return nil
		case <-stream.Closed:
			conn.Close(websocket.StatusNormalClosure, "stream replaced")
			return nil
		case msg := <-stream.Out:
			msg.SentAt = a.now()
			if err := writeMsg(ctx, conn, msg); err != nil {
				return nil
			}
			if msg.Type == wire.MsgGoodbye {
				conn.Close(websocket.StatusNormalClosure, "goodbye")
				return nil
			}
		}
	}
}

func writeMsg(ctx context.Context, conn *websocket.Conn, msg wire.StreamMessage) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return wsjson.Write(ctx, conn, msg)
}

func (a *API) readStream(ctx context.Context, conn *websocket.Conn, machineID, agentVersion string) error {
	for {
		var msg wire.StreamMessage
		if err := wsjson.Read(ctx, conn, &msg); err != nil {
			return err
		}
		switch msg.Type {
		case wire.MsgHeartbeat:
			v := agentVersion
			if msg.AgentVersion != "" {
				v = msg.AgentVersion
			}
			a.Heartbeats.Add(store.Heartbeat{MachineID: machineID, At: a.now(), AgentVersion: wire.CleanReported(v, 64)})
			a.Metrics.heartbeats.Inc()
		case wire.MsgPong:
			// Latency probes are measured by the sender of the ping.
		}
	}
}
