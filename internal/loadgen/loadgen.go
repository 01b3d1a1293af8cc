// Package loadgen simulates many agents against a real control plane and
// measures what matters at scale: onboarding rate, heartbeat throughput,
// push latency (a change made through the API until the agent's stream
// receives it), extension fan-out, endpoint protection enabled on every
// machine at once, and the server's memory.
//
// The simulated agents speak the real protocol (connect with a CSR, mTLS
// WebSocket stream, heartbeats) over real TLS; only the host inventory is
// synthetic. Each new agent message must be simulated here too, so the scale
// figures stay true (STYLE.md §15).
package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// Options configure a run.
type Options struct {
	Server        string // https://host:port
	CAFile        string
	Username      string
	Password      string
	ResourceGroup string // created if missing

	Agents            int
	Concurrency       int           // parallel onboardings
	HeartbeatInterval time.Duration // must match the server's setting for a steady state
	Steady            time.Duration // how long to measure heartbeats once all are connected
	Pushes            int           // tag changes whose delivery is timed
	PushTimeout       time.Duration
	// ExtensionFanout is how many machines get Corral/RunCommand set at
	// once in the extension phase (0 = skip it).
	ExtensionFanout int
	// ExtensionBulk makes the extension phase one bulk request over the
	// whole resource group (every onboarded machine) instead of one PUT
	// per machine.
	ExtensionBulk bool
	// Protection runs the endpoint protection phase: a signature set of
	// 10,000 hashes imported, protection enabled on the whole group.
	Protection bool
	// Updates runs the updates phase: a scope-wide assessment and a
	// deployment to every machine (updates.go).
	Updates bool
	// Policy runs the policy phase: linux-passwd-0644 assigned to the
	// resource group, timed until the server shows every machine's
	// compliance (policy.go).
	Policy bool
	// Storm runs the reconnect storm phase last: every agent's connection
	// dropped at once, timed until all are back.
	Storm bool
	// JITGrants is how many machines get a JIT grant at once in the JIT
	// phase, after a policy is set on the resource group (0 = skip it).
	JITGrants int
	// CPUProfile, if set, receives a CPU profile of the simulator over
	// the extension fan-out (to tell its cost from the server's).
	CPUProfile io.Writer

	// Transport carries the simulated agents' requests and push channels:
	// "agentmux" (everything on each agent's one connection in the agent's
	// own protocol, as corral-agent does), "http2" (the same over HTTP/2,
	// corral-agent's fallback) or "websocket" (the channel over the
	// HTTP/1.1 fallback, a second connection per agent).
	Transport string

	// ServerPID, when set, is read from /proc for RSS figures.
	ServerPID int
	Log       io.Writer
}

// Result holds the figures of a run.
type Result struct {
	Agents           int
	Onboarded        int
	OnboardDuration  time.Duration
	OnboardRate      float64 // machines per second
	Connected        int64
	HeartbeatsPerSec float64
	PushSamples      int
	PushLost         int
	PushP50, PushP99 time.Duration
	PushMax          time.Duration
	// Extension fan-out: extension set on ExtMachines machines at once,
	// each timed from its PUT until its agent's Succeeded is recorded.
	ExtMachines    int
	ExtSamples     int
	ExtLost        int
	ExtP50, ExtP99 time.Duration
	ExtMax         time.Duration
	ExtSetDuration time.Duration // issuing every PUT (or the one bulk request)
	ExtAllDone     time.Duration // until the last Succeeded
	// ExtPeakRSS is the server's highest RSS sampled during the phase.
	ExtPeakRSS int64
	// ExtBulkRequest says the phase was one bulk request; ExtBulk is the
	// operation as the server reports it after the phase (nil without
	// ExtensionBulk, or when the request failed).
	ExtBulkRequest bool
	ExtBulk        *wire.BulkOperation
	ServerRSSBytes int64 // at the end
	ServerPeakRSS  int64 // VmHWM
	// ServerRSSIdle is the server's RSS before the agents onboarded and
	// ServerRSSConnected once all were connected and settled: the
	// difference per connected agent is what one agent costs the server.
	ServerRSSIdle, ServerRSSConnected int64
	Reconnects                        int64
	Errors                            int64
	FirstError                        string

	Protection ProtectionResult
	Storm      StormResult
	// Updates holds the figures of the updates phase (nil: skipped).
	Updates *UpdatesResult
	// Policy holds the figures of the policy phase (nil: skipped).
	Policy *PolicyResult
	// JIT: a grant requested on JITMachines machines at once, each timed
	// from its request until its agent's Applied report is recorded.
	JITMachines    int
	JITSamples     int
	JITLost        int
	JITP50, JITP99 time.Duration
	JITMax         time.Duration
	JITAllDone     time.Duration
}

type run struct {
	opts Options
	tls  *tls.Config
	// hc carries every operator call (pooled connections, no client
	// certificate); admin and onboarder are the API clients over it.
	hc        *http.Client
	admin     *client.Client
	onboarder *client.Client

	mu      sync.Mutex
	pending map[string]time.Time // machine id -> push sent at
	samples []time.Duration

	extPending     map[string]time.Time // machine id -> extension set at
	extSamples     []time.Duration
	extSetDuration time.Duration
	extAllDone     time.Duration
	extPeakRSS     int64
	extBulk        *wire.BulkOperation

	prot       protState
	jitPending map[string]time.Time // grant id -> requested at
	jitEarly   map[string]time.Time // grant id -> applied before its request returned
	jitSamples []time.Duration
	jitAllDone time.Duration

	stats struct {
		connected, heartbeats, reconnects, errors atomic.Int64
		// refused counts channel dials refused with a Retry-After; back
		// the agents welcomed again since the storm phase cut them.
		refused, back atomic.Int64
		// caughtUp counts the agents that answered their first desired
		// state (fetched on their first welcome, as corral-agent does).
		caughtUp atomic.Int64
	}
	firstErr atomic.Value

	// onEvent, when set (a Fleet), is told of every channel event.
	onEvent func(Event)
}

// Run executes the load test and returns its figures.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Agents <= 0 || o.Concurrency <= 0 || o.HeartbeatInterval <= 0 {
		return Result{}, errors.New("agents, concurrency and heartbeat interval must be positive")
	}
	g, err := newRun(ctx, o)
	if err != nil {
		return Result{}, err
	}
	o = g.opts

	res := Result{Agents: o.Agents}
	if o.ServerPID > 0 {
		res.ServerRSSIdle, _ = procRSS(o.ServerPID)
	}
	streamCtx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	agents := make([]*simAgent, o.Agents)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	fmt.Fprintf(o.Log, "onboarding %d agents with %d workers...\n", o.Agents, o.Concurrency)
	for range o.Concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= o.Agents || ctx.Err() != nil {
					return
				}
				a, err := g.onboard(ctx, fmt.Sprintf("sim-%06d", i))
				if err != nil {
					g.noteError(err)
					continue
				}
				agents[i] = a
				go g.stream(streamCtx, a)
			}
		})
	}
	wg.Wait()
	res.OnboardDuration = time.Since(start)
	for _, a := range agents {
		if a != nil {
			res.Onboarded++
		}
	}
	res.OnboardRate = float64(res.Onboarded) / res.OnboardDuration.Seconds()
	fmt.Fprintf(o.Log, "onboarded %d in %s (%.0f/s); waiting for streams...\n", res.Onboarded, res.OnboardDuration.Round(time.Millisecond), res.OnboardRate)

	deadline := time.Now().Add(2 * time.Minute)
	for g.stats.connected.Load() < int64(res.Onboarded) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	res.Connected = g.stats.connected.Load()
	// The measured phases start once every agent has answered the desired
	// state it fetched on connecting, so they do not time that catch-up.
	for g.stats.caughtUp.Load() < res.Connected && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(o.Log, "%d streams connected, %d caught up; measuring heartbeats for %s...\n", res.Connected, g.stats.caughtUp.Load(), o.Steady)

	hb0, t0 := g.stats.heartbeats.Load(), time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(o.Steady):
	}
	res.HeartbeatsPerSec = float64(g.stats.heartbeats.Load()-hb0) / time.Since(t0).Seconds()
	if o.ServerPID > 0 {
		res.ServerRSSConnected, _ = procRSS(o.ServerPID)
	}

	fmt.Fprintf(o.Log, "timing %d pushes...\n", o.Pushes)
	g.measurePushes(ctx, agents)
	g.mu.Lock()
	res.PushSamples = len(g.samples)
	res.PushLost = len(g.pending)
	res.PushP50, res.PushP99, res.PushMax = percentiles(g.samples)
	g.mu.Unlock()

	if n := min(o.ExtensionFanout, res.Onboarded); n > 0 {
		if o.CPUProfile != nil {
			if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
				return res, err
			}
		}
		if o.ExtensionBulk {
			n = res.Onboarded
			fmt.Fprintf(o.Log, "setting %s on the %d machines of resource group %s through one bulk request...\n", wire.ExtRunCommand, n, o.ResourceGroup)
			g.measureExtensionFanoutBulk(ctx, agents)
		} else {
			fmt.Fprintf(o.Log, "setting %s on %d machines at once...\n", wire.ExtRunCommand, n)
			g.measureExtensionFanout(ctx, agents, n)
		}
		g.mu.Lock()
		res.ExtMachines, res.ExtSamples, res.ExtLost = n, len(g.extSamples), len(g.extPending)
		res.ExtP50, res.ExtP99, res.ExtMax = percentiles(g.extSamples)
		res.ExtSetDuration, res.ExtAllDone, res.ExtPeakRSS, res.ExtBulk = g.extSetDuration, g.extAllDone, g.extPeakRSS, g.extBulk
		res.ExtBulkRequest = o.ExtensionBulk
		g.mu.Unlock()
		if o.CPUProfile != nil {
			pprof.StopCPUProfile()
		}
	}
	if o.Protection && res.Onboarded > 0 {
		fmt.Fprintf(o.Log, "enabling endpoint protection on %d machines...\n", res.Onboarded)
		res.Protection = g.measureProtection(ctx, agents, 10_000)
	}
	if o.Updates && res.Onboarded > 0 {
		res.Updates = g.measureUpdates(ctx, res.Onboarded)
	}
	if o.Policy && res.Onboarded > 0 {
		res.Policy = g.measurePolicy(ctx, res.Onboarded)
	}
	if n := min(o.JITGrants, res.Onboarded); n > 0 {
		fmt.Fprintf(o.Log, "requesting a JIT grant on %d machines at once...\n", n)
		g.measureJIT(ctx, agents, n)
		g.mu.Lock()
		res.JITMachines, res.JITSamples, res.JITLost = n, len(g.jitSamples), len(g.jitPending)
		res.JITP50, res.JITP99, res.JITMax = percentiles(g.jitSamples)
		res.JITAllDone = g.jitAllDone
		g.mu.Unlock()
	}
	if o.Storm && res.Onboarded > 0 {
		fmt.Fprintf(o.Log, "dropping all %d agents' connections at once...\n", res.Onboarded)
		res.Storm = g.measureStorm(ctx, agents, 10*time.Minute)
	}
	if o.ServerPID > 0 {
		res.ServerRSSBytes, res.ServerPeakRSS = procRSS(o.ServerPID)
	}
	res.Reconnects = g.stats.reconnects.Load()
	res.Errors = g.stats.errors.Load()
	if e, ok := g.firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res, nil
}

// Check refuses options no run can use, before anything is started.
func (o Options) Check() error {
	switch o.Transport {
	case "", "agentmux", "http2", "websocket":
		return nil
	}
	return fmt.Errorf("--transport must be agentmux, http2 or websocket, not %q", o.Transport)
}

// newRun checks o, fills its defaults, signs in as the admin and prepares
// the onboarding principal.
func newRun(ctx context.Context, o Options) (*run, error) {
	if o.ResourceGroup == "" {
		o.ResourceGroup = "loadgen"
	}
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.Transport == "" {
		o.Transport = "agentmux"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	g := &run{opts: o, pending: map[string]time.Time{}}
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", o.CAFile)
	}
	g.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	g.hc = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: g.tls, MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: true}}
	if err := g.setup(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// apiClient is an API client over hc acting with token.
func (g *run) apiClient(hc *http.Client, token string) (*client.Client, error) {
	return client.New(g.opts.Server, client.WithHTTPClient(hc), client.WithToken(token), client.WithUserAgent("corral-loadgen"))
}

// setup signs in as the admin, creates the resource group and an
// onboarding service principal, and gets its token.
func (g *run) setup(ctx context.Context) error {
	anon, err := g.apiClient(g.hc, "")
	if err != nil {
		return err
	}
	tr, err := anon.PasswordToken(ctx, g.opts.Username, g.opts.Password)
	if err != nil {
		return fmt.Errorf("admin sign-in: %w", err)
	}
	if g.admin, err = g.apiClient(g.hc, tr.AccessToken); err != nil {
		return err
	}
	if _, err := g.admin.CreateResourceGroup(ctx, "default", g.opts.ResourceGroup, nil); err != nil {
		if _, err2 := g.admin.GetResourceGroup(ctx, "default", g.opts.ResourceGroup); err2 != nil {
			return err
		}
	}
	sp, err := g.admin.CreateServicePrincipal(ctx, wire.ServicePrincipalCreate{DisplayName: "loadgen"})
	if err != nil {
		return err
	}
	if _, err := g.admin.CreateRoleAssignment(ctx, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: "Connected Machine Onboarding",
		Scope: resource.ResourceGroup("default", g.opts.ResourceGroup).String()}); err != nil {
		return err
	}
	if tr, err = anon.ClientCredentialsToken(ctx, sp.ClientID, sp.ClientSecret); err != nil {
		return fmt.Errorf("onboarding token: %w", err)
	}
	g.onboarder, err = g.apiClient(g.hc, tr.AccessToken)
	return err
}

// measurePushes changes the tags of random machines one at a time (a few in
// flight) and times each change until the agent's stream receives it.
func (g *run) measurePushes(ctx context.Context, agents []*simAgent) {
	live := make([]*simAgent, 0, len(agents))
	for _, a := range agents {
		if a != nil {
			live = append(live, a)
		}
	}
	if len(live) == 0 {
		return
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range g.opts.Pushes {
		a := live[rand.IntN(len(live))]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			g.mu.Lock()
			if _, busy := g.pending[a.machineID]; busy {
				g.mu.Unlock()
				return
			}
			g.pending[a.machineID] = time.Now()
			g.mu.Unlock()
			tags := map[string]string{"loadgen": "true", "push": fmt.Sprint(i)}
			if _, err := g.admin.SetMachineTags(ctx, "default", g.opts.ResourceGroup, a.name, tags); err != nil {
				g.noteError(err)
				g.mu.Lock()
				delete(g.pending, a.machineID)
				g.mu.Unlock()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(g.opts.PushTimeout)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		n := len(g.pending)
		g.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *run) pushReceived(machineID string, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sent, ok := g.pending[machineID]; ok {
		g.samples = append(g.samples, at.Sub(sent))
		delete(g.pending, machineID)
	}
}

func (g *run) noteError(err error) {
	g.stats.errors.Add(1)
	g.firstErr.CompareAndSwap(nil, err.Error())
}
