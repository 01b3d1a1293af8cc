package client_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/client"
)

// FuzzParseRetryAfter: whatever a server (or a proxy in between) sends as
// Retry-After, the wait is between 0 and client.MaxRetryAfter, and a number of
// seconds past the cap waits the cap, never a number wrapped around to a
// short wait.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "5", "600", "601", "-1", "36028797018963969", "Wed, 21 Oct 2015 07:28:00 GMT", " 7 ", "1.5"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := client.ParseRetryAfter(v, now)
		if d < 0 || d > client.MaxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v", v, d)
		}
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= int(client.MaxRetryAfter/time.Second) && d != client.MaxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v, want the cap %v", v, d, client.MaxRetryAfter)
		}
	})
}
