package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Limits on what an agent's compliance report may carry.
const (
	maxReportRules = 2000
	maxEvidence    = 2048
	maxRuleText    = 512
)

// assignmentsFor lists the assignments that apply to m (at its
// subscription or resource group, not excluded by a notScope).
func (s *Service) assignmentsFor(ctx context.Context, m store.Machine) ([]store.PolicyAssignment, error) {
	as, err := s.store.PolicyAssignmentsAt(ctx, ancestors(m))
	if err != nil {
		return nil, err
	}
	return applicable(as, m), nil
}

// defCache resolves definitions once per call.
type defCache struct {
	s *Service
	m map[string]*definition
}

func (s *Service) defs() *defCache { return &defCache{s: s, m: map[string]*definition{}} }

func (c *defCache) get(ctx context.Context, name string) (*definition, error) {
	k := strings.ToLower(name)
	if d, ok := c.m[k]; ok {
		return d, nil
	}
	d, err := c.s.lookupDefinition(ctx, name)
	if err != nil {
		return nil, err
	}
	c.m[k] = &d
	return &d, nil
}

func paramValues(a store.PolicyAssignment) map[string]any {
	var values map[string]any
	if len(a.Parameters) > 0 {
		_ = json.Unmarshal(a.Parameters, &values)
	}
	return values
}

// ContributeDesired writes, for each machine, the machine configurations
// of its assignments, the rollbacks asked for and the newest on-demand
// evaluation of a scope holding it. The assignments of the whole batch are
// read at once (the scopes of its machines).
func (s *Service) ContributeDesired(ctx context.Context, batch []capability.Desired) error {
	all, err := s.store.PolicyAssignmentsAt(ctx, capability.Scopes(batch, ancestors))
	if err != nil {
		return err
	}
	defs := s.defs()
	for _, d := range batch {
		if err := s.contributeMachine(ctx, d, applicable(all, d.Machine), defs); err != nil {
			return err
		}
	}
	return nil
}

// applicable returns the assignments of all (read at the scopes of a
// batch) that apply to m: at one of its scopes, m not excluded.
func applicable(all []store.PolicyAssignment, m store.Machine) []store.PolicyAssignment {
	var out []store.PolicyAssignment
	scopes := ancestors(m)
	for _, a := range all {
		if slices.ContainsFunc(scopes, func(sc string) bool { return strings.EqualFold(sc, a.Scope) }) && !excluded(a, m) {
			out = append(out, a)
		}
	}
	return out
}

func (s *Service) contributeMachine(ctx context.Context, d capability.Desired, as []store.PolicyAssignment, defs *defCache) error {
	m, ds := d.Machine, d.State
	slice := wire.GuestConfigurationDesired{Assignments: []wire.GuestAssignment{}}
	for _, a := range as {
		d, err := defs.get(ctx, a.Definition)
		if err != nil {
			s.log.WarnContext(ctx, "an assignment's definition is gone", "assignment", a.Name, "err", err)
			continue
		}
		if d.guestCfg == "" || effectOf(d.def, paramValues(a)) == string(policy.EffectDisabled) {
			continue
		}
		slice.Assignments = append(slice.Assignments, wire.GuestAssignment{ID: AssignmentID(a.Scope, a.Name), Name: a.Name,
			Definition: a.Definition, Configuration: d.guestCfg, Version: d.def.GuestConfiguration.Version, AssignmentType: a.AssignmentType})
	}
	if len(slice.Assignments) == 0 {
		// No machine configuration: no remediation to roll back, nothing
		// to evaluate on demand (most machines, most of the time).
		return capability.SetFeature(ds, wire.FeatureGuestConfiguration, slice)
	}
	rbs, err := s.store.ListPolicyRemediations(ctx, store.PolicyRemediationFilter{MachineID: m.ID, State: wire.RemediationRollbackRequested,
		Page: store.Page{Limit: 100}})
	if err != nil {
		return err
	}
	for _, r := range rbs {
		slice.Rollbacks = append(slice.Rollbacks, wire.GuestRollback{ID: r.ID, Force: r.Force, RequestedAt: r.RollbackRequestedAt})
	}
	ev, err := s.store.LatestPolicyEvaluation(ctx, append(ancestors(m), m.ResourceID().String()))
	switch {
	case err == nil:
		slice.EvaluationRequest = ev.ID
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return capability.SetFeature(ds, wire.FeatureGuestConfiguration, slice)
}

// rollUp is a machine's state from its rules'.
func rollUp(states []string) string {
	out := wire.ComplianceCompliant
	if len(states) == 0 {
		return wire.ComplianceUnknown
	}
	for _, st := range states {
		switch st {
		case wire.ComplianceNonCompliant:
			return wire.ComplianceNonCompliant
		case wire.ComplianceUnknown:
			out = wire.ComplianceUnknown
		}
	}
	return out
}

func validState(st string) bool {
	return st == wire.ComplianceCompliant || st == wire.ComplianceNonCompliant || st == wire.ComplianceUnknown
}

func (s *Service) handleCompliance(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var body wire.GuestComplianceReport
	if err := capability.DecodeReport(r, &body); err != nil {
		return err
	}
	if body.Assignment == "" || len(body.Rules) > maxReportRules {
		return refusal.Invalid("body", "a compliance report needs an assignment and at most %d rules", maxReportRules)
	}
	a, err := s.store.GetPolicyAssignment(ctx, assignmentName(body.Assignment))
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted since: nothing to keep
	}
	if err != nil {
		return err
	}
	ts := body.EvaluatedAt.UTC()
	if ts.IsZero() || ts.After(at.Add(time.Minute)) {
		ts = at
	}
	scope := m.ResourceID().String()
	rules := make([]store.PolicyRuleState, 0, len(body.Rules))
	states := make([]string, 0, len(body.Rules))
	seen := map[string]bool{}
	for i, rr := range body.Rules {
		if rr.Rule == "" || seen[rr.Rule] || !validState(rr.ComplianceState) || wire.CheckText(rr.Rule, maxRuleText) != nil {
			return refusal.Invalid(fmt.Sprintf("rules[%d]", i), "a rule needs a unique id and a state of Compliant, NonCompliant or Unknown")
		}
		seen[rr.Rule] = true
		states = append(states, rr.ComplianceState)
		rules = append(rules, store.PolicyRuleState{MachineScope: scope, Definition: a.Definition, Rule: rr.Rule,
			Title: wire.CleanReported(rr.Title, maxRuleText), Severity: wire.CleanReported(rr.Severity, 32), ComplianceState: rr.ComplianceState,
			Evidence: wire.CleanReported(rr.Evidence, maxEvidence), SSGRuleID: wire.CleanReported(rr.SSGRuleID, maxRuleText), Timestamp: ts})
	}
	st := store.PolicyMachineStatus{Assignment: a.Name, MachineID: m.ID, MachineScope: scope, Definition: a.Definition,
		ComplianceState: rollUp(states), Reason: wire.CleanReported(body.Reason, maxEvidence),
		EvaluationRequest: wire.CleanReported(body.EvaluationRequest, 100), EvaluatedAt: at}
	err = s.store.PutPolicyStates(ctx, st, rules)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the assignment or the machine went meanwhile
	}
	return err
}

// handleProperties re-evaluates the definitions the server evaluates
// whenever the machine reports what it is (start, change).
func (s *Service) handleProperties(ctx context.Context, m store.Machine, _ wire.Report, _ time.Time) error {
	fresh, err := s.store.GetMachineByID(ctx, m.ID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	s.evaluateMachine(ctx, fresh, "")
	return nil
}

// evaluateMachine evaluates every server-side assignment of m; failures
// are logged (the next evaluation repairs).
func (s *Service) evaluateMachine(ctx context.Context, m store.Machine, evalID string) {
	as, err := s.assignmentsFor(ctx, m)
	if err != nil {
		s.log.ErrorContext(ctx, "list a machine's assignments", "machine", m.ID, "err", err)
		return
	}
	defs := s.defs()
	for _, a := range as {
		d, err := defs.get(ctx, a.Definition)
		if err != nil || d.guestCfg != "" {
			continue
		}
		if err := s.evaluateServerSide(ctx, m, a, *d, evalID); err != nil {
			s.log.WarnContext(ctx, "evaluate a definition on a machine", "assignment", a.Name, "machine", m.ID, "err", err)
		}
	}
}

// machineResource is what definitions see of m.
func (s *Service) machineResource(ctx context.Context, m store.Machine) (*policy.Resource, error) {
	exts, err := s.res.ListExtensions(ctx, refOf(m))
	if err != nil && !errors.Is(err, refusal.ErrNotFound) {
		return nil, err
	}
	return policy.MachineResource(s.res.ToWireMachine(m), exts, nil), nil
}

// evaluateServerSide evaluates a definition without a machine
// configuration on m and records the verdict; deployIfNotExists deploys
// what is missing through the extensions path.
func (s *Service) evaluateServerSide(ctx context.Context, m store.Machine, a store.PolicyAssignment, d definition, evalID string) error {
	p, err := d.def.BindParameters(paramValues(a))
	if err != nil {
		return err
	}
	r, err := s.machineResource(ctx, m)
	if err != nil {
		return err
	}
	res, err := d.def.Evaluate(r, &p)
	if err != nil {
		return err
	}
	if res.ComplianceState == "" { // Disabled
		return nil
	}
	evidence := res.Reason
	if res.ComplianceState == policy.NonCompliant && res.Effect == policy.EffectDeployIfNotExists && res.Deployment != nil {
		for _, ext := range res.Deployment.Extensions {
			if err := s.res.DeployExtension(ctx, refOf(m), ext.Name, ext, "policy assignment "+a.Name); err != nil {
				evidence += fmt.Sprintf("; deploying %s/%s failed: %v", ext.Publisher, ext.Type, err)
				continue
			}
			evidence += fmt.Sprintf("; deploying %s/%s as %s through the extensions path", ext.Publisher, ext.Type, ext.Name)
		}
	}
	if res.ComplianceState == policy.NonCompliant && (res.Effect == policy.EffectModify || res.Effect == policy.EffectAppend) && len(res.TagChanges) > 0 {
		note, err := s.remediateTags(ctx, m, a, res)
		if err != nil {
			evidence += "; tag remediation failed: " + err.Error()
		} else if fresh, err := s.store.GetMachineByID(ctx, m.ID); err == nil {
			m = fresh
			if r, err := s.machineResource(ctx, m); err == nil {
				if again, err := d.def.Evaluate(r, &p); err == nil && again.ComplianceState != "" {
					res = again
					evidence = note + "; " + again.Reason
				}
			}
		}
	}
	now := s.now()
	scope := m.ResourceID().String()
	st := store.PolicyMachineStatus{Assignment: a.Name, MachineID: m.ID, MachineScope: scope, Definition: a.Definition,
		ComplianceState: string(res.ComplianceState), EvaluationRequest: evalID, EvaluatedAt: now}
	rule := store.PolicyRuleState{MachineScope: scope, Definition: a.Definition, Rule: d.def.Name, Title: d.def.DisplayName,
		ComplianceState: string(res.ComplianceState), Evidence: wire.CleanReported(evidence, maxEvidence), Timestamp: now}
	err = s.store.PutPolicyStates(ctx, st, []store.PolicyRuleState{rule})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// StateQuery selects compliance states.
type StateQuery struct {
	Scope      string // "/" or a subscription, resource group or machine id
	Assignment string
	Page       store.Page
}

// exemptions resolves exemptions once per call.
type exemptionCache struct {
	s   *Service
	now time.Time
	m   map[string][]store.PolicyExemption
	as  map[string]store.PolicyAssignment
}

func (s *Service) exemptions() *exemptionCache {
	return &exemptionCache{s: s, now: s.now(), m: map[string][]store.PolicyExemption{}, as: map[string]store.PolicyAssignment{}}
}

// exempt returns the unexpired exemption of assignment covering scope.
func (c *exemptionCache) exempt(ctx context.Context, assignment, scope string) (string, error) {
	k := strings.ToLower(assignment)
	es, ok := c.m[k]
	if !ok {
		var err error
		if es, err = c.s.store.ListPolicyExemptions(ctx, assignment); err != nil {
			return "", err
		}
		c.m[k] = es
	}
	for _, e := range es {
		if (e.ExpiresAt.IsZero() || e.ExpiresAt.After(c.now)) && within(scope, e.Scope) {
			return e.Name, nil
		}
	}
	return "", nil
}

func (c *exemptionCache) assignment(ctx context.Context, name string) (store.PolicyAssignment, error) {
	k := strings.ToLower(name)
	if a, ok := c.as[k]; ok {
		return a, nil
	}
	a, err := c.s.store.GetPolicyAssignment(ctx, name)
	if err != nil {
		return a, err
	}
	c.as[k] = a
	return a, nil
}

// ListStates lists compliance states, one per assignment × machine × rule,
// with exemptions applied and the assignment's non-compliance message on
// NonCompliant states.
func (s *Service) ListStates(ctx context.Context, q StateQuery) (store.PageOf[wire.PolicyState], error) {
	var out store.PageOf[wire.PolicyState]
	lim := q.Page.Limit
	if lim <= 0 {
		lim = store.DefaultPageSize
	}
	f := store.PolicyStateFilter{ScopePrefix: q.Scope, Assignment: assignmentName(q.Assignment), Page: store.Page{After: q.Page.After, Limit: lim + 1}}
	if f.ScopePrefix == "/" {
		f.ScopePrefix = ""
	}
	rs, err := s.store.ListPolicyStates(ctx, f)
	if err != nil {
		return out, err
	}
	if len(rs) > lim {
		rs = rs[:lim]
		out.After = store.PolicyStateKey(rs[lim-1])
	}
	ex := s.exemptions()
	for _, r := range rs {
		a, err := ex.assignment(ctx, r.Assignment)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return out, err
		}
		ps := wire.PolicyState{Assignment: AssignmentID(a.Scope, a.Name), Definition: r.Definition, Machine: r.MachineScope, MachineID: r.MachineID,
			Rule: r.Rule, Title: r.Title, Severity: r.Severity, ComplianceState: r.ComplianceState, Evidence: r.Evidence, Timestamp: r.Timestamp,
			SSGRuleID: r.SSGRuleID}
		if name, err := ex.exempt(ctx, a.Name, r.MachineScope); err != nil {
			return out, err
		} else if name != "" {
			ps.ComplianceState, ps.Exemption = wire.ComplianceExempt, name
		}
		if ps.ComplianceState == wire.ComplianceNonCompliant {
			ps.NonComplianceMessage = a.NonComplianceMessage
		}
		out.Items = append(out.Items, ps)
	}
	return out, nil
}

// MachineScope returns a machine's resource id (for authorization).
func (s *Service) MachineScope(ctx context.Context, machineID string) (string, error) {
	m, err := s.store.GetMachineByID(ctx, machineID)
	if errors.Is(err, store.ErrNotFound) {
		return "", refusal.NotFound("machine %q was not found", machineID)
	}
	if err != nil {
		return "", err
	}
	return m.ResourceID().String(), nil
}

// StateHistory lists a rule's changes on a machine, newest first.
func (s *Service) StateHistory(ctx context.Context, assignment, machineID, rule string) ([]wire.PolicyStateChange, error) {
	hs, err := s.store.PolicyStateHistory(ctx, assignmentName(assignment), machineID, rule, 100)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refusal.NotFound("policy assignment %q was not found", assignment)
	}
	if err != nil {
		return nil, err
	}
	out := make([]wire.PolicyStateChange, 0, len(hs))
	for _, h := range hs {
		out = append(out, wire.PolicyStateChange{ComplianceState: h.ComplianceState, Evidence: h.Evidence, Timestamp: h.Timestamp})
	}
	return out, nil
}

// allAssignments lists every assignment (all pages).
func (s *Service) allAssignments(ctx context.Context) ([]store.PolicyAssignment, error) {
	var out []store.PolicyAssignment
	p := store.Page{Limit: store.MaxPageSize}
	for {
		as, err := s.store.ListPolicyAssignments(ctx, "", p)
		if err != nil {
			return nil, err
		}
		out = append(out, as...)
		if len(as) < store.MaxPageSize {
			return out, nil
		}
		p.After = strings.ToLower(as[len(as)-1].Name)
	}
}

// applies reports whether a covers m.
func applies(a store.PolicyAssignment, m store.Machine) bool {
	return within(m.ResourceID().String(), a.Scope) && !excluded(a, m)
}

// Summary rolls compliance up per assignment for the machines at or below
// scope: each machine counted once per assignment by its state. It reads
// machine ids, not machines, so that a roll-up of 10,000 machines stays
// cheap.
func (s *Service) Summary(ctx context.Context, scope string) ([]wire.PolicyComplianceSummary, error) {
	if scope == "" {
		scope = "/"
	}
	as, err := s.allAssignments(ctx)
	if err != nil {
		return nil, err
	}
	prefix := scope
	if prefix == "/" {
		prefix = ""
	}
	sts, err := s.store.ListPolicyMachineStatus(ctx, store.PolicyStateFilter{ScopePrefix: prefix})
	if err != nil {
		return nil, err
	}
	byKey := map[string]store.PolicyMachineStatus{}
	for _, st := range sts {
		byKey[strings.ToLower(st.Assignment)+"|"+st.MachineID] = st
	}
	now := s.now()
	defs := s.defs()
	out := []wire.PolicyComplianceSummary{}
	for _, a := range as {
		if !within(a.Scope, scope) && !within(scope, a.Scope) {
			continue
		}
		d, err := defs.get(ctx, a.Definition)
		if err == nil && effectOf(d.def, paramValues(a)) == string(policy.EffectDisabled) {
			continue
		}
		// The machines both the assignment and the scope cover.
		inner := scope
		if within(a.Scope, scope) {
			inner = a.Scope
		}
		ids, err := s.idsIn(ctx, inner)
		if err != nil {
			return nil, err
		}
		excludedIDs := map[string]bool{}
		for _, ns := range a.NotScopes {
			xs, err := s.idsIn(ctx, ns)
			if err != nil {
				return nil, err
			}
			for _, id := range xs {
				excludedIDs[id] = true
			}
		}
		exemptIDs := map[string]bool{}
		es, err := s.store.ListPolicyExemptions(ctx, a.Name)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if !e.ExpiresAt.IsZero() && !e.ExpiresAt.After(now) {
				continue
			}
			xs, err := s.idsIn(ctx, e.Scope)
			if err != nil {
				return nil, err
			}
			for _, id := range xs {
				exemptIDs[id] = true
			}
		}
		sum := wire.PolicyComplianceSummary{Assignment: AssignmentID(a.Scope, a.Name), Definition: a.Definition, Scope: scope}
		for _, id := range ids {
			if excludedIDs[id] {
				continue
			}
			if exemptIDs[id] {
				sum.Exempt++
				continue
			}
			st, ok := byKey[strings.ToLower(a.Name)+"|"+id]
			switch {
			case !ok:
				sum.NotEvaluated++
			case st.ComplianceState == wire.ComplianceCompliant:
				sum.Compliant++
			case st.ComplianceState == wire.ComplianceNonCompliant:
				sum.NonCompliant++
			default:
				sum.Unknown++
			}
		}
		switch {
		case sum.NonCompliant > 0:
			sum.ComplianceState = wire.ComplianceNonCompliant
		case sum.Unknown > 0 || sum.NotEvaluated > 0:
			sum.ComplianceState = wire.ComplianceUnknown
		default:
			sum.ComplianceState = wire.ComplianceCompliant
		}
		out = append(out, sum)
	}
	return out, nil
}

// idsIn lists the ids of the machines at or below a scope ("/" is all).
func (s *Service) idsIn(ctx context.Context, scope string) ([]string, error) {
	if scope == "/" || scope == "" {
		return s.store.MachineIDsInScope(ctx, "", "", "")
	}
	id, err := resource.ParseScope(scope)
	if err != nil {
		return nil, nil
	}
	var sub, rg, name string
	for _, seg := range id.Segments() {
		switch seg.Type {
		case resource.Subscriptions:
			sub = seg.Name
		case resource.ResourceGroups:
			rg = seg.Name
		case resource.Machines:
			name = seg.Name
		}
	}
	return s.store.MachineIDsInScope(ctx, sub, rg, name)
}
