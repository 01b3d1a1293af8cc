package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/flagenv"
	"github.com/corralhq/corral/internal/server"
)

func newServerCommand() *cobra.Command {
	cfg := server.DefaultConfig()
	var logLevel, logFormat string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane",
		Long: `Run the Corral control plane: REST API, web UI, OAuth2 token endpoint and the agent
endpoint, all on one TLS listener.

On first start it creates a CA (DATA_DIR/ca.crt, its sha256 fingerprint is printed for
"corral-agent connect --ca-fingerprint"), a server certificate, the subscription "default"
and the user "admin" — once in the life of the store: an admin deleted later stays deleted.
Its password is CORRAL_ADMIN_PASSWORD, or a generated one written to DATA_DIR/admin-password
(mode 0600, never printed): read it, sign in, change it with "corral user password" and
delete the file.

The limits (connections, body and write timeouts, sign-in throttles, password-hash
concurrency, device codes, onboarding quotas) are described in docs/security.md with their
defaults; a negative count switches that limit off (load tests only).
/metrics is served only with --metrics-token-file (bearer token) or on --metrics-listen.

Every flag can also be set with an environment variable: --data-dir is CORRAL_DATA_DIR.
The garbage collector runs at GOGC=50 (less memory per agent connection) unless GOGC is set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagenv.Apply(cmd.Flags(), "CORRAL_"); err != nil {
				return err
			}
			if cfg.AdminPassword == "" {
				cfg.AdminPassword = os.Getenv("CORRAL_ADMIN_PASSWORD")
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServer(ctx, cmd.OutOrStdout(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the CA, keys and the embedded SQLite store (required)")
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "TLS listen address host:port")
	f.StringVar(&cfg.Store, "store", "", "store DSN: postgres://... or sqlite:PATH (default: SQLite in --data-dir)")
	f.StringVar(&cfg.AdvertiseURL, "advertise-url", "", "https://HOST:PORT the other replicas reach this one at, for SSH sessions relayed between replicas (default: the listen address; the generated server certificate names HOST, a --tls-cert must)")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", "", "server certificate PEM (default: issued by the built-in CA)")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", "", "server private key PEM")
	f.StringVar(&cfg.CACertFile, "ca-cert", "", "CA certificate PEM that signs machine certificates (default: generated in --data-dir)")
	f.StringVar(&cfg.CAKeyFile, "ca-key", "", "CA private key PEM")
	f.StringVar(&cfg.TokenKeyFile, "token-signing-key", "", "Ed25519 key that signs access tokens; replicas share it, so a file given here must exist (default: created in --data-dir)")
	f.StringVar(&cfg.ExtensionKeyFile, "extension-signing-key", "", "Ed25519 key that signs the first-party (Corral) extension catalog; replicas share it, so a file given here must exist (default: created in --data-dir)")
	f.StringVar(&cfg.SignatureKeyFile, "signature-signing-key", "", "Ed25519 key that signs endpoint protection's signature sets; replicas share it, so a file given here must exist; agents pin it (default: created in --data-dir)")
	f.StringVar(&cfg.SSHCAKeyFile, "ssh-ca-key", "", "SSH user CA private key (OpenSSH format, mode 0600) that signs corral ssh certificates; replicas share it, so a file given here must exist (default: created in --data-dir as ssh-user-ca)")
	f.StringSliceVar(&cfg.Hosts, "host", nil, "extra DNS name or IP for the generated server certificate (repeatable)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", cfg.HeartbeatInterval, "how often agents send heartbeats")
	f.DurationVar(&cfg.DisconnectAfter, "disconnect-after", cfg.DisconnectAfter, "a machine without heartbeat for this long becomes Disconnected")
	f.DurationVar(&cfg.ExpireAfter, "expire-after", cfg.ExpireAfter, "a machine without contact for this long becomes Expired")
	f.DurationVar(&cfg.SweepInterval, "sweep-interval", cfg.SweepInterval, "how often machine status thresholds are applied")
	f.DurationVar(&cfg.CertValidity, "cert-validity", cfg.CertValidity, "validity of machine client certificates")
	f.BoolVar(&cfg.AdminMustChangePassword, "admin-must-change-password", false, "make the first admin change the password at first sign-in")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve /metrics without authentication on this separate plain-HTTP address (keep it private, e.g. 127.0.0.1:9090)")
	f.BoolVar(&cfg.Profiling, "profiling", false, "also serve Go runtime profiles (/debug/pprof/: heap, goroutines, CPU, execution trace) on --metrics-listen; for diagnosing memory, CPU and latency, keep that address private")
	f.StringVar(&cfg.MetricsTokenFile, "metrics-token-file", "", "serve /metrics on the main listener to requests bearing the token in this file")
	f.DurationVar(&cfg.ActivityRetention, "activity-retention", 0, "purge activity entries older than this after exporting them (0 keeps everything)")
	f.StringVar(&cfg.ActivityExportDir, "activity-export-dir", "", "where purged activity entries are written as JSON Lines (default DATA_DIR/activity-export)")
	l := &cfg.Limits
	f.IntVar(&l.MaxConnections, "max-connections", l.MaxConnections, "most open connections in all")
	f.IntVar(&l.MaxConnectionsPerSource, "max-connections-per-source", l.MaxConnectionsPerSource, "most open connections from one address (raise it when many agents share a NAT address)")
	f.DurationVar(&l.BodyReadTimeout, "body-read-timeout", l.BodyReadTimeout, "a request body must be read within this (a package upload too)")
	f.DurationVar(&l.WriteTimeout, "write-timeout", l.WriteTimeout, "an answer must be written within this (agent streams excepted)")
	f.IntVar(&l.SignInFailuresPerAccount, "signin-failures-per-account", l.SignInFailuresPerAccount, "failed sign-ins of one account from one address before a lockout")
	f.IntVar(&l.SignInFailuresPerSource, "signin-failures-per-source", l.SignInFailuresPerSource, "failed sign-ins from one address, across accounts, before a lockout")
	f.DurationVar(&l.SignInLockout, "signin-lockout", l.SignInLockout, "how long a sign-in lockout lasts after the last failure")
	f.IntVar(&l.PasswordHashConcurrency, "password-hash-concurrency", l.PasswordHashConcurrency, "password checks run at once (19 MiB each; default: the number of CPUs)")
	f.IntVar(&l.PasswordHashQueue, "password-hash-queue", l.PasswordHashQueue, "password checks that may wait for a slot; more get 503")
	f.IntVar(&l.PasswordHashPerSource, "password-hash-per-source", l.PasswordHashPerSource, "password checks one address may have running or waiting; more get 429")
	f.IntVar(&l.DeviceCodesPerSource, "device-codes-per-source", l.DeviceCodesPerSource, "device-code requests per address per minute")
	f.IntVar(&l.MaxPendingDeviceCodes, "max-pending-device-codes", l.MaxPendingDeviceCodes, "device codes waiting for approval in all")
	f.IntVar(&l.MachinesPerPrincipal, "machines-per-principal", l.MachinesPerPrincipal, "machines one principal may have onboarded")
	f.IntVar(&l.OnboardingsPerMinute, "onboardings-per-minute", l.OnboardingsPerMinute, "machines one principal may onboard per minute")
	f.IntVar(&l.StreamsPerSecond, "stream-admit-rate", l.StreamsPerSecond, "new agent push channels admitted per second on average (a reconnect storm is spread with Retry-After; -1: no limit)")
	f.IntVar(&l.StreamBurst, "stream-admit-burst", l.StreamBurst, "new agent push channels admitted at once")
	f.IntVar(&l.ConnectsPerSecond, "connect-admit-rate", l.ConnectsPerSecond, "onboardings admitted per second on average (-1: no limit)")
	f.IntVar(&l.ConnectBurst, "connect-admit-burst", l.ConnectBurst, "onboardings admitted at once")
	f.DurationVar(&l.StoreProbeInterval, "store-probe-interval", l.StoreProbeInterval, "how often a write probe checks the store can write")
	f.DurationVar(&cfg.UpdateAssessmentInterval, "update-assessment-interval", 24*time.Hour, "how often machines enrolled in update management assess their pending updates by themselves")
	f.DurationVar(&cfg.UpdateTick, "update-tick", 10*time.Second, "how often update schedules are checked and update runs advanced")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// runServer starts the control plane, prints the first-start facts and
// serves until ctx is cancelled.
func runServer(ctx context.Context, out io.Writer, cfg server.Config) error {
	tuneGC()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return err
	}
	b := srv.Bootstrap
	fmt.Fprintf(out, "Corral control plane at %s\n", srv.URL())
	fmt.Fprintf(out, "CA certificate: %s\nCA fingerprint: %s\n", b.CACertPath, b.CAFingerprint)
	if b.AdminPasswordFile != "" {
		fmt.Fprintf(out, "\nCreated user \"admin\"; its generated password is in %s (mode 0600).\n"+
			"Sign in, change it with \"corral user password\", then delete the file.\n\n", b.AdminPasswordFile)
	}
	return srv.Serve(ctx)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// tuneGC runs the garbage collector at GOGC=50 unless GOGC is set. A control
// plane holds one long-lived TLS WebSocket per agent and allocates little
// per second; collecting at half the default heap growth keeps its memory
// about a tenth lower (10,000 agents plus an extension fan-out to 1,000:
// ~830 MiB instead of ~940 MiB RSS) for a few percent of one core.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}
