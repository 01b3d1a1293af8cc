// Package builtin holds Corral's built-in policy definitions and machine
// configurations, embedded in the binary: linux-passwd-0644,
// require-tag-on-machines, allowed-environments, allowed-extensions,
// deploy-endpoint-protection and the linux-security-baseline initiative.
//
// A definition refers to a machine configuration the way Azure does: an
// auditIfNotExists on guest configuration assignments with
// metadata.guestConfiguration.name naming the configuration. The server
// keeps one guest configuration assignment per machine and configuration
// whose complianceStatus is the agent's verdict, so the definition's
// existenceCondition decides the machine's compliance.
//
// Load parses everything anew and returns an immutable *Catalog, safe for
// concurrent use; a parse failure is a bug caught by this package's tests.
package builtin
