package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// ---- scopes ----

const protectionScopeCols = `scope, settings, schedule, machines, created_at, created_by, updated_at, updated_by`

func scanProtectionScope(r scanner) (store.ProtectionScope, error) {
	var p store.ProtectionScope
	var created, updated int64
	err := r.Scan(&p.Scope, &p.Settings, &p.Schedule, &p.Machines, &created, &p.CreatedBy, &updated, &p.UpdatedBy)
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	return p, err
}

// PutProtectionScope upserts the scope's row, keeping who created it.
func (s *Store) PutProtectionScope(ctx context.Context, p store.ProtectionScope) (bool, error) {
	created := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanProtectionScope(tx.QueryRowContext(ctx, s.q(`SELECT `+protectionScopeCols+` FROM protection_scopes
			WHERE lower(scope) = lower(?)`), p.Scope))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created = true
			_, err = s.exec(ctx, tx, `INSERT INTO protection_scopes (`+protectionScopeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				p.Scope, p.Settings, nilIfEmpty(p.Schedule), p.Machines, micros(p.CreatedAt), p.CreatedBy, micros(p.UpdatedAt), p.UpdatedBy)
			return err
		case err != nil:
			return s.mapErr(err)
		}
		_, err = s.exec(ctx, tx, `UPDATE protection_scopes SET settings = ?, schedule = ?, machines = ?, updated_at = ?, updated_by = ?
			WHERE scope = ?`, p.Settings, nilIfEmpty(p.Schedule), p.Machines, micros(p.UpdatedAt), p.UpdatedBy, cur.Scope)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("put protection scope %s: %w", p.Scope, err)
	}
	return created, nil
}

func (s *Store) GetProtectionScope(ctx context.Context, scope string) (store.ProtectionScope, error) {
	p, err := scanProtectionScope(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+protectionScopeCols+` FROM protection_scopes
		WHERE lower(scope) = lower(?)`), scope))
	if err != nil {
		return p, fmt.Errorf("get protection scope %s: %w", scope, s.mapErr(err))
	}
	return p, nil
}

func (s *Store) DeleteProtectionScope(ctx context.Context, scope string) error {
	if err := affected1(s.exec(ctx, s.write, `DELETE FROM protection_scopes WHERE lower(scope) = lower(?)`, scope)); err != nil {
		return fmt.Errorf("delete protection scope %s: %w", scope, err)
	}
	return nil
}

func (s *Store) ListProtectionScopes(ctx context.Context) ([]store.ProtectionScope, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+protectionScopeCols+` FROM protection_scopes ORDER BY lower(scope)`))
	ps, err := collect(rows, err, scanProtectionScope)
	if err != nil {
		return nil, fmt.Errorf("list protection scopes: %w", s.mapErr(err))
	}
	return ps, nil
}

// ---- signature sets ----

const signatureSetMeta = `version, header, size, sha256, created_at, created_by`

func scanSignatureSet(r scanner, withSet bool) (store.SignatureSet, error) {
	var ss store.SignatureSet
	var created int64
	dest := []any{&ss.Version, &ss.Header, &ss.Size, &ss.SHA256, &created, &ss.CreatedBy}
	if withSet {
		dest = append(dest, &ss.Set)
	}
	err := r.Scan(dest...)
	ss.CreatedAt = fromMicros(created)
	return ss, err
}

func (s *Store) CreateSignatureSet(ctx context.Context, ss store.SignatureSet) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO signature_sets (`+signatureSetMeta+`, sigset) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		ss.Version, ss.Header, ss.Size, ss.SHA256, micros(ss.CreatedAt), ss.CreatedBy, ss.Set)
	if err != nil {
		return fmt.Errorf("create signature set %d: %w", ss.Version, err)
	}
	return nil
}

func (s *Store) LatestSignatureSet(ctx context.Context) (store.SignatureSet, error) {
	ss, err := scanSignatureSet(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+signatureSetMeta+` FROM signature_sets
		ORDER BY version DESC LIMIT 1`)), false)
	if err != nil {
		return ss, fmt.Errorf("latest signature set: %w", s.mapErr(err))
	}
	return ss, nil
}

func (s *Store) GetSignatureSet(ctx context.Context, version int64) (store.SignatureSet, error) {
	ss, err := scanSignatureSet(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+signatureSetMeta+`, sigset FROM signature_sets
		WHERE version = ?`), version), true)
	if err != nil {
		return ss, fmt.Errorf("get signature set %d: %w", version, s.mapErr(err))
	}
	return ss, nil
}

func (s *Store) ListSignatureSets(ctx context.Context, p store.Page) ([]store.SignatureSet, error) {
	var w where
	if p.After != "" {
		after, err := strconv.ParseInt(p.After, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("list signature sets: page key %q: %w", p.After, store.ErrNotFound)
		}
		w.add(`version < ?`, after)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+signatureSetMeta+` FROM signature_sets`+w.String()+`
		ORDER BY version DESC LIMIT ?`), append(w.args, limit(p))...)
	sets, err := collect(rows, err, func(r scanner) (store.SignatureSet, error) { return scanSignatureSet(r, false) })
	if err != nil {
		return nil, fmt.Errorf("list signature sets: %w", s.mapErr(err))
	}
	return sets, nil
}

// ---- alerts ----

const alertCols = `id, machine_id, machine_resource, machine_name, detection_id, path, member, sha256, signature, action, error,
	source, scan_id, process, pid, quarantine_id, detected_at, state, acknowledged_at, acknowledged_by, received_at`

func scanAlert(r scanner) (store.Alert, error) {
	var a store.Alert
	var detected, acked, received int64
	err := r.Scan(&a.ID, &a.MachineID, &a.MachineResource, &a.MachineName, &a.DetectionID, &a.Path, &a.Member, &a.SHA256,
		&a.Signature, &a.Action, &a.Error, &a.Source, &a.ScanID, &a.Process, &a.PID, &a.QuarantineID, &detected, &a.State,
		&acked, &a.AcknowledgedBy, &received)
	a.Time, a.AcknowledgedAt, a.ReceivedAt = fromMicros(detected), fromMicros(acked), fromMicros(received)
	return a, err
}

// CreateAlert inserts the alert unless the machine reported that detection
// already (ON CONFLICT DO NOTHING: a concurrent duplicate is not an error).
func (s *Store) CreateAlert(ctx context.Context, a store.Alert) (bool, error) {
	n, err := s.exec(ctx, s.write, `INSERT INTO protection_alerts (`+alertCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (machine_id, detection_id) DO NOTHING`,
		a.ID, a.MachineID, a.MachineResource, a.MachineName, a.DetectionID, a.Path, a.Member, a.SHA256, a.Signature, a.Action,
		a.Error, a.Source, a.ScanID, a.Process, a.PID, a.QuarantineID, micros(a.Time), a.State, micros(a.AcknowledgedAt),
		a.AcknowledgedBy, micros(a.ReceivedAt))
	if err != nil {
		return false, fmt.Errorf("create alert of machine %s: %w", a.MachineID, err)
	}
	return n > 0, nil
}

func (s *Store) GetAlert(ctx context.Context, id string) (store.Alert, error) {
	a, err := scanAlert(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+alertCols+` FROM protection_alerts WHERE id = ?`), id))
	if err != nil {
		return a, fmt.Errorf("get alert %s: %w", id, s.mapErr(err))
	}
	return a, nil
}

// ListAlerts is newest first by (detected_at, id); the page key is the id
// of the last alert, whose time is looked up.
func (s *Store) ListAlerts(ctx context.Context, f store.AlertFilter) ([]store.Alert, error) {
	var w where
	if c, args := scopeCond("machine_resource", f.ScopePrefix); c != "" {
		w.add(c, args...)
	}
	if f.MachineName != "" {
		w.add(`lower(machine_name) = lower(?)`, f.MachineName)
	}
	if f.State != "" {
		w.add(`state = ?`, f.State)
	}
	if f.Page.After != "" {
		w.add(`(detected_at < (SELECT detected_at FROM protection_alerts WHERE id = ?)
			OR (detected_at = (SELECT detected_at FROM protection_alerts WHERE id = ?) AND id < ?))`,
			f.Page.After, f.Page.After, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+alertCols+` FROM protection_alerts`+w.String()+`
		ORDER BY detected_at DESC, id DESC LIMIT ?`), append(w.args, limit(f.Page))...)
	as, err := collect(rows, err, scanAlert)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", s.mapErr(err))
	}
	return as, nil
}

func (s *Store) AcknowledgeAlert(ctx context.Context, id, by string, at time.Time) (bool, error) {
	n, err := s.exec(ctx, s.write, `UPDATE protection_alerts SET state = ?, acknowledged_at = ?, acknowledged_by = ?
		WHERE id = ? AND state = ?`, wire.AlertAcknowledged, micros(at), by, id, wire.AlertActive)
	if err != nil {
		return false, fmt.Errorf("acknowledge alert %s: %w", id, err)
	}
	if n > 0 {
		return true, nil
	}
	if _, err := s.GetAlert(ctx, id); err != nil {
		return false, err
	}
	return false, nil
}

func (s *Store) CountActiveAlerts(ctx context.Context, machineIDs []string) (map[string]int, error) {
	out := map[string]int{}
	for len(machineIDs) > 0 {
		batch := machineIDs[:min(len(machineIDs), 500)]
		machineIDs = machineIDs[len(batch):]
		args := []any{wire.AlertActive}
		for _, id := range batch {
			args = append(args, id)
		}
		rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT machine_id, count(*) FROM protection_alerts
			WHERE state = ? AND machine_id IN (?`+strings.Repeat(", ?", len(batch)-1)+`) GROUP BY machine_id`), args...)
		type count struct {
			id string
			n  int
		}
		cs, err := collect(rows, err, func(r scanner) (count, error) {
			var c count
			return c, r.Scan(&c.id, &c.n)
		})
		if err != nil {
			return nil, fmt.Errorf("count active alerts: %w", s.mapErr(err))
		}
		for _, c := range cs {
			out[c.id] = c.n
		}
	}
	return out, nil
}

// ---- scans ----

const scanCols = `id, machine_id, type, paths, state, message, scheduled, files, bytes, infected, errors, origin,
	created_at, created_by, started_at, finished_at, updated_at`

func scanProtectionScan(r scanner) (store.ProtectionScan, error) {
	var sc store.ProtectionScan
	var paths string
	var created, started, finished, updated int64
	err := r.Scan(&sc.ID, &sc.MachineID, &sc.Type, &paths, &sc.State, &sc.Message, &sc.Scheduled, &sc.Files, &sc.Bytes,
		&sc.Infected, &sc.Errors, &sc.Origin, &created, &sc.CreatedBy, &started, &finished, &updated)
	if err != nil {
		return sc, err
	}
	sc.CreatedAt, sc.StartedAt, sc.FinishedAt, sc.UpdatedAt = fromMicros(created), fromMicros(started), fromMicros(finished), fromMicros(updated)
	sc.Paths, err = decodeList(paths)
	return sc, err
}

func (s *Store) insertScan(ctx context.Context, db querier, sc store.ProtectionScan) error {
	paths, err := encodeList(sc.Paths)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, db, `INSERT INTO protection_scans (`+scanCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sc.ID, sc.MachineID, sc.Type, paths, sc.State, sc.Message, sc.Scheduled, sc.Files, sc.Bytes, sc.Infected, sc.Errors,
		nilIfEmpty(sc.Origin), micros(sc.CreatedAt), sc.CreatedBy, micros(sc.StartedAt), micros(sc.FinishedAt), micros(sc.UpdatedAt))
	return err
}

func (s *Store) CreateScan(ctx context.Context, sc store.ProtectionScan) (int64, error) {
	var gen int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if gen, err = s.bumpGeneration(ctx, tx, sc.MachineID); err != nil {
			return err
		}
		return s.insertScan(ctx, tx, sc)
	})
	if err != nil {
		return 0, fmt.Errorf("create scan %s of machine %s: %w", sc.ID, sc.MachineID, err)
	}
	return gen, nil
}

func (s *Store) RecordScan(ctx context.Context, sc store.ProtectionScan) error {
	if err := s.insertScan(ctx, s.write, sc); err != nil {
		return fmt.Errorf("record scan %s of machine %s: %w", sc.ID, sc.MachineID, err)
	}
	return nil
}

func (s *Store) GetScan(ctx context.Context, machineID, id string) (store.ProtectionScan, error) {
	sc, err := scanProtectionScan(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+scanCols+` FROM protection_scans
		WHERE machine_id = ? AND id = ?`), machineID, id))
	if err != nil {
		return sc, fmt.Errorf("get scan %s of machine %s: %w", id, machineID, s.mapErr(err))
	}
	return sc, nil
}

func (s *Store) ListScans(ctx context.Context, f store.ScanFilter) ([]store.ProtectionScan, error) {
	var w where
	w.add(`machine_id = ?`, f.MachineID)
	if f.Unfinished {
		w.add(`state IN (?, ?)`, wire.ScanPending, wire.ScanRunning)
	}
	if f.Page.After != "" {
		w.add(`id < ?`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+scanCols+` FROM protection_scans`+w.String()+`
		ORDER BY id DESC LIMIT ?`), append(w.args, limit(f.Page))...)
	scs, err := collect(rows, err, scanProtectionScan)
	if err != nil {
		return nil, fmt.Errorf("list scans of machine %s: %w", f.MachineID, s.mapErr(err))
	}
	return scs, nil
}

// UpdateScan guards the state in the statement: a finished scan never
// changes again.
func (s *Store) UpdateScan(ctx context.Context, machineID, id string, u store.ScanUpdate) (bool, error) {
	set := []string{`state = ?`, `message = ?`, `files = ?`, `bytes = ?`, `infected = ?`, `errors = ?`, `updated_at = ?`}
	args := []any{u.State, u.Message, u.Files, u.Bytes, u.Infected, u.Errors, micros(u.At)}
	if !u.StartedAt.IsZero() {
		set = append(set, `started_at = ?`)
		args = append(args, micros(u.StartedAt))
	}
	if !u.FinishedAt.IsZero() {
		set = append(set, `finished_at = ?`)
		args = append(args, micros(u.FinishedAt))
	}
	args = append(args, machineID, id, wire.ScanSucceeded, wire.ScanFailed)
	n, err := s.exec(ctx, s.write, `UPDATE protection_scans SET `+strings.Join(set, ", ")+`
		WHERE machine_id = ? AND id = ? AND state NOT IN (?, ?)`, args...)
	if err != nil {
		return false, fmt.Errorf("update scan %s of machine %s: %w", id, machineID, err)
	}
	if n > 0 {
		return true, nil
	}
	if _, err := s.GetScan(ctx, machineID, id); err != nil {
		return false, err
	}
	return false, nil
}

// ---- restores ----

const restoreCols = `id, machine_id, quarantine_id, no_exclusion, force_replace, state, message, path, origin, created_at, created_by, finished_at`

func scanRestore(r scanner) (store.ProtectionRestore, error) {
	var rs store.ProtectionRestore
	var created, finished int64
	err := r.Scan(&rs.ID, &rs.MachineID, &rs.QuarantineID, &rs.NoExclusion, &rs.Force, &rs.State, &rs.Message, &rs.Path,
		&rs.Origin, &created, &rs.CreatedBy, &finished)
	rs.CreatedAt, rs.FinishedAt = fromMicros(created), fromMicros(finished)
	return rs, err
}

func (s *Store) CreateRestore(ctx context.Context, rs store.ProtectionRestore) (int64, error) {
	var gen int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if gen, err = s.bumpGeneration(ctx, tx, rs.MachineID); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `INSERT INTO protection_restores (`+restoreCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rs.ID, rs.MachineID, rs.QuarantineID, rs.NoExclusion, rs.Force, rs.State, rs.Message, rs.Path, nilIfEmpty(rs.Origin),
			micros(rs.CreatedAt), rs.CreatedBy, micros(rs.FinishedAt))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("create restore %s of machine %s: %w", rs.ID, rs.MachineID, err)
	}
	return gen, nil
}

func (s *Store) GetRestore(ctx context.Context, machineID, id string) (store.ProtectionRestore, error) {
	rs, err := scanRestore(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+restoreCols+` FROM protection_restores
		WHERE machine_id = ? AND id = ?`), machineID, id))
	if err != nil {
		return rs, fmt.Errorf("get restore %s of machine %s: %w", id, machineID, s.mapErr(err))
	}
	return rs, nil
}

func (s *Store) ListRestores(ctx context.Context, machineID string, unfinished bool, p store.Page) ([]store.ProtectionRestore, error) {
	var w where
	w.add(`machine_id = ?`, machineID)
	if unfinished {
		w.add(`state IN (?, ?)`, wire.ScanPending, wire.ScanRunning)
	}
	if p.After != "" {
		w.add(`id < ?`, p.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+restoreCols+` FROM protection_restores`+w.String()+`
		ORDER BY id DESC LIMIT ?`), append(w.args, limit(p))...)
	rs, err := collect(rows, err, scanRestore)
	if err != nil {
		return nil, fmt.Errorf("list restores of machine %s: %w", machineID, s.mapErr(err))
	}
	return rs, nil
}

func (s *Store) FinishRestore(ctx context.Context, machineID, id, state, message, path string, at time.Time) (bool, error) {
	n, err := s.exec(ctx, s.write, `UPDATE protection_restores SET state = ?, message = ?, path = ?, finished_at = ?
		WHERE machine_id = ? AND id = ? AND state IN (?, ?)`, state, message, path, micros(at), machineID, id,
		wire.ScanPending, wire.ScanRunning)
	if err != nil {
		return false, fmt.Errorf("finish restore %s of machine %s: %w", id, machineID, err)
	}
	if n > 0 {
		return true, nil
	}
	if _, err := s.GetRestore(ctx, machineID, id); err != nil {
		return false, err
	}
	return false, nil
}

// ---- machine status ----

const machineProtectionCols = `machine_id, status, status_at, quarantine, quarantine_at`

func scanMachineProtection(r scanner) (store.MachineProtection, error) {
	var p store.MachineProtection
	var statusAt, quarantineAt int64
	err := r.Scan(&p.MachineID, &p.Status, &statusAt, &p.Quarantine, &quarantineAt)
	p.StatusAt, p.QuarantineAt = fromMicros(statusAt), fromMicros(quarantineAt)
	return p, err
}

func (s *Store) PutMachineProtection(ctx context.Context, p store.MachineProtection) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanMachineProtection(tx.QueryRowContext(ctx, s.q(`SELECT `+machineProtectionCols+` FROM machine_protection
			WHERE machine_id = ?`), p.MachineID))
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return s.mapErr(err)
		}
		if p.Status == nil {
			p.Status, p.StatusAt = cur.Status, cur.StatusAt
		}
		if p.Quarantine == nil {
			p.Quarantine, p.QuarantineAt = cur.Quarantine, cur.QuarantineAt
		}
		if exists {
			_, err = s.exec(ctx, tx, `UPDATE machine_protection SET status = ?, status_at = ?, quarantine = ?, quarantine_at = ?
				WHERE machine_id = ?`, p.Status, micros(p.StatusAt), p.Quarantine, micros(p.QuarantineAt), p.MachineID)
			return err
		}
		_, err = s.exec(ctx, tx, `INSERT INTO machine_protection (`+machineProtectionCols+`) VALUES (?, ?, ?, ?, ?)`,
			p.MachineID, p.Status, micros(p.StatusAt), p.Quarantine, micros(p.QuarantineAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("put protection of machine %s: %w", p.MachineID, err)
	}
	return nil
}

func (s *Store) GetMachineProtection(ctx context.Context, machineID string) (store.MachineProtection, error) {
	p, err := scanMachineProtection(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+machineProtectionCols+` FROM machine_protection
		WHERE machine_id = ?`), machineID))
	if err != nil {
		return p, fmt.Errorf("get protection of machine %s: %w", machineID, s.mapErr(err))
	}
	return p, nil
}

func (s *Store) ListMachineProtection(ctx context.Context, machineIDs []string) (map[string]store.MachineProtection, error) {
	out := map[string]store.MachineProtection{}
	if machineIDs == nil {
		rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+machineProtectionCols+` FROM machine_protection`))
		ps, err := collect(rows, err, scanMachineProtection)
		if err != nil {
			return nil, fmt.Errorf("list machine protection: %w", s.mapErr(err))
		}
		for _, p := range ps {
			out[p.MachineID] = p
		}
		return out, nil
	}
	for len(machineIDs) > 0 {
		batch := machineIDs[:min(len(machineIDs), 500)]
		machineIDs = machineIDs[len(batch):]
		args := make([]any, 0, len(batch))
		for _, id := range batch {
			args = append(args, id)
		}
		rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+machineProtectionCols+` FROM machine_protection
			WHERE machine_id IN (?`+strings.Repeat(", ?", len(batch)-1)+`)`), args...)
		ps, err := collect(rows, err, scanMachineProtection)
		if err != nil {
			return nil, fmt.Errorf("list machine protection: %w", s.mapErr(err))
		}
		for _, p := range ps {
			out[p.MachineID] = p
		}
	}
	return out, nil
}
