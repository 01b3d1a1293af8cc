package updates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Lock takes the scheduler's cluster-wide lock if no other replica holds
// it (a PostgreSQL advisory lock); nil means one server (SQLite) and no
// lock is needed.
type Lock func(ctx context.Context) (release func(), ok bool)

// RunScheduler fires due schedules and advances runs every Tick until ctx
// ends, on every replica; each pass runs under lock, so one replica at a
// time does the work (and the compare-and-set of every fire makes a second
// fire of the same time impossible even without it). A machine's final
// report hurries the next pass on this replica.
func (s *Service) RunScheduler(ctx context.Context, lock Lock) {
	t := time.NewTicker(s.settings.Tick)
	defer t.Stop()
	pass := func(only string) {
		if lock != nil {
			release, ok := lock(ctx)
			if !ok {
				return
			}
			defer release()
		}
		var err error
		if only != "" {
			err = s.advanceRunID(ctx, only)
		} else {
			err = s.Tick(ctx)
		}
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "update scheduler pass failed", "err", err)
		}
	}
	pass("")
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pass("")
		case id := <-s.kick:
			// Let the machines finishing together land, then advance once.
			time.Sleep(100 * time.Millisecond)
			seen := map[string]bool{id: true}
			for more := true; more; {
				select {
				case other := <-s.kick:
					seen[other] = true
				default:
					more = false
				}
			}
			for id := range seen {
				pass(id)
			}
		}
	}
}

// Tick is one scheduler pass at the clock's now: fire the schedules that
// are due, advance every run in progress, fail assessment requests nobody
// answered. The caller holds the lock.
func (s *Service) Tick(ctx context.Context) error {
	now := s.now()
	errFire := s.fireDue(ctx, now)
	errRuns := s.advanceRuns(ctx)
	_, errExp := s.store.ExpireUpdateAssessments(ctx, now.Add(-s.settings.AssessmentTimeout),
		fmt.Sprintf("the machine did not answer within %s (is its agent connected?)", s.settings.AssessmentTimeout), now)
	return errors.Join(errFire, errRuns, errExp)
}

func (s *Service) advanceRuns(ctx context.Context) error {
	f := store.UpdateRunFilter{Unfinished: true, Page: store.Page{Limit: store.MaxPageSize}}
	var errs []error
	for {
		rs, err := s.store.ListUpdateRuns(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if err := s.advanceRun(ctx, r); err != nil {
				errs = append(errs, fmt.Errorf("advance update run %s: %w", r.ID, err))
			}
		}
		if len(rs) < store.MaxPageSize {
			return errors.Join(errs...)
		}
		f.Page.After = rs[len(rs)-1].ID
	}
}

func (s *Service) advanceRunID(ctx context.Context, id string) error {
	r, err := s.store.GetUpdateRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.advanceRun(ctx, r)
}

// advanceRun moves one run along: machines the closed window left behind
// are closed, then the waves are judged in order — a wave that broke the
// budget halts the run (later waves NotStarted), the first wave with open
// machines is dispatched (once), and a run whose machines are all final
// gets its final status.
func (s *Service) advanceRun(ctx context.Context, r store.UpdateRun) error {
	if r.Status != wire.UpdateInProgress {
		return nil
	}
	now := s.now()
	notDispatched, dispatched := false, true
	if !now.Before(r.Deadline) {
		closes := []store.UpdateRunMachineClose{
			{Statuses: []string{wire.UpdatePending}, Dispatched: &notDispatched, Status: wire.UpdateNotStarted,
				Reason: wire.ReasonMaintenanceWindowExceeded, Message: "the maintenance window closed before this machine's wave started", At: now},
			{Statuses: []string{wire.UpdatePending}, Dispatched: &dispatched, Status: wire.UpdateFailed,
				Reason:  wire.ReasonMaintenanceWindowExceeded,
				Message: "the machine did not start the deployment before the maintenance window closed (was its agent connected?)", At: now},
		}
		if !now.Before(r.Deadline.Add(s.settings.ResultGrace)) {
			closes = append(closes, store.UpdateRunMachineClose{Statuses: []string{wire.UpdateInProgress}, Status: wire.UpdateFailed,
				Reason: wire.ReasonNoResult, Message: fmt.Sprintf("the machine reported no result within %s after the maintenance window closed", s.settings.ResultGrace), At: now})
		}
		for _, c := range closes {
			gens, err := s.store.CloseUpdateRunMachines(ctx, r.ID, c)
			if err != nil {
				return err
			}
			s.announce(ctx, gens)
			if len(gens) > 0 {
				s.closedOutcomes(ctx, r, c, len(gens))
			}
		}
	}
	counts, err := s.store.CountUpdateRunMachines(ctx, r.ID)
	if err != nil {
		return err
	}
	budget := 100
	if len(r.Rollout) > 0 {
		var ro wire.UpdateRollout
		if json.Unmarshal(r.Rollout, &ro) == nil {
			budget = ro.MaxFailedPercent
		}
	}
	for w := range r.Waves {
		c := counts[w]
		total := 0
		for _, n := range c {
			total += n
		}
		failed := c[wire.UpdateFailed]
		if total > 0 && failed*100 > budget*total {
			return s.halt(ctx, r, w, failed, total, budget, now)
		}
		if c[wire.UpdatePending]+c[wire.UpdateInProgress] > 0 {
			if w > r.CurrentWave {
				gens, err := s.store.DispatchUpdateWave(ctx, r.ID, w, now)
				if err != nil {
					return err
				}
				s.announce(ctx, gens)
				if _, err := s.store.ChangeUpdateRun(ctx, r.ID, store.UpdateRunChange{From: []string{wire.UpdateInProgress},
					Status: wire.UpdateInProgress, CurrentWave: w, At: now}); err != nil {
					return err
				}
				s.log.InfoContext(ctx, "update run moved to its next wave", "run", r.ID, "wave", w, "machines", len(gens))
			}
			return nil
		}
	}
	return s.finish(ctx, r, counts, now)
}

// closedOutcomes logs the machines a window close failed. The store does
// not return them one by one; their count and reason are one entry.
func (s *Service) closedOutcomes(ctx context.Context, r store.UpdateRun, c store.UpdateRunMachineClose, n int) {
	if c.Status != wire.UpdateFailed {
		return
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(r.Origin), Action: actionDeploy,
		Scope: RunResourceID(r.Subscription, r.ID), Result: wire.ResultFailed,
		Message: fmt.Sprintf("update run %s: %d machine(s) failed (%s): %s", r.ID, n, c.Reason, c.Message), At: c.At})
}

// halt stops a run whose wave w broke the budget: later waves' machines
// are NotStarted, the run Halted.
func (s *Service) halt(ctx context.Context, r store.UpdateRun, w, failed, total, budget int, now time.Time) error {
	msg := fmt.Sprintf("wave %d: %d of %d machines failed, more than the %d%% budget; the later waves were not started", w+1, failed, total, budget)
	gens, err := s.store.CloseUpdateRunMachines(ctx, r.ID, store.UpdateRunMachineClose{Statuses: []string{wire.UpdatePending}, FromWave: w + 1,
		Status: wire.UpdateNotStarted, Reason: wire.ReasonDisruptionBudgetExceeded, Message: "the run halted: " + msg, At: now})
	if err != nil {
		return err
	}
	s.announce(ctx, gens)
	changed, err := s.store.ChangeUpdateRun(ctx, r.ID, store.UpdateRunChange{From: []string{wire.UpdateInProgress}, Status: wire.UpdateHalted,
		Reason: wire.ReasonDisruptionBudgetExceeded, Message: msg, CurrentWave: w, FinishedAt: now, At: now})
	if err != nil || !changed {
		return err
	}
	s.log.WarnContext(ctx, "update run halted", "run", r.ID, "wave", w, "failed", failed, "machines", total)
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(r.Origin), Action: actionDeploy, Scope: RunResourceID(r.Subscription, r.ID),
		Result: wire.ResultFailed, Message: fmt.Sprintf("update run %s: %s: %s", r.ID, wire.UpdateHalted, msg), At: now})
	return nil
}

// finish gives a run whose machines are all final its status: Failed if
// any machine failed or did not start, CompletedWithWarnings if any
// completed with warnings, else Succeeded.
func (s *Service) finish(ctx context.Context, r store.UpdateRun, counts map[int]map[string]int, now time.Time) error {
	var n wire.UpdateRunCounts
	for _, c := range counts {
		n.Succeeded += c[wire.UpdateSucceeded]
		n.CompletedWithWarnings += c[wire.UpdateCompletedWithWarnings]
		n.Failed += c[wire.UpdateFailed]
		n.NotStarted += c[wire.UpdateNotStarted]
	}
	total := n.Succeeded + n.CompletedWithWarnings + n.Failed + n.NotStarted
	status, reason := wire.UpdateSucceeded, ""
	msg := fmt.Sprintf("%d of %d machines succeeded", n.Succeeded, total)
	switch {
	case total == 0:
		status, msg = wire.UpdateFailed, "no machines"
	case n.Failed+n.NotStarted > 0:
		status = wire.UpdateFailed
		reason = s.failureReason(ctx, r.ID)
		msg = fmt.Sprintf("%d of %d machines failed or did not start", n.Failed+n.NotStarted, total)
	case n.CompletedWithWarnings > 0:
		status = wire.UpdateCompletedWithWarnings
		msg = fmt.Sprintf("%d of %d machines completed with warnings", n.CompletedWithWarnings, total)
	}
	changed, err := s.store.ChangeUpdateRun(ctx, r.ID, store.UpdateRunChange{From: []string{wire.UpdateInProgress}, Status: status,
		Reason: reason, Message: msg, CurrentWave: max(r.Waves-1, 0), FinishedAt: now, At: now})
	if err != nil || !changed {
		return err
	}
	s.log.InfoContext(ctx, "update run finished", "run", r.ID, "status", status, "reason", reason)
	result := wire.ResultSucceeded
	if status == wire.UpdateFailed {
		result = wire.ResultFailed
	}
	text := fmt.Sprintf("update run %s: %s", r.ID, status)
	if reason != "" {
		text += " (" + reason + ")"
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(r.Origin), Action: actionDeploy, Scope: RunResourceID(r.Subscription, r.ID),
		Result: result, Message: text + ": " + msg, At: now})
	return nil
}

// failureReason is the run's reason: MaintenanceWindowExceeded when any
// machine ran out of window, else the reason most machines failed with.
func (s *Service) failureReason(ctx context.Context, runID string) string {
	ms, err := s.store.ListUpdateRunMachines(ctx, runID, store.Page{Limit: store.MaxPageSize})
	if err != nil {
		return ""
	}
	by := map[string]int{}
	best := ""
	for _, m := range ms {
		if m.Status != wire.UpdateFailed && m.Status != wire.UpdateNotStarted {
			continue
		}
		if m.Reason == wire.ReasonMaintenanceWindowExceeded {
			return m.Reason
		}
		by[m.Reason]++
		if best == "" || by[m.Reason] > by[best] {
			best = m.Reason
		}
	}
	return best
}

// fireDue fires every schedule that is due at now.
func (s *Service) fireDue(ctx context.Context, now time.Time) error {
	f := store.UpdateScheduleFilter{Page: store.Page{Limit: store.MaxPageSize}}
	var errs []error
	for {
		scs, err := s.store.ListUpdateSchedules(ctx, f)
		if err != nil {
			return err
		}
		for _, sc := range scs {
			if err := s.fireIfDue(ctx, sc, now); err != nil {
				errs = append(errs, fmt.Errorf("schedule %s/%s: %w", sc.Subscription, sc.Name, err))
			}
		}
		if len(scs) < store.MaxPageSize {
			return errors.Join(errs...)
		}
		f.Page.After = scs[len(scs)-1].Name
	}
}

func specOf(sc store.UpdateSchedule) schedule.Spec {
	return schedule.Spec{Cron: sc.Cron, TimeZone: sc.TimeZone, At: sc.At}
}

// fireIfDue fires sc once if a fire is due: the latest fire time since its
// last fire (or its creation) whose window is still open, so a server that
// was down catches up while the window lasts and never fires a missed
// window late.
func (s *Service) fireIfDue(ctx context.Context, sc store.UpdateSchedule, now time.Time) error {
	p, err := schedule.Parse(specOf(sc))
	if err != nil {
		return err // stored schedules were parsed when created
	}
	since := sc.LastFiredAt
	if since.IsZero() {
		since = sc.CreatedAt.Add(-time.Nanosecond) // a fire at the creation instant counts
	}
	fire, due := p.Due(since, now, sc.Window)
	if !due {
		return nil
	}
	var t wire.UpdateTargets
	_ = json.Unmarshal(sc.Targets, &t)
	fireID := s.newID()
	f := store.UpdateFire{ScheduleID: sc.ID, Previous: sc.LastFiredAt, Fired: fire, RunID: fireID, At: now}
	r, rerr := s.resolveTargets(ctx, sc.Subscription, t)
	by := "schedule " + sc.Name
	var enrolled map[string]int64
	defer func() { s.announce(ctx, enrolled) }() // with the fire's own generations, merged below
	switch {
	case sc.Kind == wire.ScheduleAssessment && rerr == nil:
		if enrolled, err = s.enroll(ctx, r.machines, by); err != nil {
			return err
		}
		for _, m := range r.machines {
			f.Assessments = append(f.Assessments, store.UpdateAssessment{ID: s.newID(), MachineID: m.ID, BatchID: fireID,
				Trigger: wire.TriggerSchedule, State: wire.AssessmentPending, Origin: sc.Origin, RequestedAt: now, RequestedBy: by})
		}
	case sc.Kind == wire.ScheduleAssessment:
		// Nothing to assess: the fire is recorded so it is not retried.
		s.log.WarnContext(ctx, "assessment schedule fired with no machines", "schedule", sc.Name, "err", rerr)
	default:
		var set wire.UpdateDeploymentSettings
		_ = json.Unmarshal(sc.Settings, &set)
		var ro *wire.UpdateRollout
		if len(sc.Rollout) > 0 {
			ro = &wire.UpdateRollout{}
			_ = json.Unmarshal(sc.Rollout, ro)
		}
		var run store.UpdateRun
		var ms []store.UpdateRunMachine
		if rerr == nil {
			if enrolled, err = s.enroll(ctx, r.machines, by); err != nil {
				return err
			}
			run, ms, rerr = s.newRun(sc.Subscription, fireID, r, t, set, ro, fire, by, sc.Origin)
		}
		if rerr != nil {
			// Recorded as a failed run, so the history says why nothing happened.
			tb, _ := json.Marshal(t)
			run = store.UpdateRun{ID: fireID, Subscription: sc.Subscription, Scope: sc.Scope, Targets: tb, Settings: sc.Settings, Rollout: sc.Rollout,
				Status: wire.UpdateFailed, Message: rerr.Error(), Origin: sc.Origin, CreatedAt: now, CreatedBy: by, StartedAt: fire,
				Deadline: fire.Add(sc.Window), FinishedAt: now, UpdatedAt: now}
			ms = nil
		}
		run.Trigger, run.Schedule, run.CreatedAt, run.UpdatedAt = wire.TriggerSchedule, sc.Name, now, now
		f.Run, f.Machines = &run, ms
	}
	gens, err := s.store.FireUpdateSchedule(ctx, f)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return nil // another replica fired it, or it was deleted meanwhile
	}
	if err != nil {
		return err
	}
	enrolled = merge(enrolled, gens)
	late := now.Sub(fire).Round(time.Second)
	s.log.InfoContext(ctx, "update schedule fired", "schedule", sc.Name, "subscription", sc.Subscription, "fire", fire,
		"late", late, "run", fireID, "machines", len(gens))
	msg := fmt.Sprintf("schedule %s fired for %s (%s late): ", sc.Name, fire.Format(time.RFC3339), late)
	result := wire.ResultSucceeded
	switch {
	case f.Run != nil && f.Run.Status == wire.UpdateFailed:
		msg += "run " + fireID + " failed: " + f.Run.Message
		result = wire.ResultFailed
	case f.Run != nil:
		msg += fmt.Sprintf("run %s on %d machine(s)", fireID, len(f.Machines))
	default:
		msg += fmt.Sprintf("assessment of %d machine(s)", len(f.Assessments))
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(sc.Origin), Action: actionSchedule,
		Scope: ScheduleResourceID(sc.Subscription, sc.Name), Result: result, Message: msg, At: now})
	return nil
}

const actionSchedule = "Corral.Updates/updateSchedules/write"
