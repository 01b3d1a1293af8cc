package wire

import (
	"fmt"
	"strings"
)

// MaxIPAddresses is the most addresses MachineProperties may list.
const MaxIPAddresses = 256

// Check reports the first thing the server refuses in agent-reported
// properties: the JSON field at fault and why. It is the one rule for
// onboarding (ConnectRequest.Properties) and properties reports.
func (p MachineProperties) Check() (field string, err error) {
	if p.Environment != "" {
		known := false
		for _, e := range Environments {
			known = known || strings.EqualFold(e, p.Environment)
		}
		if !known {
			return "environment", fmt.Errorf("environment must be one of %s", strings.Join(Environments, ", "))
		}
	}
	if len(p.IPAddresses) > MaxIPAddresses {
		return "ipAddresses", fmt.Errorf("too many IP addresses")
	}
	return "", nil
}
