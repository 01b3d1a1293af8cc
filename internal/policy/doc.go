// Package policy is Corral's policy engine for the Azure Policy JSON language:
// it parses policy definitions as Azure exports them and evaluates them
// against Corral resources (a machine, its extensions, its guest
// configuration assignments).
//
// Contract:
//   - Parse accepts `{"properties":{...}}` or the bare properties, and refuses
//     every part it cannot honour (unknown effect, operator, field or alias,
//     template function, parameter type, details property) with a *PathError
//     naming the JSON path and what is supported. Nothing is silently ignored.
//   - A parsed *Definition is immutable: Evaluate and BindParameters may be
//     called from many goroutines at once. Evaluation does no I/O and keeps no
//     state between calls; a Resource is read, never written.
//   - Resource types Microsoft.HybridCompute/machines and
//     Microsoft.HybridCompute/machines/extensions (and
//     Microsoft.GuestConfiguration/guestConfigurationAssignments) are
//     synonyms of Corral's own, so definitions exported from Azure for Arc
//     machines evaluate unchanged. docs/policy.md lists every alias.
//
// The server's policy context stores definitions (Parse on create, so bad
// input is a 400 that stores nothing), binds assignment parameters
// (BindParameters), builds a Resource per machine (MachineResource) and calls
// Evaluate; deny is enforced by calling Evaluate on the machine as it would
// be after the requested change.
package policy
