package schedule

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

// FuzzParse: a schedule (cron expression and time zone from an API body)
// is refused with one of the package's errors or parses into a schedule
// whose next fire is strictly later, and whose due fire is never in the
// future.
func FuzzParse(f *testing.F) {
	for _, s := range [][2]string{{"0 3 * * *", "Europe/Paris"}, {"@daily", ""}, {"30 2 * * 0", "America/New_York"}, {"0 0 30 2 *", "UTC"},
		{"*/15 * * * *", "Australia/Lord_Howe"}, {"CRON_TZ=UTC 0 3 * * *", ""}, {"@every 1h", ""}, {"0 3 * * *", "../etc/passwd"}, {"0 3 * * *", "Local"}} {
		f.Add(s[0], s[1], int64(1_780_000_000))
	}
	f.Fuzz(func(t *testing.T, expr, tz string, at int64) {
		s, err := Parse(Spec{Cron: expr, TimeZone: tz})
		if err != nil {
			if !errors.Is(err, ErrBadCron) && !errors.Is(err, ErrBadTimeZone) && !errors.Is(err, ErrBadSchedule) {
				t.Fatalf("refused with %v, not one of the package's errors", err)
			}
			return
		}
		now := time.Unix(at%(1<<34), 0).UTC()
		if n, ok := s.Next(now); ok && !n.After(now) {
			t.Fatalf("%q in %q: next fire after %v is %v", expr, tz, now, n)
		}
		if f, ok := s.Due(now.Add(-48*time.Hour), now, 2*time.Hour); ok && f.After(now) {
			t.Fatalf("%q in %q: due fire %v is after now %v", expr, tz, f, now)
		}
	})
}

// FuzzParseWindow: an accepted maintenance window is within the bounds,
// and a bare number is that many minutes (not a number that wraps around
// into the bounds).
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"", "120", "2h30m", "59m", "236", "-120", "9007199254741112", "1e3m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseWindow(s)
		if err != nil {
			return
		}
		if ValidateWindow(d) != nil {
			t.Fatalf("ParseWindow(%q) = %v, out of bounds", s, d)
		}
		if n, err := strconv.Atoi(s); err == nil && time.Duration(n) != d/time.Minute {
			t.Fatalf("ParseWindow(%q) = %v, want %d minutes", s, d, n)
		}
	})
}
