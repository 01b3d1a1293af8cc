package testutil

import (
	"context"
	"strings"
	"time"

	"crypto/tls"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/wire"
)

// Machine is a machine onboarded through the real connect endpoint, with an
// HTTP client presenting its client certificate. It speaks the agent
// protocol directly, for API-level tests; end-to-end tests run the real agent.
type Machine struct {
	wire.ConnectResponse
	KeyPEM []byte
	Client *http.Client
	// SealingKey is the private half of the sealing key sent at connect
	// (nil with WithoutSealingKey): it opens protected settings.
	SealingKey []byte
}

// MachineOption changes how OnboardMachine connects.
type MachineOption func(*wire.ConnectRequest, *Machine)

// WithoutSealingKey connects like an agent older than protocol version 2,
// which sends no sealing key.
func WithoutSealingKey() MachineOption {
	return func(req *wire.ConnectRequest, m *Machine) { req.SealingKey, m.SealingKey = nil, nil }
}

// OnboardMachine connects a machine named name into resource group rg using
// bearer token tok (an onboarding principal's token). Like the real agent it
// sends a fresh sealing key unless WithoutSealingKey is given.
func (s *API) OnboardMachine(t testing.TB, tok, rg, name string, props wire.MachineProperties, opts ...MachineOption) *Machine {
	t.Helper()
	keyPEM, csrPEM, err := machinekey.New(name)
	if err != nil {
		t.Fatal(err)
	}
	sealPriv, sealPub, err := sealing.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	req := wire.ConnectRequest{ProtocolVersion: wire.ProtocolVersion, SubscriptionID: "default", ResourceGroup: rg, Name: name,
		CSR: string(csrPEM), AgentVersion: "2026.11.0", Properties: props, AgentConfig: wire.AgentConfig{Mode: "full", ExtensionsEnabled: true},
		SealingKey: sealPub}
	var m Machine
	m.SealingKey = sealPriv
	for _, o := range opts {
		o(&req, &m)
	}
	var resp wire.ConnectResponse
	s.MustDo(t, http.StatusCreated, "POST", wire.PathConnect, tok, req, &resp)
	out := s.machineClient(t, resp, keyPEM)
	out.SealingKey = m.SealingKey
	return out
}

func (s *API) machineClient(t testing.TB, resp wire.ConnectResponse, keyPEM []byte) *Machine {
	t.Helper()
	cert, err := tls.X509KeyPair([]byte(resp.Certificate), keyPEM)
	if err != nil {
		t.Fatalf("machine key pair: %v", err)
	}
	cfg := s.TLSConfig(t)
	cfg.Certificates = []tls.Certificate{cert}
	return &Machine{ConnectResponse: resp, KeyPEM: keyPEM, Client: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
}

// DoMachine calls an agent endpoint with the machine's certificate.
func (s *API) DoMachine(t testing.TB, m *Machine, method, path string, body any) (int, []byte) {
	t.Helper()
	return s.DoWith(t, m.Client, method, path, "", body)
}

// DecodeError decodes an API error body.
func DecodeError(t testing.TB, b []byte) wire.ErrorBody {
	t.Helper()
	var e wire.ErrorResponse
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return e.Error
}

// DialStream opens the machine's push channel, says hello and returns the
// connection after the server's welcome. It is closed when the test ends.
func (s *API) DialStream(t testing.TB, m *Machine) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(s.URL, "https")+wire.PathStream, &websocket.DialOptions{HTTPClient: m.Client})
	if err != nil {
		t.Fatalf("dial stream: %v", err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	if err := wsjson.Write(ctx, conn, wire.StreamMessage{Type: wire.MsgHello, ProtocolVersion: wire.ProtocolVersion, AgentVersion: "2026.11.0"}); err != nil {
		t.Fatal(err)
	}
	var welcome wire.StreamMessage
	if err := wsjson.Read(ctx, conn, &welcome); err != nil || welcome.Type != wire.MsgWelcome {
		t.Fatalf("welcome: %v %+v", err, welcome)
	}
	return conn
}
