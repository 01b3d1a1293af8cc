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
and the user "admin" with a one-time password printed once (or CORRAL_ADMIN_PASSWORD).

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
	f.StringSliceVar(&cfg.Hosts, "host", nil, "extra DNS name or IP for the generated server certificate (repeatable)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", cfg.HeartbeatInterval, "how often agents send heartbeats")
	f.DurationVar(&cfg.DisconnectAfter, "disconnect-after", cfg.DisconnectAfter, "a machine without heartbeat for this long becomes Disconnected")
	f.DurationVar(&cfg.ExpireAfter, "expire-after", cfg.ExpireAfter, "a machine without contact for this long becomes Expired")
	f.DurationVar(&cfg.SweepInterval, "sweep-interval", cfg.SweepInterval, "how often machine status thresholds are applied")
	f.DurationVar(&cfg.CertValidity, "cert-validity", cfg.CertValidity, "validity of machine client certificates")
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
	if b.AdminPassword != "" {
		fmt.Fprintf(out, "\nCreated user \"admin\" with one-time password (shown only now):\n  %s\n\n", b.AdminPassword)
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
