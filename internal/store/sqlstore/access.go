package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

const jitPolicyCols = `scope, ports, allowed_sources, max_duration_ms, require_approval, updated_at, updated_by`

func scanJITPolicy(r scanner) (store.JITPolicy, error) {
	var p store.JITPolicy
	var ports, sources string
	var maxMS, updated int64
	if err := r.Scan(&p.Scope, &ports, &sources, &maxMS, &p.RequireApproval, &updated, &p.UpdatedBy); err != nil {
		return p, err
	}
	var err error
	if p.Ports, err = decodeList(ports); err != nil {
		return p, err
	}
	if p.AllowedSources, err = decodeList(sources); err != nil {
		return p, err
	}
	p.MaxDuration = time.Duration(maxMS) * time.Millisecond
	p.UpdatedAt = fromMicros(updated)
	return p, nil
}

// PutJITPolicy replaces the row of the scope (any casing) in one
// transaction, keeping the scope's first spelling.
func (s *Store) PutJITPolicy(ctx context.Context, p store.JITPolicy) (bool, error) {
	ports, err := encodeList(p.Ports)
	if err != nil {
		return false, err
	}
	sources, err := encodeList(p.AllowedSources)
	if err != nil {
		return false, err
	}
	var created bool
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.exec(ctx, tx, `UPDATE jit_policies SET ports = ?, allowed_sources = ?, max_duration_ms = ?, require_approval = ?,
			updated_at = ?, updated_by = ? WHERE lower(scope) = lower(?)`,
			ports, sources, p.MaxDuration.Milliseconds(), p.RequireApproval, micros(p.UpdatedAt), p.UpdatedBy, p.Scope)
		if err != nil || n > 0 {
			return err
		}
		created = true
		_, err = s.exec(ctx, tx, `INSERT INTO jit_policies (`+jitPolicyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			p.Scope, ports, sources, p.MaxDuration.Milliseconds(), p.RequireApproval, micros(p.UpdatedAt), p.UpdatedBy)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("put jit policy at %s: %w", p.Scope, err)
	}
	return created, nil
}

func (s *Store) GetJITPolicy(ctx context.Context, scope string) (store.JITPolicy, error) {
	p, err := scanJITPolicy(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+jitPolicyCols+` FROM jit_policies WHERE lower(scope) = lower(?)`), scope))
	if err != nil {
		return p, fmt.Errorf("get jit policy at %s: %w", scope, s.mapErr(err))
	}
	return p, nil
}

func (s *Store) ListJITPolicies(ctx context.Context, scopePrefix string) ([]store.JITPolicy, error) {
	var w where
	if cond, args := scopeCond("scope", scopePrefix); cond != "" {
		w.add(cond, args...)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+jitPolicyCols+` FROM jit_policies`+w.String()+` ORDER BY lower(scope)`), w.args...)
	ps, err := collect(rows, err, scanJITPolicy)
	if err != nil {
		return nil, fmt.Errorf("list jit policies: %w", s.mapErr(err))
	}
	return ps, nil
}

func (s *Store) JITPoliciesAt(ctx context.Context, scopes []string) ([]store.JITPolicy, error) {
	if len(scopes) == 0 {
		return []store.JITPolicy{}, nil
	}
	args := make([]any, len(scopes))
	marks := make([]string, len(scopes))
	for i, sc := range scopes {
		args[i], marks[i] = strings.ToLower(sc), "?"
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+jitPolicyCols+` FROM jit_policies WHERE lower(scope) IN (`+strings.Join(marks, ", ")+`)`), args...)
	ps, err := collect(rows, err, scanJITPolicy)
	if err != nil {
		return nil, fmt.Errorf("jit policies at %v: %w", scopes, s.mapErr(err))
	}
	return ps, nil
}

func (s *Store) DeleteJITPolicy(ctx context.Context, scope string) error {
	if err := affected1(s.exec(ctx, s.write, `DELETE FROM jit_policies WHERE lower(scope) = lower(?)`, scope)); err != nil {
		return fmt.Errorf("delete jit policy at %s: %w", scope, err)
	}
	return nil
}

func (s *Store) MachineIDsInScope(ctx context.Context, sub, rg, name string) ([]string, error) {
	var w where
	if sub != "" {
		w.add(`lower(subscription) = lower(?)`, sub)
		if rg != "" {
			w.add(`lower(resource_group) = lower(?)`, rg)
			if name != "" {
				w.add(`lower(name) = lower(?)`, name)
			}
		}
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT id FROM machines`+w.String()+` ORDER BY id`), w.args...)
	ids, err := collect(rows, err, func(r scanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	})
	if err != nil {
		return nil, fmt.Errorf("machines in scope: %w", s.mapErr(err))
	}
	return ids, nil
}

const jitGrantCols = `id, machine_id, machine_scope, port, source, duration_ms, justification, state, message, requested_by_id, requested_by,
	requested_at, approved_by_id, approved_by, approved_at, expires_at, applied_at, revoked_by, revoked_at, origin, updated_at`

func scanJITGrant(r scanner) (store.JITGrant, error) {
	var g store.JITGrant
	var durMS, requested, approved, expires, applied, revoked, updated int64
	err := r.Scan(&g.ID, &g.MachineID, &g.MachineScope, &g.Port, &g.Source, &durMS, &g.Justification, &g.State, &g.Message,
		&g.RequestedByID, &g.RequestedBy, &requested, &g.ApprovedByID, &g.ApprovedBy, &approved, &expires, &applied,
		&g.RevokedBy, &revoked, &g.Origin, &updated)
	if err != nil {
		return g, err
	}
	g.Duration = time.Duration(durMS) * time.Millisecond
	g.RequestedAt, g.ApprovedAt, g.ExpiresAt = fromMicros(requested), fromMicros(approved), fromMicros(expires)
	g.AppliedAt, g.RevokedAt, g.UpdatedAt = fromMicros(applied), fromMicros(revoked), fromMicros(updated)
	return g, nil
}

func (s *Store) CreateJITGrant(ctx context.Context, g store.JITGrant) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO jit_grants (`+jitGrantCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.MachineID, g.MachineScope, g.Port, g.Source, g.Duration.Milliseconds(), g.Justification, g.State, g.Message,
		g.RequestedByID, g.RequestedBy, micros(g.RequestedAt), g.ApprovedByID, g.ApprovedBy, micros(g.ApprovedAt), micros(g.ExpiresAt),
		micros(g.AppliedAt), g.RevokedBy, micros(g.RevokedAt), nilIfEmpty(g.Origin), micros(g.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create jit grant %s: %w", g.ID, err)
	}
	return nil
}

func (s *Store) GetJITGrant(ctx context.Context, id string) (store.JITGrant, error) {
	g, err := scanJITGrant(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+jitGrantCols+` FROM jit_grants WHERE id = ?`), id))
	if err != nil {
		return g, fmt.Errorf("get jit grant %s: %w", id, s.mapErr(err))
	}
	return g, nil
}

func (s *Store) ListJITGrants(ctx context.Context, f store.JITGrantFilter) ([]store.JITGrant, error) {
	var w where
	if cond, args := scopeCond("machine_scope", f.ScopePrefix); cond != "" {
		w.add(cond, args...)
	}
	if f.MachineID != "" {
		w.add(`machine_id = ?`, f.MachineID)
	}
	if len(f.States) > 0 {
		w.add(`state IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(f.States)), ", ")+`)`, anySlice(f.States)...)
	}
	if !f.OpenAt.IsZero() {
		w.add(`state IN (?, ?) AND expires_at > ?`, wire.JITApproved, wire.JITApplied, micros(f.OpenAt))
	}
	if f.Page.After != "" {
		w.add(`id < ?`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+jitGrantCols+` FROM jit_grants`+w.String()+` ORDER BY id DESC LIMIT ?`),
		append(w.args, limit(f.Page))...)
	gs, err := collect(rows, err, scanJITGrant)
	if err != nil {
		return nil, fmt.Errorf("list jit grants: %w", s.mapErr(err))
	}
	return gs, nil
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TransitionJITGrant guards the state machine in the statement itself, so
// two replicas approving or revoking at once cannot both win.
func (s *Store) TransitionJITGrant(ctx context.Context, id string, from []string, u store.JITGrantUpdate) (bool, error) {
	if len(from) == 0 {
		return false, errors.New("transition jit grant: no state to move from")
	}
	set := []string{`state = ?`, `updated_at = ?`}
	args := []any{u.State, micros(u.At)}
	text := func(col, v string) {
		if v != "" {
			set = append(set, col+` = ?`)
			args = append(args, v)
		}
	}
	tm := func(col string, v time.Time) {
		if !v.IsZero() {
			set = append(set, col+` = ?`)
			args = append(args, micros(v))
		}
	}
	text("message", u.Message)
	text("approved_by_id", u.ApprovedByID)
	text("approved_by", u.ApprovedBy)
	tm("approved_at", u.ApprovedAt)
	tm("expires_at", u.ExpiresAt)
	tm("applied_at", u.AppliedAt)
	text("revoked_by", u.RevokedBy)
	tm("revoked_at", u.RevokedAt)
	args = append(append(args, id), anySlice(from)...)
	n, err := s.exec(ctx, s.write, `UPDATE jit_grants SET `+strings.Join(set, ", ")+` WHERE id = ? AND state IN (`+
		strings.TrimSuffix(strings.Repeat("?, ", len(from)), ", ")+`)`, args...)
	if err != nil {
		return false, fmt.Errorf("update jit grant %s: %w", id, err)
	}
	if n == 0 {
		if _, err := s.GetJITGrant(ctx, id); err != nil {
			return false, err
		}
		return false, nil
	}
	return true, nil
}

// PutMachineAccess upserts in one transaction.
func (s *Store) PutMachineAccess(ctx context.Context, a store.MachineAccess) error {
	keys, err := encodeList(a.HostKeys)
	if err != nil {
		return err
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.exec(ctx, tx, `UPDATE machine_access SET jit_state = ?, jit_message = ?, ssh_state = ?, ssh_message = ?, admin_user = ?,
			login_user = ?, host_keys = ?, reported_at = ? WHERE machine_id = ?`,
			a.JITState, a.JITMessage, a.SSHState, a.SSHMessage, a.AdminUser, a.User, keys, micros(a.ReportedAt), a.MachineID)
		if err != nil || n > 0 {
			return err
		}
		_, err = s.exec(ctx, tx, `INSERT INTO machine_access (machine_id, jit_state, jit_message, ssh_state, ssh_message, admin_user,
			login_user, host_keys, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.MachineID, a.JITState, a.JITMessage, a.SSHState, a.SSHMessage, a.AdminUser, a.User, keys, micros(a.ReportedAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("put access status of machine %s: %w", a.MachineID, err)
	}
	return nil
}

func (s *Store) GetMachineAccess(ctx context.Context, machineID string) (store.MachineAccess, error) {
	var a store.MachineAccess
	var keys string
	var reported int64
	err := s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT machine_id, jit_state, jit_message, ssh_state, ssh_message, admin_user, login_user,
		host_keys, reported_at FROM machine_access WHERE machine_id = ?`), machineID).
		Scan(&a.MachineID, &a.JITState, &a.JITMessage, &a.SSHState, &a.SSHMessage, &a.AdminUser, &a.User, &keys, &reported)
	if err != nil {
		return a, fmt.Errorf("get access status of machine %s: %w", machineID, s.mapErr(err))
	}
	a.ReportedAt = fromMicros(reported)
	if a.HostKeys, err = decodeList(keys); err != nil {
		return a, err
	}
	return a, nil
}

func (s *Store) CreateSSHCertificate(ctx context.Context, c store.SSHCertificate) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO ssh_certificates (id, machine_id, caller_id, caller, kind, login, principal, serial,
		issued_at, valid_before) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.MachineID, c.CallerID, c.Caller, c.Kind, c.Login, c.Principal, c.Serial, micros(c.IssuedAt), micros(c.ValidBefore))
	if err != nil {
		return fmt.Errorf("record ssh certificate %s: %w", c.ID, err)
	}
	return nil
}

func (s *Store) GetSSHCertificate(ctx context.Context, id string) (store.SSHCertificate, error) {
	var c store.SSHCertificate
	var issued, before int64
	err := s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT id, machine_id, caller_id, caller, kind, login, principal, serial, issued_at,
		valid_before FROM ssh_certificates WHERE id = ?`), id).
		Scan(&c.ID, &c.MachineID, &c.CallerID, &c.Caller, &c.Kind, &c.Login, &c.Principal, &c.Serial, &issued, &before)
	if err != nil {
		return c, fmt.Errorf("get ssh certificate %s: %w", id, s.mapErr(err))
	}
	c.IssuedAt, c.ValidBefore = fromMicros(issued), fromMicros(before)
	return c, nil
}

const sshSessionCols = `id, machine_id, machine_scope, port, caller_id, caller, source_ip, certificate_id, login, replica, started_at,
	ended_at, bytes_to_machine, bytes_from_machine, end_requested_at, end_requested_by, end_reason, updated_at`

func scanSSHSession(r scanner) (store.SSHSession, error) {
	var x store.SSHSession
	var started, ended, endReq, updated int64
	err := r.Scan(&x.ID, &x.MachineID, &x.MachineScope, &x.Port, &x.CallerID, &x.Caller, &x.SourceIP, &x.CertificateID, &x.Login,
		&x.Replica, &started, &ended, &x.BytesToMachine, &x.BytesFromMachine, &endReq, &x.EndRequestedBy, &x.EndReason, &updated)
	if err != nil {
		return x, err
	}
	x.StartedAt, x.EndedAt, x.EndRequestedAt, x.UpdatedAt = fromMicros(started), fromMicros(ended), fromMicros(endReq), fromMicros(updated)
	return x, nil
}

func (s *Store) CreateSSHSession(ctx context.Context, x store.SSHSession) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO ssh_sessions (`+sshSessionCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		x.ID, x.MachineID, x.MachineScope, x.Port, x.CallerID, x.Caller, x.SourceIP, x.CertificateID, x.Login, x.Replica,
		micros(x.StartedAt), micros(x.EndedAt), x.BytesToMachine, x.BytesFromMachine, micros(x.EndRequestedAt), x.EndRequestedBy,
		x.EndReason, micros(x.UpdatedAt))
	if err != nil {
		return fmt.Errorf("record ssh session %s: %w", x.ID, err)
	}
	return nil
}

func (s *Store) GetSSHSession(ctx context.Context, id string) (store.SSHSession, error) {
	x, err := scanSSHSession(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+sshSessionCols+` FROM ssh_sessions WHERE id = ?`), id))
	if err != nil {
		return x, fmt.Errorf("get ssh session %s: %w", id, s.mapErr(err))
	}
	return x, nil
}

func (s *Store) ListSSHSessions(ctx context.Context, f store.SSHSessionFilter) ([]store.SSHSession, error) {
	var w where
	if cond, args := scopeCond("machine_scope", f.ScopePrefix); cond != "" {
		w.add(cond, args...)
	}
	if f.MachineID != "" {
		w.add(`machine_id = ?`, f.MachineID)
	}
	if f.Active {
		w.add(`ended_at = ?`, micros(time.Time{}))
	}
	if f.Page.After != "" {
		w.add(`id < ?`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+sshSessionCols+` FROM ssh_sessions`+w.String()+` ORDER BY id DESC LIMIT ?`),
		append(w.args, limit(f.Page))...)
	xs, err := collect(rows, err, scanSSHSession)
	if err != nil {
		return nil, fmt.Errorf("list ssh sessions: %w", s.mapErr(err))
	}
	return xs, nil
}

func (s *Store) UpdateSSHSessionBytes(ctx context.Context, id string, to, from int64, at time.Time) error {
	_, err := s.exec(ctx, s.write, `UPDATE ssh_sessions SET bytes_to_machine = ?, bytes_from_machine = ?, updated_at = ?
		WHERE id = ? AND ended_at = ?`, to, from, micros(at), id, micros(time.Time{}))
	if err != nil {
		return fmt.Errorf("update ssh session %s: %w", id, err)
	}
	return nil
}

func (s *Store) EndSSHSession(ctx context.Context, id string, at time.Time, reason string, to, from int64) (bool, error) {
	n, err := s.exec(ctx, s.write, `UPDATE ssh_sessions SET ended_at = ?, end_reason = ?, bytes_to_machine = ?, bytes_from_machine = ?,
		updated_at = ? WHERE id = ? AND ended_at = ?`, micros(at), reason, to, from, micros(at), id, micros(time.Time{}))
	if err != nil {
		return false, fmt.Errorf("end ssh session %s: %w", id, err)
	}
	if n == 0 {
		if _, err := s.GetSSHSession(ctx, id); err != nil {
			return false, err
		}
	}
	return n > 0, nil
}

func (s *Store) RequestSSHSessionEnd(ctx context.Context, id, by string, at time.Time) (bool, error) {
	zero := micros(time.Time{})
	n, err := s.exec(ctx, s.write, `UPDATE ssh_sessions SET end_requested_at = ?, end_requested_by = ?
		WHERE id = ? AND ended_at = ? AND end_requested_at = ?`, micros(at), by, id, zero, zero)
	if err != nil {
		return false, fmt.Errorf("request the end of ssh session %s: %w", id, err)
	}
	if n == 0 {
		if _, err := s.GetSSHSession(ctx, id); err != nil {
			return false, err
		}
	}
	return n > 0, nil
}
