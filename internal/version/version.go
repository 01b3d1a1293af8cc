// Package version holds the build's version. Corral uses calendar versions
// (YYYY.MM.PATCH) so that the control plane can tell an agent's support
// state (one year from release) from its version alone.
package version

// Version and Commit are set at build time with
// -ldflags "-X github.com/corralhq/corral/internal/version.Version=...".
var (
	Version = "2026.11.0"
	Commit  = "dev"
)

// String is "VERSION (COMMIT)".
func String() string { return Version + " (" + Commit + ")" }
