// Package server assembles the control plane: store, CA, token issuer, the
// HTTP API, the web UI, the agent push hub, the heartbeat batcher and the
// status sweeper, behind one TLS listener. It owns every goroutine it starts
// and stops them on Serve's context cancellation (graceful shutdown).
package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/corralhq/corral/internal/agentmux"
	"github.com/corralhq/corral/internal/server/admission"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/heartbeat"
	"github.com/corralhq/corral/internal/server/httpapi"
	"github.com/corralhq/corral/internal/server/lifecycle"
	"github.com/corralhq/corral/internal/server/pki"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/relay"
	"github.com/corralhq/corral/internal/server/replicas"
	"github.com/corralhq/corral/internal/server/retention"
	"github.com/corralhq/corral/internal/server/updates"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/storeopen"
	"github.com/corralhq/corral/internal/version"
	"github.com/corralhq/corral/internal/wire"
)

// Bootstrap tells the operator what first start created. AdminPasswordFile
// is set only when a password was generated now: it is in that file (mode
// 0600, in the data directory) and nowhere else in the clear; the operator
// reads it once and deletes it.
type Bootstrap struct {
	CACertPath        string
	CAFingerprint     string
	AdminCreated      bool
	AdminPasswordFile string
}

// Server is a running control plane.
type Server struct {
	cfg       Config
	Store     store.Store
	CA        *pki.CA
	API       *httpapi.API
	Hub       *push.Hub
	Bootstrap Bootstrap

	ln *limitListener
	hs *handshakeListener
	// agents counts the agentmux connections being served.
	agents sync.WaitGroup
	http   *http.Server
	// metricsLn and metricsHTTP serve /metrics apart (--metrics-listen).
	metricsLn    net.Listener
	metricsHTTP  *http.Server
	metricsToken []byte
	health       *httpapi.StoreHealth
	retention    *retention.Job
	batcher      *heartbeat.Batcher
	sweeper      *lifecycle.Sweeper
	registry     *prometheus.Registry
	bus          *replicas.PGBus // nil with SQLite
	relay        *relay.Relay
	notifier     push.Notifier
	// updates runs its scheduler in Serve, under schedLock on PostgreSQL.
	updates   *updates.Service
	schedLock updates.Lock
	// connCtx is the base context of every connection; cancelling it ends
	// hijacked WebSocket streams, which http.Server.Shutdown does not track.
	connCtx    context.Context
	cancelConn context.CancelFunc
	ready      bool
	mu         sync.Mutex
}

// New prepares a server: it creates the data dir, opens and migrates the
// store, loads or creates the CA, server certificate and token signing key,
// bootstraps the default subscription and admin user, and binds the
// listener (so Addr is known before Serve).
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	s := &Server{cfg: cfg, Hub: push.NewHub(), registry: prometheus.NewRegistry(), health: &httpapi.StoreHealth{}}
	ok := false
	defer func() {
		if !ok {
			s.closeAll()
		}
	}()

	dsn := cfg.Store
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(cfg.DataDir, "corral.db")
	}
	st, err := storeopen.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.Store = st

	now := cfg.Clock()
	if cfg.CACertFile != "" {
		s.CA, err = pki.LoadCA(cfg.CACertFile, cfg.CAKeyFile)
		s.Bootstrap.CACertPath = cfg.CACertFile
	} else {
		s.CA, _, err = pki.LoadOrCreateCA(cfg.DataDir, now)
		s.Bootstrap.CACertPath = filepath.Join(cfg.DataDir, "ca.crt")
	}
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	s.Bootstrap.CAFingerprint = s.CA.Fingerprint()

	tlsCert, err := s.serverCertificate(now)
	if err != nil {
		return nil, err
	}
	key, err := signingKey(cfg.TokenKeyFile, cfg.DataDir, "token-signing.key", "--token-signing-key", "token signing key")
	if err != nil {
		return nil, err
	}
	if err := s.bootstrap(ctx, now); err != nil {
		return nil, err
	}
	extKey, err := signingKey(cfg.ExtensionKeyFile, cfg.DataDir, "extension-signing.key", "--extension-signing-key", "extension signing key")
	if err != nil {
		return nil, err
	}
	sigKey, err := signingKey(cfg.SignatureKeyFile, cfg.DataDir, "signature-signing.key", "--signature-signing-key", "signature set signing key")
	if err != nil {
		return nil, err
	}

	sshCA, err := loadSSHCA(cfg)
	if err != nil {
		return nil, err
	}

	// Bound now: the relay needs this replica's address.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.ln = newLimitListener(ln, off(cfg.Limits.MaxConnections), off(cfg.Limits.MaxConnectionsPerSource), cfg.Logger.With("component", "listener"))
	metrics := httpapi.NewMetrics(s.registry)
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.registry.MustRegister(newMachineCollector(st, cfg.Logger))
	s.Hub.OnCount = func(n int) { metrics.Streams.Set(float64(n)) }
	var notifier push.Notifier = s.Hub
	var sweepLock func(context.Context) (func(), bool)
	if isPostgres(dsn) {
		s.bus, err = replicas.NewPGBus(dsn, s.Hub, cfg.Logger.With("component", "replicas"))
		if err != nil {
			return nil, err
		}
		notifier, sweepLock = s.bus, s.bus.SweeperLock
	}
	s.notifier = notifier
	self := strings.TrimSuffix(cfg.AdvertiseURL, "/")
	if self == "" {
		self = s.URL()
		if host, _, _ := net.SplitHostPort(cfg.Listen); s.bus != nil && (host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified()) {
			cfg.Logger.Warn("replicas on PostgreSQL: this replica tells the others to reach it at "+self+"; set --advertise-url to an address they can reach, or SSH sessions relayed between replicas fail",
				"listen", cfg.Listen)
		}
	}
	var bus relay.Bus // nil: one server, tunnels announced here directly
	peers := peerRoots(s.CA.Certificate())
	if s.bus != nil {
		bus = s.bus
		if err := checkPeerCertificate(tlsCert, self, peers); err != nil {
			cfg.Logger.Error("the other replicas cannot verify this replica's certificate at "+self+", so SSH sessions relayed to users on this replica fail; "+
				"name its host with --host or give a --tls-cert that covers it", "err", err)
		}
	}
	s.relay = relay.New(relay.Config{Self: self, Bus: bus, Hub: s.Hub, Tokens: authn.NewTokenIssuer(key, "corral"),
		PeerTLS: &tls.Config{RootCAs: peers, MinVersion: tls.VersionTLS12}, Clock: cfg.Clock,
		Logger: cfg.Logger.With("component", "relay")})
	if s.bus != nil {
		s.bus.OnTunnel = s.relay.Announce
	}
	s.batcher = heartbeat.NewBatcher(st, cfg.Logger.With("component", "heartbeat"), cfg.HeartbeatFlush, 2000)
	cs, err := newContexts(ctx, cfg, st, s.CA, keys{token: key, extension: extKey, signatures: sigKey, sshCA: sshCA}, notifier)
	if err != nil {
		return nil, err
	}
	s.updates = cs.updates
	if s.bus != nil {
		s.schedLock = func(ctx context.Context) (func(), bool) { return s.bus.TryLock(ctx, "updates") }
		cs.access.Attach(self, s.bus)
		s.bus.OnEndSession = cs.access.EndLocal
	} else {
		cs.access.Attach(self, nil)
	}
	l := cfg.Limits
	s.API = httpapi.New(httpapi.Deps{
		CA: s.CA, Hub: s.Hub, Relay: s.relay, Heartbeats: s.batcher, Capabilities: cs.seam,
		Inventory: cs.inventory, Identity: cs.identity, Onboarding: cs.onboarding, Roles: cs.roles, Activity: cs.activity,
		Extensions: cs.extensions, Protection: cs.protection, Access: cs.access, Clock: cfg.Clock, Logger: cfg.Logger.With("component", "api"), Metrics: metrics,
		Settings: httpapi.Settings{Version: version.Version, HeartbeatInterval: cfg.HeartbeatInterval, MaxBodyBytes: cfg.MaxBodyBytes,
			Limits: httpapi.Limits{
				SignInFailuresPerAccount: l.SignInFailuresPerAccount, SignInFailuresPerSource: l.SignInFailuresPerSource,
				SignInLockout: l.SignInLockout,
				PasswordHashes: admission.GateLimits{Slots: l.PasswordHashConcurrency, Queue: l.PasswordHashQueue,
					PerKey: l.PasswordHashPerSource, MaxWait: 5 * time.Second},
				DeviceCodesPerSource: l.DeviceCodesPerSource, MaxPendingDeviceCodes: l.MaxPendingDeviceCodes,
				StreamsPerSecond: off(l.StreamsPerSecond), StreamBurst: l.StreamBurst,
				ConnectsPerSecond: off(l.ConnectsPerSecond), ConnectBurst: l.ConnectBurst,
			}},
		StoreHealth: s.health,
		Updates:     cs.updates,
		Policy:      cs.policy,
	})
	s.retention = &retention.Job{Store: st, Clock: cfg.Clock, Logger: cfg.Logger.With("component", "retention"),
		Interval: 10 * time.Minute, ActivityRetention: cfg.ActivityRetention, ExportDir: cfg.ActivityExportDir, Seal: cs.activity.Seal}
	if s.bus != nil {
		s.retention.Lock = s.bus.RetentionLock
	}
	s.sweeper = &lifecycle.Sweeper{
		Store: st, Clock: cfg.Clock, Logger: cfg.Logger.With("component", "lifecycle"), Interval: cfg.SweepInterval,
		DisconnectAfter: cfg.DisconnectAfter, ExpireAfter: cfg.ExpireAfter,
		OnChanged: s.onStatusChanged, Lock: sweepLock,
		Runs: cs.extensions, RunGrace: 2 * time.Minute,
		OnRunsExpired: cs.syncer.Announce,
	}

	if cfg.MetricsTokenFile != "" {
		tok, err := os.ReadFile(cfg.MetricsTokenFile)
		if err != nil {
			return nil, fmt.Errorf("read --metrics-token-file: %w", err)
		}
		if s.metricsToken = []byte(strings.TrimSpace(string(tok))); len(s.metricsToken) < 16 {
			return nil, fmt.Errorf("--metrics-token-file %s: the token must have at least 16 characters", cfg.MetricsTokenFile)
		}
	}
	if cfg.MetricsListen != "" {
		if s.metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("listen on --metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
		if cfg.Profiling {
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		}
		s.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, ErrorLog: log.New(serverErrorLog{cfg.Logger.With("component", "metrics")}, "", 0)}
	}
	s.connCtx, s.cancelConn = context.WithCancel(context.Background())
	s.http = &http.Server{
		Handler:           withDeadlines(s.routes(), l.BodyReadTimeout, l.WriteTimeout),
		BaseContext:       func(net.Listener) context.Context { return s.connCtx },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// An HTTP/2 connection (an agent's: its channel and requests)
		// silent for --disconnect-after is probed with a PING and closed
		// when none comes back: a peer the network lost silently does not
		// hold a stream, its memory and a descriptor until TCP gives up.
		HTTP2:    &http.HTTP2Config{SendPingTimeout: cfg.DisconnectAfter, PingTimeout: 15 * time.Second},
		ErrorLog: log.New(serverErrorLog{cfg.Logger.With("component", "http")}, "", 0),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{tlsCert},
			// Client certificates are requested on every connection and
			// verified per route, so a bad certificate gets a clear JSON
			// error and an activity entry instead of a handshake failure.
			ClientAuth: tls.RequestClientCert,
		},
	}
	// Agents speak agentmux (negotiated by ALPN, first choice): their
	// requests and push channel over one connection that costs one
	// goroutine while idle. Everyone else, and agents whose way to the
	// server does not pass the protocol through, get HTTP/2 or HTTP/1.1.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	s.http.Protocols = &protos
	s.http.TLSConfig.NextProtos = []string{agentmux.ALPN, "h2", "http/1.1"}
	// The listener completes handshakes itself and starts each agentmux
	// connection's reader as a new goroutine (handshake.go).
	muxLog := cfg.Logger.With("component", "agentmux")
	s.hs = newHandshakeListener(s.ln, s.http.TLSConfig, s.http.ReadHeaderTimeout, func(tc *tls.Conn) {
		s.agents.Add(1)
		defer s.agents.Done()
		// Silent for --disconnect-after plus the agent's ping timeout: the
		// agent is gone.
		agentmux.Serve(tc, s.http.Handler, agentmux.ServerOptions{BaseContext: s.connCtx,
			IdleTimeout: cfg.DisconnectAfter + 15*time.Second, Logger: muxLog})
	}, cfg.Logger.With("component", "listener"))
	ok = true
	return s, nil
}

// serverCertificate loads the given certificate or issues one from the CA.
// The CA certificate is appended to the chain so agents can pin it by
// fingerprint.
func (s *Server) serverCertificate(now time.Time) (tls.Certificate, error) {
	if s.cfg.TLSCertFile != "" {
		c, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			return c, fmt.Errorf("load server certificate: %w", err)
		}
		return c, nil
	}
	hosts := append([]string{}, s.cfg.Hosts...)
	if h := advertiseHost(s.cfg.AdvertiseURL); h != "" {
		hosts = append(hosts, h) // the other replicas connect to it
	}
	if h, _, err := net.SplitHostPort(s.cfg.Listen); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	if hn, err := os.Hostname(); err == nil {
		hosts = append(hosts, hn)
	}
	c, err := s.CA.LoadOrCreateServerCert(s.cfg.DataDir, hosts, now)
	if err != nil {
		return c, fmt.Errorf("server certificate: %w", err)
	}
	c.Certificate = append(c.Certificate, s.CA.Certificate().Raw)
	return c, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", s.API)
	mux.Handle("/agent/", s.API)
	mux.Handle("/oauth2/", s.API)
	mux.Handle("POST "+relay.PathInternal+"{id}", s.relay.PeerHandler())
	if s.metricsToken != nil {
		mux.Handle("GET /metrics", requireToken(s.metricsToken, promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, wire.Health{Status: "ok", Version: version.Version})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if ui := s.webUI(); ui != nil {
		mux.Handle("/ui/", ui)
		mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	}
	return securityHeaders(mux)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	if !ready {
		writeHealth(w, http.StatusServiceUnavailable, wire.Health{Status: "unavailable", Version: version.Version, Detail: "starting or shutting down"})
		return
	}
	// The store first: with the database down the listener is down too,
	// and the operator should read the cause.
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		writeHealth(w, http.StatusServiceUnavailable, wire.Health{Status: "unavailable", Version: version.Version, Detail: "store unreachable: the database cannot be reached; API calls that need it get 503 until it is back"})
		return
	}
	if s.bus != nil && !s.bus.Listening() {
		// It would miss the other replicas' changes for the agents it holds.
		writeHealth(w, http.StatusServiceUnavailable, wire.Health{Status: "unavailable", Version: version.Version, Detail: "not listening for the other replicas' changes"})
		return
	}
	if err := s.health.Err(); err != nil {
		detail := "the store cannot write"
		switch {
		case errors.Is(err, store.ErrFull):
			detail = "the store has no space left to write: sign-ins and changes are refused until space is freed"
		case errors.Is(err, store.ErrUnavailable):
			detail = "store unreachable: the last write probe could not reach the database"
		}
		writeHealth(w, http.StatusServiceUnavailable, wire.Health{Status: "unavailable", Version: version.Version, Detail: detail})
		return
	}
	writeHealth(w, http.StatusOK, wire.Health{Status: "ok", Version: version.Version})
}

// Addr is the bound listener address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is https://host:port of the listener, with loopback for wildcard binds.
func (s *Server) URL() string {
	host, port, _ := net.SplitHostPort(s.Addr())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port)
}

// Serve runs until ctx is cancelled, then shuts down gracefully: it stops
// accepting, lets in-flight requests finish (up to ShutdownTimeout), closes
// agent streams, flushes heartbeats and closes the store.
func (s *Server) Serve(ctx context.Context) error {
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.batcher.Run(bgCtx) })
	wg.Go(func() { s.sweeper.Run(bgCtx) })
	wg.Go(func() { s.API.Activity.RunSealer(bgCtx, time.Second) })
	wg.Go(func() { s.retention.Run(bgCtx) })
	wg.Go(func() { s.probeStore(bgCtx) })
	wg.Go(func() { s.flushDenials(bgCtx) })
	if s.metricsHTTP != nil {
		wg.Go(func() {
			if err := s.metricsHTTP.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.cfg.Logger.ErrorContext(bgCtx, "metrics listener stopped", "err", err)
			}
		})
	}
	wg.Go(func() { s.updates.RunScheduler(bgCtx, s.schedLock) })
	if s.bus != nil {
		wg.Go(func() { s.bus.Run(bgCtx) })
	}

	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.hs) }()
	s.setReady(true)
	s.cfg.Logger.InfoContext(ctx, "control plane listening", "addr", s.Addr(), "version", version.Version)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.setReady(false)
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	s.cancelConn() // agents get "going away" and reconnect (to another replica)
	err := s.http.Shutdown(shutCtx)
	if err != nil {
		_ = s.http.Close()
	}
	// The agentmux connections drain on their own (GOAWAY, then closed
	// once their requests end or DrainTimeout passes).
	agentsDone := make(chan struct{})
	go func() { s.agents.Wait(); close(agentsDone) }()
	select {
	case <-agentsDone:
	case <-shutCtx.Done():
	}
	if s.metricsHTTP != nil {
		_ = s.metricsHTTP.Shutdown(shutCtx)
	}
	stopBg()
	wg.Wait()
	if ferr := s.API.FlushAnonymousDenials(shutCtx, true); ferr != nil {
		s.cfg.Logger.ErrorContext(ctx, "write aggregated denials at shutdown", "err", ferr)
	}
	s.closeAll()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	s.cfg.Logger.InfoContext(ctx, "control plane stopped")
	return errors.Join(serveErr, err)
}

func (s *Server) setReady(v bool) {
	s.mu.Lock()
	s.ready = v
	s.mu.Unlock()
}

func (s *Server) closeAll() {
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.metricsLn != nil {
		_ = s.metricsLn.Close()
	}
	if s.bus != nil {
		s.bus.Close()
	}
	if s.Store != nil {
		_ = s.Store.Close()
	}
}

// RunRetention makes one pass of the retention job now (it also runs every
// ten minutes): expired device codes are purged and, with a retention,
// older activity exported and purged.
func (s *Server) RunRetention(ctx context.Context) (retention.Result, error) {
	return s.retention.Once(ctx)
}

// MetricsAddr is the --metrics-listen address ("" without one).
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// probeStore checks every StoreProbeInterval that the store can write, for
// readiness and the fail-closed refusal of sign-ins and changes.
func (s *Server) probeStore(ctx context.Context) {
	var judge probeJudge
	probe := func() {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		err := s.Store.ProbeWrite(pctx, s.cfg.Clock())
		if ctx.Err() != nil {
			return
		}
		switch judge.verdict(err) {
		case probeSlow:
			s.cfg.Logger.WarnContext(ctx, "the store is slow: a write probe did not finish in time", "timeout", probeTimeout, "err", err)
		case probeFailed:
			if s.health.Err() == nil {
				s.cfg.Logger.ErrorContext(ctx, "the store cannot write", "err", err)
			}
			s.health.Failed(err)
		case probeOK:
			if s.health.Err() != nil {
				s.cfg.Logger.InfoContext(ctx, "the store can write again")
			}
			s.health.Succeeded()
		}
	}
	probe()
	t := time.NewTicker(s.cfg.Limits.StoreProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			probe()
		}
	}
}

// flushDenials writes the aggregated anonymous denials whose minute is over.
func (s *Server) flushDenials(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.API.FlushAnonymousDenials(ctx, false); err != nil && ctx.Err() == nil {
				s.cfg.Logger.ErrorContext(ctx, "write aggregated denials", "err", err)
			}
		}
	}
}

// requireToken serves h only to requests bearing token.
func requireToken(token []byte, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="corral-metrics"`)
			http.Error(w, "the metrics need the bearer token of --metrics-token-file", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// onStatusChanged tells agents of expired machines to stop.
func (s *Server) onStatusChanged(ctx context.Context, ids []string) {
	for _, id := range ids {
		m, err := s.Store.GetMachineByID(ctx, id)
		if err == nil && m.Status == wire.StatusExpired {
			s.notifier.Goodbye(ctx, id, "the machine identity expired; onboard it again")
		}
	}
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// probeTimeout bounds one write probe.
const probeTimeout = 5 * time.Second

// slowProbesToFail is how many write probes in a row may time out before
// the store counts as unable to write: a store busy with a burst of writes
// (10,000 agents reporting at once on SQLite's one writer) is slow, not
// broken, and refusing every change meanwhile was a self-inflicted outage.
// A definite failure (disk full, database unreachable, any other error)
// counts at once.
const slowProbesToFail = 3

type probeVerdict int

const (
	probeOK probeVerdict = iota
	probeSlow
	probeFailed
)

// probeJudge turns write probe results into the store's health.
type probeJudge struct{ timeouts int }

func (j *probeJudge) verdict(err error) probeVerdict {
	switch {
	case err == nil:
		j.timeouts = 0
		return probeOK
	case errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, store.ErrFull) && !errors.Is(err, store.ErrUnavailable):
		j.timeouts++
		if j.timeouts < slowProbesToFail {
			return probeSlow
		}
		return probeFailed
	default:
		return probeFailed
	}
}
