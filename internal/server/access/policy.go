package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// scopeOf resolves a policy scope to the stored spelling of the resources
// it names (so "/subscriptions/DEFAULT" is stored as the subscription's
// own name), and the machine filter that selects the machines below it.
type scopeRef struct {
	id            resource.ID
	sub, rg, name string
}

func (s *Service) resolveScope(ctx context.Context, scope string) (scopeRef, error) {
	id, err := resource.ParseScope(scope)
	if err != nil {
		return scopeRef{}, refusal.Invalid("scope", "%v", err)
	}
	segs := id.Segments()
	var r scopeRef
	switch len(segs) {
	case 0:
		return scopeRef{id: resource.Root()}, nil
	case 1:
		sub, err := s.store.GetSubscription(ctx, segs[0].Name)
		if errors.Is(err, store.ErrNotFound) {
			return r, refusal.NotFound("subscription %q was not found", segs[0].Name)
		}
		if err != nil {
			return r, err
		}
		return scopeRef{id: resource.Subscription(sub.Name), sub: sub.Name}, nil
	case 2:
		g, err := s.store.GetResourceGroup(ctx, segs[0].Name, segs[1].Name)
		if errors.Is(err, store.ErrNotFound) {
			return r, refusal.NotFound("resource group %q was not found in subscription %q", segs[1].Name, segs[0].Name)
		}
		if err != nil {
			return r, err
		}
		return scopeRef{id: resource.ResourceGroup(g.Subscription, g.Name), sub: g.Subscription, rg: g.Name}, nil
	default:
		m, err := s.machine(ctx, resource.MachineRef{Subscription: segs[0].Name, ResourceGroup: segs[1].Name, Name: segs[2].Name})
		if err != nil {
			return r, err
		}
		return scopeRef{id: m.ResourceID(), sub: m.Subscription, rg: m.ResourceGroup, name: m.Name}, nil
	}
}

// checkPolicy validates a policy body and returns its canonical form;
// every problem is named.
func checkPolicy(in wire.JITPolicySet) (store.JITPolicy, error) {
	var p store.JITPolicy
	var problems []string
	target := ""
	fail := func(field, format string, args ...any) {
		if target == "" {
			target = field
		}
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	switch {
	case len(in.Ports) == 0:
		fail("ports", "a JIT policy needs at least one port")
	case len(in.Ports) > wire.MaxJITPorts:
		fail("ports", "a JIT policy manages at most %d ports, not %d", wire.MaxJITPorts, len(in.Ports))
	}
	for _, raw := range in.Ports {
		port, err := wire.ParseJITPort(raw)
		if err != nil {
			fail("ports", "%v", err)
			continue
		}
		if slices.Contains(p.Ports, port) {
			fail("ports", "port %s is listed twice", port)
			continue
		}
		p.Ports = append(p.Ports, port)
	}
	if len(in.AllowedSources) > wire.MaxJITSources {
		fail("allowedSources", "a JIT policy allows at most %d source ranges, not %d", wire.MaxJITSources, len(in.AllowedSources))
	}
	p.AllowedSources = []string{}
	for _, raw := range in.AllowedSources {
		pr, err := wire.ParseJITRange(raw)
		if err != nil {
			fail("allowedSources", "%v", err)
			continue
		}
		if !slices.Contains(p.AllowedSources, pr.String()) {
			p.AllowedSources = append(p.AllowedSources, pr.String())
		}
	}
	d := time.Duration(in.MaxDuration)
	switch {
	case d == 0:
		d = wire.DefaultJITMaxDuration
	case d < 0:
		fail("maxDuration", "the maximum duration %s must be positive", d)
	case d < time.Minute:
		fail("maxDuration", "the maximum duration %s is shorter than a minute", d)
	case d > wire.MaxJITDuration:
		fail("maxDuration", "the maximum duration %s is over the limit of %s", d, wire.MaxJITDuration)
	}
	p.MaxDuration, p.RequireApproval = d, in.RequireApproval
	if len(problems) > 0 {
		return p, refusal.Invalid(target, "%s", joinProblems(problems))
	}
	return p, nil
}

// SetPolicy creates or replaces the JIT policy at scope and moves every
// machine below it to a new desired state.
func (s *Service) SetPolicy(ctx context.Context, scope string, in wire.JITPolicySet, by string) (wire.JITPolicy, bool, error) {
	p, err := checkPolicy(in)
	if err != nil {
		return wire.JITPolicy{}, false, err
	}
	ref, err := s.resolveScope(ctx, scope)
	if err != nil {
		return wire.JITPolicy{}, false, err
	}
	now := s.now()
	p.Scope, p.UpdatedAt, p.UpdatedBy = ref.id.String(), now, by
	created, err := s.store.PutJITPolicy(ctx, p)
	if err != nil {
		return wire.JITPolicy{}, false, err
	}
	if err := s.scopeChanged(ctx, ref, now); err != nil {
		return wire.JITPolicy{}, false, err
	}
	return toWirePolicy(p), created, nil
}

// scopeChanged bumps the machines below ref.
func (s *Service) scopeChanged(ctx context.Context, ref scopeRef, now time.Time) error {
	ids, err := s.store.MachineIDsInScope(ctx, ref.sub, ref.rg, ref.name)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	_, err = s.sync.DesiredChanged(ctx, ids, now)
	return err
}

// GetPolicy returns the policy at exactly scope.
func (s *Service) GetPolicy(ctx context.Context, scope string) (wire.JITPolicy, error) {
	ref, err := s.resolveScope(ctx, scope)
	if err != nil {
		return wire.JITPolicy{}, err
	}
	p, err := s.store.GetJITPolicy(ctx, ref.id.String())
	if errors.Is(err, store.ErrNotFound) {
		return wire.JITPolicy{}, refusal.NotFound("there is no JIT policy at %s", ref.id)
	}
	if err != nil {
		return wire.JITPolicy{}, err
	}
	return toWirePolicy(p), nil
}

// DeletePolicy removes the policy at scope: machines that follow no other
// policy remove their table (their ports are no longer managed).
func (s *Service) DeletePolicy(ctx context.Context, scope string) (wire.JITPolicy, error) {
	ref, err := s.resolveScope(ctx, scope)
	if err != nil {
		return wire.JITPolicy{}, err
	}
	p, err := s.store.GetJITPolicy(ctx, ref.id.String())
	if err == nil {
		err = s.store.DeleteJITPolicy(ctx, ref.id.String())
	}
	if errors.Is(err, store.ErrNotFound) {
		return wire.JITPolicy{}, refusal.NotFound("there is no JIT policy at %s", ref.id)
	}
	if err != nil {
		return wire.JITPolicy{}, err
	}
	return toWirePolicy(p), s.scopeChanged(ctx, ref, s.now())
}

// ListPolicies returns the policies at or below scope (the caller filters
// what it may read).
func (s *Service) ListPolicies(ctx context.Context, scope string) ([]wire.JITPolicy, error) {
	id, err := resource.ParseScope(scope)
	if err != nil {
		return nil, refusal.Invalid("scope", "%v", err)
	}
	ps, err := s.store.ListJITPolicies(ctx, id.String())
	if err != nil {
		return nil, err
	}
	out := make([]wire.JITPolicy, 0, len(ps))
	for _, p := range ps {
		out = append(out, toWirePolicy(p))
	}
	return out, nil
}

// effectivePolicy is the most specific policy above m, if any.
func (s *Service) effectivePolicy(ctx context.Context, m store.Machine) (store.JITPolicy, bool, error) {
	ps, err := s.store.JITPoliciesAt(ctx, policyScopes(m))
	if err != nil {
		return store.JITPolicy{}, false, err
	}
	p, ok := effective(ps, m)
	return p, ok, nil
}

// policyScopes are the scopes whose JIT policy may apply to m.
func policyScopes(m store.Machine) []string {
	return []string{"/", resource.Subscription(m.Subscription).String(),
		resource.ResourceGroup(m.Subscription, m.ResourceGroup).String(), m.ResourceID().String()}
}

// effective picks m's policy among ps (read at its scopes, or at those of
// a batch of machines): the one at its deepest scope.
func effective(ps []store.JITPolicy, m store.Machine) (store.JITPolicy, bool) {
	var best store.JITPolicy
	found := false
	if len(ps) == 0 {
		return best, found
	}
	for _, sc := range policyScopes(m) {
		for _, p := range ps {
			if strings.EqualFold(p.Scope, sc) {
				best, found = p, true
			}
		}
	}
	return best, found
}

// MachineStatus is the machine's effective policy and what its agent last
// reported.
func (s *Service) MachineStatus(ctx context.Context, ref resource.MachineRef) (wire.JITMachineStatus, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.JITMachineStatus{}, err
	}
	st := wire.JITMachineStatus{MachineID: m.ID, Machine: m.ResourceID().String()}
	p, ok, err := s.effectivePolicy(ctx, m)
	if err != nil {
		return st, err
	}
	if ok {
		wp := toWirePolicy(p)
		st.Policy = &wp
	}
	a, err := s.store.GetMachineAccess(ctx, m.ID)
	switch {
	case err == nil:
		st.State, st.Message, st.ReportedAt = a.JITState, a.JITMessage, a.ReportedAt
	case !errors.Is(err, store.ErrNotFound):
		return st, err
	}
	return st, nil
}

func toWirePolicy(p store.JITPolicy) wire.JITPolicy {
	return wire.JITPolicy{Scope: p.Scope, Ports: nonNil(p.Ports), AllowedSources: nonNil(p.AllowedSources), MaxDuration: wire.Duration(p.MaxDuration),
		RequireApproval: p.RequireApproval, UpdatedAt: p.UpdatedAt, UpdatedBy: p.UpdatedBy}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
