package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Codes of JIT refusals a script may branch on.
const (
	CodeNoPolicy       = "NoJITPolicy"
	CodeMachineCannot  = "MachineCannotApplyJIT"
	CodeSelfApproval   = "SelfApproval"
	CodeNotPending     = "RequestNotPending"
	CodeApprovalExpiry = "ApprovalWindowPassed"
)

// RequestGrant asks for one opening on the machine: checked against its
// effective policy, then approved at once or left for another user's
// approval as the policy says. The grant enters the machine's desired
// state once approved.
func (s *Service) RequestGrant(ctx context.Context, ref resource.MachineRef, c Caller, in wire.JITRequestCreate) (wire.JITRequest, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.JITRequest{}, err
	}
	p, ok, err := s.effectivePolicy(ctx, m)
	if err != nil {
		return wire.JITRequest{}, err
	}
	if !ok {
		return wire.JITRequest{}, refusal.Conflict("machine %q has no JIT policy, so no port of it is managed: set one first (corral jit policy set --machine %s --port 22)",
			m.Name, m.Name).WithCode(CodeNoPolicy)
	}
	var problems []string
	target := ""
	fail := func(field, format string, args ...any) {
		if target == "" {
			target = field
		}
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	port, err := wire.ParseJITPort(in.Port)
	switch {
	case in.Port == "":
		fail("port", "the port is required")
	case err != nil:
		fail("port", "%v", err)
	case !slices.Contains(p.Ports, port):
		fail("port", "port %s of %s is not managed by its JIT policy (at %s: %v), so there is nothing to open", port, m.Name, p.Scope, p.Ports)
	}
	srcText := in.SourceIP
	if srcText == "" {
		srcText = c.SourceIP
	}
	src, err := wire.ParseJITSource(srcText)
	switch {
	case err != nil:
		fail("sourceIp", "%v", err)
	case !wire.JITSourceAllowed(src, p.AllowedSources):
		fail("sourceIp", "source %s is outside the allowed source ranges of the JIT policy at %s (%v)", src, p.Scope, p.AllowedSources)
	}
	d := time.Duration(in.Duration)
	switch {
	case d <= 0:
		fail("duration", "the duration %s must be positive", d)
	case d < time.Second:
		fail("duration", "the duration %s is shorter than a second", d)
	case d > p.MaxDuration:
		fail("duration", "the duration %s is over the maximum of %s of the JIT policy at %s", d, p.MaxDuration, p.Scope)
	}
	if len(in.Justification) > wire.MaxJustification || !cleanText(in.Justification) {
		fail("justification", "the justification must be at most %d bytes of text without control characters", wire.MaxJustification)
	}
	if len(problems) > 0 {
		return wire.JITRequest{}, refusal.Invalid(target, "%s", joinProblems(problems))
	}
	a, err := s.store.GetMachineAccess(ctx, m.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return wire.JITRequest{}, err
	}
	if err == nil && (a.JITState == wire.JITStateFailed || a.JITState == wire.JITStateRefused) {
		return wire.JITRequest{}, refusal.Conflict("machine %q cannot open ports just in time: %s (reported %s)",
			m.Name, a.JITMessage, a.ReportedAt.Format(time.RFC3339)).WithCode(CodeMachineCannot)
	}

	now := s.now()
	g := store.JITGrant{ID: s.newID(), MachineID: m.ID, MachineScope: m.ResourceID().String(), Port: port, Source: src.String(),
		Duration: d, Justification: in.Justification, State: wire.JITPending, RequestedByID: c.ID, RequestedBy: c.Name,
		RequestedAt: now, Origin: capability.OriginFrom(ctx).Encode(), UpdatedAt: now}
	if !p.RequireApproval {
		g.State, g.ApprovedBy, g.ApprovedAt, g.ExpiresAt = wire.JITApproved, "policy", now, now.Add(d)
	}
	if err := s.store.CreateJITGrant(ctx, g); err != nil {
		return wire.JITRequest{}, err
	}
	if g.State == wire.JITApproved {
		if _, err := s.sync.DesiredChanged(ctx, []string{m.ID}, now); err != nil {
			return wire.JITRequest{}, err
		}
	}
	return s.toWire(m, g), nil
}

// Grant returns one request with the resource id of its machine (the
// scope the caller must be authorized at).
func (s *Service) Grant(ctx context.Context, id string) (wire.JITRequest, error) {
	g, m, err := s.grant(ctx, id)
	if err != nil {
		return wire.JITRequest{}, err
	}
	return s.toWire(m, g), nil
}

func (s *Service) grant(ctx context.Context, id string) (store.JITGrant, store.Machine, error) {
	if !wire.ValidResourceName(id) {
		return store.JITGrant{}, store.Machine{}, refusal.NotFound("there is no JIT request %q", capText(id, 80))
	}
	g, err := s.store.GetJITGrant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return g, store.Machine{}, refusal.NotFound("there is no JIT request %q", id)
	}
	if err != nil {
		return g, store.Machine{}, err
	}
	m, err := s.store.GetMachineByID(ctx, g.MachineID)
	if errors.Is(err, store.ErrNotFound) {
		return g, m, refusal.NotFound("there is no JIT request %q", id)
	}
	return g, m, err
}

// Approve lets a waiting request open its port, from now for its
// duration. The approver must not be the requester.
func (s *Service) Approve(ctx context.Context, id string, c Caller) (wire.JITRequest, error) {
	g, m, err := s.grant(ctx, id)
	if err != nil {
		return wire.JITRequest{}, err
	}
	now := s.now()
	if err := s.decidable(ctx, g, c, now); err != nil {
		return wire.JITRequest{}, err
	}
	u := store.JITGrantUpdate{State: wire.JITApproved, ApprovedByID: c.ID, ApprovedBy: c.Name, ApprovedAt: now, ExpiresAt: now.Add(g.Duration), At: now}
	moved, err := s.store.TransitionJITGrant(ctx, id, []string{wire.JITPending}, u)
	if err != nil {
		return wire.JITRequest{}, err
	}
	if !moved {
		return wire.JITRequest{}, refusal.Conflict("JIT request %s was decided meanwhile", id).WithCode(CodeNotPending)
	}
	if _, err := s.sync.DesiredChanged(ctx, []string{m.ID}, now); err != nil {
		return wire.JITRequest{}, err
	}
	return s.Grant(ctx, id)
}

// Reject turns a waiting request down.
func (s *Service) Reject(ctx context.Context, id string, c Caller) (wire.JITRequest, error) {
	g, _, err := s.grant(ctx, id)
	if err != nil {
		return wire.JITRequest{}, err
	}
	now := s.now()
	if err := s.decidable(ctx, g, c, now); err != nil {
		return wire.JITRequest{}, err
	}
	moved, err := s.store.TransitionJITGrant(ctx, id, []string{wire.JITPending},
		store.JITGrantUpdate{State: wire.JITRejected, Message: "rejected by " + c.Name, RevokedBy: c.Name, RevokedAt: now, At: now})
	if err != nil {
		return wire.JITRequest{}, err
	}
	if !moved {
		return wire.JITRequest{}, refusal.Conflict("JIT request %s was decided meanwhile", id).WithCode(CodeNotPending)
	}
	return s.Grant(ctx, id)
}

// decidable says why a request cannot be approved or rejected now.
func (s *Service) decidable(ctx context.Context, g store.JITGrant, c Caller, now time.Time) error {
	if g.State != wire.JITPending {
		return refusal.Conflict("JIT request %s is %s, not waiting for approval", g.ID, g.State).WithCode(CodeNotPending)
	}
	if now.Sub(g.RequestedAt) > wire.JITApprovalWindow {
		_, err := s.store.TransitionJITGrant(ctx, g.ID, []string{wire.JITPending},
			store.JITGrantUpdate{State: wire.JITExpired, Message: "not approved within " + wire.JITApprovalWindow.String(), At: now})
		if err != nil {
			return err
		}
		return refusal.Conflict("JIT request %s waited more than %s for approval and expired; request again", g.ID, wire.JITApprovalWindow).
			WithCode(CodeApprovalExpiry)
	}
	if g.RequestedByID == c.ID {
		return refusal.Conflict("JIT request %s was made by %s, who cannot approve or reject it: another user must", g.ID, c.Name).
			WithCode(CodeSelfApproval)
	}
	return nil
}

// Revoke closes a request or grant early; the caller authorized it (the
// requester, or a user who may approve).
func (s *Service) Revoke(ctx context.Context, id string, c Caller) (wire.JITRequest, error) {
	g, m, err := s.grant(ctx, id)
	if err != nil {
		return wire.JITRequest{}, err
	}
	now := s.now()
	open := []string{wire.JITPending, wire.JITApproved, wire.JITApplied, wire.JITFailed}
	if state := s.state(g, now); !slices.Contains(open, state) {
		return wire.JITRequest{}, refusal.Conflict("JIT request %s is %s already: there is nothing to revoke", id, state)
	}
	moved, err := s.store.TransitionJITGrant(ctx, id, open,
		store.JITGrantUpdate{State: wire.JITRevoked, Message: "revoked by " + c.Name, RevokedBy: c.Name, RevokedAt: now, At: now})
	if err != nil {
		return wire.JITRequest{}, err
	}
	if !moved {
		return wire.JITRequest{}, refusal.Conflict("JIT request %s changed meanwhile; look at it again", id)
	}
	if g.State != wire.JITPending {
		if _, err := s.sync.DesiredChanged(ctx, []string{m.ID}, now); err != nil {
			return wire.JITRequest{}, err
		}
	}
	return s.Grant(ctx, id)
}

// RequestFilter selects requests for ListGrants.
type RequestFilter struct {
	Scope string
	// Machine, when set, keeps one machine's requests.
	Machine *resource.MachineRef
	// Active keeps requests waiting for approval and grants still open.
	Active bool
	Page   store.Page
}

// ListGrants lists requests newest first (the caller filters what it may
// read by each one's Machine).
func (s *Service) ListGrants(ctx context.Context, f RequestFilter) (store.PageOf[wire.JITRequest], error) {
	sf := store.JITGrantFilter{ScopePrefix: f.Scope}
	if f.Machine != nil {
		m, err := s.machine(ctx, *f.Machine)
		if err != nil {
			return store.PageOf[wire.JITRequest]{}, err
		}
		sf.MachineID = m.ID
	}
	if f.Scope != "" {
		id, err := resource.ParseScope(f.Scope)
		if err != nil {
			return store.PageOf[wire.JITRequest]{}, refusal.Invalid("scope", "%v", err)
		}
		sf.ScopePrefix = id.String()
	}
	if f.Active {
		sf.States = []string{wire.JITPending, wire.JITApproved, wire.JITApplied, wire.JITFailed}
	}
	now := s.now()
	machines := map[string]store.Machine{}
	var out store.PageOf[wire.JITRequest]
	for {
		gs, after, err := store.FetchPage(f.Page, func(p store.Page) ([]store.JITGrant, error) {
			sf.Page = p
			return s.store.ListJITGrants(ctx, sf)
		}, func(g store.JITGrant) string { return g.ID })
		if err != nil {
			return out, err
		}
		for _, g := range gs {
			if f.Active && !slices.Contains(sf.States, s.state(g, now)) {
				continue
			}
			m, ok := machines[g.MachineID]
			if !ok {
				if m, err = s.store.GetMachineByID(ctx, g.MachineID); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						continue
					}
					return out, err
				}
				machines[g.MachineID] = m
			}
			out.Items = append(out.Items, s.toWire(m, g))
		}
		out.After = after
		// An active list may drop expired rows from a page: read on
		// rather than answer a short page that still has a next link.
		if !f.Active || after == "" || len(out.Items) > 0 {
			return out, nil
		}
		f.Page.After = after
	}
}

// state is the request's state now: an approved grant whose time is over
// is Expired, as is a request left waiting past its approval window.
func (s *Service) state(g store.JITGrant, now time.Time) string {
	switch g.State {
	case wire.JITApproved, wire.JITApplied, wire.JITFailed:
		if !g.ExpiresAt.IsZero() && !now.Before(g.ExpiresAt) {
			return wire.JITExpired
		}
	case wire.JITPending:
		if now.Sub(g.RequestedAt) > wire.JITApprovalWindow {
			return wire.JITExpired
		}
	}
	return g.State
}

func (s *Service) toWire(m store.Machine, g store.JITGrant) wire.JITRequest {
	return wire.JITRequest{ID: g.ID, Machine: m.ResourceID().String(), MachineName: m.Name, Port: g.Port, SourceIP: g.Source,
		Duration: wire.Duration(g.Duration), Justification: g.Justification, State: s.state(g, s.now()), Message: g.Message,
		RequestedBy: g.RequestedBy, RequestedByID: g.RequestedByID, RequestedAt: g.RequestedAt, ApprovedBy: g.ApprovedBy, ApprovedAt: g.ApprovedAt,
		ExpiresAt: g.ExpiresAt, AppliedAt: g.AppliedAt, RevokedBy: g.RevokedBy, RevokedAt: g.RevokedAt}
}

// GrantSummary is the activity log line of a request.
func GrantSummary(r wire.JITRequest) string {
	msg := fmt.Sprintf("JIT request %s: port %s of %s for %s from %s: %s", r.ID, r.Port, r.MachineName, time.Duration(r.Duration), r.SourceIP, r.State)
	if !r.ExpiresAt.IsZero() && (r.State == wire.JITApproved || r.State == wire.JITApplied) {
		msg += " until " + r.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return msg
}
