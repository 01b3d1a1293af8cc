package relay_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
)

// A burst of tunnels far larger than the push channel's queue (100 sessions
// opened at once through one agent) all open: a full queue makes the
// tunnel request wait for room instead of dropping the agent's channel.
func TestTunnelBurst(t *testing.T) {
	// Not parallel: the burst loads the machine, and the other tests'
	// agents would miss their fast heartbeats meanwhile.
	s := testutil.StartServer(t, testutil.FastLifecycle(), func(c *server.Config) { c.DisconnectAfter = 30 * time.Second })
	state := agenttest.ConnectAgent(t, s.API, "rg1", "web-01", "")
	port := echoServer(t)
	allowPorts(t, state, localconfig.KeyIncomingPorts, strconv.Itoa(port))
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	waitChannel(t, state)
	admin := userClient(t, s.API, s.AdminToken(t))
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			errs <- roundTrip(t, admin, tunnelPath("rg1", "web-01", port), []byte(fmt.Sprintf("burst %d\n", i)))
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed == 1 {
				t.Errorf("tunnel in a burst: %v", err)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of 100 tunnels opened at once failed", failed)
	}
}
