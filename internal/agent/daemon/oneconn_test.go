package daemon_test

import (
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
)

// A starting agent opens one connection, not one for its push channel and
// another for the reports it queued at start: behind a load balancer the
// second would be a TLS handshake with another replica, thrown away once
// HTTP/2 is up (and twice the handshakes when a whole fleet restarts).
func TestAStartingAgentOpensOneConnection(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "m1", "")
	proxy, conns := testutil.ConnectProxy(t, nil)
	c, err := localconfig.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set(localconfig.KeyProxyURL, proxy); err != nil {
		t.Fatal(err)
	}
	if err := localconfig.Save(state, c); err != nil {
		t.Fatal(err)
	}
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	waitStarted(t, s, state)
	if n := conns.Load(); n != 1 {
		t.Errorf("the agent opened %d connections at start, want 1", n)
	}
}

// Straight to the server (no proxy), the agent speaks agentmux: its push
// channel and its requests on the one connection the server holds with one
// goroutine while the agent is idle.
func TestAgentSpeaksAgentmuxToTheServer(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "m1", "")
	a := agenttest.StartAgent(t, daemon.Config{StateDir: state})
	waitStarted(t, s, state)
	if !strings.Contains(a.Logs.String(), `"transport":"agentmux"`) {
		t.Fatalf("the channel did not run over agentmux:\n%s", a.Logs.String())
	}
}

// waitStarted waits until the agent of state (machine rg1/m1) is connected
// and the reports it made at start have arrived.
func waitStarted(t *testing.T, s *testutil.Server, state string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() string {
		st, _ := daemon.ReadStatus(state)
		if !st.Connected || st.PendingReports != 0 {
			return "not connected, or the reports made at start are not delivered"
		}
		if m := getMachine(t, s, "rg1", "m1"); m.AgentConfig == nil {
			return "the start's configuration report has not arrived"
		}
		return ""
	})
}
