package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newDevCommand is a placeholder for "corral dev"; the real command replaces it.
func newDevCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "dev",
		Short: "Run a one-command development setup (not implemented yet)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("corral dev is not implemented yet")
		},
	}
}
