package testutil

import (
	"testing"

	"github.com/corralhq/corral/internal/testutil/hosttools"
)

// DebianMirror is where DebianRoot fetches packages (hosttools.DebianMirror).
const DebianMirror = hosttools.DebianMirror

// NeedTool returns the path of a command-line tool a test needs; without it
// the test is skipped, or fails when CORRAL_TEST_STRICT=1 (hosttools.NeedTool).
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	return hosttools.NeedTool(t, name)
}

// NeedRoot skips (or, strict, fails) a test that needs root (hosttools.NeedRoot).
func NeedRoot(t testing.TB) {
	t.Helper()
	hosttools.NeedRoot(t)
}

// DebianRoot returns a debootstrap tree with the packages include
// (hosttools.DebianRoot).
func DebianRoot(t testing.TB, include ...string) string {
	t.Helper()
	return hosttools.DebianRoot(t, include...)
}
