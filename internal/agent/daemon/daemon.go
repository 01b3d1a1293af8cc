// Package daemon is `corral-agent run`: the agent's long-running loop and
// the host of its features (package feature). It keeps one outbound
// WebSocket to the control plane (the push channel, which also carries
// heartbeats), fetches desired state whenever the server says it changed
// and hands it to every feature, delivers reports from the on-disk outbox,
// watches the local configuration and the host inventory, and renews the
// machine certificate before it expires. It never listens on a port.
//
// Ownership: Run owns every goroutine it starts and returns only after all
// of them stopped and every feature was closed. Reconnection uses
// full-jitter exponential backoff so a restarted control plane is not hit
// by every agent at once. A feature that fails or panics is contained and
// reported; it never takes the daemon down.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/agent/cloud"
	"github.com/corralhq/corral/internal/agent/cpulimit"
	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/features"
	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/outbox"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/agent/supervise"
	"github.com/corralhq/corral/internal/client"
)

// ErrRevoked means the control plane told this machine to stop: it was
// deleted or its identity expired. Only `corral-agent connect` recovers.
var ErrRevoked = errors.New("the control plane revoked this machine's identity")

// Config is what the daemon needs. Zero durations take the defaults.
type Config struct {
	StateDir string
	Host     hostinfo.Host
	// IMDS is the cloud metadata service base URL; empty = the standard one.
	IMDS    string
	Version string
	Logger  *slog.Logger

	InventoryInterval time.Duration // default 15m
	// ConfigPollInterval is the fallback check of the local configuration
	// file where inotify cannot watch it; decisions never wait for it (they
	// read the file when they are made).
	ConfigPollInterval time.Duration // default 2s
	RenewCheckInterval time.Duration // default 1h
	MaxBackoff         time.Duration // default 60s
	// ReportSettle is how long new reports wait before delivery, so the
	// reports of one change go together (default 50ms).
	ReportSettle time.Duration
	Clock        func() time.Time

	// ReconcileInterval re-applies the last desired state even without a
	// change on the server, so an extension removed locally is put back.
	ReconcileInterval time.Duration // default 5m
	// CgroupRoot is where cgroup v2 is mounted (default /sys/fs/cgroup);
	// extension handlers run under extensions.agent.cpulimit there.
	CgroupRoot string
	// HostChangesOff, when set, refuses every extension handler and run
	// command with this reason (corral dev without --allow-host-changes).
	HostChangesOff string

	// Features are the capabilities the daemon hosts; nil means
	// features.Default(), what every real agent runs.
	Features []feature.Feature
}

func (c *Config) defaults() {
	if c.InventoryInterval == 0 {
		c.InventoryInterval = 15 * time.Minute
	}
	if c.ConfigPollInterval == 0 {
		c.ConfigPollInterval = 2 * time.Second
	}
	if c.RenewCheckInterval == 0 {
		c.RenewCheckInterval = time.Hour
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 60 * time.Second
	}
	if c.ReportSettle == 0 {
		c.ReportSettle = reportSettle
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = 5 * time.Minute
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/sys/fs/cgroup"
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Features == nil {
		c.Features = features.Default()
	}
}

// Daemon is one run of the agent.
type Daemon struct {
	cfg    Config
	dir    statedir.Dir
	log    *slog.Logger
	id     *identity.Identity
	hc     *http.Client
	api    *client.Client
	out    *outbox.Outbox
	status *statusFile
	sup    *supervise.Supervisor

	features []*hosted

	// localCfg is the configuration last seen by the watcher; only the
	// proxy function and change detection use it — decisions read the
	// file (localconfig.Current) when they are made.
	localCfg atomic.Pointer[localconfig.Effective]
	// fetch asks the desired-state loop to fetch now; recheck asks it to
	// re-apply the cached desired state (the local configuration changed).
	fetch, recheck chan struct{}
	// heartbeatInterval is the interval the server asked for.
	heartbeatInterval atomic.Int64
	// tun are the open tunnels.
	tun tunnels
	// wsUntil (unix nanoseconds) is until when the push channel uses the
	// WebSocket fallback after HTTP/2 was refused on the way.
	wsUntil atomic.Int64
	// lastInventory is the last inventory reported (watchLoop and run only).
	lastInventory []byte
	// dialed is closed when the push channel's first dial returned, up or
	// not. The outbox waits for it, so a starting agent opens its one
	// connection for the channel instead of racing a second TLS dial (to
	// another replica, behind a load balancer) for the reports it queued.
	dialed     chan struct{}
	dialedOnce sync.Once
	// welcomed is kicked each time the push channel is welcomed: the
	// outbox then stops waiting out a backoff it began while the server
	// was out of reach.
	welcomed chan struct{}
}

// Run runs the agent until ctx ends (nil) or the identity is revoked
// (ErrRevoked).
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	d, err := newDaemon(cfg)
	if err != nil {
		return err
	}
	return d.run(ctx)
}

func newDaemon(cfg Config) (*Daemon, error) {
	dir := statedir.Dir(cfg.StateDir)
	if err := statedir.CheckSafe(dir); err != nil {
		return nil, err
	}
	id, err := identity.Load(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if id.State.Revoked != "" {
		return nil, fmt.Errorf("%w (%s): run \"corral-agent connect\" again", ErrRevoked, id.State.Revoked)
	}
	d := &Daemon{cfg: cfg, dir: dir, id: id, fetch: make(chan struct{}, 1), recheck: make(chan struct{}, 1), dialed: make(chan struct{}), welcomed: make(chan struct{}, 1),
		log: cfg.Logger.With("component", "agent", "machine", id.State.ResourceID)}
	lc := d.currentConfig()
	d.localCfg.Store(&lc)
	d.heartbeatInterval.Store(int64(id.State.HeartbeatInterval))
	if d.heartbeatInterval.Load() <= 0 {
		d.heartbeatInterval.Store(int64(30 * time.Second))
	}
	tlsCfg, err := id.TLSConfig()
	if err != nil {
		return nil, err
	}
	d.hc = localconfig.NewHTTPClient(tlsCfg, d.proxy) // d.proxy follows config changes
	d.api, err = client.New(id.State.Server, client.WithHTTPClient(d.hc), client.WithUserAgent("corral-agent/"+cfg.Version))
	if err != nil {
		return nil, err
	}
	d.out, err = outbox.Open(dir.Path(statedir.OutboxDir))
	if err != nil {
		return nil, err
	}
	d.status = &statusFile{path: dir.Path(statedir.StatusFile)}
	limiter, why := cpulimit.Detect(cfg.CgroupRoot)
	if limiter == nil {
		d.log.Info("extension CPU limit not enforced", "reason", why)
	}
	d.sup = supervise.New(limiter, d.log.With("component", "supervisor"))
	d.features = d.hostFeatures(cfg.Features, limiter)
	return d, nil
}

// currentConfig is the local configuration as it is on disk now.
func (d *Daemon) currentConfig() localconfig.Effective {
	e, err := localconfig.Current(d.cfg.StateDir)
	if err != nil {
		d.log.Error("local configuration unreadable; extensions, guest configuration and incoming connections are off", "err", err)
	}
	return e
}

// proxy routes through proxy.url unless the host is in proxy.bypass; with
// no proxy.url configured the usual environment variables apply.
func (d *Daemon) proxy(r *http.Request) (*url.URL, error) { return d.localCfg.Load().Proxy(r) }

func (d *Daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d.log.InfoContext(ctx, "agent starting", "version", d.cfg.Version, "server", d.id.State.Server, "pid", os.Getpid())
	d.status.update(func(s *Status) { s.PID = os.Getpid(); s.StartedAt = d.cfg.Clock(); s.Connected = false })

	// Fresh inventory and configuration on every start.
	d.reportInventory(ctx)
	d.reportConfig(*d.localCfg.Load())
	d.startFeatures(ctx)

	var wg sync.WaitGroup
	fatal := func(err error) {
		if err != nil && ctx.Err() == nil {
			cancel(err)
		}
	}
	wg.Go(func() { fatal(d.streamLoop(ctx)) })
	wg.Go(func() { d.desiredLoop(ctx) })
	wg.Go(func() { d.deliverLoop(ctx) })
	wg.Go(func() { d.watchLoop(ctx) })
	wg.Go(func() { d.renewLoop(ctx) })
	d.tickLoops(ctx, &wg)
	<-ctx.Done()
	wg.Wait()
	d.tun.wg.Wait()
	d.closeFeatures()
	d.sup.Close()
	d.status.update(func(s *Status) { s.Connected = false; s.PID = 0 })
	if err := context.Cause(ctx); errors.Is(err, ErrRevoked) {
		d.id.State.Revoked = err.Error()
		if serr := d.id.SaveState(); serr != nil {
			d.log.Error("record revocation", "err", serr)
		}
		d.log.Error("agent stopped: identity revoked", "err", err)
		return err
	}
	d.log.Info("agent stopped")
	return nil
}

// sleep waits for d or ctx; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	return sleepUnless(ctx, d, nil)
}

// sleepUnless is sleep that also ends early (true) when wake is signalled.
func sleepUnless(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		return true
	}
}

// kick signals a buffered channel without blocking.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// newCloudDetector is the detector for this daemon's host.
func (d *Daemon) newCloudDetector() cloud.Detector {
	return cloud.Detector{Host: d.cfg.Host, IMDS: d.cfg.IMDS}
}
