// Package hosttools holds the test helpers that need nothing of Corral:
// tools a test needs on PATH (NeedTool), root (NeedRoot) and a cached
// debootstrap tree (DebianRoot). Package testutil re-exports them; the
// packages the server itself imports (internal/policy/guest and builtin)
// use this one in their tests, since testutil starts a server and would
// make an import cycle.
package hosttools
