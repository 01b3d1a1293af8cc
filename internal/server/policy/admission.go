package policy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
)

// CodeDisallowedByPolicy is the error code of a request a deny assignment
// refused (Azure's RequestDisallowedByPolicy).
const CodeDisallowedByPolicy = "RequestDisallowedByPolicy"

// AdmitMachine is the policy gate of a machine being created, connected
// or changed (its tags): m is the machine as it would be after the change.
// Append and modify assignments change its tags first (the returned tags,
// as in Azure, where they alter the request); then a deny assignment whose
// condition matches refuses the change, with the assignment's
// non-compliance message in the error (and so in the activity log).
// Exempted scopes are not denied.
func (s *Service) AdmitMachine(ctx context.Context, m store.Machine) (map[string]string, error) {
	as, err := s.assignmentsFor(ctx, m)
	if err != nil {
		return nil, err
	}
	if len(as) == 0 {
		return m.Tags, nil
	}
	tags := maps.Clone(m.Tags)
	defs := s.defs()
	ex := s.exemptions()
	scope := m.ResourceID().String()
	type bound struct {
		a store.PolicyAssignment
		d *definition
		p policy.Params
	}
	var deny []bound
	for _, a := range as {
		d, err := defs.get(ctx, a.Definition)
		if err != nil || d.guestCfg != "" {
			continue
		}
		p, err := d.def.BindParameters(paramValues(a))
		if err != nil {
			continue
		}
		switch d.def.Effect(p) {
		case policy.EffectDeny:
			deny = append(deny, bound{a, d, p})
		case policy.EffectAppend, policy.EffectModify:
			cur := m
			cur.Tags = tags
			r, err := s.machineResource(ctx, cur)
			if err != nil {
				return nil, err
			}
			res, err := d.def.Evaluate(r, &p)
			if err != nil || res.ComplianceState != policy.NonCompliant || len(res.TagChanges) == 0 {
				continue
			}
			tags = policy.ApplyTagChanges(tags, res.TagChanges)
		}
	}
	for _, b := range deny {
		if name, err := ex.exempt(ctx, b.a.Name, scope); err != nil {
			return nil, err
		} else if name != "" {
			continue
		}
		cur := m
		cur.Tags = tags
		r, err := s.machineResource(ctx, cur)
		if err != nil {
			return nil, err
		}
		res, err := b.d.def.Evaluate(r, &b.p)
		if err != nil || res.ComplianceState != policy.NonCompliant {
			continue
		}
		msg := b.a.NonComplianceMessage
		if msg == "" {
			msg = b.d.def.DisplayName
		}
		return nil, refusal.Invalid("policy", "denied by policy assignment %q (definition %s): %s (%s)", b.a.Name, b.a.Definition,
			msg, strings.TrimSpace(res.Reason)).WithCode(CodeDisallowedByPolicy)
	}
	return tags, nil
}

// remediateTags applies what an append or modify assignment would change
// to an existing machine (a remediation task, in Azure's words).
func (s *Service) remediateTags(ctx context.Context, m store.Machine, a store.PolicyAssignment, res *policy.Result) (string, error) {
	if len(res.TagChanges) == 0 {
		return "", errors.New("no tag changes")
	}
	tags := policy.ApplyTagChanges(m.Tags, res.TagChanges)
	if err := s.res.SetMachineTags(ctx, refOf(m), tags); err != nil {
		return "", err
	}
	var parts []string
	for _, c := range res.TagChanges {
		parts = append(parts, fmt.Sprintf("%s %s=%s", c.Operation, c.Key, c.Value))
	}
	return "remediated by assignment " + a.Name + ": " + strings.Join(parts, ", "), nil
}

// MachineChanged re-evaluates the definitions the server evaluates on a
// machine that was just created or changed.
func (s *Service) MachineChanged(ctx context.Context, m store.Machine) {
	s.evaluateMachine(ctx, m, "")
}
