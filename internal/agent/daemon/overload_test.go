package daemon_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/testutil/evilcp"
	"github.com/corralhq/corral/internal/wire"
)

// A control plane under a reconnect storm refuses the push channel and
// reports with 503 and Retry-After: the agent waits at least that long
// before it tries again (not its own, shorter backoff), never falls back to
// the WebSocket for it, and connects and delivers once the server takes it.
func TestAgentHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	evil := evilcp.Start(t)
	state := filepath.Join(t.TempDir(), "state")
	evil.Enroll(t, state)
	evil.Refuse(wire.PathChannel, 503, "3")
	evil.Refuse(wire.PathReports, 503, "3")
	// The test agent's own backoff is at most 500 ms: without Retry-After
	// it would try several times a second.
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	testutil.Eventually(t, 30*time.Second, func() string {
		if evil.Attempts(wire.PathChannel) == 0 || evil.Attempts(wire.PathReports) == 0 {
			return "the agent has not tried the channel and the reports yet"
		}
		return ""
	})
	// Both were tried at least 2 s ago when this sleep ends; a second try
	// may come no sooner than 3 s after the first.
	time.Sleep(2 * time.Second)
	if n, m := evil.Attempts(wire.PathChannel), evil.Attempts(wire.PathReports); n != 1 || m != 1 {
		t.Errorf("%d channel and %d report attempts within 2 s of a Retry-After: 3, want 1 each", n, m)
	}
	if n := evil.Attempts(wire.PathStream); n != 0 {
		t.Errorf("a refusal made the agent try the WebSocket %d times", n)
	}
	evil.Refuse(wire.PathChannel, 0, "")
	evil.Refuse(wire.PathReports, 0, "")
	testutil.Eventually(t, 30*time.Second, func() string {
		if st, _ := daemon.ReadStatus(state); !st.Connected {
			return "not connected"
		}
		if len(evil.Reports(wire.ReportProperties)) == 0 {
			return "no inventory report delivered"
		}
		return ""
	})
}

// Reports that failed while the server was out of reach are delivered as
// soon as the push channel is welcomed again, not at the end of the
// backoff (or Retry-After) that grew meanwhile: after a link cut or a
// server restart, reports made during the outage arrive within seconds.
func TestWelcomeEndsTheReportBackoff(t *testing.T) {
	t.Parallel()
	evil := evilcp.Start(t)
	state := filepath.Join(t.TempDir(), "state")
	evil.Enroll(t, state)
	evil.Refuse(wire.PathChannel, 503, "1")
	evil.Refuse(wire.PathReports, 503, "600") // ten minutes: far beyond this test
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	testutil.Eventually(t, 30*time.Second, func() string {
		if evil.Attempts(wire.PathChannel) == 0 || evil.Attempts(wire.PathReports) == 0 {
			return "the agent has not tried the channel and the reports yet"
		}
		return ""
	})
	evil.Refuse(wire.PathReports, 0, "")
	evil.Refuse(wire.PathChannel, 0, "")
	testutil.Eventually(t, 30*time.Second, func() string {
		if len(evil.Reports(wire.ReportProperties)) == 0 {
			return "the reports wait out the Retry-After given before the channel was welcomed"
		}
		return ""
	})
}
