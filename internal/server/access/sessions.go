package access

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// CodeCertificate is the code of a refused ?certificate= on a tunnel.
const CodeCertificate = "CertificateRefused"

// SessionLogin checks the certificate a tunnel names (?certificate=ID): it
// must have been issued to the caller for this machine and still be
// valid. It returns the local account the certificate logs in as.
func (s *Service) SessionLogin(ctx context.Context, certID string, c Caller, machineID, machineName string) (string, error) {
	if !wire.ValidResourceName(certID) {
		return "", refusal.Invalid("certificate", "certificate id %q is not valid", capText(certID, 80)).WithCode(CodeCertificate)
	}
	rec, err := s.store.GetSSHCertificate(ctx, certID)
	if errors.Is(err, store.ErrNotFound) || err == nil && (rec.CallerID != c.ID || rec.MachineID != machineID) {
		return "", refusal.Invalid("certificate", "certificate %s was not issued to %s for machine %s", certID, c.Name, machineName).WithCode(CodeCertificate)
	}
	if err != nil {
		return "", err
	}
	if now := s.now(); !now.Before(rec.ValidBefore) {
		return "", refusal.Invalid("certificate", "certificate %s expired at %s (%s ago): get a new one (corral ssh does it each time)",
			certID, rec.ValidBefore.Format(time.RFC3339), now.Sub(rec.ValidBefore).Round(time.Second)).WithCode(CodeCertificate)
	}
	return rec.Login, nil
}

// SessionStart describes a relayed connection that starts.
type SessionStart struct {
	ID           string // the tunnel id
	MachineID    string
	MachineScope string
	MachineName  string
	Port         int
	Caller       Caller
	// CertificateID and Login, when the tunnel named a certificate.
	CertificateID string
	Login         string
}

// Live is a session this replica splices. Count is called from the
// splice's copy loops; Finish once, when the splice returned.
type Live struct {
	s     *Service
	rec   store.SSHSession
	name  string
	to    atomic.Int64
	from  atomic.Int64
	close func()

	endOnce sync.Once
	ended   chan struct{} // closed when the server ends it (EndLocal)
	stop    chan struct{}
	done    chan struct{}
}

// StartSession records the session and registers it here, so that a
// request to end it (from any replica) calls closeFn. The session's bytes
// are written every SessionRefresh while it runs.
func (s *Service) StartSession(ctx context.Context, st SessionStart, closeFn func()) (*Live, error) {
	now := s.now()
	s.mu.Lock()
	replica := s.replica
	s.mu.Unlock()
	rec := store.SSHSession{ID: st.ID, MachineID: st.MachineID, MachineScope: st.MachineScope, Port: st.Port, CallerID: st.Caller.ID,
		Caller: st.Caller.Name, SourceIP: st.Caller.SourceIP, CertificateID: st.CertificateID, Login: st.Login, Replica: replica,
		StartedAt: now, UpdatedAt: now}
	if err := s.store.CreateSSHSession(ctx, rec); err != nil {
		return nil, err
	}
	l := &Live{s: s, rec: rec, name: st.MachineName, close: closeFn, ended: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	s.live[st.ID] = l
	s.mu.Unlock()
	s.outcome(ctx, capability.Outcome{Origin: capability.OriginFrom(ctx), Scope: st.MachineScope, Result: wire.ResultSucceeded,
		Message: fmt.Sprintf("SSH session %s started: %s to port %d of %s as %s from %s", st.ID, st.Caller.Name, st.Port, st.MachineName,
			loginText(st.Login), st.Caller.SourceIP), At: now})
	go l.refresh(context.WithoutCancel(ctx))
	return l, nil
}

func loginText(login string) string {
	if login == "" {
		return "an account the server did not certify"
	}
	return login
}

// Count adds n bytes sent toward the machine (toMachine) or back.
func (l *Live) Count(toMachine bool, n int) {
	if toMachine {
		l.to.Add(int64(n))
	} else {
		l.from.Add(int64(n))
	}
}

// Ended is closed when the session was ended from the server.
func (l *Live) Ended() <-chan struct{} { return l.ended }

func (l *Live) endNow() {
	l.endOnce.Do(func() {
		close(l.ended)
		if l.close != nil {
			l.close()
		}
	})
}

// refresh writes the bytes so far and checks whether the session was asked
// to end (the backstop when the bus lost the message).
func (l *Live) refresh(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.s.SessionRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if err := l.s.store.UpdateSSHSessionBytes(ctx, l.rec.ID, l.to.Load(), l.from.Load(), l.s.now()); err != nil {
			l.s.log.WarnContext(ctx, "refresh ssh session", "session", l.rec.ID, "err", err)
			continue
		}
		if x, err := l.s.store.GetSSHSession(ctx, l.rec.ID); err == nil && !x.EndRequestedAt.IsZero() {
			l.endNow()
		}
	}
}

// Finish records the end of the session and returns it as recorded.
func (l *Live) Finish(ctx context.Context) wire.SSHSession {
	close(l.stop)
	<-l.done
	s := l.s
	s.mu.Lock()
	delete(s.live, l.rec.ID)
	s.mu.Unlock()
	now := s.now()
	reason := "closed by the client or the machine"
	x, err := s.store.GetSSHSession(ctx, l.rec.ID)
	if err == nil && !x.EndRequestedAt.IsZero() {
		reason = "ended by " + x.EndRequestedBy
	}
	if _, err := s.store.EndSSHSession(ctx, l.rec.ID, now, reason, l.to.Load(), l.from.Load()); err != nil {
		s.log.ErrorContext(ctx, "record the end of an ssh session", "session", l.rec.ID, "err", err)
	}
	rec := l.rec
	rec.EndedAt, rec.EndReason, rec.BytesToMachine, rec.BytesFromMachine, rec.UpdatedAt = now, reason, l.to.Load(), l.from.Load(), now
	if err == nil {
		rec.EndRequestedAt, rec.EndRequestedBy = x.EndRequestedAt, x.EndRequestedBy
	}
	return s.toWireSession(rec, l.name, now)
}

// EndLocal ends the session id if this replica splices it (the bus calls
// it on every replica).
func (s *Service) EndLocal(id string) {
	s.mu.Lock()
	l := s.live[id]
	s.mu.Unlock()
	if l != nil {
		l.endNow()
	}
}

// EndSession ends a running session, whichever replica splices it: the
// request is recorded (the holding replica's refresh sees it even if the
// bus loses the message) and announced.
func (s *Service) EndSession(ctx context.Context, id string, c Caller) (wire.SSHSession, error) {
	x, name, err := s.session(ctx, id)
	if err != nil {
		return wire.SSHSession{}, err
	}
	now := s.now()
	if ws := s.toWireSession(x, name, now); ws.State != wire.SessionActive {
		return wire.SSHSession{}, refusal.Conflict("SSH session %s ended already (%s)", id, ws.EndReason)
	}
	if _, err := s.store.RequestSSHSessionEnd(ctx, id, c.Name, now); err != nil {
		return wire.SSHSession{}, err
	}
	s.mu.Lock()
	bus := s.bus
	s.mu.Unlock()
	if bus != nil {
		bus.EndSession(ctx, id)
	}
	s.EndLocal(id)
	x.EndRequestedAt, x.EndRequestedBy = now, c.Name
	return s.toWireSession(x, name, now), nil
}

// Session returns one session with its machine's resource id.
func (s *Service) Session(ctx context.Context, id string) (wire.SSHSession, error) {
	x, name, err := s.session(ctx, id)
	if err != nil {
		return wire.SSHSession{}, err
	}
	return s.toWireSession(x, name, s.now()), nil
}

func (s *Service) session(ctx context.Context, id string) (store.SSHSession, string, error) {
	if !wire.ValidResourceName(id) {
		return store.SSHSession{}, "", refusal.NotFound("there is no SSH session %q", capText(id, 80))
	}
	x, err := s.store.GetSSHSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return x, "", refusal.NotFound("there is no SSH session %q", id)
	}
	if err != nil {
		return x, "", err
	}
	m, err := s.store.GetMachineByID(ctx, x.MachineID)
	if err != nil {
		return x, "", err
	}
	return x, m.Name, nil
}

// SessionFilter selects sessions for ListSessions.
type SessionFilter struct {
	Scope   string
	Machine *resource.MachineRef
	Active  bool
	Page    store.Page
}

// ListSessions lists sessions newest first (the caller filters what it may
// read by each one's Machine).
func (s *Service) ListSessions(ctx context.Context, f SessionFilter) (store.PageOf[wire.SSHSession], error) {
	sf := store.SSHSessionFilter{Active: f.Active}
	if f.Scope != "" {
		id, err := resource.ParseScope(f.Scope)
		if err != nil {
			return store.PageOf[wire.SSHSession]{}, refusal.Invalid("scope", "%v", err)
		}
		sf.ScopePrefix = id.String()
	}
	if f.Machine != nil {
		m, err := s.machine(ctx, *f.Machine)
		if err != nil {
			return store.PageOf[wire.SSHSession]{}, err
		}
		sf.MachineID = m.ID
	}
	xs, after, err := store.FetchPage(f.Page, func(p store.Page) ([]store.SSHSession, error) {
		sf.Page = p
		return s.store.ListSSHSessions(ctx, sf)
	}, func(x store.SSHSession) string { return x.ID })
	if err != nil {
		return store.PageOf[wire.SSHSession]{}, err
	}
	now := s.now()
	names := map[string]string{}
	out := store.PageOf[wire.SSHSession]{After: after, Items: []wire.SSHSession{}}
	for _, x := range xs {
		name, ok := names[x.MachineID]
		if !ok {
			m, err := s.store.GetMachineByID(ctx, x.MachineID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return out, err
			}
			name, names[x.MachineID] = m.Name, m.Name
		}
		ws := s.toWireSession(x, name, now)
		if f.Active && ws.State != wire.SessionActive {
			continue
		}
		out.Items = append(out.Items, ws)
	}
	return out, nil
}

// staleAfter is how long a running session may go without its replica
// refreshing it before it is shown ended (that replica stopped).
func (s *Service) staleAfter() time.Duration { return max(time.Minute, 6*s.SessionRefresh) }

func (s *Service) toWireSession(x store.SSHSession, machineName string, now time.Time) wire.SSHSession {
	ws := wire.SSHSession{ID: x.ID, Machine: x.MachineScope, MachineName: machineName, Port: x.Port, User: x.Caller, UserID: x.CallerID,
		Login: x.Login, SourceIP: x.SourceIP, State: wire.SessionActive, StartedAt: x.StartedAt, EndedAt: x.EndedAt,
		BytesToMachine: x.BytesToMachine, BytesFromMachine: x.BytesFromMachine, EndedBy: x.EndRequestedBy, EndReason: x.EndReason}
	switch {
	case !x.EndedAt.IsZero():
		ws.State = wire.SessionEnded
	case now.Sub(x.UpdatedAt) > s.staleAfter():
		ws.State, ws.EndedAt, ws.EndReason = wire.SessionEnded, x.UpdatedAt, "lost: the server replica relaying it stopped"
	}
	return ws
}

// SessionSummary is the activity log line of a session that ended: who,
// as which account, from where, when, and the bytes each way.
func SessionSummary(x wire.SSHSession) string {
	msg := fmt.Sprintf("SSH session %s: %s to port %d of %s as %s from %s, %s to %s (%s), %d bytes to the machine, %d bytes back",
		x.ID, x.User, x.Port, x.MachineName, loginText(x.Login), x.SourceIP, x.StartedAt.Format(time.RFC3339), x.EndedAt.Format(time.RFC3339),
		x.EndedAt.Sub(x.StartedAt).Round(time.Second), x.BytesToMachine, x.BytesFromMachine)
	if x.EndReason != "" {
		msg += "; " + x.EndReason
	}
	return msg
}
