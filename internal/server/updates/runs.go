package updates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Resource types of runs and schedules, below a subscription.
const (
	RunsType      = "updateRuns"
	SchedulesType = "updateSchedules"
)

// RunResourceID is the resource id of a run (its scope in the activity log).
func RunResourceID(sub, id string) string {
	return resource.Subscription(sub).Child(RunsType, id).String()
}

// ScheduleResourceID is the resource id of a schedule.
func ScheduleResourceID(sub, name string) string {
	return resource.Subscription(sub).Child(SchedulesType, name).String()
}

// RunSummary names a run for the activity log, without its scripts.
func RunSummary(r wire.UpdateRun) string {
	msg := fmt.Sprintf("deploy %s updates to %d machine(s) at %s, reboot %s, window %s (run %s)",
		strings.Join(r.Classifications, "+"), machinesOf(r), r.Scope, r.Reboot, fmtMinutes(time.Duration(r.Window)), r.ID)
	if r.Rollout != nil {
		msg += fmt.Sprintf(" in %d waves, budget %d%%", len(r.Waves), r.Rollout.MaxFailedPercent)
	}
	return msg
}

func machinesOf(r wire.UpdateRun) int {
	c := r.Counts
	return c.Pending + c.InProgress + c.Succeeded + c.CompletedWithWarnings + c.Failed + c.NotStarted
}

// newRun plans a run over the resolved machines: waves (one without a
// rollout), the first dispatched at once, the window from start.
func (s *Service) newRun(sub string, id string, r resolved, t wire.UpdateTargets, set wire.UpdateDeploymentSettings,
	rollout *wire.UpdateRollout, start time.Time, by string, origin []byte) (store.UpdateRun, []store.UpdateRunMachine, error) {
	targets := make([]schedule.Target, len(r.machines))
	for i, m := range r.machines {
		targets[i] = schedule.Target{ID: m.ID, Scope: m.ResourceID().String()}
	}
	var waves []schedule.Wave
	budget := 100
	if rollout != nil {
		waves, budget = toScheduleWaves(rollout.Waves), rollout.MaxFailedPercent
	}
	plan, err := schedule.PlanWaves(targets, waves, budget, id)
	if err != nil {
		return store.UpdateRun{}, nil, refusal.Invalid("rollout", "%v", err)
	}
	tb, _ := json.Marshal(t)
	sb, _ := json.Marshal(set)
	var rb []byte
	if rollout != nil {
		rb, _ = json.Marshal(rollout)
	}
	run := store.UpdateRun{ID: id, Subscription: sub, Scope: r.scope, Targets: tb, Settings: sb, Rollout: rb, Waves: len(plan.Waves),
		Status: wire.UpdateInProgress, Trigger: wire.TriggerOnDemand, Origin: origin, CreatedAt: start, CreatedBy: by,
		StartedAt: start, Deadline: start.Add(time.Duration(set.Window)), UpdatedAt: start}
	var ms []store.UpdateRunMachine
	for w, ids := range plan.Waves {
		for _, mid := range ids {
			ms = append(ms, store.UpdateRunMachine{RunID: id, MachineID: mid, Wave: w, Dispatched: w == 0, Status: wire.UpdatePending, UpdatedAt: start})
		}
	}
	return run, ms, nil
}

// CreateRun deploys updates now: it checks the settings, lists the target
// machines, switches Corral/PatchManagement on where needed and stores the
// run with its machines; the first wave's machines get the deployment in
// their desired state at once.
func (s *Service) CreateRun(ctx context.Context, sub string, req wire.UpdateRunCreate, by string) (wire.UpdateRun, error) {
	set, err := validateSettings(req.UpdateDeploymentSettings)
	if err != nil {
		return wire.UpdateRun{}, err
	}
	if err := validateRollout(sub, req.Rollout); err != nil {
		return wire.UpdateRun{}, err
	}
	r, err := s.resolveTargets(ctx, sub, req.UpdateTargets)
	if err != nil {
		return wire.UpdateRun{}, err
	}
	enrolled, err := s.enroll(ctx, r.machines, by)
	if err != nil {
		return wire.UpdateRun{}, err
	}
	now := s.now()
	defer func() { s.announce(ctx, enrolled) }() // the run's own generations are merged in below
	run, ms, err := s.newRun(sub, s.newID(), r, req.UpdateTargets, set, req.Rollout, now, by, capability.OriginFrom(ctx).Encode())
	if err != nil {
		return wire.UpdateRun{}, err
	}
	gens, err := s.store.CreateUpdateRun(ctx, run, ms)
	if errors.Is(err, store.ErrNotFound) {
		return wire.UpdateRun{}, refusal.Conflict("a target machine was deleted meanwhile; try again")
	}
	if err != nil {
		return wire.UpdateRun{}, err
	}
	enrolled = merge(enrolled, gens)
	s.log.InfoContext(ctx, "update run created", "run", run.ID, "machines", len(ms), "waves", run.Waves, "scope", run.Scope, "by", by)
	counts := map[int]map[string]int{}
	for _, m := range ms {
		if counts[m.Wave] == nil {
			counts[m.Wave] = map[string]int{}
		}
		counts[m.Wave][m.Status]++
	}
	return toWireRun(run, counts), nil
}

// toWireRun renders a run with its wave and status counts.
func toWireRun(r store.UpdateRun, counts map[int]map[string]int) wire.UpdateRun {
	out := wire.UpdateRun{ID: r.ID, SubscriptionID: r.Subscription, Scope: r.Scope, Status: r.Status, Reason: r.Reason, Message: r.Message,
		Trigger: r.Trigger, Schedule: r.Schedule, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, StartedAt: r.StartedAt,
		Deadline: r.Deadline, FinishedAt: r.FinishedAt, CurrentWave: r.CurrentWave, Waves: []wire.UpdateRunWave{}}
	_ = json.Unmarshal(r.Targets, &out.UpdateTargets)
	_ = json.Unmarshal(r.Settings, &out.UpdateDeploymentSettings)
	if len(r.Rollout) > 0 {
		var ro wire.UpdateRollout
		if json.Unmarshal(r.Rollout, &ro) == nil {
			out.Rollout = &ro
		}
	}
	for w := range r.Waves {
		c := counts[w]
		wv := wire.UpdateRunWave{Index: w, Failed: c[wire.UpdateFailed], Succeeded: c[wire.UpdateSucceeded] + c[wire.UpdateCompletedWithWarnings]}
		for _, n := range c {
			wv.Machines += n
		}
		switch open := c[wire.UpdatePending] + c[wire.UpdateInProgress]; {
		case c[wire.UpdateNotStarted] == wv.Machines:
			wv.Status = wire.UpdateNotStarted
		case open > 0 && w > r.CurrentWave && r.Status == wire.UpdateInProgress:
			wv.Status = wire.UpdateNotStarted
		case open > 0:
			wv.Status = wire.UpdateInProgress
		case wv.Failed+c[wire.UpdateNotStarted] > 0:
			wv.Status = wire.UpdateFailed
		default:
			wv.Status = wire.UpdateSucceeded
		}
		if r.Status == wire.UpdateHalted && w == r.CurrentWave {
			wv.Status = wire.UpdateHalted
		}
		out.Waves = append(out.Waves, wv)
		out.Counts.Pending += c[wire.UpdatePending]
		out.Counts.InProgress += c[wire.UpdateInProgress]
		out.Counts.Succeeded += c[wire.UpdateSucceeded]
		out.Counts.CompletedWithWarnings += c[wire.UpdateCompletedWithWarnings]
		out.Counts.Failed += c[wire.UpdateFailed]
		out.Counts.NotStarted += c[wire.UpdateNotStarted]
	}
	return out
}

// scriptsDoc is the stored form of a machine's script results.
type scriptsDoc struct {
	PreScript  *wire.UpdateScriptResult `json:"preScript,omitempty"`
	PostScript *wire.UpdateScriptResult `json:"postScript,omitempty"`
}

func toWireRunMachine(m store.UpdateRunMachine) wire.UpdateRunMachine {
	out := wire.UpdateRunMachine{MachineID: resource.Machine(m.Subscription, m.ResourceGroup, m.Name).String(), Name: m.Name,
		ResourceGroup: m.ResourceGroup, Wave: m.Wave, Status: m.Status, Reason: m.Reason, Message: m.Message, Current: m.Current,
		RebootRequired: m.RebootRequired, Reboot: m.Reboot, Recovery: m.Recovery, StartedAt: m.StartedAt, FinishedAt: m.FinishedAt,
		Packages: []wire.UpdatePackageResult{}}
	if len(m.Scripts) > 0 {
		var sd scriptsDoc
		if json.Unmarshal(m.Scripts, &sd) == nil {
			out.PreScript, out.PostScript = sd.PreScript, sd.PostScript
		}
	}
	if len(m.Packages) > 0 {
		_ = json.Unmarshal(m.Packages, &out.Packages)
	}
	return out
}

func (s *Service) run(ctx context.Context, sub, id string) (store.UpdateRun, error) {
	r, err := s.store.GetUpdateRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !strings.EqualFold(r.Subscription, sub)) {
		return r, refusal.NotFound("update run %q was not found in subscription %q", id, sub)
	}
	return r, err
}

// RunScope is the scope a run was made for (a caller's read of it is
// authorized there).
func (s *Service) RunScope(ctx context.Context, sub, id string) (string, error) {
	r, err := s.run(ctx, sub, id)
	if err != nil {
		return "", err
	}
	return r.Scope, nil
}

// GetRun returns a run with its counts (its machines: ListRunMachines).
func (s *Service) GetRun(ctx context.Context, sub, id string) (wire.UpdateRun, error) {
	r, err := s.run(ctx, sub, id)
	if err != nil {
		return wire.UpdateRun{}, err
	}
	counts, err := s.store.CountUpdateRunMachines(ctx, r.ID)
	if err != nil {
		return wire.UpdateRun{}, err
	}
	return toWireRun(r, counts), nil
}

// ListRunMachines lists a run's machines with their per-package results,
// by resource group and name.
func (s *Service) ListRunMachines(ctx context.Context, sub, id string, p store.Page) (store.PageOf[wire.UpdateRunMachine], error) {
	r, err := s.run(ctx, sub, id)
	if err != nil {
		return store.PageOf[wire.UpdateRunMachine]{}, err
	}
	ms, after, err := store.FetchPage(p, func(p store.Page) ([]store.UpdateRunMachine, error) {
		return s.store.ListUpdateRunMachines(ctx, r.ID, p)
	}, func(m store.UpdateRunMachine) string { return m.ResourceGroup + "/" + m.Name })
	if err != nil {
		return store.PageOf[wire.UpdateRunMachine]{}, err
	}
	out := store.PageOf[wire.UpdateRunMachine]{Items: make([]wire.UpdateRunMachine, 0, len(ms)), After: after}
	for _, m := range ms {
		out.Items = append(out.Items, toWireRunMachine(m))
	}
	return out, nil
}

// ListRuns lists a subscription's runs, newest first (schedule: only that
// schedule's).
func (s *Service) ListRuns(ctx context.Context, sub, scheduleName string, p store.Page) (store.PageOf[wire.UpdateRun], error) {
	return s.listRuns(ctx, store.UpdateRunFilter{Subscription: sub, Schedule: scheduleName}, p, nil)
}

// ListMachineRuns lists the runs a machine took part in, newest first,
// each with that machine's result as its only machine.
func (s *Service) ListMachineRuns(ctx context.Context, ref resource.MachineRef, p store.Page) (store.PageOf[wire.UpdateRun], error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return store.PageOf[wire.UpdateRun]{}, err
	}
	return s.listRuns(ctx, store.UpdateRunFilter{MachineID: m.ID}, p, &m)
}

func (s *Service) listRuns(ctx context.Context, f store.UpdateRunFilter, p store.Page, m *store.Machine) (store.PageOf[wire.UpdateRun], error) {
	rs, after, err := store.FetchPage(p, func(p store.Page) ([]store.UpdateRun, error) {
		f.Page = p
		return s.store.ListUpdateRuns(ctx, f)
	}, func(r store.UpdateRun) string { return r.ID })
	if err != nil {
		return store.PageOf[wire.UpdateRun]{}, err
	}
	out := store.PageOf[wire.UpdateRun]{Items: make([]wire.UpdateRun, 0, len(rs)), After: after}
	for _, r := range rs {
		counts, err := s.store.CountUpdateRunMachines(ctx, r.ID)
		if err != nil {
			return out, err
		}
		wr := toWireRun(r, counts)
		if m != nil {
			rm, err := s.store.GetUpdateRunMachine(ctx, r.ID, m.ID)
			if err == nil {
				wr.Machines = []wire.UpdateRunMachine{toWireRunMachine(rm)}
			}
		}
		out.Items = append(out.Items, wr)
	}
	return out, nil
}

// finalMachine says whether a machine status is final.
func finalMachine(st string) bool {
	return slices.Contains([]string{wire.UpdateSucceeded, wire.UpdateCompletedWithWarnings, wire.UpdateFailed, wire.UpdateNotStarted}, st)
}
