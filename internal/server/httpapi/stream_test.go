package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func dialStream(t testing.TB, s *testutil.Server, m *testutil.Machine) *websocket.Conn {
	t.Helper()
	return s.DialStream(t, m)
}

func readMsg(t testing.TB, conn *websocket.Conn, timeout time.Duration) wire.StreamMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var msg wire.StreamMessage
	if err := wsjson.Read(ctx, conn, &msg); err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return msg
}

func machineStatus(t *testing.T, s *testutil.Server, name string) string {
	t.Helper()
	var m wire.Machine
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/"+name, s.AdminToken(t), nil, &m)
	return m.Status
}

func waitStatus(t *testing.T, s *testutil.Server, name, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := machineStatus(t, s, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine %s: status %s, want %s after %s", name, got, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPushHeartbeatAndStatusLifecycle(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	s := testutil.StartServer(t, testutil.FastLifecycle(), testutil.WithClock(clock))
	id, secret := s.OnboardingPrincipal(t, "rg1")
	tok := s.ClientToken(t, id, secret)
	m := s.OnboardMachine(t, tok, "rg1", "m1", wire.MachineProperties{})
	conn := dialStream(t, s, m)

	// A tag change reaches the stream as a sync with the new generation.
	start := time.Now()
	var updated wire.Machine
	s.MustDo(t, 200, "PATCH", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1", s.AdminToken(t),
		wire.MachineUpdate{Tags: map[string]string{"k": "v"}}, &updated)
	msg := readMsg(t, conn, 2*time.Second)
	if msg.Type != wire.MsgSync || msg.Generation < 2 {
		t.Fatalf("push: %+v", msg)
	}
	t.Logf("push delivered in %s", time.Since(start))
	var desired wire.DesiredState
	status, b := s.DoMachine(t, m, "GET", wire.PathDesiredState, nil)
	if status != 200 || !strings.Contains(string(b), `"k":"v"`) {
		t.Fatalf("desired state: %d %s (%+v)", status, b, desired)
	}

	// Heartbeats keep it Connected past the threshold; silence disconnects it.
	for range 10 {
		if err := wsjson.Write(context.Background(), conn, wire.StreamMessage{Type: wire.MsgHeartbeat}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := machineStatus(t, s, "m1"); got != wire.StatusConnected {
		t.Fatalf("status with heartbeats: %s", got)
	}
	conn.CloseNow()
	waitStatus(t, s, "m1", wire.StatusDisconnected, 5*time.Second)

	// A reconnect brings it back.
	conn = dialStream(t, s, m)
	waitStatus(t, s, "m1", wire.StatusConnected, 5*time.Second)
	conn.CloseNow()

	// 45 days without contact: Expired, and its certificate is refused.
	clock.Advance(46 * 24 * time.Hour)
	s.ForgetAdminToken()
	waitStatus(t, s, "m1", wire.StatusExpired, 5*time.Second)
	status, b = s.DoMachine(t, m, "GET", wire.PathDesiredState, nil)
	if status != 403 || testutil.DecodeError(t, b).Code != wire.CodeMachineExpired {
		t.Fatalf("expired machine: %d %s", status, b)
	}
	// Re-onboarding under the same name replaces the expired machine.
	tok = s.ClientToken(t, id, secret)
	m2 := s.OnboardMachine(t, tok, "rg1", "m1", wire.MachineProperties{})
	if m2.MachineID == m.MachineID {
		t.Fatal("re-onboarding kept the old identity")
	}
	if got := machineStatus(t, s, "m1"); got != wire.StatusConnected {
		t.Fatalf("re-onboarded status %s", got)
	}
}

func TestDeletedMachineIsToldGoodbye(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})
	conn := dialStream(t, s, m)
	s.MustDo(t, http.StatusNoContent, "DELETE", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1", s.AdminToken(t), nil, nil)
	if msg := readMsg(t, conn, 2*time.Second); msg.Type != wire.MsgGoodbye {
		t.Fatalf("got %+v, want goodbye", msg)
	}
	if status, _ := s.DoMachine(t, m, "GET", wire.PathDesiredState, nil); status != 401 {
		t.Fatalf("deleted machine's certificate: status %d, want 401", status)
	}
	// Onboarding again under the same name works (the old one is gone).
	s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})
	// A live machine's name cannot be taken over.
	status, b := s.Do(t, "POST", wire.PathConnect, s.ClientToken(t, id, secret), wire.ConnectRequest{ProtocolVersion: 1,
		SubscriptionID: "default", ResourceGroup: "rg1", Name: "m1", CSR: mustCSR(t)})
	if status != 409 {
		t.Fatalf("takeover of a live machine name: %d %s", status, b)
	}
}

func mustCSR(t *testing.T) string {
	_, csr := newCSR(t)
	return csr
}

// BenchmarkPushLatency measures a tag change through the API until the
// agent's stream receives the sync, on one connected machine.
func BenchmarkPushLatency(b *testing.B) {
	s := testutil.StartServer(b)
	id, secret := s.OnboardingPrincipal(b, "rg1")
	m := s.OnboardMachine(b, s.ClientToken(b, id, secret), "rg1", "m1", wire.MachineProperties{})
	conn := dialStream(b, s, m)
	admin := s.AdminToken(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.MustDo(b, 200, "PATCH", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1", admin,
			wire.MachineUpdate{Tags: map[string]string{"i": string(rune('a' + i%26))}}, nil)
		if msg := readMsg(b, conn, 5*time.Second); msg.Type != wire.MsgSync {
			b.Fatalf("got %+v", msg)
		}
	}
}
