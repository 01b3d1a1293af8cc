package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"runtime"
	"time"
)

// Config is everything `corral server` can be told. Zero values are replaced
// by the defaults of DefaultConfig; Validate reports what is still wrong.
type Config struct {
	DataDir string // required: CA, keys and the default SQLite store live here
	Listen  string // host:port of the TLS listener
	// Store is a DSN: "postgres://..." or "sqlite:PATH"; empty = sqlite in DataDir.
	Store string
	// TLSCertFile/TLSKeyFile give the server certificate instead of one
	// issued by the built-in CA.
	TLSCertFile, TLSKeyFile string
	// CACertFile/CAKeyFile give the CA that signs machine certificates
	// (and the server certificate) instead of one generated in DataDir.
	CACertFile, CAKeyFile string
	// TokenKeyFile is the Ed25519 key that signs access tokens; replicas
	// must share it. Empty = DataDir/token-signing.key (created if missing).
	TokenKeyFile string
	// ExtensionKeyFile is the Ed25519 key that signs the catalog of the
	// first-party publisher "Corral"; replicas must share it. Empty =
	// DataDir/extension-signing.key (created if missing).
	ExtensionKeyFile string
	// SignatureKeyFile is the Ed25519 key that signs endpoint protection's
	// signature sets; replicas must share it, and agents pin its public
	// half. Empty = DataDir/signature-signing.key (created if missing).
	SignatureKeyFile string
	// SSHCAKeyFile is the SSH user CA's private key (OpenSSH format, mode
	// 0600) that signs `corral ssh` certificates; replicas must share it.
	// Empty = DataDir/ssh-user-ca (created if missing).
	SSHCAKeyFile string
	// Hosts are extra DNS names / IPs for the generated server certificate.
	Hosts []string
	// AdvertiseURL is this replica's URL as the other replicas reach it
	// (tunnels are handed between replicas); default its listen address.
	AdvertiseURL string
	// AdminPassword is the first admin's password; empty = generate one and
	// write it to DataDir/admin-password (mode 0600), once.
	AdminPassword string
	// AdminMustChangePassword makes the first admin change the password at
	// first sign-in.
	AdminMustChangePassword bool

	// MetricsListen serves /metrics without authentication on a separate
	// plain-HTTP listener (for a loopback or private address); empty: none.
	MetricsListen string
	// Profiling serves Go's runtime profiles (/debug/pprof/) on the
	// MetricsListen listener, for measuring memory per agent connection.
	Profiling bool
	// MetricsTokenFile holds a bearer token that /metrics on the main
	// listener requires; empty: /metrics is not served there.
	MetricsTokenFile string

	// ActivityRetention purges activity entries older than this, after
	// writing them to ActivityExportDir; 0 keeps everything.
	ActivityRetention time.Duration
	// ActivityExportDir receives the purged entries as JSON Lines files
	// (default DataDir/activity-export).
	ActivityExportDir string

	// Limits bound what callers can make the server spend.
	Limits Limits

	HeartbeatInterval time.Duration // agents heartbeat this often
	DisconnectAfter   time.Duration // no heartbeat for this long -> Disconnected
	ExpireAfter       time.Duration // no contact for this long -> Expired
	SweepInterval     time.Duration // how often the thresholds are applied
	HeartbeatFlush    time.Duration // heartbeats are written in batches this often
	CertValidity      time.Duration // machine client certificates
	ServiceTokenTTL   time.Duration
	UserTokenTTL      time.Duration
	DeviceCodeTTL     time.Duration
	MaxBodyBytes      int64
	ShutdownTimeout   time.Duration

	// UpdateAssessmentInterval is how often agents enrolled in update
	// management assess by themselves; UpdateTick how often schedules and
	// runs are looked at. Zero takes the update context's defaults (24 h,
	// 10 s).
	UpdateAssessmentInterval time.Duration
	UpdateTick               time.Duration

	Logger *slog.Logger
	Clock  func() time.Time
}

// Limits bound connections, request bodies, sign-ins, onboarding and the
// store probe. Zero values take DefaultLimits'; negative values switch a
// count limit off (for a load test).
type Limits struct {
	// MaxConnections is the most open connections in all;
	// MaxConnectionsPerSource the most from one source address (raise it
	// when many agents share one NAT address). Connections over a limit are
	// closed at once.
	MaxConnections          int
	MaxConnectionsPerSource int
	// BodyReadTimeout bounds reading a request body (a package upload must
	// finish within it); WriteTimeout bounds writing an answer. Neither
	// applies to the agent's WebSocket stream.
	BodyReadTimeout time.Duration
	WriteTimeout    time.Duration
	// Sign-in throttles: failures per account and source address, per
	// source address across accounts, and how long a lockout lasts.
	SignInFailuresPerAccount int
	SignInFailuresPerSource  int
	SignInLockout            time.Duration
	// PasswordHashConcurrency argon2id checks run at once (19 MiB each);
	// PasswordHashQueue more wait; PasswordHashPerSource from one address.
	PasswordHashConcurrency int
	PasswordHashQueue       int
	PasswordHashPerSource   int
	// DeviceCodesPerSource device-code requests per address per minute;
	// MaxPendingDeviceCodes waiting for approval in all.
	DeviceCodesPerSource  int
	MaxPendingDeviceCodes int
	// MachinesPerPrincipal machines one principal may have onboarded;
	// OnboardingsPerMinute it may onboard per minute.
	MachinesPerPrincipal int
	OnboardingsPerMinute int
	// StoreProbeInterval is how often a write probe checks the store can
	// write (readiness, fail-closed sign-ins and changes).
	StoreProbeInterval time.Duration
	// StreamsPerSecond new agent push channels are admitted per second on
	// average, StreamBurst at once; ConnectsPerSecond and ConnectBurst the
	// same for onboardings. Beyond, callers get 503 with a Retry-After that
	// spreads them out (a reconnect storm after a restart or a network
	// flap). Per replica.
	StreamsPerSecond, StreamBurst   int
	ConnectsPerSecond, ConnectBurst int
}

// DefaultLimits returns the production limits.
func DefaultLimits() Limits {
	n := runtime.NumCPU()
	return Limits{
		MaxConnections: 20000, MaxConnectionsPerSource: 1024,
		BodyReadTimeout: 2 * time.Minute, WriteTimeout: 10 * time.Minute,
		SignInFailuresPerAccount: 10, SignInFailuresPerSource: 50, SignInLockout: 15 * time.Minute,
		PasswordHashConcurrency: n, PasswordHashQueue: 4 * n, PasswordHashPerSource: 4,
		DeviceCodesPerSource: 10, MaxPendingDeviceCodes: 1000,
		MachinesPerPrincipal: 10000, OnboardingsPerMinute: 600,
		StoreProbeInterval: 10 * time.Second,
		StreamsPerSecond:   1000, StreamBurst: 2000,
		ConnectsPerSecond: 200, ConnectBurst: 400,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct{ v, def *int }{
		{&l.MaxConnections, &d.MaxConnections}, {&l.MaxConnectionsPerSource, &d.MaxConnectionsPerSource},
		{&l.SignInFailuresPerAccount, &d.SignInFailuresPerAccount}, {&l.SignInFailuresPerSource, &d.SignInFailuresPerSource},
		{&l.PasswordHashConcurrency, &d.PasswordHashConcurrency}, {&l.PasswordHashQueue, &d.PasswordHashQueue},
		{&l.PasswordHashPerSource, &d.PasswordHashPerSource}, {&l.DeviceCodesPerSource, &d.DeviceCodesPerSource},
		{&l.MaxPendingDeviceCodes, &d.MaxPendingDeviceCodes}, {&l.MachinesPerPrincipal, &d.MachinesPerPrincipal},
		{&l.OnboardingsPerMinute, &d.OnboardingsPerMinute},
		{&l.StreamsPerSecond, &d.StreamsPerSecond}, {&l.StreamBurst, &d.StreamBurst},
		{&l.ConnectsPerSecond, &d.ConnectsPerSecond}, {&l.ConnectBurst, &d.ConnectBurst},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&l.BodyReadTimeout, &d.BodyReadTimeout}, {&l.WriteTimeout, &d.WriteTimeout}, {&l.SignInLockout, &d.SignInLockout},
		{&l.StoreProbeInterval, &d.StoreProbeInterval},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return l
}

// off turns a negative count limit into 0, which the parts below read as
// "no limit".
func off(n int) int { return max(n, 0) }

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Limits:            DefaultLimits(),
		Listen:            ":8443",
		HeartbeatInterval: 30 * time.Second,
		DisconnectAfter:   2 * time.Minute,
		ExpireAfter:       45 * 24 * time.Hour,
		SweepInterval:     10 * time.Second,
		HeartbeatFlush:    time.Second,
		CertValidity:      90 * 24 * time.Hour,
		ServiceTokenTTL:   time.Hour,
		UserTokenTTL:      8 * time.Hour,
		DeviceCodeTTL:     15 * time.Minute,
		MaxBodyBytes:      1 << 20,
		ShutdownTimeout:   15 * time.Second,
		Logger:            slog.Default(),
		Clock:             time.Now,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	set(&c.HeartbeatInterval, d.HeartbeatInterval)
	set(&c.DisconnectAfter, d.DisconnectAfter)
	set(&c.ExpireAfter, d.ExpireAfter)
	set(&c.SweepInterval, d.SweepInterval)
	set(&c.HeartbeatFlush, d.HeartbeatFlush)
	set(&c.CertValidity, d.CertValidity)
	set(&c.ServiceTokenTTL, d.ServiceTokenTTL)
	set(&c.UserTokenTTL, d.UserTokenTTL)
	set(&c.DeviceCodeTTL, d.DeviceCodeTTL)
	set(&c.ShutdownTimeout, d.ShutdownTimeout)
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	c.Limits = c.Limits.withDefaults()
	if c.ActivityExportDir == "" && c.DataDir != "" {
		c.ActivityExportDir = filepath.Join(c.DataDir, "activity-export")
	}
	return c
}

// Validate reports configuration errors, all at once.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q must be host:port", c.Listen))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key must be given together"))
	}
	if (c.CACertFile == "") != (c.CAKeyFile == "") {
		errs = append(errs, errors.New("--ca-cert and --ca-key must be given together"))
	}
	if c.DisconnectAfter <= c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("the disconnect threshold (%s) must be longer than the heartbeat interval (%s)", c.DisconnectAfter, c.HeartbeatInterval))
	}
	if c.ExpireAfter <= c.DisconnectAfter {
		errs = append(errs, fmt.Errorf("the expiry threshold (%s) must be longer than the disconnect threshold (%s)", c.ExpireAfter, c.DisconnectAfter))
	}
	if c.CertValidity < time.Hour {
		errs = append(errs, fmt.Errorf("certificate validity %s is too short (at least 1h)", c.CertValidity))
	}
	if c.AdvertiseURL != "" {
		if u, err := url.Parse(c.AdvertiseURL); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			errs = append(errs, fmt.Errorf("--advertise-url %q must be https://HOST[:PORT], the address the other replicas reach this one at", c.AdvertiseURL))
		}
	}
	if c.UpdateAssessmentInterval < 0 || (c.UpdateAssessmentInterval > 0 && c.UpdateAssessmentInterval < time.Minute) {
		errs = append(errs, fmt.Errorf("--update-assessment-interval %s is too short (at least 1m)", c.UpdateAssessmentInterval))
	}
	if c.UpdateTick < 0 || (c.UpdateTick > 0 && c.UpdateTick < 10*time.Millisecond) {
		errs = append(errs, fmt.Errorf("--update-tick %s is too short", c.UpdateTick))
	}
	if c.AdminPassword != "" && len(c.AdminPassword) < 12 {
		errs = append(errs, errors.New("CORRAL_ADMIN_PASSWORD must have at least 12 characters"))
	}
	if c.Profiling && c.MetricsListen == "" {
		errs = append(errs, errors.New("--profiling serves on --metrics-listen: give that too"))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen %q must be host:port", c.MetricsListen))
		}
	}
	if c.ActivityRetention < 0 || (c.ActivityRetention > 0 && c.ActivityRetention < time.Hour) {
		errs = append(errs, fmt.Errorf("--activity-retention %s: use 0 (keep everything) or at least 1h", c.ActivityRetention))
	}
	if l := c.Limits; l.BodyReadTimeout < time.Second || l.WriteTimeout < time.Second || l.StoreProbeInterval < 10*time.Millisecond {
		errs = append(errs, errors.New("--body-read-timeout and --write-timeout must be at least 1s, --store-probe-interval at least 10ms"))
	}
	return errors.Join(errs...)
}
