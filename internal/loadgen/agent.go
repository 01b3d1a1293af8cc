package loadgen

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/agentmux"
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
	guest    map[string]bool  // guest assignments answered (policy.go)
	syncing  bool             // a desired-state fetch is running
	again    bool             // another sync arrived meanwhile
	fetched  int64            // generation of the last desired state fetched
	synced   bool             // a desired state was fetched and answered
	// conns are the connections dialled (the storm phase cuts them);
	// dropped is set by a cut until the next welcome.
	conns   []net.Conn
	dropped atomic.Bool
	access  accessState // the access feature's last report
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
	for {
		err := g.onboarder.Do(ctx, http.MethodPost, wire.PathConnect, req, &resp)
		var ae *wire.APIError
		if err == nil {
			break
		}
		if !errors.As(err, &ae) || ae.RetryAfter <= 0 {
			return nil, err
		}
		// Paced by the server: wait as corral-agent connect does.
		g.stats.refused.Add(1)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(ae.RetryAfter + time.Duration(rand.Int64N(int64(ae.RetryAfter)))):
		}
	}
	cert, err := tls.X509KeyPair([]byte(resp.Certificate), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("machine certificate: %w", err)
	}
	tc := g.tls.Clone()
	tc.Certificates = []tls.Certificate{cert}
	tc.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	// One connection per agent, HTTP/2 like corral-agent: the push channel
	// and every request share it.
	a := &simAgent{name: name, machineID: resp.MachineID, answered: map[string]int64{}}
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	// Connections are kept so the storm phase can cut them.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err == nil {
			a.mu.Lock()
			a.conns = append(slices.DeleteFunc(a.conns, func(c net.Conn) bool { return c == nil }), c)
			a.mu.Unlock()
		}
		return c, err
	}
	h2 := &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: true,
		// corral-agent's liveness PINGs (localconfig.PingAfterSilence,
		// PingTimeout), which the server answers for every idle agent.
		HTTP2:       &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
		DialContext: dial}
	var tr http.RoundTripper = h2
	if g.opts.Transport == "agentmux" {
		tr = &agentmux.Transport{TLSClientConfig: tc, DialContext: dial, Fallback: h2,
			PingAfterSilence: 30 * time.Second, PingTimeout: 15 * time.Second}
	}
	hc := &http.Client{Timeout: 60 * time.Second, Transport: tr}
	api, err := g.apiClient(hc, "")
	if err != nil {
		return nil, err
	}
	a.hc, a.api = hc, api
	return a, nil
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
		wait := backoff
		var ae *wire.APIError
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			// Refused under load: wait as the real agent does.
			g.stats.refused.Add(1)
			wait = ae.RetryAfter + time.Duration(rand.Int64N(int64(ae.RetryAfter)))
		} else if err != nil && !a.dropped.Load() { // a cut by the storm phase is expected
			g.noteError(err)
		}
		if g.onEvent != nil {
			g.onEvent(Event{Kind: EventDown, Machine: a.machineID, Name: a.name, At: time.Now(), Err: err})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (g *run) streamOnce(ctx context.Context, a *simAgent) error {
	var ch client.Channel
	var err error
	dialCtx := ctx
	var local atomic.Value // the connection's local address, for a Fleet's events
	if g.onEvent != nil {
		dialCtx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			local.Store(i.Conn.LocalAddr().String())
		}})
	}
	if g.opts.Transport == "websocket" {
		ch, err = a.api.DialWebSocket(dialCtx)
	} else {
		ch, err = a.api.DialChannel(dialCtx)
	}
	if err != nil {
		return fmt.Errorf("dial stream: %w", err)
	}
	defer ch.Close()
	if err := ch.Write(ctx, wire.StreamMessage{Type: wire.MsgHello, ProtocolVersion: wire.ProtocolVersion, AgentVersion: "2026.11.0"}); err != nil {
		return err
	}
	welcome, err := ch.Read(ctx)
	if err != nil || welcome.Type != wire.MsgWelcome {
		return fmt.Errorf("welcome: %v", err)
	}
	g.stats.connected.Add(1)
	defer g.stats.connected.Add(-1)
	if a.dropped.CompareAndSwap(true, false) {
		g.stats.back.Add(1)
	}
	if g.onEvent != nil {
		addr, _ := local.Load().(string)
		g.onEvent(Event{Kind: EventConnected, Machine: a.machineID, Name: a.name, At: time.Now(), LocalAddr: addr})
	}
	// Catch up as corral-agent does: a generation it has not fetched
	// (on the first connection, every machine's) is fetched and answered
	// at once.
	a.mu.Lock()
	behind := welcome.Generation != a.fetched
	a.mu.Unlock()
	if behind {
		g.onSync(ctx, a)
	}

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
			if err := ch.Write(hbCtx, wire.StreamMessage{Type: wire.MsgHeartbeat}); err != nil {
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
		msg, err := ch.Read(ctx)
		if err != nil {
			return err
		}
		switch msg.Type {
		case wire.MsgSync:
			g.pushReceived(a.machineID, time.Now())
			if g.onEvent != nil {
				g.onEvent(Event{Kind: EventSync, Machine: a.machineID, Name: a.name, At: time.Now(), Generation: msg.Generation})
			}
			g.onSync(ctx, a)
		case wire.MsgClose:
			return fmt.Errorf("closed: %s", msg.Reason)
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
