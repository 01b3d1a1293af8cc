package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func get(t *testing.T, s *testutil.Server, path string) (int, string) {
	t.Helper()
	return getWith(t, s, path, "")
}

func getWith(t *testing.T, s *testutil.Server, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthMetricsAndOpenAPI(t *testing.T) {
	t.Parallel()
	tokenFile := testutil.WriteSecretFile(t, metricsToken)
	s := testutil.StartServer(t, func(c *server.Config) { c.MetricsTokenFile = tokenFile })
	if st, b := get(t, s, "/healthz"); st != 200 || !strings.Contains(b, `"ok"`) {
		t.Errorf("healthz %d %s", st, b)
	}
	if st, b := get(t, s, "/readyz"); st != 200 {
		t.Errorf("readyz %d %s", st, b)
	}
	id, secret := s.OnboardingPrincipal(t, "rg1")
	s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})
	st, b := getWith(t, s, "/metrics", metricsToken)
	for _, want := range []string{`corral_machines{status="Connected"} 1`, "corral_http_requests_total", "corral_machines_onboarded_total 1", "process_resident_memory_bytes"} {
		if st != 200 || !strings.Contains(b, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	st, b = get(t, s, "/api/v1/openapi.json")
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if st != 200 || json.Unmarshal([]byte(b), &doc) != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %d", st)
	}
	for _, rt := range s.Srv.API.Routes() {
		if _, ok := doc.Paths[rt.Pattern][strings.ToLower(rt.Method)]; !ok {
			t.Errorf("openapi lacks %s %s", rt.Method, rt.Pattern)
		}
	}
	if st, _ := get(t, s, "/"); st != 200 && st != 404 {
		t.Errorf("root: %d", st)
	}
}

func TestGracefulShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})
	conn := s.DialStream(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The agent side keeps reading, as a real agent does, so the close
	// handshake can complete.
	readErr := make(chan error, 1)
	go func() {
		var msg wire.StreamMessage
		for {
			if err := wsjson.Read(ctx, conn, &msg); err != nil {
				readErr <- err
				return
			}
		}
	}()
	s.Stop(t) // fails the test itself if shutdown hangs
	// The stream ends; when the close frame reaches the agent before the
	// connection drops (nearly always), it says "going away" so the agent
	// reconnects at once. A bare EOF is the rare other outcome of the close
	// racing the TCP teardown, and agents treat it the same way.
	select {
	case err := <-readErr:
		if st := websocket.CloseStatus(err); st != -1 && st != websocket.StatusGoingAway {
			t.Errorf("stream ended with %v, want going away", err)
		}
	case <-ctx.Done():
		t.Fatal("the agent's stream did not end when the server stopped")
	}
}

// TestReplicasSharePushesThroughPostgres runs two servers on one PostgreSQL
// schema: a change made through replica B reaches a stream held by replica A.
func TestReplicasSharePushesThroughPostgres(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDSN(t)
	a := testutil.StartServer(t, testutil.WithStore(dsn))
	b := testutil.StartServer(t, testutil.WithStore(dsn), testutil.WithCAFrom(a))
	id, secret := a.OnboardingPrincipal(t, "rg1")
	m := a.OnboardMachine(t, a.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})
	conn := a.DialStream(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var msg wire.StreamMessage
	b.MustDo(t, http.StatusOK, "PATCH", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1", b.AdminToken(t),
		wire.MachineUpdate{Tags: map[string]string{"via": "b"}}, nil)
	if err := wsjson.Read(ctx, conn, &msg); err != nil || msg.Type != wire.MsgSync {
		t.Fatalf("push across replicas: %v %+v", err, msg)
	}
}

// A client that hangs up during the TLS handshake (a port scanner, a load
// balancer's TCP check) is a debug-level structured line, not raw text on
// stderr or a warning.
func TestHandshakeErrorsAreDebugLines(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	addr := strings.TrimPrefix(s.URL, "https://")
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n")) // not TLS
		c.Close()
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		if !strings.Contains(s.Logs.String(), "TLS handshake error") {
			return "no handshake error logged yet"
		}
		return ""
	})
	for _, line := range strings.Split(s.Logs.String(), "\n") {
		if strings.Contains(line, "TLS handshake error") && !strings.Contains(line, `"level":"DEBUG"`) {
			t.Errorf("a handshake error above debug level: %s", line)
		}
	}
}

// A plain HTTP request on the TLS port gets a plain 400 that says why.
func TestPlainHTTPIsToldToUseHTTPS(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	resp, err := http.Get("http://" + strings.TrimPrefix(s.URL, "https://") + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS server") {
		t.Errorf("plain HTTP: %d %q", resp.StatusCode, body)
	}
}
