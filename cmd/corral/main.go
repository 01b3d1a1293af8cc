package main

import (
	"os"

	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/version"
)

func main() {
	root := cli.NewRootCommand(version.Version, newServerCommand(), newLoadgenCommand(), newDevCommand())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
