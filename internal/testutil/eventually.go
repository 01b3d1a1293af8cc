package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond until it returns "" or timeout passes; the last
// non-empty answer says why the test fails.
func Eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		if why = cond(); why == "" {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %s", timeout, why)
}
