package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// ChromiumPath returns the Chromium binary for browser tests:
// CORRAL_TEST_CHROMIUM if set, else chromium, chromium-browser or
// google-chrome on PATH. Without one the test is skipped, or fails when
// CORRAL_TEST_STRICT=1 (CI installs Debian's chromium package).
func ChromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CORRAL_TEST_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CORRAL_TEST_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CORRAL_TEST_STRICT") == "1" {
		t.Fatal("browser test: no chromium on PATH and CORRAL_TEST_STRICT=1 (apt-get install chromium)")
	}
	t.Skip("browser test needs Chromium: apt-get install chromium (or set CORRAL_TEST_CHROMIUM)")
	return ""
}
