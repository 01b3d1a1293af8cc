package loadgen

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/wire"
)

// simAgent is one simulated agent: it onboards through the real connect
// endpoint and then speaks the stream protocol like corral-agent run does.
type simAgent struct {
	name      string
	machineID string
	hc        *http.Client   // presents the machine certificate (also for the stream)
	api       *client.Client // the agent protocol over hc

	mu       sync.Mutex
	answered map[string]int64 // extension name -> last seqNo reported
	updates  map[string]bool  // update requests answered (updates.go)
	syncing  bool             // a desired-state fetch is running
	again    bool             // another sync arrived meanwhile
}

// onboard connects the agent with an onboarding token.
func (g *run) onboard(ctx context.Context, name string) (*simAgent, error) {
	keyPEM, csr, err := machinekey.New(name)
	if err != nil {
		return nil, err
	}
	req := wire.ConnectRequest{
		ProtocolVersion: wire.ProtocolVersion, SubscriptionID: "default", ResourceGroup: g.opts.ResourceGroup, Name: name,
		Tags: map[string]string{"loadgen": "true"}, CSR: string(csr), AgentVersion: "2026.11.0",
		Properties: wire.MachineProperties{OSName: "debian", OSVersion: "12", OSType: "linux", Hostname: name,
			Environment: wire.Environments[len(name)%len(wire.Environments)], CPUCount: 2, MemoryBytes: 4 << 30},
		AgentConfig: wire.AgentConfig{Mode: "full", ExtensionsEnabled: true, GuestConfigurationEnabled: true},
	}
	var resp wire.ConnectResponse
	if err := g.onboarder.Do(ctx, http.MethodPost, wire.PathConnect, req, &resp); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair([]byte(resp.Certificate), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("machine certificate: %w", err)
	}
	tc := g.tls.Clone()
	tc.Certificates = []tls.Certificate{cert}
	tc.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	hc := &http.Client{Transport: g.limited(&http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 1, IdleConnTimeout: 5 * time.Second})}
	api, err := g.apiClient(hc, "")
	if err != nil {
		return nil, err
	}
	return &simAgent{name: name, machineID: resp.MachineID, answered: map[string]int64{}, hc: hc, api: api}, nil
}

// stream runs the agent's push channel until ctx is done, reconnecting on
// failure. It heartbeats every interval and reports each sync it receives.
func (g *run) stream(ctx context.Context, a *simAgent) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := g.streamOnce(ctx, a)
		if ctx.Err() != nil {
			return
		}
		g.stats.reconnects.Add(1)
		if err != nil {
			g.noteError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (g *run) streamOnce(ctx context.Context, a *simAgent) error {
	u := "wss" + g.opts.Server[len("https"):] + wire.PathStream
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: a.hc})
	if err != nil {
		return fmt.Errorf("dial stream: %w", err)
	}
	defer conn.CloseNow()
	if err := wsjson.Write(ctx, conn, wire.StreamMessage{Type: wire.MsgHello, ProtocolVersion: wire.ProtocolVersion, AgentVersion: "2026.11.0"}); err != nil {
		return err
	}
	var welcome wire.StreamMessage
	if err := wsjson.Read(ctx, conn, &welcome); err != nil || welcome.Type != wire.MsgWelcome {
		return fmt.Errorf("welcome: %v", err)
	}
	g.stats.connected.Add(1)
	defer g.stats.connected.Add(-1)

	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() {
		// Spread heartbeats evenly over the interval.
		jitter := time.Duration(mrand.Int64N(int64(g.opts.HeartbeatInterval)))
		select {
		case <-hbCtx.Done():
			return
		case <-time.After(jitter):
		}
		t := time.NewTicker(g.opts.HeartbeatInterval)
		defer t.Stop()
		for {
			if err := wsjson.Write(hbCtx, conn, wire.StreamMessage{Type: wire.MsgHeartbeat}); err != nil {
				return
			}
			g.stats.heartbeats.Add(1)
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
			}
		}
	}()
	for {
		var msg wire.StreamMessage
		if err := wsjson.Read(ctx, conn, &msg); err != nil {
			return err
		}
		switch msg.Type {
		case wire.MsgSync:
			g.pushReceived(a.machineID, time.Now())
			g.onSync(ctx, a)
		case wire.MsgGoodbye:
			return fmt.Errorf("goodbye: %s", msg.Reason)
		}
	}
}

// onSync fetches desired state in the background, one fetch at a time per
// agent, coalescing syncs that arrive meanwhile (as the real agent does).
func (g *run) onSync(ctx context.Context, a *simAgent) {
	a.mu.Lock()
	if a.syncing {
		a.again = true
		a.mu.Unlock()
		return
	}
	a.syncing = true
	a.mu.Unlock()
	go func() {
		for {
			g.syncDesired(ctx, a)
			a.mu.Lock()
			if !a.again || ctx.Err() != nil {
				a.syncing = false
				a.mu.Unlock()
				return
			}
			a.again = false
			a.mu.Unlock()
		}
	}()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
