// Package schedule is the pure logic of update schedules for the server:
// when a one-time or recurring (cron with a time zone) schedule fires, what
// a restarted server still has to fire (catch-up), maintenance-window
// validation, and the planning and halting of rollouts in waves (rings).
//
// Nothing here reads a clock or stores anything: callers pass the times
// (an injected clock) and keep the state (last fire, outcomes), so the
// functions are deterministic and safe for concurrent use. Firing exactly
// once across server replicas is the caller's (a lock or a conditional
// update of the last-fired time); Due only says what is due.
//
// Daylight-saving time, for cron schedules whose hour is fixed: a time
// that does not exist on a spring-forward day fires once at the moment
// the clocks jump (as cron(8) does); a time that happens twice on a
// fall-back day fires only the first time. Schedules whose hour field is
// "*" follow real time.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Errors callers branch on; messages say what was wrong.
var (
	ErrBadCron     = errors.New("bad cron expression")
	ErrBadTimeZone = errors.New("bad time zone")
	ErrBadSchedule = errors.New("bad schedule")
)

// Spec is a schedule as a user gives it: either a cron expression (five
// fields: minute hour day-of-month month day-of-week, or a descriptor
// like @daily) in a time zone, or a one-time At.
type Spec struct {
	Cron     string
	TimeZone string // IANA name; empty = UTC
	At       time.Time
}

// Schedule is a parsed Spec.
type Schedule struct {
	spec     Spec
	loc      *time.Location
	cron     *cron.SpecSchedule // nil for a one-time schedule
	wall     *cron.SpecSchedule // the same fields read in UTC: wall-clock matching
	hourStar bool
}

// parser reads standard five-field expressions and descriptors; seconds
// and CRON_TZ= prefixes are refused (the zone is its own field).
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse checks and parses a Spec.
func Parse(s Spec) (*Schedule, error) {
	hasCron, hasAt := strings.TrimSpace(s.Cron) != "", !s.At.IsZero()
	switch {
	case hasCron && hasAt:
		return nil, fmt.Errorf("%w: give a cron expression or a time, not both", ErrBadSchedule)
	case !hasCron && !hasAt:
		return nil, fmt.Errorf("%w: give a cron expression or a time", ErrBadSchedule)
	}
	loc := time.UTC
	if s.TimeZone != "" {
		l, err := time.LoadLocation(s.TimeZone)
		if err != nil || strings.EqualFold(s.TimeZone, "local") {
			return nil, fmt.Errorf("%w %q: want an IANA name such as Europe/Paris", ErrBadTimeZone, s.TimeZone)
		}
		loc = l
	}
	sc := &Schedule{spec: s, loc: loc}
	if hasAt {
		return sc, nil
	}
	expr := strings.TrimSpace(s.Cron)
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		return nil, fmt.Errorf("%w %q: give the time zone separately", ErrBadCron, s.Cron)
	}
	if strings.HasPrefix(expr, "@every") {
		return nil, fmt.Errorf("%w %q: @every is not a calendar schedule", ErrBadCron, s.Cron)
	}
	parsed, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrBadCron, s.Cron, err)
	}
	spec, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrBadCron, s.Cron)
	}
	spec.Location = loc
	wall := *spec
	wall.Location = time.UTC
	sc.cron, sc.wall = spec, &wall
	sc.hourStar = spec.Hour&(1<<63) != 0 || spec.Hour&0xFFFFFF == 0xFFFFFF
	return sc, nil
}

// Location is the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// OneTime says whether the schedule fires once only.
func (s *Schedule) OneTime() bool { return s.cron == nil }

// Next returns the first fire strictly after t; false when there is none
// (a one-time schedule already past).
func (s *Schedule) Next(t time.Time) (time.Time, bool) {
	if s.cron == nil {
		return s.spec.At, s.spec.At.After(t)
	}
	n := s.cron.Next(t)
	if n.IsZero() {
		return n, false
	}
	if s.hourStar {
		return n, true
	}
	// Walk the zone transitions between t and n.
	for cur := t; ; {
		_, end := cur.In(s.loc).ZoneBounds()
		if end.IsZero() || end.After(n) {
			break
		}
		_, offBefore := end.Add(-time.Second).In(s.loc).Zone()
		_, offAfter := end.In(s.loc).Zone()
		d := time.Duration(offAfter-offBefore) * time.Second
		switch {
		case d > 0 && end.After(t) && s.matchesWall(wallClock(end.In(s.loc)).Add(-d), d):
			// Spring forward: the wall times in [end-d, end) never happen;
			// a fire among them happens at the jump.
			return end, true
		case d < 0 && !n.Before(end) && n.Before(end.Add(-d)):
			// Fall back: n repeats a wall time that already happened.
			return s.Next(end.Add(-d - time.Second))
		}
		cur = end
	}
	return n, true
}

// matchesWall says whether the cron fields match a wall-clock minute in
// [w, w+d), w being a wall-clock reading carried in UTC.
func (s *Schedule) matchesWall(w time.Time, d time.Duration) bool {
	n := s.wall.Next(w.Add(-time.Second))
	return !n.IsZero() && n.Before(w.Add(d))
}

// wallClock is t's wall-clock reading as a UTC time.
func wallClock(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// Due says whether a fire is due at now: the latest fire f with since < f
// <= now whose maintenance window [f, f+window) is still open. Older
// fires missed while the server was down are skipped; a due fire after a
// restart is late by now-f and fires once (the caller records f as the
// last fire). since is the last recorded fire, or the schedule's creation.
func (s *Schedule) Due(since, now time.Time, window time.Duration) (time.Time, bool) {
	// Fires before now-window cannot be due: start there, so a long
	// outage of an every-minute schedule costs at most window/1min steps.
	from := since
	if lim := now.Add(-window); lim.After(from) {
		from = lim
	}
	var last time.Time
	for t := from; ; {
		n, ok := s.Next(t)
		if !ok || n.After(now) {
			break
		}
		last, t = n, n
	}
	if last.IsZero() || !now.Before(last.Add(window)) {
		return time.Time{}, false
	}
	return last, true
}
