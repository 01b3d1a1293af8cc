package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/wire"
)

// A reconnect storm is paced: past the burst, new push channels and
// onboardings are refused with 503 and a Retry-After (growing with the
// crowd), the channel a refused agent already has stays usable, and real
// agents honouring it all get in.
func TestStormsArePaced(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, func(c *server.Config) {
		c.Limits.StreamsPerSecond, c.Limits.StreamBurst = 1, 2
		c.Limits.ConnectsPerSecond, c.Limits.ConnectBurst = 8, 8
	})
	id, secret := s.OnboardingPrincipal(t, "rg1")
	tok := s.ClientToken(t, id, secret)

	// Onboarding: eight at once, then refusals that say when to come back.
	var machines []*testutil.Machine
	for i := range 8 {
		machines = append(machines, s.OnboardMachine(t, tok, "rg1", "m"+strconv.Itoa(i), wire.MachineProperties{}))
	}
	_, csr, _ := machinekey.New("m9")
	body, _ := json.Marshal(wire.ConnectRequest{ProtocolVersion: wire.ProtocolVersion, SubscriptionID: "default", ResourceGroup: "rg1",
		Name: "m9", CSR: string(csr), AgentVersion: "2026.11.0"})
	req, _ := http.NewRequest("POST", s.URL+wire.PathConnect, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusServiceUnavailable || ra < 1 {
		t.Errorf("a fourth onboarding at once: %d Retry-After %q, want 503 with a Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// Channels: eight dialled at once; past the burst of two (and the one a
	// second that refills), refused with a Retry-After; a refused agent's
	// connection still serves its requests.
	type dial struct {
		c   *client.Client
		err error
	}
	dials := make(chan dial, len(machines))
	for _, m := range machines {
		tr := m.Client.Transport.(*http.Transport).Clone()
		tr.ForceAttemptHTTP2 = true // one connection, as the agent has
		c, err := client.New(s.URL, client.WithHTTPClient(&http.Client{Transport: tr}))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			ch, err := c.DialChannel(t.Context())
			if err == nil {
				t.Cleanup(ch.Close)
			}
			dials <- dial{c, err}
		}()
	}
	admitted, refusedN := 0, 0
	for range machines {
		d := <-dials
		var refused *wire.APIError
		switch {
		case d.err == nil:
			admitted++
		case errors.As(d.err, &refused) && refused.Status == http.StatusServiceUnavailable && refused.RetryAfter >= time.Second &&
			strings.Contains(refused.Message, "try again"):
			refusedN++
			var ds wire.DesiredState
			if err := d.c.Do(t.Context(), "GET", wire.PathDesiredState, nil, &ds); err != nil {
				t.Errorf("a refused agent's requests: %v", err)
			}
		default:
			t.Errorf("a channel dial: %v, want success or 503 with a Retry-After", d.err)
		}
	}
	if admitted < 2 || refusedN == 0 {
		t.Errorf("%d channels admitted and %d refused of 8 dialled at once, want the burst of 2 admitted and the rest paced", admitted, refusedN)
	}
	// Pacing is not a failure: a storm of 10,000 must not write thousands
	// of error lines.
	for line := range strings.SplitSeq(s.Logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "try again in") {
			t.Errorf("a paced refusal was logged as an error: %s", line)
			break
		}
	}
	if !strings.Contains(s.Logs.String(), `"msg":"request paced"`) {
		t.Error("paced refusals are not in the debug log")
	}

	// Real agents, all started at once, all get in at 2 a second.
	var states []string
	for i := range 6 {
		st := agenttest.ConnectAgent(t, s.API, "rg2", "a"+strconv.Itoa(i), "")
		states = append(states, st)
	}
	for _, st := range states {
		agenttest.StartAgent(t, daemon.Config{StateDir: st})
	}
	testutil.Eventually(t, 60*time.Second, func() string {
		for _, st := range states {
			if s, _ := daemon.ReadStatus(st); !s.Connected {
				return "an agent is not connected yet"
			}
		}
		return ""
	})
}
