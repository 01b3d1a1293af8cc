package schedule

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNext(t *testing.T) {
	t.Parallel()
	ny, paris := mustLoc(t, "America/New_York"), mustLoc(t, "Europe/Paris")
	at := func(loc *time.Location, y int, mo time.Month, d, h, mi int) time.Time {
		return time.Date(y, mo, d, h, mi, 0, 0, loc)
	}
	for _, tc := range []struct {
		name  string
		spec  Spec
		after time.Time
		want  []time.Time // successive fires
	}{
		{"weekly Sunday 03:00 UTC", Spec{Cron: "0 3 * * SUN"}, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
			[]time.Time{time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC), time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)}},
		{"time zone is honoured", Spec{Cron: "0 3 * * *", TimeZone: "Europe/Paris"}, at(paris, 2026, 6, 1, 12, 0),
			[]time.Time{time.Date(2026, 6, 2, 1, 0, 0, 0, time.UTC)}},
		{"spring forward: 02:30 does not exist, fires at the jump", Spec{Cron: "30 2 * * *", TimeZone: "America/New_York"},
			at(ny, 2026, 3, 7, 12, 0),
			[]time.Time{at(ny, 2026, 3, 8, 3, 0), at(ny, 2026, 3, 9, 2, 30), at(ny, 2026, 3, 10, 2, 30)}},
		{"spring forward in Paris: 02:15 fires at 03:00 CEST", Spec{Cron: "15 2 * * *", TimeZone: "Europe/Paris"},
			at(paris, 2026, 3, 28, 12, 0),
			[]time.Time{at(paris, 2026, 3, 29, 3, 0), at(paris, 2026, 3, 30, 2, 15)}},
		{"spring forward: a time outside the gap is untouched", Spec{Cron: "0 4 * * *", TimeZone: "America/New_York"},
			at(ny, 2026, 3, 7, 12, 0),
			[]time.Time{at(ny, 2026, 3, 8, 4, 0), at(ny, 2026, 3, 9, 4, 0)}},
		{"fall back: 01:30 happens twice, fires once", Spec{Cron: "30 1 * * *", TimeZone: "America/New_York"},
			at(ny, 2026, 10, 31, 12, 0),
			[]time.Time{time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC), at(ny, 2026, 11, 2, 1, 30)}},
		{"fall back in Paris: 02:30 fires once", Spec{Cron: "30 2 * * *", TimeZone: "Europe/Paris"},
			at(paris, 2026, 10, 24, 12, 0),
			[]time.Time{time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), at(paris, 2026, 10, 26, 2, 30)}},
		{"hourly follows real time through fall back", Spec{Cron: "0 * * * *", TimeZone: "America/New_York"},
			time.Date(2026, 11, 1, 4, 30, 0, 0, time.UTC),
			[]time.Time{time.Date(2026, 11, 1, 5, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC)}},
		{"descriptor", Spec{Cron: "@daily", TimeZone: "UTC"}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			[]time.Time{time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}},
		{"one-time in the future", Spec{At: time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)}, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			[]time.Time{time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			var got []time.Time
			for cur := tc.after; len(got) < len(tc.want); {
				n, ok := s.Next(cur)
				if !ok {
					break
				}
				got = append(got, n)
				cur = n
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("fires (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOneTimePast(t *testing.T) {
	t.Parallel()
	s, err := Parse(Spec{At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); ok {
		t.Errorf("Next after the one time = %s, want none", n)
	}
	if !s.OneTime() {
		t.Error("OneTime() = false")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spec Spec
		want error
	}{
		{Spec{Cron: "0 3 * *"}, ErrBadCron},
		{Spec{Cron: "61 3 * * *"}, ErrBadCron},
		{Spec{Cron: "0 3 * * FUNDAY"}, ErrBadCron},
		{Spec{Cron: "0 0 3 * * *"}, ErrBadCron}, // seconds are not a field here
		{Spec{Cron: "CRON_TZ=Europe/Paris 0 3 * * *"}, ErrBadCron},
		{Spec{Cron: "@every 5m"}, ErrBadCron},
		{Spec{Cron: "0 3 * * *", TimeZone: "Mars/Olympus"}, ErrBadTimeZone},
		{Spec{Cron: "0 3 * * *", TimeZone: "Local"}, ErrBadTimeZone},
		{Spec{}, ErrBadSchedule},
		{Spec{Cron: "0 3 * * *", At: time.Now()}, ErrBadSchedule},
	} {
		if _, err := Parse(tc.spec); !errors.Is(err, tc.want) {
			t.Errorf("Parse(%+v) = %v, want %v", tc.spec, err, tc.want)
		}
	}
	_, err := Parse(Spec{Cron: "0 3 * * FUNDAY"})
	t.Logf("bad cron says: %v", err)
}

func TestDue(t *testing.T) {
	t.Parallel()
	daily, err := Parse(Spec{Cron: "0 3 * * *", TimeZone: "UTC"})
	if err != nil {
		t.Fatal(err)
	}
	once, err := Parse(Spec{At: time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	d := func(day, h, m int) time.Time { return time.Date(2026, 11, day, h, m, 0, 0, time.UTC) }
	window := 2 * time.Hour
	for _, tc := range []struct {
		name       string
		s          *Schedule
		since, now time.Time
		want       time.Time // zero = nothing due
	}{
		{"on time", daily, d(19, 3, 0), d(20, 3, 0), d(20, 3, 0)},
		{"not yet", daily, d(19, 3, 0), d(20, 2, 59), time.Time{}},
		{"already fired", daily, d(20, 3, 0), d(20, 3, 30), time.Time{}},
		{"late after a restart, window open: fires once", daily, d(19, 3, 0), d(20, 4, 30), d(20, 3, 0)},
		{"window closed: skipped", daily, d(19, 3, 0), d(20, 5, 0), time.Time{}},
		{"server down for days: only the latest, if open", daily, d(10, 3, 0), d(20, 3, 10), d(20, 3, 0)},
		{"server down for days, all windows closed", daily, d(10, 3, 0), d(20, 12, 0), time.Time{}},
		{"one-time due late", once, d(1, 0, 0), d(20, 4, 0), d(20, 3, 0)},
		{"one-time missed", once, d(1, 0, 0), d(20, 6, 0), time.Time{}},
	} {
		got, ok := tc.s.Due(tc.since, tc.now, window)
		if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
			t.Errorf("%s: Due = %s %v, want %s", tc.name, got, ok, tc.want)
		}
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", DefaultWindow, false}, {"120m", 120 * time.Minute, false}, {"60", time.Hour, false}, {"235m", 235 * time.Minute, false},
		{"3h55m", 235 * time.Minute, false}, {"59m", 0, true}, {"236m", 0, true}, {"4h", 0, true}, {"soon", 0, true}, {"-90m", 0, true},
	} {
		got, err := ParseWindow(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseWindow(%q) = %s, %v; want %s, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrBadWindow) {
			t.Errorf("ParseWindow(%q) error %v is not ErrBadWindow", tc.in, err)
		}
	}
	if DefaultWindow != 235*time.Minute {
		t.Errorf("DefaultWindow = %s", DefaultWindow)
	}
}
