package httpapi

import (
	"sync"
	"time"
)

// signInThrottle slows password and secret guessing: after maxFailures
// failed sign-ins for one key within window, it refuses further attempts
// for that key until the window has passed since the last failure. The API
// keeps two: one keyed by the account a grant verifies (user name or client
// id) and the source address — a success clears it — and one keyed by the
// source address alone, across accounts, which a success does not clear.
// State is per replica and in memory; it bounds guessing, it is not an
// audit record (the activity log is).
type signInThrottle struct {
	mu          sync.Mutex
	failures    map[string]*failureCount
	maxFailures int
	window      time.Duration
}

type failureCount struct {
	n    int
	last time.Time
}

func newSignInThrottle(maxFailures int, window time.Duration) *signInThrottle {
	return &signInThrottle{failures: map[string]*failureCount{}, maxFailures: maxFailures, window: window}
}

// blocked reports whether account is locked out at now, and until when.
func (t *signInThrottle) blocked(account string, now time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.failures[account]
	if f == nil || now.Sub(f.last) > t.window {
		return time.Time{}, false
	}
	if f.n >= t.maxFailures {
		return f.last.Add(t.window), true
	}
	return time.Time{}, false
}

func (t *signInThrottle) fail(account string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.failures[account]
	if f == nil || now.Sub(f.last) > t.window {
		f = &failureCount{}
		t.failures[account] = f
	}
	f.n++
	f.last = now
	if len(t.failures) > 100_000 { // bound memory under a spray of names
		for k, v := range t.failures {
			if now.Sub(v.last) > t.window {
				delete(t.failures, k)
			}
		}
	}
}

func (t *signInThrottle) succeed(account string) {
	t.mu.Lock()
	delete(t.failures, account)
	t.mu.Unlock()
}
