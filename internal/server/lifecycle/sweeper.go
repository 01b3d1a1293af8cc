// Package lifecycle moves machines through their status lifecycle:
// Connected -> Disconnected after a missed-heartbeat threshold, and any
// status -> Expired after a long time without contact (45 days by default).
// Expired machines must be onboarded again. It also fails run commands a
// machine did not start or finish in time, so that a command never starts
// long after it was asked for (a machine coming back days later).
package lifecycle

import (
	"context"
	"log/slog"
	"time"

	"github.com/corralhq/corral/internal/store"
)

// Sweeper periodically applies the thresholds.
type Sweeper struct {
	Store           store.Machines
	Clock           func() time.Time
	Logger          *slog.Logger
	Interval        time.Duration
	DisconnectAfter time.Duration
	ExpireAfter     time.Duration
	// Lock, when set, is taken around each sweep so that only one replica
	// sweeps at a time; it returns false when another holder has it.
	Lock func(ctx context.Context) (release func(), ok bool)
	// OnChanged is called with the ids whose status changed.
	OnChanged func(ctx context.Context, ids []string)

	// Runs, when set, has its overdue run commands failed on every sweep
	// (RunGrace is the time a started run gets beyond its timeout), and
	// OnRunsExpired is told machine id -> new desired-state generation.
	Runs          RunExpirer
	RunGrace      time.Duration
	OnRunsExpired func(ctx context.Context, generations map[string]int64)
}

// RunExpirer fails the run commands a machine did not start or finish in
// time (the extensions context, which logs each one's outcome) and returns
// machine id -> new desired-state generation.
type RunExpirer interface {
	ExpireRuns(ctx context.Context, now time.Time, grace time.Duration) (map[string]int64, error)
}

// Run sweeps every Interval until ctx is done.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sweep(ctx)
		}
	}
}

// Sweep applies the thresholds once.
func (s *Sweeper) Sweep(ctx context.Context) {
	if s.Lock != nil {
		release, ok := s.Lock(ctx)
		if !ok {
			return
		}
		defer release()
	}
	now := s.Clock()
	ids, err := s.Store.MarkStale(ctx, now.Add(-s.DisconnectAfter), now.Add(-s.ExpireAfter))
	if err != nil {
		s.Logger.ErrorContext(ctx, "status sweep failed", "err", err)
		return
	}
	if len(ids) > 0 {
		s.Logger.InfoContext(ctx, "machine status changed", "count", len(ids))
		if s.OnChanged != nil {
			s.OnChanged(ctx, ids)
		}
	}
	if s.Runs == nil {
		return
	}
	gens, err := s.Runs.ExpireRuns(ctx, now, s.RunGrace)
	if err != nil {
		s.Logger.ErrorContext(ctx, "run command sweep failed", "err", err)
		return
	}
	if len(gens) > 0 {
		s.Logger.InfoContext(ctx, "overdue run commands failed", "machines", len(gens))
		if s.OnRunsExpired != nil {
			s.OnRunsExpired(ctx, gens)
		}
	}
}
