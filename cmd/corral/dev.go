package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/agentlog"
	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/onboard"
	"github.com/corralhq/corral/internal/devmode"
	"github.com/corralhq/corral/internal/flagenv"
	"github.com/corralhq/corral/internal/version"
)

func newDevCommand() *cobra.Command {
	var o devmode.Options
	var logLevel string
	var allowHostChanges bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a control plane and a local agent with nothing to set up",
		Long: `Run a development setup in one command: a control plane on an embedded SQLite store in a
temp dir (removed on exit unless --keep or --data-dir), and a local agent onboarded into
resource group "dev" through a least-privilege service principal.

The agent reads this host (inventory, cloud detection) but writes only inside the temp dir;
nothing that would change the host is enabled (extension handlers and run commands are
refused unless --allow-host-changes). It prints the web UI URL, the admin login and
a ready "corral login" line. Stop with Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagenv.Apply(cmd.Flags(), "CORRAL_"); err != nil {
				return err
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel, "text")
			if err != nil {
				return err
			}
			o.Logger = logger
			tuneGC()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hostChangesOff := ""
			if !allowHostChanges {
				hostChangesOff = "this is the corral dev agent: extension handlers and run commands change the host, so they are off (start corral dev with --allow-host-changes)"
			}
			return devmode.Run(ctx, o, cmd.OutOrStdout(), func(ctx context.Context, p devmode.AgentParams) error {
				return runLocalAgent(ctx, p, hostChangesOff)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:8443", "TLS listen address of the control plane")
	f.StringVar(&o.Dir, "data-dir", "", "keep everything in this directory instead of a temp dir")
	f.BoolVar(&o.Keep, "keep", false, "keep the temp dir on exit")
	f.BoolVar(&o.NoAgent, "no-agent", false, "start only the control plane")
	f.BoolVar(&allowHostChanges, "allow-host-changes", false, "let the local agent run extension handlers and run commands on this host")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	return cmd
}

// runLocalAgent onboards the dev agent with the service principal devmode
// made and runs it until ctx ends. The agent inspects the real host (root /)
// but its state, logs and outbox live under p.StateDir.
func runLocalAgent(ctx context.Context, p devmode.AgentParams, hostChangesOff string) error {
	if !identity.Exists(p.StateDir) {
		if _, err := onboard.Connect(ctx, onboard.Options{
			Server: p.Server, SubscriptionID: p.Subscription, ResourceGroup: p.ResourceGroup,
			ServicePrincipalID: p.ClientID, ServicePrincipalSecret: p.ClientSecret, CAFile: p.CAFile,
			StateDir: p.StateDir, Host: hostinfo.Host{Root: p.Root}, Version: version.Version,
			Tags: map[string]string{"corral-dev": "true"},
		}); err != nil {
			return fmt.Errorf("onboard the local agent: %w", err)
		}
	}
	log, closer := agentlog.New(p.StateDir, nil, slog.LevelInfo)
	defer closer.Close()
	p.Logger.Info("local agent running", "state", p.StateDir, "log", filepath.Join(p.StateDir, agentlog.Dir, agentlog.File))
	return daemon.Run(ctx, daemon.Config{StateDir: p.StateDir, Host: hostinfo.Host{Root: p.Root}, Version: version.Version, Logger: log,
		HostChangesOff: hostChangesOff})
}
