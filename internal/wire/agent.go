package wire

import (
	"encoding/json"
	"time"
)

// Agent protocol paths, all under the server's TLS listener. Every path but
// PathConnect requires the machine's client certificate (mTLS).
const (
	PathConnect = "/agent/v1/connect" // POST ConnectRequest, bearer token of the onboarding principal
	PathStream  = "/agent/v1/stream"  // GET, WebSocket upgrade: push channel + heartbeats (HTTP/1.1 fallback)
	// PathChannel is the push channel over HTTP/2: POST with a request body
	// and a response body that both stay open, each a sequence of
	// StreamMessage JSON lines. It shares the agent's one connection with
	// every other request; the server refuses it over HTTP/1.1 (426), and
	// the agent then uses PathStream.
	PathChannel = "/agent/v1/channel"
	// PathTunnels + tunnel id: POST, the agent's side of a tunnel the server
	// asked for (MsgTunnel), over HTTP/2 with both bodies open: the agent's
	// first line is a TunnelVerdict, then raw bytes flow both ways.
	PathTunnels      = "/agent/v1/tunnels/"
	PathReports      = "/agent/v1/reports"     // POST ReportBatch
	PathDesiredState = "/agent/v1/desired"     // GET DesiredState
	PathCertificate  = "/agent/v1/certificate" // POST RenewRequest -> RenewResponse
	PathMachine      = "/agent/v1/machine"     // DELETE: disconnect (removes the machine resource)
	// PathCatalogs + publisher name: GET SignedCatalog of that publisher.
	PathCatalogs = "/agent/v1/catalogs/"
	// PathPackages + digest ("sha256:HEX"): GET the package archive.
	PathPackages   = "/agent/v1/packages/"
	PathDeviceCode = "/oauth2/devicecode" // POST form: RFC 8628 device authorization
	PathToken      = "/oauth2/token"      // POST form: client_credentials, password, device_code grants
)

// Grant types accepted at PathToken.
const (
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// ConnectRequest onboards a machine. The agent generated the key pair behind
// CSR locally; the private key never leaves the machine.
type ConnectRequest struct {
	ProtocolVersion int               `json:"protocolVersion"`
	SubscriptionID  string            `json:"subscriptionId"`
	ResourceGroup   string            `json:"resourceGroup"`
	Name            string            `json:"name"`
	Tags            map[string]string `json:"tags,omitempty"`
	CSR             string            `json:"csr"` // PEM "CERTIFICATE REQUEST"
	AgentVersion    string            `json:"agentVersion"`
	Properties      MachineProperties `json:"properties"`
	AgentConfig     AgentConfig       `json:"agentConfiguration"`
	// SealingKey is the machine's X25519 public key (32 bytes) that
	// protected settings are sealed to. Its private half stays on the
	// machine and, unlike the TLS key, survives certificate renewals.
	SealingKey []byte `json:"sealingKey,omitempty"`
}

// ConnectResponse carries the machine identity.
type ConnectResponse struct {
	ResourceID  string `json:"resourceId"`
	MachineID   string `json:"machineId"`
	Certificate string `json:"certificate"` // PEM, signed by the server CA
	CACert      string `json:"caCertificate"`
	// HeartbeatInterval tells the agent how often to send heartbeats.
	HeartbeatInterval Duration `json:"heartbeatInterval"`
}

// RenewRequest asks for a new client certificate for a new key pair before the
// current one expires. It is sent over mTLS with the current certificate.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// RenewResponse carries the new certificate.
type RenewResponse struct {
	Certificate string `json:"certificate"`
}

// Stream message types. The stream is a WebSocket carrying one JSON
// StreamMessage per text frame in both directions.
const (
	MsgHello     = "hello"     // agent -> server, first frame
	MsgHeartbeat = "heartbeat" // agent -> server
	MsgSync      = "sync"      // server -> agent: desired state changed, fetch it
	MsgPing      = "ping"      // server -> agent: latency probe, agent answers MsgPong with the same Seq
	MsgPong      = "pong"      // agent -> server
	MsgWelcome   = "welcome"   // server -> agent, answer to hello
	MsgGoodbye   = "goodbye"   // server -> agent: identity revoked (machine deleted/expired); stop
	MsgClose     = "close"     // server -> agent: this channel ends (server shutting down, replaced); reconnect
	MsgTunnel    = "tunnel"    // server -> agent: open a tunnel to a local port (Tunnel)
)

// TunnelRequest asks the agent to connect a local TCP port to a byte stream
// of the control plane (SSH without an inbound port). The agent connects
// only to 127.0.0.1 and only if the local configuration allows the port.
type TunnelRequest struct {
	ID   string `json:"id"`
	Port int    `json:"port"`
}

// TunnelVerdict is the agent's first line on a tunnel: empty Error means the
// local port is connected and bytes follow.
type TunnelVerdict struct {
	Error string `json:"error,omitempty"`
}

// StreamMessage is one frame on the push channel.
type StreamMessage struct {
	Type            string    `json:"type"`
	ProtocolVersion int       `json:"protocolVersion,omitempty"`
	AgentVersion    string    `json:"agentVersion,omitempty"`
	Generation      int64     `json:"generation,omitempty"` // desired-state generation (MsgSync, MsgWelcome, MsgHeartbeat)
	Seq             int64     `json:"seq,omitempty"`
	SentAt          time.Time `json:"sentAt,omitzero"`
	Reason          string    `json:"reason,omitempty"`
	// HeartbeatInterval (in MsgWelcome) overrides the agent's interval.
	HeartbeatInterval Duration `json:"heartbeatInterval,omitempty"`
	// Tunnel is set in MsgTunnel.
	Tunnel *TunnelRequest `json:"tunnel,omitempty"`
}

// DesiredState is what the control plane wants on the machine. The agent
// reconciles toward it and reports observed state.
type DesiredState struct {
	Generation int64             `json:"generation"`
	ResourceID string            `json:"resourceId"`
	Tags       map[string]string `json:"tags,omitempty"`
	// Extensions is the complete desired set: anything installed and not
	// listed here is removed.
	Extensions []DesiredExtension `json:"extensions,omitempty"`
	// Publishers holds the signing key of every publisher in Extensions.
	Publishers []PublisherKey `json:"publishers,omitempty"`
	// RunCommands are runs not yet reported finished.
	RunCommands []DesiredRunCommand `json:"runCommands,omitempty"`
	// Features holds each later capability's slice of the desired state,
	// keyed by the agent feature's name (e.g. "guestConfiguration"): the
	// server context that owns a capability writes its own key, the agent
	// feature of the same name reads it. A key the agent does not know is
	// ignored; a feature whose key is absent has nothing desired.
	Features map[string]json.RawMessage `json:"features,omitempty"`
}

// Report kinds.
const (
	ReportProperties  = "properties"  // Body: MachineProperties
	ReportAgentConfig = "agentConfig" // Body: AgentConfig
	ReportApplied     = "applied"     // Body: AppliedState
	ReportExtension   = "extension"   // Body: ExtensionStatus
	ReportRunCommand  = "runCommand"  // Body: RunCommandResult
	ReportFeature     = "feature"     // Body: FeatureStatus
)

// Feature states.
const (
	FeatureRunning = "Running"
	FeatureFailed  = "Failed"
)

// FeatureStatus is an agent feature's health: a feature that failed to
// start or panicked is contained (the agent and its other features go on)
// and reported Failed with why; Running again once it recovered.
type FeatureStatus struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// Report is one observation made by the agent. Reports are buffered on disk
// while the server is unreachable and delivered in order afterwards.
type Report struct {
	ID           string    `json:"id"` // unique per agent, lets the server ignore re-deliveries
	Kind         string    `json:"kind"`
	TakenAt      time.Time `json:"takenAt"`
	AgentVersion string    `json:"agentVersion,omitempty"`
	Body         []byte    `json:"body"` // JSON of the kind's type; []byte marshals as base64
}

// AppliedState says which desired-state generation the agent has applied.
type AppliedState struct {
	Generation int64 `json:"generation"`
}

// ReportBatch is the body of POST PathReports.
type ReportBatch struct {
	Reports []Report `json:"reports"`
}

// ReportAck tells the agent which reports it may drop from its outbox.
type ReportAck struct {
	Accepted []string `json:"accepted"`
}
