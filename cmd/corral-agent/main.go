// Command corral-agent is the Corral machine agent: it connects this machine
// to a control plane over outbound HTTPS and keeps it managed. See
// `corral-agent --help`.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/corralhq/corral/internal/agent/agentcli"
	"github.com/corralhq/corral/internal/version"
)

func main() {
	err := agentcli.NewRootCommand(version.Version).Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	var ee *agentcli.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.Code)
	}
	os.Exit(1)
}
