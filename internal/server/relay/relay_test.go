package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/wire"
)

// echoServer accepts on 127.0.0.1 and echoes every byte back.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func allowPorts(t *testing.T, state string, kv ...string) {
	t.Helper()
	c, err := localconfig.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if err := c.Set(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := localconfig.Save(state, c); err != nil {
		t.Fatal(err)
	}
}

func userClient(t testing.TB, api *testutil.API, token string) *client.Client {
	t.Helper()
	c, err := client.New(api.URL, client.WithCAFile(api.CAFile), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tunnelPath(rg, machine string, port int) string {
	return "/api/v1/subscriptions/default/resourceGroups/" + rg + "/machines/" + machine + "/tunnel?port=" + strconv.Itoa(port)
}

// roundTrip sends payload through a tunnel and reads it back.
func roundTrip(t *testing.T, c *client.Client, path string, payload []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := c.OpenStream(ctx, path)
	if err != nil {
		return err
	}
	defer tun.Close()
	go func() { tun.Write(payload) }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(tun, got); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("the tunnel changed the bytes")
	}
	return nil
}

// steady is FastLifecycle for a test that needs its agent Connected
// throughout: the agent heartbeats at most every daemon.MinHeartbeatInterval
// whatever the server asks, so the disconnect threshold must be above it.
func steady() testutil.Option {
	return func(c *server.Config) {
		testutil.FastLifecycle()(c)
		c.DisconnectAfter = 3 * daemon.MinHeartbeatInterval
	}
}

// waitChannel waits until the agent's push channel is up.
func waitChannel(t *testing.T, state string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() string {
		if st, _ := daemon.ReadStatus(state); !st.Connected {
			return "the agent's push channel is not up"
		}
		return ""
	})
}

// A byte stream reaches a local port of the machine through its agent's
// outbound connection, many at once; the machine's local configuration
// decides which ports, and a caller without a login role gets nothing.
func TestTunnelThroughTheAgent(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, steady())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "web-01", "")
	port := echoServer(t)
	allowPorts(t, state, localconfig.KeyIncomingPorts, strconv.Itoa(port))
	agent := agenttest.StartAgent(t, daemon.Config{StateDir: state})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s\nserver log:\n%s", agent.Logs, s.Logs)
		}
	})
	waitChannel(t, state)
	admin := userClient(t, s.API, s.AdminToken(t))

	payload := bytes.Repeat([]byte("corral tunnel "), 100000) // 1.4 MB
	if err := roundTrip(t, admin, tunnelPath("rg1", "web-01", port), payload); err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	// Many sessions at once through one agent.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			errs <- roundTrip(t, admin, tunnelPath("rg1", "web-01", port), []byte(fmt.Sprintf("session %d\n", i)))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent session: %v", err)
		}
	}
	// The session is in the activity log with its bytes.
	var entries wire.List[wire.ActivityEntry]
	s.MustDo(t, 200, "GET", "/api/v1/activityLogs?action="+url.QueryEscape("Corral.HybridCompute/machines/login/action"), s.AdminToken(t), nil, &entries)
	found := false
	for _, e := range entries.Value {
		found = found || strings.Contains(e.Message, "1400000 bytes to the machine, 1400000 bytes back") && e.Caller == "admin"
	}
	if !found {
		t.Errorf("no activity entry with the session's bytes: %+v", entries.Value)
	}

	// Refusals, each with the machine's reason.
	if err := roundTrip(t, admin, tunnelPath("rg1", "web-01", 2222), []byte("x")); err == nil || !strings.Contains(err.Error(), "not in incomingconnections.ports") {
		t.Errorf("a port the machine does not allow: %v", err)
	}
	reader := s.API.RolePrincipal(t, "Reader", "/subscriptions/default")
	if err := roundTrip(t, userClient(t, s.API, reader), tunnelPath("rg1", "web-01", port), []byte("x")); err == nil || !strings.Contains(err.Error(), "login/action") {
		t.Errorf("a Reader opened a tunnel: %v", err)
	}
	allowPorts(t, state, localconfig.KeyIncomingEnabled, "false")
	if err := roundTrip(t, admin, tunnelPath("rg1", "web-01", port), []byte("x")); err == nil || !strings.Contains(err.Error(), "incomingconnections.enabled=false") {
		t.Errorf("with incoming connections off: %v", err)
	}
}

// With two replicas on PostgreSQL, a tunnel works whichever replica the
// user and the agent reached.
func TestTunnelAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDSN(t)
	a := testutil.StartServer(t, steady(), testutil.WithStore(dsn))
	b := testutil.StartServer(t, steady(), testutil.WithStore(dsn), testutil.WithCAFrom(a))
	state := agenttest.ConnectAgent(t, b.API, "rg1", "db-01", "")
	port := echoServer(t)
	allowPorts(t, state, localconfig.KeyIncomingPorts, strconv.Itoa(port))
	agent := agenttest.StartAgent(t, daemon.Config{StateDir: state}) // its channel is on b
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s\nreplica a log:\n%s\nreplica b log:\n%s", agent.Logs, a.Logs, b.Logs)
		}
	})
	waitChannel(t, state)
	for name, api := range map[string]*testutil.API{"user on the agent's replica": b.API, "user on the other replica": a.API} {
		if err := roundTrip(t, userClient(t, api, api.AdminToken(t)), tunnelPath("rg1", "db-01", port), []byte("across replicas\n")); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The per-request deadlines (a body read within BodyReadTimeout, an answer
// written within WriteTimeout) never cut the long-lived streams: the
// agent's channel outlives them and still delivers pushes, and an idle
// tunnel still carries bytes afterwards.
func TestStreamsOutliveRequestDeadlines(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, steady(), func(c *server.Config) {
		c.Limits.BodyReadTimeout, c.Limits.WriteTimeout = time.Second, time.Second
	})
	state := agenttest.ConnectAgent(t, s.API, "rg1", "web-01", "")
	port := echoServer(t)
	allowPorts(t, state, localconfig.KeyIncomingPorts, strconv.Itoa(port))
	agent := agenttest.StartAgent(t, daemon.Config{StateDir: state})
	waitChannel(t, state)
	st, _ := daemon.ReadStatus(state)
	since := st.ConnectedSince

	admin := userClient(t, s.API, s.AdminToken(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := admin.OpenStream(ctx, tunnelPath("rg1", "web-01", port))
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	time.Sleep(2500 * time.Millisecond) // both streams idle past both deadlines
	if _, err := tun.Write([]byte("still there\n")); err != nil {
		t.Fatalf("write to an idle tunnel: %v", err)
	}
	got := make([]byte, len("still there\n"))
	if _, err := io.ReadFull(tun, got); err != nil || string(got) != "still there\n" {
		t.Fatalf("read from an idle tunnel: %q %v", got, err)
	}
	s.MustDo(t, 200, "PATCH", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/web-01", s.AdminToken(t),
		wire.MachineUpdate{Tags: map[string]string{"after": "deadlines"}}, nil)
	testutil.Eventually(t, 15*time.Second, func() string {
		var ds wire.DesiredState
		b, _ := os.ReadFile(filepath.Join(state, "desired.json"))
		if json.Unmarshal(b, &ds); ds.Tags["after"] != "deadlines" {
			return fmt.Sprintf("the agent's desired state has tags %v", ds.Tags)
		}
		return ""
	})
	if st, _ := daemon.ReadStatus(state); !st.Connected || !st.ConnectedSince.Equal(since) {
		t.Errorf("the channel was re-established (connected since %s, was %s):\n%s", st.ConnectedSince, since, agent.Logs)
	}
}
