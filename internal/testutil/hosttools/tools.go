package hosttools

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of a command-line tool a test needs; without it
// the test is skipped, or fails when CORRAL_TEST_STRICT=1 (.ci/run installs
// every tool the tests use).
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CORRAL_TEST_STRICT") == "1" {
		t.Fatalf("this test needs %s, which is not on PATH, and CORRAL_TEST_STRICT=1", name)
	}
	t.Skipf("this test needs %s (not on PATH)", name)
	return ""
}
