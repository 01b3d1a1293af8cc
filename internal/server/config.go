package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	// Hosts are extra DNS names / IPs for the generated server certificate.
	Hosts []string
	// AdminPassword is the first admin's password; empty = generate one and
	// print it once.
	AdminPassword string

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

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
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
	if c.UpdateAssessmentInterval < 0 || (c.UpdateAssessmentInterval > 0 && c.UpdateAssessmentInterval < time.Minute) {
		errs = append(errs, fmt.Errorf("--update-assessment-interval %s is too short (at least 1m)", c.UpdateAssessmentInterval))
	}
	if c.UpdateTick < 0 || (c.UpdateTick > 0 && c.UpdateTick < 10*time.Millisecond) {
		errs = append(errs, fmt.Errorf("--update-tick %s is too short", c.UpdateTick))
	}
	if c.AdminPassword != "" && len(c.AdminPassword) < 12 {
		errs = append(errs, errors.New("CORRAL_ADMIN_PASSWORD must have at least 12 characters"))
	}
	return errors.Join(errs...)
}
