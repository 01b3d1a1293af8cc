package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/protection"
)

// newProtectionDaemonCommand is the endpoint protection daemon of corral
// dev's local agent, which runs in this binary (corral-agent has the same
// hidden command).
func newProtectionDaemonCommand() *cobra.Command {
	return &cobra.Command{
		Use: protection.DaemonCommand, Hidden: true, DisableFlagParsing: true,
		Short: "Run the endpoint protection daemon of corral dev's agent (started by it)",
		RunE: func(_ *cobra.Command, args []string) error {
			if code := protection.DaemonMain(args); code != 0 {
				fmt.Fprintf(os.Stderr, "the protection daemon exited with code %d\n", code)
				os.Exit(code)
			}
			return nil
		},
	}
}
