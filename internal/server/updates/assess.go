package updates

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// AssessSummary names an assessment request for the activity log.
func AssessSummary(b wire.UpdateAssessmentBatch) string {
	return "assess pending updates of " + strconv.Itoa(b.Machines) + " machine(s) at " + b.Scope + " (request " + b.ID + ")"
}

// RequestAssessment asks every target machine for an assessment now: it
// switches Corral/PatchManagement on where needed, stores one request per
// machine (one batch) and pushes a sync to each.
func (s *Service) RequestAssessment(ctx context.Context, sub string, req wire.UpdateAssessmentCreate, by string) (wire.UpdateAssessmentBatch, error) {
	r, err := s.resolveTargets(ctx, sub, req.UpdateTargets)
	if err != nil {
		return wire.UpdateAssessmentBatch{}, err
	}
	enrolled, err := s.enroll(ctx, r.machines, by)
	if err != nil {
		return wire.UpdateAssessmentBatch{}, err
	}
	now := s.now()
	batch := s.newID()
	origin := capability.OriginFrom(ctx).Encode()
	as := make([]store.UpdateAssessment, 0, len(r.machines))
	for _, m := range r.machines {
		as = append(as, store.UpdateAssessment{ID: s.newID(), MachineID: m.ID, BatchID: batch, Trigger: wire.TriggerOnDemand,
			State: wire.AssessmentPending, Origin: origin, RequestedAt: now, RequestedBy: by})
	}
	gens, err := s.store.CreateUpdateAssessments(ctx, as, now)
	if err != nil {
		s.announce(ctx, enrolled)
		return wire.UpdateAssessmentBatch{}, err
	}
	s.announce(ctx, merge(enrolled, gens))
	s.log.InfoContext(ctx, "update assessment requested", "batch", batch, "machines", len(gens), "scope", r.scope, "by", by)
	return wire.UpdateAssessmentBatch{ID: batch, Scope: r.scope, Machines: len(gens), Pending: len(gens), CreatedAt: now, CreatedBy: by}, nil
}

// GetAssessmentBatch says how far an assessment request got: counts by
// state and the machines that failed (at most 100).
func (s *Service) GetAssessmentBatch(ctx context.Context, sub, id string) (wire.UpdateAssessmentBatch, error) {
	notFound := refusal.NotFound("assessment request %q was not found in subscription %q", id, sub)
	first, err := s.store.ListUpdateAssessments(ctx, store.UpdateAssessmentFilter{BatchID: id, Page: store.Page{Limit: 1}})
	if err != nil {
		return wire.UpdateAssessmentBatch{}, err
	}
	if len(first) == 0 || id == "" {
		return wire.UpdateAssessmentBatch{}, notFound
	}
	m, err := s.store.GetMachineByID(ctx, first[0].MachineID)
	if err != nil || !strings.EqualFold(m.Subscription, sub) {
		return wire.UpdateAssessmentBatch{}, notFound
	}
	counts, err := s.store.CountUpdateAssessments(ctx, id)
	if err != nil {
		return wire.UpdateAssessmentBatch{}, err
	}
	b := wire.UpdateAssessmentBatch{ID: id, Scope: resource.Subscription(sub).String(), Pending: counts[wire.AssessmentPending],
		Succeeded: counts[wire.AssessmentSucceeded], Failed: counts[wire.AssessmentFailed],
		CreatedAt: first[0].RequestedAt, CreatedBy: first[0].RequestedBy}
	b.Machines = b.Pending + b.Succeeded + b.Failed
	if b.Failed > 0 {
		fails, err := s.store.ListUpdateAssessments(ctx, store.UpdateAssessmentFilter{BatchID: id, State: wire.AssessmentFailed, Page: store.Page{Limit: 100}})
		if err != nil {
			return b, err
		}
		for _, a := range fails {
			mm, err := s.store.GetMachineByID(ctx, a.MachineID)
			if err != nil {
				continue
			}
			b.Failures = append(b.Failures, toWireAssessment(mm, a))
		}
	}
	return b, nil
}

func toWireAssessment(m store.Machine, a store.UpdateAssessment) wire.UpdateAssessment {
	return wire.UpdateAssessment{ID: a.ID, MachineID: m.ResourceID().String(), BatchID: a.BatchID, Trigger: a.Trigger, State: a.State,
		Reason: a.Reason, Message: a.Message, Manager: a.Manager, Refreshed: a.Refreshed, Critical: a.Critical, Security: a.Security,
		Other: a.Other, RebootPending: a.RebootPending, RequestedAt: a.RequestedAt, RequestedBy: a.RequestedBy, StartedAt: a.StartedAt,
		FinishedAt: a.FinishedAt}
}

func (s *Service) machine(ctx context.Context, ref resource.MachineRef) (store.Machine, error) {
	m, err := s.store.GetMachine(ctx, ref.Subscription, ref.ResourceGroup, ref.Name)
	if errors.Is(err, store.ErrNotFound) {
		return m, refusal.NotFound("machine %q was not found in resource group %q", ref.Name, ref.ResourceGroup)
	}
	return m, err
}

func toWireSummary(st store.MachineUpdateStatus) wire.UpdateSummary {
	return wire.UpdateSummary{MachineID: resource.Machine(st.Subscription, st.ResourceGroup, st.Name).String(), Name: st.Name,
		ResourceGroup: st.ResourceGroup, State: st.State, Reason: st.Reason, Message: st.Message, Manager: st.Manager,
		Critical: st.Critical, Security: st.Security, Other: st.Other, RebootPending: st.RebootPending, AssessedAt: st.AssessedAt}
}

// MachineUpdates returns a machine's pending updates as last assessed,
// only those whose name contains nameFilter (case-insensitively) when it
// is not empty. A machine never assessed has state NotAssessed.
func (s *Service) MachineUpdates(ctx context.Context, ref resource.MachineRef, nameFilter string) (wire.MachineUpdates, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.MachineUpdates{}, err
	}
	out := wire.MachineUpdates{UpdateSummary: wire.UpdateSummary{MachineID: m.ResourceID().String(), Name: m.Name,
		ResourceGroup: m.ResourceGroup, State: wire.AssessmentNotAssessed}, Updates: []wire.PendingUpdate{}}
	st, err := s.store.GetMachineUpdateStatus(ctx, m.ID)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	out.UpdateSummary = toWireSummary(st)
	if len(st.Updates) > 0 {
		var ups []wire.PendingUpdate
		if err := json.Unmarshal(st.Updates, &ups); err != nil {
			return out, err
		}
		nameFilter = strings.ToLower(strings.TrimSpace(nameFilter))
		for _, u := range ups {
			if nameFilter == "" || strings.Contains(strings.ToLower(u.Name), nameFilter) {
				out.Updates = append(out.Updates, u)
			}
		}
	}
	return out, nil
}

// ListMachineAssessments lists a machine's assessments, newest first.
func (s *Service) ListMachineAssessments(ctx context.Context, ref resource.MachineRef, p store.Page) (store.PageOf[wire.UpdateAssessment], error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return store.PageOf[wire.UpdateAssessment]{}, err
	}
	as, after, err := store.FetchPage(p, func(p store.Page) ([]store.UpdateAssessment, error) {
		return s.store.ListUpdateAssessments(ctx, store.UpdateAssessmentFilter{MachineID: m.ID, Page: p})
	}, func(a store.UpdateAssessment) string { return a.ID })
	if err != nil {
		return store.PageOf[wire.UpdateAssessment]{}, err
	}
	out := store.PageOf[wire.UpdateAssessment]{Items: make([]wire.UpdateAssessment, 0, len(as)), After: after}
	for _, a := range as {
		out.Items = append(out.Items, toWireAssessment(m, a))
	}
	return out, nil
}

// SummaryFilter selects machine update statuses for the inventory.
type SummaryFilter struct {
	Subscription  string
	ResourceGroup string
	// MachineIDs, when set, are the machine UUIDs wanted (at most 1000).
	MachineIDs []string
	Page       store.Page
}

// Summaries lists the update status of enrolled machines (machines never
// targeted are left out: they are NotAssessed).
func (s *Service) Summaries(ctx context.Context, f SummaryFilter) (store.PageOf[wire.UpdateSummary], error) {
	if len(f.MachineIDs) > MaxListedMachines {
		return store.PageOf[wire.UpdateSummary]{}, refusal.Invalid("machineId", "at most %d machine ids", MaxListedMachines)
	}
	ids := slices.Compact(slices.Sorted(slices.Values(f.MachineIDs)))
	sts, after, err := store.FetchPage(f.Page, func(p store.Page) ([]store.MachineUpdateStatus, error) {
		return s.store.ListMachineUpdateStatuses(ctx, store.UpdateStatusFilter{Subscription: f.Subscription, ResourceGroup: f.ResourceGroup,
			MachineIDs: ids, Page: p})
	}, func(st store.MachineUpdateStatus) string { return st.ResourceGroup + "/" + st.Name })
	if err != nil {
		return store.PageOf[wire.UpdateSummary]{}, err
	}
	out := store.PageOf[wire.UpdateSummary]{Items: make([]wire.UpdateSummary, 0, len(sts)), After: after}
	for _, st := range sts {
		out.Items = append(out.Items, toWireSummary(st))
	}
	return out, nil
}
