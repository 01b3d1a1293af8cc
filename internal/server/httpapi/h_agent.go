package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
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
	if req.ProtocolVersion < 1 || req.ProtocolVersion > wire.ProtocolVersion {
		return errBadRequest(wire.CodeUnsupportedProtocol, "protocolVersion", "protocol version %d is not supported by this server (it speaks 1..%d)", req.ProtocolVersion, wire.ProtocolVersion)
	}
	for _, v := range []struct{ kind, target, val string }{
		{"subscription", "subscriptionId", req.SubscriptionID}, {"resource group", "resourceGroup", req.ResourceGroup}, {"machine", "name", req.Name},
	} {
		if err := validateName(v.kind, v.target, v.val); err != nil {
			return err
		}
	}
	if err := validateTags(req.Tags); err != nil {
		return err
	}
	scope := resource.ResourceGroup(req.SubscriptionID, req.ResourceGroup).String()
	setAuditScope(r, resource.Machine(req.SubscriptionID, req.ResourceGroup, req.Name).String())
	if c.Restriction != "" && !strings.EqualFold(c.Restriction, "onboard:"+scope) {
		return errForbidden("this device-code token was approved for %s, not for %s", strings.TrimPrefix(c.Restriction, "onboard:"), scope)
	}
	if err := a.authorize(r.Context(), c, authz.ActMachinesOnboard, scope); err != nil {
		return err
	}
	if _, err := a.Store.GetResourceGroup(r.Context(), req.SubscriptionID, req.ResourceGroup); err != nil {
		return notFoundAs(err, "resource group %q was not found in subscription %q", req.ResourceGroup, req.SubscriptionID)
	}
	props, cfg, err := validatedReportBodies(req.Properties, req.AgentConfig)
	if err != nil {
		return err
	}
	if len(req.SealingKey) != 0 && len(req.SealingKey) != 32 {
		return errValidation("sealingKey", "sealingKey must be a 32-byte X25519 public key")
	}
	now := a.now()
	id := newUUID()
	certPEM, serial, notAfter, err := a.CA.SignMachineCSR([]byte(req.CSR), id, now, a.Settings.CertValidity)
	if err != nil {
		return errValidation("csr", "the certificate request is not valid: %v", err)
	}
	m := store.Machine{
		ID: id, Subscription: req.SubscriptionID, ResourceGroup: req.ResourceGroup, Name: req.Name, Tags: req.Tags,
		Status: wire.StatusConnected, LastHeartbeat: now, AgentVersion: truncate(req.AgentVersion, 64),
		Environment: req.Properties.Environment, OSName: strings.ToLower(req.Properties.OSName), Properties: props, AgentConfig: cfg,
		CertSerial: serial.String(), CertNotAfter: notAfter, Generation: 1, SealingKey: req.SealingKey,
		CreatedAt: now, CreatedBy: c.Name, UpdatedAt: now,
	}
	if err := a.Store.CreateMachine(r.Context(), m, true); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errConflict("a machine named %q already exists in resource group %q; delete it or choose another name", req.Name, req.ResourceGroup)
		}
		return err
	}
	a.Metrics.onboarded.Inc()
	writeJSON(w, http.StatusCreated, wire.ConnectResponse{
		ResourceID: m.ResourceID().String(), MachineID: id, Certificate: string(certPEM),
		CACert: string(a.CA.CertPEM()), HeartbeatInterval: wire.Duration(a.Settings.HeartbeatInterval),
	})
	return nil
}

// validatedReportBodies checks agent-reported inventory and encodes it for the store.
func validatedReportBodies(p wire.MachineProperties, c wire.AgentConfig) (props, cfg []byte, err error) {
	if field, err := p.Check(); err != nil {
		return nil, nil, errValidation("properties."+field, "%v", err)
	}
	props, err = json.Marshal(p)
	if err != nil {
		return nil, nil, err
	}
	cfg, err = json.Marshal(c)
	return props, cfg, err
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
	if err := decodeJSON(w, r, agentBodyLimit, &batch); err != nil {
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
	now := a.now()
	certPEM, serial, notAfter, err := a.CA.SignMachineCSR([]byte(req.CSR), c.ID, now, a.Settings.CertValidity)
	if err != nil {
		return errValidation("csr", "the certificate request is not valid: %v", err)
	}
	if err := a.Store.UpdateMachineCert(r.Context(), c.ID, serial.String(), notAfter, now); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.RenewResponse{Certificate: string(certPEM)})
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
	a.Heartbeats.Add(store.Heartbeat{MachineID: m.ID, At: a.now(), AgentVersion: truncate(hello.AgentVersion, 64)})
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
			a.Heartbeats.Add(store.Heartbeat{MachineID: machineID, At: a.now(), AgentVersion: truncate(v, 64)})
			a.Metrics.heartbeats.Inc()
		case wire.MsgPong:
			// Latency probes are measured by the sender of the ping.
		}
	}
}
