package wire

import (
	"strings"
	"time"
)

// Kinds of bulk operation.
const (
	// BulkExtensionSet installs, reconfigures or upgrades an extension on
	// every machine selected (as PUT .../extensions/{name} would).
	BulkExtensionSet = "extensionSet"
	// BulkExtensionDelete removes an extension from every machine selected.
	BulkExtensionDelete = "extensionDelete"
	// BulkRunCommand starts a run on every machine selected.
	BulkRunCommand = "runCommand"
)

// BulkKinds lists the kinds of bulk operation.
var BulkKinds = []string{BulkExtensionSet, BulkExtensionDelete, BulkRunCommand}

// Results of one machine of a bulk operation.
const (
	BulkPending   = "Pending"
	BulkSucceeded = "Succeeded"
	BulkFailed    = "Failed"
	// BulkSuperseded: a later change of the same extension replaced this
	// operation's before it finished.
	BulkSuperseded = "Superseded"
)

// BulkResults lists the results of one machine, in display order.
var BulkResults = []string{BulkPending, BulkSucceeded, BulkFailed, BulkSuperseded}

// BulkResult returns the result named s in any letter case, as spelled in
// BulkResults, and whether there is one.
func BulkResult(s string) (string, bool) {
	for _, r := range BulkResults {
		if strings.EqualFold(r, s) {
			return r, true
		}
	}
	return "", false
}

// MaxBulkMachines is the most machines one bulk operation may select.
const MaxBulkMachines = 50000

// BulkOperationCreate is the body of POST
// /api/v1/subscriptions/{sub}/bulkOperations: one change for every machine
// of a scope (the subscription by default, or a resource group in it),
// optionally only those with a tag.
type BulkOperationCreate struct {
	Kind  string `json:"kind"`            // extensionSet, extensionDelete or runCommand
	Scope string `json:"scope,omitempty"` // /subscriptions/S or /subscriptions/S/resourceGroups/RG
	Tag   string `json:"tag,omitempty"`   // KEY=VALUE
	// Name is the extension's name on each machine (extensionSet,
	// extensionDelete) or the run's name on each machine (runCommand).
	Name       string               `json:"name"`
	Extension  *MachineExtensionSet `json:"extension,omitempty"`  // extensionSet
	RunCommand *RunCommandCreate    `json:"runCommand,omitempty"` // runCommand
}

// BulkTotals counts the machines of a bulk operation by result.
type BulkTotals struct {
	Pending    int `json:"pending"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	Superseded int `json:"superseded"`
}

// BulkOperation is a bulk operation with how far it got:
// /api/v1/subscriptions/{sub}/bulkOperations/{id}.
type BulkOperation struct {
	ID    string `json:"id"` // resource id
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Scope string `json:"scope"`
	Tag   string `json:"tag,omitempty"`
	// Target is the extension or run name on each machine.
	Target    string `json:"target"`
	Publisher string `json:"publisher,omitempty"`
	Type      string `json:"type,omitempty"`
	Version   string `json:"version,omitempty"`
	// Machines is how many machines the scope and tag selected.
	Machines int        `json:"machines"`
	Totals   BulkTotals `json:"totals"`
	// Done is true once no machine is Pending.
	Done      bool      `json:"done"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// BulkMachineResult is one machine of a bulk operation.
type BulkMachineResult struct {
	MachineID     string `json:"machineId"` // resource id
	Name          string `json:"name"`
	ResourceGroup string `json:"resourceGroup"`
	Result        string `json:"result"` // Pending, Succeeded, Failed or Superseded
	// State is the extension's or run's own state (Creating, Running, ...).
	State    string `json:"state,omitempty"`
	Message  string `json:"message,omitempty"`
	ExitCode *int   `json:"exitCode,omitempty"`
}
