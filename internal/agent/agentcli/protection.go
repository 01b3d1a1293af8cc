package agentcli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/protection"
)

// protectionDaemonCommand is the hidden command the agent's supervisor
// runs for endpoint protection: the scanner daemon in a process of its own
// (see package protection). It is not meant to be run by hand.
func protectionDaemonCommand() *cobra.Command {
	return &cobra.Command{
		Use:                protection.DaemonCommand + " --state-dir DIR --dir FEATURE-DIR",
		Short:              "Run the endpoint protection daemon (started by the agent)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if code := protection.DaemonMain(args); code != 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("the protection daemon exited with code %d", code)}
			}
			return nil
		},
	}
}
