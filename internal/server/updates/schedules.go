package updates

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// MaxSchedulesPerSubscription bounds the schedules of one subscription.
const MaxSchedulesPerSubscription = 1000

// ScheduleSummary names a schedule for the activity log.
func ScheduleSummary(sc wire.UpdateSchedule) string {
	when := sc.Cron + " " + sc.TimeZone
	if !sc.At.IsZero() {
		when = "once at " + sc.At.Format(time.RFC3339)
	}
	what := "assess"
	if sc.Kind == wire.ScheduleDeployment {
		what = "deploy " + strings.Join(sc.Classifications, "+") + " updates, reboot " + sc.Reboot
	}
	return "schedule " + sc.Name + ": " + what + " at " + sc.Scope + ", " + strings.TrimSpace(when)
}

// CreateSchedule stores a schedule: the targets are checked now (a scope
// without machines is refused) and resolved again at every fire.
func (s *Service) CreateSchedule(ctx context.Context, sub, name string, req wire.UpdateScheduleCreate, by string) (wire.UpdateSchedule, error) {
	if err := resource.CheckName("schedule", name); err != nil {
		return wire.UpdateSchedule{}, refusal.Invalid("name", "%v", err)
	}
	kind := wire.ScheduleDeployment
	if req.Kind != "" {
		k, ok := canonical(req.Kind, []string{wire.ScheduleDeployment, wire.ScheduleAssessment})
		if !ok {
			return wire.UpdateSchedule{}, refusal.Invalid("kind", "unknown schedule kind %q: want Deployment or Assessment", req.Kind)
		}
		kind = k
	}
	spec := schedule.Spec{Cron: strings.TrimSpace(req.Cron), TimeZone: strings.TrimSpace(req.TimeZone), At: req.At.UTC()}
	if req.At.IsZero() {
		spec.At = time.Time{}
	}
	p, err := schedule.Parse(spec)
	if err != nil {
		target := "cron"
		switch {
		case errors.Is(err, schedule.ErrBadTimeZone):
			target = "timeZone"
		case !spec.At.IsZero():
			target = "at"
		}
		return wire.UpdateSchedule{}, refusal.Invalid(target, "%v", err)
	}
	now := s.now()
	if p.OneTime() && !spec.At.After(now.Add(-time.Minute)) {
		return wire.UpdateSchedule{}, refusal.Invalid("at", "the time %s is in the past", spec.At.Format(time.RFC3339))
	}
	if _, ok := p.Next(now); !ok {
		return wire.UpdateSchedule{}, refusal.Invalid("cron", "the schedule never fires")
	}
	set := req.UpdateDeploymentSettings
	if kind == wire.ScheduleDeployment {
		if set, err = validateSettings(req.UpdateDeploymentSettings); err != nil {
			return wire.UpdateSchedule{}, err
		}
		if err := validateRollout(sub, req.Rollout); err != nil {
			return wire.UpdateSchedule{}, err
		}
	} else {
		if len(set.Classifications)+len(set.Include)+len(set.Exclude) > 0 || set.Reboot != "" || set.PreScript != "" || set.PostScript != "" || req.Rollout != nil {
			return wire.UpdateSchedule{}, refusal.Invalid("kind", "an Assessment schedule takes no deployment settings")
		}
		w := time.Duration(set.Window)
		if w == 0 {
			w = schedule.DefaultWindow
		}
		if err := schedule.ValidateWindow(w); err != nil {
			return wire.UpdateSchedule{}, refusal.Invalid("window", "maintenance window %s is outside 60–235 minutes", fmtMinutes(w))
		}
		set = wire.UpdateDeploymentSettings{Window: wire.Duration(w)}
	}
	r, err := s.resolveTargets(ctx, sub, req.UpdateTargets)
	if err != nil {
		return wire.UpdateSchedule{}, err
	}
	existing, err := s.store.ListUpdateSchedules(ctx, store.UpdateScheduleFilter{Subscription: sub, Page: store.Page{Limit: store.MaxPageSize}})
	if err != nil {
		return wire.UpdateSchedule{}, err
	}
	if len(existing) >= MaxSchedulesPerSubscription {
		return wire.UpdateSchedule{}, refusal.Conflict("subscription %q already has %d schedules, the most allowed", sub, MaxSchedulesPerSubscription)
	}
	tb, _ := json.Marshal(req.UpdateTargets)
	sb, _ := json.Marshal(set)
	var rb []byte
	if req.Rollout != nil {
		rb, _ = json.Marshal(req.Rollout)
	}
	sc := store.UpdateSchedule{ID: s.newID(), Subscription: sub, Name: name, Kind: kind, Scope: r.scope, Targets: tb, Cron: spec.Cron,
		TimeZone: spec.TimeZone, At: spec.At, Window: time.Duration(set.Window), Settings: sb, Rollout: rb,
		Origin: capability.OriginFrom(ctx).Encode(), CreatedAt: now, CreatedBy: by}
	if err := s.store.CreateUpdateSchedule(ctx, sc); errors.Is(err, store.ErrConflict) {
		return wire.UpdateSchedule{}, refusal.Conflict("a schedule named %q already exists in subscription %q", name, sub)
	} else if err != nil {
		return wire.UpdateSchedule{}, err
	}
	s.log.InfoContext(ctx, "update schedule created", "schedule", name, "subscription", sub, "kind", kind, "by", by)
	return s.toWireSchedule(sc), nil
}

func (s *Service) toWireSchedule(sc store.UpdateSchedule) wire.UpdateSchedule {
	out := wire.UpdateSchedule{ID: ScheduleResourceID(sc.Subscription, sc.Name), Name: sc.Name, SubscriptionID: sc.Subscription,
		Scope: sc.Scope, CreatedAt: sc.CreatedAt, CreatedBy: sc.CreatedBy, LastFiredAt: sc.LastFiredAt, LastRunID: sc.LastRunID}
	out.Kind, out.Cron, out.TimeZone, out.At = sc.Kind, sc.Cron, sc.TimeZone, sc.At
	_ = json.Unmarshal(sc.Targets, &out.UpdateTargets)
	_ = json.Unmarshal(sc.Settings, &out.UpdateDeploymentSettings)
	if len(sc.Rollout) > 0 {
		out.Rollout = &wire.UpdateRollout{}
		_ = json.Unmarshal(sc.Rollout, out.Rollout)
	}
	if p, err := schedule.Parse(specOf(sc)); err == nil {
		from := s.now()
		if sc.LastFiredAt.After(from) {
			from = sc.LastFiredAt
		}
		if n, ok := p.Next(from); ok && !(p.OneTime() && !sc.LastFiredAt.IsZero()) {
			out.NextFireAt = n
		}
	}
	return out
}

func (s *Service) schedule(ctx context.Context, sub, name string) (store.UpdateSchedule, error) {
	sc, err := s.store.GetUpdateSchedule(ctx, sub, name)
	if errors.Is(err, store.ErrNotFound) {
		return sc, refusal.NotFound("update schedule %q was not found in subscription %q", name, sub)
	}
	return sc, err
}

// GetSchedule returns one schedule with its next fire.
func (s *Service) GetSchedule(ctx context.Context, sub, name string) (wire.UpdateSchedule, error) {
	sc, err := s.schedule(ctx, sub, name)
	if err != nil {
		return wire.UpdateSchedule{}, err
	}
	return s.toWireSchedule(sc), nil
}

// ScheduleScope is the scope a schedule was made for.
func (s *Service) ScheduleScope(ctx context.Context, sub, name string) (string, error) {
	sc, err := s.schedule(ctx, sub, name)
	if err != nil {
		return "", err
	}
	return sc.Scope, nil
}

// ListSchedules lists a subscription's schedules by name.
func (s *Service) ListSchedules(ctx context.Context, sub string, p store.Page) (store.PageOf[wire.UpdateSchedule], error) {
	scs, after, err := store.FetchPage(p, func(p store.Page) ([]store.UpdateSchedule, error) {
		return s.store.ListUpdateSchedules(ctx, store.UpdateScheduleFilter{Subscription: sub, Page: p})
	}, func(sc store.UpdateSchedule) string { return sc.Name })
	if err != nil {
		return store.PageOf[wire.UpdateSchedule]{}, err
	}
	out := store.PageOf[wire.UpdateSchedule]{Items: make([]wire.UpdateSchedule, 0, len(scs)), After: after}
	for _, sc := range scs {
		out.Items = append(out.Items, s.toWireSchedule(sc))
	}
	return out, nil
}

// DeleteSchedule removes a schedule; its runs stay in the history.
func (s *Service) DeleteSchedule(ctx context.Context, sub, name string) error {
	err := s.store.DeleteUpdateSchedule(ctx, sub, name)
	if errors.Is(err, store.ErrNotFound) {
		return refusal.NotFound("update schedule %q was not found in subscription %q", name, sub)
	}
	return err
}
