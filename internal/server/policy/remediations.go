package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Evaluate starts an on-demand evaluation of a scope: the server
// evaluates its own definitions now and every agent in scope evaluates its
// machine configurations (a new generation names the request).
func (s *Service) Evaluate(ctx context.Context, scope, by string) (wire.PolicyEvaluation, error) {
	if scope == "" {
		return wire.PolicyEvaluation{}, refusal.Invalid("scope", "scope is required")
	}
	resolved, err := s.resolveScope(ctx, "scope", scope)
	if err != nil {
		return wire.PolicyEvaluation{}, err
	}
	e := store.PolicyEvaluation{ID: s.newID(), Scope: resolved, RequestedAt: s.now(), RequestedBy: by}
	if err := s.store.CreatePolicyEvaluation(ctx, e); err != nil {
		return wire.PolicyEvaluation{}, err
	}
	ms, err := s.machinesUnder(ctx, resolved)
	if err != nil {
		return wire.PolicyEvaluation{}, err
	}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		s.evaluateMachine(ctx, m, e.ID)
		ids = append(ids, m.ID)
	}
	if len(ids) > 0 {
		if _, err := s.syncer.DesiredChanged(ctx, ids, s.now()); err != nil {
			return wire.PolicyEvaluation{}, err
		}
	}
	return s.progress(ctx, e)
}

// GetEvaluation returns an on-demand evaluation and how far it got.
func (s *Service) GetEvaluation(ctx context.Context, id string) (wire.PolicyEvaluation, error) {
	e, err := s.store.GetPolicyEvaluation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return wire.PolicyEvaluation{}, refusal.NotFound("policy evaluation %q was not found", id)
	}
	if err != nil {
		return wire.PolicyEvaluation{}, err
	}
	return s.progress(ctx, e)
}

// EvaluationScope returns an evaluation's scope (for authorization).
func (s *Service) EvaluationScope(ctx context.Context, id string) (string, error) {
	e, err := s.store.GetPolicyEvaluation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", refusal.NotFound("policy evaluation %q was not found", id)
	}
	return e.Scope, err
}

// progress counts the assignment × machine pairs of connected machines in
// the evaluation's scope, and those evaluated since it was asked for.
func (s *Service) progress(ctx context.Context, e store.PolicyEvaluation) (wire.PolicyEvaluation, error) {
	out := wire.PolicyEvaluation{ID: e.ID, Scope: e.Scope, RequestedAt: e.RequestedAt, RequestedBy: e.RequestedBy}
	as, err := s.allAssignments(ctx)
	if err != nil {
		return out, err
	}
	ms, err := s.machinesUnder(ctx, e.Scope)
	if err != nil {
		return out, err
	}
	sts, err := s.store.ListPolicyMachineStatus(ctx, store.PolicyStateFilter{ScopePrefix: e.Scope})
	if err != nil {
		return out, err
	}
	done := map[string]bool{}
	for _, st := range sts {
		if !st.EvaluatedAt.Before(e.RequestedAt) {
			done[st.Assignment+"|"+st.MachineID] = true
		}
	}
	defs := s.defs()
	for _, a := range as {
		d, err := defs.get(ctx, a.Definition)
		if err != nil || effectOf(d.def, paramValues(a)) == "Disabled" {
			continue
		}
		for _, m := range ms {
			if m.Status != wire.StatusConnected || !applies(a, m) {
				continue
			}
			out.Expected++
			if done[a.Name+"|"+m.ID] {
				out.Evaluated++
			}
		}
	}
	out.Done = out.Evaluated == out.Expected
	return out, nil
}

func toWireRemediation(r store.PolicyRemediation) wire.PolicyRemediation {
	out := wire.PolicyRemediation{ID: r.ID, Assignment: r.Assignment, Machine: r.MachineScope, MachineID: r.MachineID, Rule: r.Rule,
		State: r.State, Result: r.Result, Message: r.Message, EvidenceBefore: r.EvidenceBefore, EvidenceAfter: r.EvidenceAfter,
		CreatedAt: r.CreatedAt, RollbackRequestedBy: r.RollbackRequestedBy, Force: r.Force, UpdatedAt: r.UpdatedAt}
	if !r.RollbackRequestedAt.IsZero() {
		t := r.RollbackRequestedAt
		out.RollbackRequestedAt = &t
	}
	if len(r.Files) > 0 {
		_ = json.Unmarshal(r.Files, &out.Files)
	}
	return out
}

func (s *Service) handleRemediation(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var body wire.GuestRemediationReport
	if err := capability.DecodeReport(r, &body); err != nil {
		return err
	}
	if !validOpID(body.ID) || body.Assignment == "" || body.Rule == "" || len(body.Files) > 100 ||
		(body.Result != wire.ResultSucceeded && body.Result != wire.ResultFailed) {
		return refusal.Invalid("body", "a remediation report needs an id, an assignment, a rule, a result and at most 100 files")
	}
	a, err := s.store.GetPolicyAssignment(ctx, assignmentName(body.Assignment))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for i := range body.Files {
		f := &body.Files[i]
		f.Path = wire.CleanReported(f.Path, 1024)
		f.ModeBefore, f.ModeAfter = wire.CleanReported(f.ModeBefore, 16), wire.CleanReported(f.ModeAfter, 16)
		f.OwnerBefore, f.OwnerAfter = wire.CleanReported(f.OwnerBefore, 64), wire.CleanReported(f.OwnerAfter, 64)
	}
	files, _ := json.Marshal(body.Files)
	state := wire.RemediationApplied
	if body.Result == wire.ResultFailed {
		state = wire.ResultFailed
	}
	rec := store.PolicyRemediation{ID: body.ID, Assignment: a.Name, MachineID: m.ID, MachineScope: m.ResourceID().String(),
		Rule: wire.CleanReported(body.Rule, maxRuleText), State: state, Result: body.Result, Message: wire.CleanReported(body.Message, maxEvidence),
		EvidenceBefore: wire.CleanReported(body.EvidenceBefore, maxEvidence), EvidenceAfter: wire.CleanReported(body.EvidenceAfter, maxEvidence),
		Files: files, CreatedAt: at, UpdatedAt: at}
	created, err := s.store.PutPolicyRemediation(ctx, rec)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil || !created {
		return err
	}
	msg := fmt.Sprintf("%s of assignment %s remediated rule %s: %s -> %s (remediation %s)", a.AssignmentType, a.Name, rec.Rule,
		rec.EvidenceBefore, rec.EvidenceAfter, rec.ID)
	if body.Result == wire.ResultFailed {
		msg = fmt.Sprintf("%s of assignment %s could not remediate rule %s: %s", a.AssignmentType, a.Name, rec.Rule, rec.Message)
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.Origin{Caller: "policy assignment " + a.Name, CallerType: "PolicyAssignment"},
		Action: authz.ActRemediationsWrite, Scope: rec.MachineScope, Result: body.Result, Message: msg, At: at})
	return nil
}

// validOpID: remediation ids name files on the agent.
func validOpID(id string) bool {
	if id == "" || len(id) > 100 || id[0] == '.' {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// RemediationQuery selects remediations, newest first.
type RemediationQuery struct {
	Scope string
	Page  store.Page
}

// ListRemediations lists remediations of machines at or below a scope.
func (s *Service) ListRemediations(ctx context.Context, q RemediationQuery) (store.PageOf[wire.PolicyRemediation], error) {
	var out store.PageOf[wire.PolicyRemediation]
	lim := q.Page.Limit
	if lim <= 0 {
		lim = store.DefaultPageSize
	}
	prefix := q.Scope
	if prefix == "/" {
		prefix = ""
	}
	rs, err := s.store.ListPolicyRemediations(ctx, store.PolicyRemediationFilter{ScopePrefix: prefix, Page: store.Page{After: q.Page.After, Limit: lim + 1}})
	if err != nil {
		return out, err
	}
	if len(rs) > lim {
		rs = rs[:lim]
		out.After = rs[lim-1].ID
	}
	for _, r := range rs {
		out.Items = append(out.Items, toWireRemediation(r))
	}
	return out, nil
}

// GetRemediation returns a remediation.
func (s *Service) GetRemediation(ctx context.Context, id string) (wire.PolicyRemediation, error) {
	r, err := s.store.GetPolicyRemediation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return wire.PolicyRemediation{}, refusal.NotFound("remediation %q was not found", id)
	}
	if err != nil {
		return wire.PolicyRemediation{}, err
	}
	return toWireRemediation(r), nil
}

// RequestRollback asks the machine to undo a remediation. The agent
// refuses over a file changed since the remediation unless force.
func (s *Service) RequestRollback(ctx context.Context, id string, force bool, by string) (wire.PolicyRemediation, error) {
	r, err := s.store.GetPolicyRemediation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return wire.PolicyRemediation{}, refusal.NotFound("remediation %q was not found", id)
	}
	if err != nil {
		return wire.PolicyRemediation{}, err
	}
	switch r.State {
	case wire.RemediationApplied, wire.RemediationRollbackFailed:
	case wire.RemediationRollbackRequested:
		if r.Force == force {
			return toWireRemediation(r), nil
		}
	default:
		return wire.PolicyRemediation{}, refusal.Conflict("remediation %s is %s; only an applied remediation can be rolled back", id, r.State)
	}
	now := s.now()
	r.State, r.RollbackRequestedAt, r.RollbackRequestedBy, r.Force, r.UpdatedAt = wire.RemediationRollbackRequested, now, by, force, now
	r.Message = ""
	r.Origin = capability.OriginFrom(ctx).Encode()
	if err := s.store.UpdatePolicyRemediation(ctx, r); err != nil {
		return wire.PolicyRemediation{}, err
	}
	if _, err := s.syncer.DesiredChanged(ctx, []string{r.MachineID}, now); err != nil {
		return wire.PolicyRemediation{}, err
	}
	return toWireRemediation(r), nil
}

func (s *Service) handleRollback(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var body wire.GuestRollbackReport
	if err := capability.DecodeReport(r, &body); err != nil {
		return err
	}
	if !validOpID(body.ID) || (body.Result != wire.ResultSucceeded && body.Result != wire.ResultFailed) {
		return refusal.Invalid("body", "a rollback report needs an id and a result")
	}
	rec, err := s.store.GetPolicyRemediation(ctx, body.ID)
	if errors.Is(err, store.ErrNotFound) || err == nil && (rec.MachineID != m.ID || rec.State != wire.RemediationRollbackRequested) {
		return nil // not this machine's, or already recorded
	}
	if err != nil {
		return err
	}
	rec.State, rec.Message, rec.UpdatedAt = wire.RemediationRolledBack, wire.CleanReported(body.Message, maxEvidence), at
	msg := fmt.Sprintf("rolled back remediation %s of rule %s (assignment %s)", rec.ID, rec.Rule, rec.Assignment)
	if body.Result == wire.ResultFailed {
		rec.State = wire.RemediationRollbackFailed
		msg = fmt.Sprintf("rollback of remediation %s of rule %s refused by the machine: %s", rec.ID, rec.Rule, rec.Message)
	}
	if err := s.store.UpdatePolicyRemediation(ctx, rec); err != nil {
		return err
	}
	if _, err := s.syncer.DesiredChanged(ctx, []string{m.ID}, at); err != nil {
		s.log.WarnContext(ctx, "announce a finished rollback", "machine", m.ID, "err", err)
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(rec.Origin), Action: authz.ActRemediationsWrite,
		Scope: rec.MachineScope, Result: body.Result, Message: msg, At: at})
	return nil
}
