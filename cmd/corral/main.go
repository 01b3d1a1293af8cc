// Command corral is the Corral control plane (corral server), its one-command
// development setup (corral dev), the admin CLI and the load generator.
package main

import (
	"os"

	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/version"
)

func main() {
	root := cli.NewRootCommand(version.Version, newServerCommand(), newLoadgenCommand(), newDevCommand(), newProtectionDaemonCommand())
	if err := root.Execute(); err != nil {
		// A remote command's exit code (corral machine run-command) passes through.
		os.Exit(cli.ExitCode(err))
	}
}
