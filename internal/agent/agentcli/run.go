package agentcli

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/agentlog"
	"github.com/corralhq/corral/internal/agent/daemon"
)

// ExitRevoked is run's exit status when the control plane revoked the
// identity; the systemd unit does not restart on it.
const ExitRevoked = 3

// ExitError carries an exit status to main.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func runCommand(g *globals) *cobra.Command {
	var cfg daemon.Config
	hostChanges := true
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent daemon (what the systemd unit starts)",
		Long: `Run the agent: keep the outbound push channel to the control plane, send heartbeats,
apply desired state, report inventory and the local configuration, and renew the machine
certificate. Stops cleanly on SIGINT or SIGTERM. Logs go to stderr and to
STATE-DIR/logs/agent.log.

--host-changes=false runs a trial: inventory, status and reports work, but every
operation that would change this host (extension handlers, run commands, remediations)
is refused with that reason. To keep it across restarts set it locally instead:
corral-agent config set hostchanges.enabled false.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, closer := agentlog.New(g.stateDir, cmd.ErrOrStderr(), g.level())
			defer closer.Close()
			cfg.StateDir, cfg.Host, cfg.IMDS, cfg.Version, cfg.Logger = g.stateDir, g.host(), g.imds, g.version, log
			if !hostChanges {
				cfg.HostChangesOff = "this agent runs with --host-changes=false (trial mode): nothing that changes the host is run"
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := daemon.Run(ctx, cfg)
			if errors.Is(err, daemon.ErrRevoked) {
				return &ExitError{Code: ExitRevoked, Err: err}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.InventoryInterval, "inventory-interval", 15*time.Minute, "how often the host inventory is re-read")
	f.DurationVar(&cfg.ConfigPollInterval, "config-poll-interval", 2*time.Second, "how often the local configuration file is checked for changes")
	f.DurationVar(&cfg.MaxBackoff, "max-backoff", 60*time.Second, "longest wait between reconnection attempts")
	f.BoolVar(&hostChanges, "host-changes", true, "run extension handlers, run commands and remediations on this host (false: trial mode)")
	return cmd
}
