package access

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Limits on an access report.
const (
	maxReportGrants   = 1000
	maxReportHostKeys = 16
	maxReportMessage  = 2048
	maxReportText     = 8192
)

// Register adds the access slice of the desired state and the access
// report handler.
func (s *Service) Register(r *capability.Registry) {
	r.AddContributor("access", s)
	r.AddReportHandler(wire.ReportAccess, capability.ReportHandlerFunc(s.handleReport))
}

var (
	_ capability.Registrant         = (*Service)(nil)
	_ capability.DesiredContributor = (*Service)(nil)
)

// ContributeDesired writes each machine's effective JIT policy with the
// grants open now (absolute expiries, so a cached copy re-applied later
// still closes on time), and the SSH user CA with the machine's two
// principals. The policies of the whole batch are read at once (the
// scopes of its machines).
func (s *Service) ContributeDesired(ctx context.Context, batch []capability.Desired) error {
	ps, err := s.store.JITPoliciesAt(ctx, capability.Scopes(batch, policyScopes))
	if err != nil {
		return err
	}
	for _, d := range batch {
		p, ok := effective(ps, d.Machine)
		if err := s.contributeMachine(ctx, d.Machine, d.State, p, ok); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) contributeMachine(ctx context.Context, m store.Machine, ds *wire.DesiredState, p store.JITPolicy, ok bool) error {
	ad := wire.AccessDesired{SSH: &wire.SSHDesired{
		CAKeys:          []string{s.ca.AuthorizedKey()},
		AdminPrincipals: []string{wire.SSHPrincipal(wire.SSHLoginAdmin, m.ID)},
		UserPrincipals:  []string{wire.SSHPrincipal(wire.SSHLoginUser, m.ID)},
	}}
	if ok {
		jd := &wire.JITDesired{Ports: p.Ports, AllowedSources: p.AllowedSources, MaxDuration: wire.Duration(p.MaxDuration)}
		gs, err := s.store.ListJITGrants(ctx, store.JITGrantFilter{MachineID: m.ID, OpenAt: s.now(), Page: store.Page{Limit: store.MaxPageSize}})
		if err != nil {
			return err
		}
		for _, g := range slices.Backward(gs) { // oldest first
			if !slices.Contains(p.Ports, g.Port) {
				continue // the policy no longer manages its port
			}
			jd.Grants = append(jd.Grants, wire.JITDesiredGrant{ID: g.ID, Source: g.Source, Port: g.Port, Expires: g.ExpiresAt})
		}
		ad.JIT = jd
	}
	return capability.SetFeature(ds, wire.FeatureAccess, ad)
}

var (
	jitStates = []string{wire.JITStateNone, wire.JITStateApplied, wire.JITStateFailed, wire.JITStateRefused}
	sshStates = []string{wire.SSHStateOff, wire.SSHStateManaged, wire.SSHStateFailed, wire.SSHStateRefused}
)

// checkReport refuses a malformed report (acknowledged and dropped).
func checkReport(st wire.AccessStatus) error {
	bad := func(what string) error { return refusal.Invalid("reports.body", "malformed access report: %s", what) }
	switch {
	case !slices.Contains(jitStates, st.JIT.State):
		return bad("unknown JIT state")
	case !slices.Contains(sshStates, st.SSH.State):
		return bad("unknown SSH state")
	case len(st.JIT.Grants) > maxReportGrants, len(st.SSH.HostKeys) > maxReportHostKeys, len(st.JIT.Ports) > wire.MaxJITPorts:
		return bad("too many entries")
	case !cleanText(st.JIT.Message) || !cleanText(st.SSH.Message) || !cleanText(st.SSH.AdminUser) || !cleanText(st.SSH.User) ||
		len(st.SSH.AdminUser) > 32 || len(st.SSH.User) > 32:
		return bad("text")
	}
	for _, k := range st.SSH.HostKeys {
		if len(k) > maxReportText || !cleanText(k) {
			return bad("host key")
		}
	}
	for _, g := range st.JIT.Grants {
		if !wire.ValidResourceName(g.ID) || (g.State != wire.JITApplied && g.State != wire.JITFailed) || !cleanText(g.Message) {
			return bad("grant")
		}
	}
	return nil
}

func (s *Service) handleReport(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var st wire.AccessStatus
	if err := capability.DecodeReport(r, &st); err != nil {
		return err
	}
	if err := checkReport(st); err != nil {
		return err
	}
	return s.ApplyReport(ctx, m, st, at)
}

// ApplyReport records what the machine's access feature reported: its JIT
// and SSH state, and for each grant whether its kernel holds it — a grant
// that moves to Applied or Failed gets its outcome in the activity log,
// once.
func (s *Service) ApplyReport(ctx context.Context, m store.Machine, st wire.AccessStatus, at time.Time) error {
	keys := st.SSH.HostKeys
	if st.SSH.State != wire.SSHStateManaged && len(keys) == 0 {
		// Keep host keys reported before: they do not depend on ssh.manage.
		if prev, err := s.store.GetMachineAccess(ctx, m.ID); err == nil {
			keys = prev.HostKeys
		}
	}
	err := s.store.PutMachineAccess(ctx, store.MachineAccess{MachineID: m.ID, JITState: st.JIT.State,
		JITMessage: capText(st.JIT.Message, maxReportMessage), SSHState: st.SSH.State, SSHMessage: capText(st.SSH.Message, maxReportMessage),
		AdminUser: st.SSH.AdminUser, User: st.SSH.User, HostKeys: keys, ReportedAt: at})
	if err != nil {
		return err
	}
	for _, gs := range st.JIT.Grants {
		if err := s.applyGrantStatus(ctx, m, gs, at); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) applyGrantStatus(ctx context.Context, m store.Machine, gs wire.JITGrantStatus, at time.Time) error {
	g, err := s.store.GetJITGrant(ctx, gs.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // a grant the server no longer has (a deleted machine's, a test's)
	}
	if err != nil {
		return err
	}
	if g.MachineID != m.ID {
		s.log.WarnContext(ctx, "a machine reported a JIT grant of another machine", "machine", m.ID, "grant", g.ID)
		return nil
	}
	var from []string
	u := store.JITGrantUpdate{State: gs.State, At: at}
	switch gs.State {
	case wire.JITApplied:
		from = []string{wire.JITApproved, wire.JITFailed}
		u.AppliedAt, u.Message = at, "the machine opened it"
	case wire.JITFailed:
		from = []string{wire.JITApproved, wire.JITApplied}
		u.Message = capText(gs.Message, maxReportMessage)
		if u.Message == "" {
			u.Message = "the machine did not say why"
		}
	}
	if !slices.Contains(from, g.State) {
		return nil // already so, revoked meanwhile, or a report delivered twice
	}
	moved, err := s.store.TransitionJITGrant(ctx, g.ID, from, u)
	if err != nil || !moved {
		return err
	}
	result := wire.ResultSucceeded
	msg := fmt.Sprintf("JIT grant %s: port %s of %s open to %s until %s: %s", g.ID, g.Port, m.Name, g.Source,
		g.ExpiresAt.UTC().Format(time.RFC3339), gs.State)
	if gs.State == wire.JITFailed {
		result = wire.ResultFailed
		msg += ": " + u.Message
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(g.Origin), Scope: g.MachineScope, Result: result, Message: msg, At: at})
	s.log.InfoContext(ctx, "jit grant reported", "machine", m.ID, "grant", g.ID, "state", gs.State)
	return nil
}
