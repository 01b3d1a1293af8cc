package admission

import (
	"testing"
	"time"
)

// A storm of callers is admitted at the rate after the burst; those refused
// are told to come back later the more of them there are, never sooner than
// a second, never later than the cap.
func TestRateAdmitsABurstThenSpreadsTheRest(t *testing.T) {
	t.Parallel()
	r := NewRate(100, 50)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	admitted, last := 0, time.Duration(0)
	for i := range 1000 {
		ok, wait := r.Allow(now)
		if ok {
			admitted++
			continue
		}
		if wait < time.Second || wait > MaxRetryAfter || wait < last {
			t.Fatalf("refusal %d: wait %s after %s", i, wait, last)
		}
		last = wait
	}
	if admitted != 50 {
		t.Errorf("admitted %d at once, want the burst of 50", admitted)
	}
	// 950 refused in one second at 100/s: the last are told ~9.5 s.
	if last < 9*time.Second || last > 10*time.Second {
		t.Errorf("the last refused caller waits %s, want about 9.5 s", last)
	}
	if r.Refused() != 950 {
		t.Errorf("refused %d", r.Refused())
	}
	// 300 ms later the bucket has refilled by the rate (30), and never
	// beyond the burst.
	for _, tc := range []struct {
		after time.Duration
		want  int
	}{{300 * time.Millisecond, 30}, {10 * time.Second, 50}} {
		admitted = 0
		for range 200 {
			if ok, _ := r.Allow(now.Add(tc.after)); ok {
				admitted++
			}
		}
		if admitted != tc.want {
			t.Errorf("admitted %d %s later, want %d", admitted, tc.after, tc.want)
		}
	}
	// Off: everything passes.
	off := NewRate(0, 0)
	for range 10000 {
		if ok, _ := off.Allow(now); !ok {
			t.Fatal("a switched-off rate refused")
		}
	}
}
