package protection

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// ScopeRef names a scope protection can be enabled on: a subscription (RG
// empty) or a resource group.
type ScopeRef struct {
	Subscription, ResourceGroup string
}

// resolve checks the scope exists and returns its id with the stored names.
func (s *Service) resolve(ctx context.Context, ref ScopeRef) (resource.ID, error) {
	sub, err := s.store.GetSubscription(ctx, ref.Subscription)
	if errors.Is(err, store.ErrNotFound) {
		return resource.ID{}, refusal.NotFound("subscription %q was not found", ref.Subscription)
	}
	if err != nil {
		return resource.ID{}, err
	}
	if ref.ResourceGroup == "" {
		return resource.Subscription(sub.Name), nil
	}
	rg, err := s.store.GetResourceGroup(ctx, sub.Name, ref.ResourceGroup)
	if errors.Is(err, store.ErrNotFound) {
		return resource.ID{}, refusal.NotFound("resource group %q was not found in subscription %q", ref.ResourceGroup, sub.Name)
	}
	if err != nil {
		return resource.ID{}, err
	}
	return resource.ResourceGroup(sub.Name, rg.Name), nil
}

func toAssignment(p store.ProtectionScope) wire.ProtectionAssignment {
	a := wire.ProtectionAssignment{ID: p.Scope + "/protection", Scope: p.Scope, Machines: p.Machines,
		CreatedAt: p.CreatedAt, CreatedBy: p.CreatedBy, UpdatedAt: p.UpdatedAt, UpdatedBy: p.UpdatedBy}
	if st, err := wire.ParseProtectionSettings(p.Settings); err == nil {
		a.Settings = st
	}
	if len(p.Schedule) > 0 {
		var sc wire.ProtectionSchedule
		if json.Unmarshal(p.Schedule, &sc) == nil {
			a.Schedule = &sc
		}
	}
	return a
}

// EnableResult says what Enable did.
type EnableResult struct {
	Assignment wire.ProtectionAssignment
	Created    bool
	// Changed counts machines whose extension was installed or updated.
	Changed int
	// Failed names machines the extension could not be set on, with why.
	Failed []string
}

// Summary names the change for the activity log.
func (r EnableResult) Summary() string {
	verb := "update"
	if r.Created {
		verb = "enable"
	}
	msg := fmt.Sprintf("%s endpoint protection on %s (action %s, real-time %v): %d machines in scope, %d installed or updated",
		verb, r.Assignment.Scope, r.Assignment.Settings.Action, r.Assignment.Settings.Realtime.Enabled, r.Assignment.Machines, r.Changed)
	if len(r.Failed) > 0 {
		msg += fmt.Sprintf(", %d failed (%s)", len(r.Failed), strings.Join(r.Failed[:min(3, len(r.Failed))], "; "))
	}
	return msg
}

// Enable turns protection on for a scope with the given settings and
// schedule, and installs (or updates) the extension on every machine whose
// most specific protected scope it is. Machines that join later get it
// when their agent first reports.
func (s *Service) Enable(ctx context.Context, ref ScopeRef, req wire.ProtectionEnable, by string) (EnableResult, error) {
	if err := req.Settings.Validate(); err != nil {
		return EnableResult{}, refusal.Invalid("settings", "%v", err)
	}
	var schedule []byte
	if req.Schedule != nil {
		if err := req.Schedule.Validate(); err != nil {
			return EnableResult{}, refusal.Invalid("schedule", "%v", err)
		}
		schedule, _ = json.Marshal(req.Schedule)
	}
	scope, err := s.resolve(ctx, ref)
	if err != nil {
		return EnableResult{}, err
	}
	settings := req.Settings.Marshal()
	now := s.now()
	row := store.ProtectionScope{Scope: scope.String(), Settings: settings, Schedule: schedule, CreatedAt: now, CreatedBy: by,
		UpdatedAt: now, UpdatedBy: by}
	created, err := s.store.PutProtectionScope(ctx, row)
	if err != nil {
		return EnableResult{}, err
	}
	res := EnableResult{Created: created}
	ms, err := s.machinesUnder(ctx, scope)
	if err != nil {
		return res, err
	}
	scopes, err := s.store.ListProtectionScopes(ctx)
	if err != nil {
		return res, err
	}
	var ids []string
	var mine []store.Machine
	for _, m := range ms {
		eff, ok := effective(scopes, m)
		if !ok || !strings.EqualFold(eff.Scope, row.Scope) || m.Status == wire.StatusExpired {
			continue
		}
		row.Machines++
		ids = append(ids, m.ID)
		mine = append(mine, m)
	}
	var mu sync.Mutex
	forEach(mine, func(m store.Machine) {
		changed, err := s.ext.EnsureProtection(ctx, refOf(m), settings, by)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			res.Failed = append(res.Failed, m.Name+": "+err.Error())
		case changed:
			res.Changed++
		}
	})
	// The schedule is in the protection slice: machines whose extension
	// did not change still need the new generation.
	if _, err := s.syncer.DesiredChanged(ctx, ids, now); err != nil {
		return res, err
	}
	if _, err := s.store.PutProtectionScope(ctx, row); err != nil {
		return res, err
	}
	p, err := s.store.GetProtectionScope(ctx, row.Scope)
	if err != nil {
		return res, err
	}
	res.Assignment = toAssignment(p)
	s.log.InfoContext(ctx, "endpoint protection enabled", "scope", row.Scope, "machines", row.Machines, "changed", res.Changed,
		"failed", len(res.Failed), "by", by)
	return res, nil
}

// Disable turns protection off for a scope: machines it covered get the
// settings of a broader protected scope, or lose the extension. It returns
// how many machines lost it.
func (s *Service) Disable(ctx context.Context, ref ScopeRef, by string) (int, error) {
	scope, err := s.resolve(ctx, ref)
	if err != nil {
		return 0, err
	}
	if err := s.store.DeleteProtectionScope(ctx, scope.String()); errors.Is(err, store.ErrNotFound) {
		return 0, refusal.NotFound("endpoint protection is not enabled on %s", scope)
	} else if err != nil {
		return 0, err
	}
	ms, err := s.machinesUnder(ctx, scope)
	if err != nil {
		return 0, err
	}
	scopes, err := s.store.ListProtectionScopes(ctx)
	if err != nil {
		return 0, err
	}
	removed := 0
	var ids []string
	var errs []error
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	var mu sync.Mutex
	forEach(ms, func(m store.Machine) {
		var err error
		eff, ok := effective(scopes, m)
		if ok {
			_, err = s.ext.EnsureProtection(ctx, refOf(m), eff.Settings, by)
		} else {
			err = s.ext.RemoveProtection(ctx, refOf(m), by)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
		case !ok:
			removed++
		}
	})
	if _, err := s.syncer.DesiredChanged(ctx, ids, s.now()); err != nil {
		return removed, err
	}
	s.log.InfoContext(ctx, "endpoint protection disabled", "scope", scope.String(), "removed", removed, "by", by)
	return removed, errors.Join(errs...)
}

// GetAssignment returns protection as enabled on a scope.
func (s *Service) GetAssignment(ctx context.Context, ref ScopeRef) (wire.ProtectionAssignment, error) {
	scope, err := s.resolve(ctx, ref)
	if err != nil {
		return wire.ProtectionAssignment{}, err
	}
	p, err := s.store.GetProtectionScope(ctx, scope.String())
	if errors.Is(err, store.ErrNotFound) {
		return wire.ProtectionAssignment{}, refusal.NotFound("endpoint protection is not enabled on %s", scope)
	}
	if err != nil {
		return wire.ProtectionAssignment{}, err
	}
	return toAssignment(p), nil
}

// ListAssignments returns the scopes protection is enabled on, at or below
// under ("/" for all).
func (s *Service) ListAssignments(ctx context.Context, under string) ([]wire.ProtectionAssignment, error) {
	ps, err := s.store.ListProtectionScopes(ctx)
	if err != nil {
		return nil, err
	}
	out := []wire.ProtectionAssignment{}
	for _, p := range ps {
		if within(p.Scope, under) {
			out = append(out, toAssignment(p))
		}
	}
	return out, nil
}

// EnsureMachine installs what the machine's protected scope asks for, if
// anything; the handler of the agent's properties report calls it, so a
// machine that joins a protected scope is protected at its first start.
func (s *Service) EnsureMachine(ctx context.Context, m store.Machine) error {
	if m.Status == wire.StatusExpired {
		return nil
	}
	scopes, err := s.store.ListProtectionScopes(ctx)
	if err != nil || len(scopes) == 0 {
		return err
	}
	eff, ok := effective(scopes, m)
	if !ok {
		return nil
	}
	changed, err := s.ext.EnsureProtection(ctx, refOf(m), eff.Settings, "protection:"+eff.Scope)
	if err != nil {
		return err
	}
	if changed {
		s.log.InfoContext(ctx, "endpoint protection installed on a machine of a protected scope", "machine", m.ID, "scope", eff.Scope)
	}
	return nil
}

// fanout is how many machines Enable and Disable change at once.
const fanout = 8

// forEach calls fn for every machine, fanout at a time.
func forEach(ms []store.Machine, fn func(store.Machine)) {
	sem := make(chan struct{}, fanout)
	var wg sync.WaitGroup
	for _, m := range ms {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(m)
		})
	}
	wg.Wait()
}

// effective is the most specific protected scope covering m.
func effective(scopes []store.ProtectionScope, m store.Machine) (store.ProtectionScope, bool) {
	id := m.ResourceID().String()
	var best store.ProtectionScope
	found := false
	for _, p := range scopes {
		if within(id, p.Scope) && (!found || len(p.Scope) > len(best.Scope)) {
			best, found = p, true
		}
	}
	return best, found
}

// within reports whether id is scope or below it (whole segments,
// case-insensitively); "/" and "" hold everything.
func within(id, scope string) bool {
	scope = strings.TrimRight(scope, "/")
	if scope == "" {
		return true
	}
	l, sc := strings.ToLower(id), strings.ToLower(scope)
	return l == sc || strings.HasPrefix(l, sc+"/")
}

// sameSettings compares settings documents by meaning.
func sameSettings(a, b []byte) bool {
	x, err1 := wire.ParseProtectionSettings(a)
	y, err2 := wire.ParseProtectionSettings(b)
	if err1 != nil || err2 != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(x.Marshal(), y.Marshal())
}

// SameSettings reports whether two extension settings documents of
// Corral/EndpointProtection mean the same (for the extension adapter).
func SameSettings(a, b []byte) bool { return sameSettings(a, b) }
