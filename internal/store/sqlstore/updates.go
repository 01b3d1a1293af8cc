package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// insertChunk bounds the rows of one multi-row INSERT: a scope-wide
// request of 10,000 machines is 50 statements, well under both engines'
// limits on bound parameters.
const insertChunk = 200

// bumpIDs bumps the generation of the machines ids inside tx, in sorted
// chunks (so concurrent transactions take row locks in one order), and
// returns machine id -> new generation; unknown ids are left out.
func (s *Store) bumpIDs(ctx context.Context, tx *sql.Tx, ids []string, at time.Time) (map[string]int64, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if err := s.lockMachines(ctx, tx, ids); err != nil {
		return nil, err
	}
	gens := make(map[string]int64, len(ids))
	for chunk := range slices.Chunk(ids, generationChunk) {
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE machines SET generation = generation + 1, updated_at = ?
			WHERE id IN (`+marks(len(chunk))+`) RETURNING id, generation`), append([]any{micros(at)}, anys(chunk)...)...)
		type bumped struct {
			id  string
			gen int64
		}
		bs, err := collect(rows, err, func(r scanner) (bumped, error) {
			var b bumped
			return b, r.Scan(&b.id, &b.gen)
		})
		if err != nil {
			return nil, s.mapErr(err)
		}
		for _, b := range bs {
			gens[b.id] = b.gen
		}
	}
	return gens, nil
}

// lockMachines locks the rows of ids (sorted, without duplicates) in that
// order, where the engine has row locks: every transaction that changes
// several machines takes them in one order, so that two never wait on each
// other (a heartbeat batch and a bulk operation's generation bump, each in
// its own order, deadlocked on PostgreSQL). SQLite has one writer: nothing
// to do.
func (s *Store) lockMachines(ctx context.Context, tx *sql.Tx, ids []string) error {
	if s.d.LockRows == "" || len(ids) < 2 {
		return nil
	}
	_, err := s.machineIDsIn(ctx, tx, ids, `ORDER BY id `+s.d.LockRows)
	return err
}

// marks is "?, ?, ..." n times.
func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

// rowMarks is "(?, ?), (?, ?)" for rows of cols values.
func rowMarks(rows, cols int) string { return rowsOf(rows, marks(cols)) }

// rowsOf is "(row), (row)" for rows rows.
func rowsOf(rows int, row string) string {
	return strings.TrimSuffix(strings.Repeat("("+row+"), ", rows), ", ")
}

// existingMachines returns which of ids are machines, inside tx.
func (s *Store) existingMachines(ctx context.Context, tx *sql.Tx, ids []string) (map[string]bool, error) {
	got, err := s.machineIDsIn(ctx, tx, ids, "")
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(got))
	for _, id := range got {
		out[id] = true
	}
	return out, nil
}

// machineIDsIn selects the ids of ids that are machines, in chunks in the
// order given, each query ending with suffix (an ORDER BY and a locking
// clause, or nothing).
func (s *Store) machineIDsIn(ctx context.Context, tx *sql.Tx, ids []string, suffix string) ([]string, error) {
	var out []string
	for chunk := range slices.Chunk(ids, generationChunk) {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id FROM machines WHERE id IN (`+marks(len(chunk))+`) `+suffix), anys(chunk)...)
		got, err := collect(rows, err, func(r scanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil {
			return nil, fmt.Errorf("select %d machines: %w", len(chunk), s.mapErr(err))
		}
		out = append(out, got...)
	}
	return out, nil
}

// anys is ss as query arguments.
func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// enroll creates the update status rows of machines that have none, in
// state, inside tx; existing rows get state when setState.
func (s *Store) enroll(ctx context.Context, tx *sql.Tx, ids []string, state string, setState bool, at time.Time) error {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for chunk := range slices.Chunk(ids, insertChunk) {
		args := make([]any, 0, len(chunk)*15)
		for _, id := range chunk {
			args = append(args, id, "", state, "", "", "", false, 0, 0, 0, false, nil, micros(time.Time{}), micros(at), micros(at))
		}
		conflict := ` ON CONFLICT (machine_id) DO NOTHING`
		if setState {
			conflict = ` ON CONFLICT (machine_id) DO UPDATE SET state = excluded.state, reason = '', message = '', updated_at = excluded.updated_at`
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO machine_update_status (machine_id, assessment_id, state, reason, message, manager,
			refreshed, critical, security, other, reboot_pending, updates, assessed_at, enrolled_at, updated_at)
			VALUES `+rowMarks(len(chunk), 15)+conflict, args...); err != nil {
			return err
		}
	}
	return nil
}

const updateAssessmentCols = `id, machine_id, batch_id, trigger_kind, state, reason, message, manager, refreshed, critical, security, other,
	reboot_pending, origin, requested_at, requested_by, started_at, finished_at`

func scanUpdateAssessment(r scanner) (store.UpdateAssessment, error) {
	var a store.UpdateAssessment
	var req, started, finished int64
	err := r.Scan(&a.ID, &a.MachineID, &a.BatchID, &a.Trigger, &a.State, &a.Reason, &a.Message, &a.Manager, &a.Refreshed,
		&a.Critical, &a.Security, &a.Other, &a.RebootPending, &a.Origin, &req, &a.RequestedBy, &started, &finished)
	a.RequestedAt, a.StartedAt, a.FinishedAt = fromMicros(req), fromMicros(started), fromMicros(finished)
	return a, err
}

func assessmentArgs(a store.UpdateAssessment) []any {
	return []any{a.ID, a.MachineID, a.BatchID, a.Trigger, a.State, a.Reason, a.Message, a.Manager, a.Refreshed, a.Critical,
		a.Security, a.Other, a.RebootPending, nilIfEmpty(a.Origin), micros(a.RequestedAt), a.RequestedBy, micros(a.StartedAt),
		micros(a.FinishedAt)}
}

// insertAssessments inserts requests of existing machines inside tx and
// returns the machine ids they were for.
func (s *Store) insertAssessments(ctx context.Context, tx *sql.Tx, as []store.UpdateAssessment, at time.Time) ([]string, error) {
	ids := make([]string, 0, len(as))
	for _, a := range as {
		ids = append(ids, a.MachineID)
	}
	exist, err := s.existingMachines(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	var keep []store.UpdateAssessment
	ids = ids[:0]
	for _, a := range as {
		if exist[a.MachineID] {
			keep = append(keep, a)
			ids = append(ids, a.MachineID)
		}
	}
	for chunk := range slices.Chunk(keep, insertChunk) {
		args := make([]any, 0, len(chunk)*18)
		for _, a := range chunk {
			args = append(args, assessmentArgs(a)...)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO update_assessments (`+updateAssessmentCols+`) VALUES `+rowMarks(len(chunk), 18), args...); err != nil {
			return nil, err
		}
	}
	if err := s.enroll(ctx, tx, ids, wire.AssessmentPending, true, at); err != nil {
		return nil, err
	}
	return ids, nil
}

func (s *Store) CreateUpdateAssessments(ctx context.Context, as []store.UpdateAssessment, at time.Time) (map[string]int64, error) {
	var gens map[string]int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids, err := s.insertAssessments(ctx, tx, as, at)
		if err != nil {
			return err
		}
		gens, err = s.bumpIDs(ctx, tx, ids, at)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create %d update assessments: %w", len(as), err)
	}
	return gens, nil
}

func (s *Store) ListPendingUpdateAssessments(ctx context.Context, machineID string, n int) ([]store.UpdateAssessment, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+updateAssessmentCols+` FROM update_assessments
		WHERE machine_id = ? AND state = ? ORDER BY id LIMIT ?`), machineID, wire.AssessmentPending, limit(store.Page{Limit: n}))
	as, err := collect(rows, err, scanUpdateAssessment)
	if err != nil {
		return nil, fmt.Errorf("list pending update assessments of machine %s: %w", machineID, s.mapErr(err))
	}
	return as, nil
}

func (s *Store) RecordUpdateAssessment(ctx context.Context, a store.UpdateAssessment, updates []byte, at time.Time) (bool, error) {
	applied := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.exec(ctx, tx, `UPDATE update_assessments SET state = ?, reason = ?, message = ?, manager = ?, refreshed = ?,
			critical = ?, security = ?, other = ?, reboot_pending = ?, started_at = ?, finished_at = ?
			WHERE id = ? AND machine_id = ? AND state = ?`,
			a.State, a.Reason, a.Message, a.Manager, a.Refreshed, a.Critical, a.Security, a.Other, a.RebootPending,
			micros(a.StartedAt), micros(a.FinishedAt), a.ID, a.MachineID, wire.AssessmentPending)
		if err != nil {
			return err
		}
		if n == 0 {
			if a.Trigger != wire.TriggerPeriodic {
				return nil // final already, or not ours
			}
			var one int
			err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM update_assessments WHERE id = ?`), a.ID).Scan(&one)
			if err == nil {
				return nil // delivered twice
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return s.mapErr(err)
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO update_assessments (`+updateAssessmentCols+`) VALUES (`+marks(18)+`)`,
				assessmentArgs(a)...); err != nil {
				return err
			}
		}
		applied = true
		if err := s.enroll(ctx, tx, []string{a.MachineID}, wire.AssessmentNotAssessed, false, at); err != nil {
			return err
		}
		// The status takes the result unless it holds a newer one; a
		// failed assessment keeps the last known updates and counts.
		if a.State == wire.AssessmentSucceeded {
			_, err = s.exec(ctx, tx, `UPDATE machine_update_status SET assessment_id = ?, state = ?, reason = ?, message = ?,
				manager = ?, refreshed = ?, critical = ?, security = ?, other = ?, reboot_pending = ?, updates = ?,
				assessed_at = ?, updated_at = ? WHERE machine_id = ? AND assessed_at <= ?`,
				a.ID, a.State, a.Reason, a.Message, a.Manager, a.Refreshed, a.Critical, a.Security, a.Other, a.RebootPending,
				nilIfEmpty(updates), micros(a.FinishedAt), micros(at), a.MachineID, micros(a.FinishedAt))
		} else {
			_, err = s.exec(ctx, tx, `UPDATE machine_update_status SET assessment_id = ?, state = ?, reason = ?, message = ?,
				updated_at = ? WHERE machine_id = ? AND assessed_at <= ?`,
				a.ID, a.State, a.Reason, a.Message, micros(at), a.MachineID, micros(a.FinishedAt))
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("record update assessment %s of machine %s: %w", a.ID, a.MachineID, err)
	}
	return applied, nil
}

func (s *Store) GetUpdateAssessment(ctx context.Context, id string) (store.UpdateAssessment, error) {
	a, err := scanUpdateAssessment(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+updateAssessmentCols+` FROM update_assessments WHERE id = ?`), id))
	if err != nil {
		return a, fmt.Errorf("get update assessment %s: %w", id, s.mapErr(err))
	}
	return a, nil
}

func (s *Store) ListUpdateAssessments(ctx context.Context, f store.UpdateAssessmentFilter) ([]store.UpdateAssessment, error) {
	var w where
	if f.MachineID != "" {
		w.add(`machine_id = ?`, f.MachineID)
	}
	if f.BatchID != "" {
		w.add(`batch_id = ?`, f.BatchID)
	}
	if f.State != "" {
		w.add(`state = ?`, f.State)
	}
	if f.Page.After != "" {
		w.add(`id < ?`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+updateAssessmentCols+` FROM update_assessments`+w.String()+`
		ORDER BY id DESC LIMIT ?`), append(w.args, limit(f.Page))...)
	as, err := collect(rows, err, scanUpdateAssessment)
	if err != nil {
		return nil, fmt.Errorf("list update assessments: %w", s.mapErr(err))
	}
	return as, nil
}

func (s *Store) CountUpdateAssessments(ctx context.Context, batchID string) (map[string]int, error) {
	type count struct {
		state string
		n     int
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT state, count(*) FROM update_assessments WHERE batch_id = ? GROUP BY state`), batchID)
	cs, err := collect(rows, err, func(r scanner) (count, error) {
		var c count
		return c, r.Scan(&c.state, &c.n)
	})
	if err != nil {
		return nil, fmt.Errorf("count update assessments of %s: %w", batchID, s.mapErr(err))
	}
	out := map[string]int{}
	for _, c := range cs {
		out[c.state] = c.n
	}
	return out, nil
}

func (s *Store) ExpireUpdateAssessments(ctx context.Context, before time.Time, message string, at time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE update_assessments SET state = ?, reason = ?, message = ?, finished_at = ?
			WHERE state = ? AND requested_at < ? RETURNING id, machine_id`),
			wire.AssessmentFailed, wire.ReasonNoResult, message, micros(at), wire.AssessmentPending, micros(before))
		type exp struct{ id, machine string }
		es, err := collect(rows, err, func(r scanner) (exp, error) {
			var e exp
			return e, r.Scan(&e.id, &e.machine)
		})
		if err != nil {
			return s.mapErr(err)
		}
		n = int64(len(es))
		for _, e := range es {
			if _, err := s.exec(ctx, tx, `UPDATE machine_update_status SET state = ?, reason = ?, message = ?, updated_at = ?
				WHERE machine_id = ? AND state = ? AND NOT EXISTS (SELECT 1 FROM update_assessments
				WHERE machine_id = ? AND state = ?)`,
				wire.AssessmentFailed, wire.ReasonNoResult, message, micros(at), e.machine, wire.AssessmentPending,
				e.machine, wire.AssessmentPending); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("expire update assessments: %w", err)
	}
	return int(n), nil
}

const machineUpdateStatusCols = `u.machine_id, m.subscription, m.resource_group, m.name, u.assessment_id, u.state, u.reason, u.message,
	u.manager, u.refreshed, u.critical, u.security, u.other, u.reboot_pending, u.assessed_at, u.enrolled_at, u.updated_at`

func scanMachineUpdateStatus(r scanner, withUpdates bool) (store.MachineUpdateStatus, error) {
	var st store.MachineUpdateStatus
	var assessed, enrolled, updated int64
	dest := []any{&st.MachineID, &st.Subscription, &st.ResourceGroup, &st.Name, &st.AssessmentID, &st.State, &st.Reason, &st.Message,
		&st.Manager, &st.Refreshed, &st.Critical, &st.Security, &st.Other, &st.RebootPending, &assessed, &enrolled, &updated}
	if withUpdates {
		dest = append(dest, &st.Updates)
	}
	err := r.Scan(dest...)
	st.AssessedAt, st.EnrolledAt, st.UpdatedAt = fromMicros(assessed), fromMicros(enrolled), fromMicros(updated)
	return st, err
}

func (s *Store) GetMachineUpdateStatus(ctx context.Context, machineID string) (store.MachineUpdateStatus, error) {
	st, err := scanMachineUpdateStatus(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+machineUpdateStatusCols+`, u.updates
		FROM machine_update_status u JOIN machines m ON m.id = u.machine_id WHERE u.machine_id = ?`), machineID), true)
	if err != nil {
		return st, fmt.Errorf("get the update status of machine %s: %w", machineID, s.mapErr(err))
	}
	return st, nil
}

func (s *Store) ListMachineUpdateStatuses(ctx context.Context, f store.UpdateStatusFilter) ([]store.MachineUpdateStatus, error) {
	var w where
	w.add(`lower(m.subscription) = lower(?)`, f.Subscription)
	if f.ResourceGroup != "" {
		w.add(`lower(m.resource_group) = lower(?)`, f.ResourceGroup)
	}
	if len(f.MachineIDs) > 0 {
		w.add(`u.machine_id IN (`+marks(len(f.MachineIDs))+`)`, anys(f.MachineIDs)...)
	}
	if f.Page.After != "" {
		rg, name, _ := strings.Cut(f.Page.After, "/")
		w.add(`(lower(m.resource_group) > lower(?) OR (lower(m.resource_group) = lower(?) AND lower(m.name) > lower(?)))`, rg, rg, name)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+machineUpdateStatusCols+` FROM machine_update_status u
		JOIN machines m ON m.id = u.machine_id`+w.String()+` ORDER BY lower(m.resource_group), lower(m.name) LIMIT ?`),
		append(w.args, limit(f.Page))...)
	sts, err := collect(rows, err, func(r scanner) (store.MachineUpdateStatus, error) { return scanMachineUpdateStatus(r, false) })
	if err != nil {
		return nil, fmt.Errorf("list machine update statuses: %w", s.mapErr(err))
	}
	return sts, nil
}

const updateRunCols = `id, subscription, scope, targets, settings, rollout, waves, current_wave, status, reason, message, trigger_kind,
	schedule, origin, created_at, created_by, started_at, deadline, finished_at, updated_at`

func scanUpdateRun(r scanner) (store.UpdateRun, error) {
	var u store.UpdateRun
	var created, started, deadline, finished, updated int64
	err := r.Scan(&u.ID, &u.Subscription, &u.Scope, &u.Targets, &u.Settings, &u.Rollout, &u.Waves, &u.CurrentWave, &u.Status,
		&u.Reason, &u.Message, &u.Trigger, &u.Schedule, &u.Origin, &created, &u.CreatedBy, &started, &deadline, &finished, &updated)
	u.CreatedAt, u.StartedAt, u.Deadline, u.FinishedAt, u.UpdatedAt = fromMicros(created), fromMicros(started), fromMicros(deadline),
		fromMicros(finished), fromMicros(updated)
	return u, err
}

const updateRunMachineCols = `r.run_id, r.machine_id, m.subscription, m.resource_group, m.name, r.wave, r.dispatched, r.status, r.reason,
	r.message, r.current_pkg, r.reboot_required, r.reboot, r.recovery, r.scripts, r.packages, r.started_at, r.finished_at, r.updated_at`

func scanUpdateRunMachine(r scanner) (store.UpdateRunMachine, error) {
	var u store.UpdateRunMachine
	var started, finished, updated int64
	err := r.Scan(&u.RunID, &u.MachineID, &u.Subscription, &u.ResourceGroup, &u.Name, &u.Wave, &u.Dispatched, &u.Status, &u.Reason,
		&u.Message, &u.Current, &u.RebootRequired, &u.Reboot, &u.Recovery, &u.Scripts, &u.Packages, &started, &finished, &updated)
	u.StartedAt, u.FinishedAt, u.UpdatedAt = fromMicros(started), fromMicros(finished), fromMicros(updated)
	return u, err
}

// insertRun inserts a run and its machines inside tx, enrolls the
// machines and bumps those dispatched.
func (s *Store) insertRun(ctx context.Context, tx *sql.Tx, r store.UpdateRun, ms []store.UpdateRunMachine) (map[string]int64, error) {
	if _, err := s.exec(ctx, tx, `INSERT INTO update_runs (`+updateRunCols+`) VALUES (`+marks(20)+`)`,
		r.ID, r.Subscription, r.Scope, r.Targets, r.Settings, nilIfEmpty(r.Rollout), r.Waves, r.CurrentWave, r.Status, r.Reason,
		r.Message, r.Trigger, r.Schedule, nilIfEmpty(r.Origin), micros(r.CreatedAt), r.CreatedBy, micros(r.StartedAt),
		micros(r.Deadline), micros(r.FinishedAt), micros(r.UpdatedAt)); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(ms))
	var dispatched []string
	for _, m := range ms {
		ids = append(ids, m.MachineID)
		if m.Dispatched {
			dispatched = append(dispatched, m.MachineID)
		}
	}
	for chunk := range slices.Chunk(ms, insertChunk) {
		args := make([]any, 0, len(chunk)*16)
		for _, m := range chunk {
			args = append(args, r.ID, m.MachineID, m.Wave, m.Dispatched, m.Status, m.Reason, m.Message, m.Current, m.RebootRequired,
				m.Reboot, m.Recovery, nilIfEmpty(m.Scripts), nilIfEmpty(m.Packages), micros(m.StartedAt), micros(m.FinishedAt),
				micros(m.UpdatedAt))
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO update_run_machines (run_id, machine_id, wave, dispatched, status, reason,
			message, current_pkg, reboot_required, reboot, recovery, scripts, packages, started_at, finished_at, updated_at)
			VALUES `+rowMarks(len(chunk), 16), args...); err != nil {
			return nil, err
		}
	}
	if err := s.enroll(ctx, tx, ids, wire.AssessmentNotAssessed, false, r.CreatedAt); err != nil {
		return nil, err
	}
	return s.bumpIDs(ctx, tx, dispatched, r.CreatedAt)
}

func (s *Store) CreateUpdateRun(ctx context.Context, r store.UpdateRun, ms []store.UpdateRunMachine) (map[string]int64, error) {
	var gens map[string]int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		gens, err = s.insertRun(ctx, tx, r, ms)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create update run %s: %w", r.ID, err)
	}
	return gens, nil
}

func (s *Store) GetUpdateRun(ctx context.Context, id string) (store.UpdateRun, error) {
	r, err := scanUpdateRun(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+updateRunCols+` FROM update_runs WHERE id = ?`), id))
	if err != nil {
		return r, fmt.Errorf("get update run %s: %w", id, s.mapErr(err))
	}
	return r, nil
}

func (s *Store) ListUpdateRuns(ctx context.Context, f store.UpdateRunFilter) ([]store.UpdateRun, error) {
	var w where
	if f.Subscription != "" {
		w.add(`lower(subscription) = lower(?)`, f.Subscription)
	}
	if f.MachineID != "" {
		w.add(`id IN (SELECT run_id FROM update_run_machines WHERE machine_id = ?)`, f.MachineID)
	}
	if f.Schedule != "" {
		w.add(`lower(schedule) = lower(?)`, f.Schedule)
	}
	if f.Unfinished {
		w.add(`status = ?`, wire.UpdateInProgress)
	}
	if f.Page.After != "" {
		w.add(`id < ?`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+updateRunCols+` FROM update_runs`+w.String()+` ORDER BY id DESC LIMIT ?`),
		append(w.args, limit(f.Page))...)
	rs, err := collect(rows, err, scanUpdateRun)
	if err != nil {
		return nil, fmt.Errorf("list update runs: %w", s.mapErr(err))
	}
	return rs, nil
}

func (s *Store) ListUpdateRunMachines(ctx context.Context, runID string, p store.Page) ([]store.UpdateRunMachine, error) {
	var w where
	w.add(`r.run_id = ?`, runID)
	if p.After != "" {
		rg, name, _ := strings.Cut(p.After, "/")
		w.add(`(lower(m.resource_group) > lower(?) OR (lower(m.resource_group) = lower(?) AND lower(m.name) > lower(?)))`, rg, rg, name)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+updateRunMachineCols+` FROM update_run_machines r
		JOIN machines m ON m.id = r.machine_id`+w.String()+` ORDER BY lower(m.resource_group), lower(m.name) LIMIT ?`),
		append(w.args, limit(p))...)
	ms, err := collect(rows, err, scanUpdateRunMachine)
	if err != nil {
		return nil, fmt.Errorf("list the machines of update run %s: %w", runID, s.mapErr(err))
	}
	return ms, nil
}

func (s *Store) GetUpdateRunMachine(ctx context.Context, runID, machineID string) (store.UpdateRunMachine, error) {
	m, err := scanUpdateRunMachine(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+updateRunMachineCols+` FROM update_run_machines r
		JOIN machines m ON m.id = r.machine_id WHERE r.run_id = ? AND r.machine_id = ?`), runID, machineID))
	if err != nil {
		return m, fmt.Errorf("get machine %s of update run %s: %w", machineID, runID, s.mapErr(err))
	}
	return m, nil
}

func (s *Store) ListUpdateDispatches(ctx context.Context, machineID string) ([]store.UpdateDispatch, error) {
	cols := updateRunMachineCols
	for _, c := range strings.Split(updateRunCols, ",") {
		cols += ", u." + strings.TrimSpace(c)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+cols+` FROM update_run_machines r
		JOIN machines m ON m.id = r.machine_id JOIN update_runs u ON u.id = r.run_id
		WHERE r.machine_id = ? AND r.dispatched = ? AND r.status IN (?, ?) ORDER BY r.run_id LIMIT 100`),
		machineID, true, wire.UpdatePending, wire.UpdateInProgress)
	ds, err := collect(rows, err, func(r scanner) (store.UpdateDispatch, error) {
		var d store.UpdateDispatch
		var started, finished, updated int64
		var created, rstarted, deadline, rfinished, rupdated int64
		u, m := &d.Run, &d.Machine
		err := r.Scan(&m.RunID, &m.MachineID, &m.Subscription, &m.ResourceGroup, &m.Name, &m.Wave, &m.Dispatched, &m.Status, &m.Reason,
			&m.Message, &m.Current, &m.RebootRequired, &m.Reboot, &m.Recovery, &m.Scripts, &m.Packages, &started, &finished, &updated,
			&u.ID, &u.Subscription, &u.Scope, &u.Targets, &u.Settings, &u.Rollout, &u.Waves, &u.CurrentWave, &u.Status,
			&u.Reason, &u.Message, &u.Trigger, &u.Schedule, &u.Origin, &created, &u.CreatedBy, &rstarted, &deadline, &rfinished, &rupdated)
		m.StartedAt, m.FinishedAt, m.UpdatedAt = fromMicros(started), fromMicros(finished), fromMicros(updated)
		u.CreatedAt, u.StartedAt, u.Deadline, u.FinishedAt, u.UpdatedAt = fromMicros(created), fromMicros(rstarted), fromMicros(deadline),
			fromMicros(rfinished), fromMicros(rupdated)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list update deployments of machine %s: %w", machineID, s.mapErr(err))
	}
	return ds, nil
}

// finalRunMachine are the statuses a run's machine never leaves.
var finalRunMachine = []any{wire.UpdateSucceeded, wire.UpdateCompletedWithWarnings, wire.UpdateFailed, wire.UpdateNotStarted}

func (s *Store) ReportUpdateRunMachine(ctx context.Context, m store.UpdateRunMachine) (bool, error) {
	args := []any{m.Status, m.Reason, m.Message, m.Current, m.RebootRequired, m.Reboot, m.Recovery, nilIfEmpty(m.Scripts),
		nilIfEmpty(m.Packages), micros(time.Time{}), micros(m.StartedAt), micros(m.FinishedAt), micros(m.UpdatedAt), m.RunID, m.MachineID}
	args = append(args, finalRunMachine...)
	n, err := s.exec(ctx, s.write, `UPDATE update_run_machines SET status = ?, reason = ?, message = ?, current_pkg = ?,
		reboot_required = ?, reboot = ?, recovery = ?, scripts = ?, packages = ?,
		started_at = CASE WHEN started_at <> ? THEN started_at ELSE ? END, finished_at = ?, updated_at = ?
		WHERE run_id = ? AND machine_id = ? AND status NOT IN (?, ?, ?, ?)`, args...)
	if err != nil {
		return false, fmt.Errorf("report machine %s of update run %s: %w", m.MachineID, m.RunID, err)
	}
	if n > 0 {
		return true, nil
	}
	if _, err := s.GetUpdateRunMachine(ctx, m.RunID, m.MachineID); err != nil {
		return false, err
	}
	return false, nil
}

func (s *Store) SetUpdateRunMachineReboot(ctx context.Context, runID, machineID, reboot, message string, at time.Time) (bool, error) {
	n, err := s.exec(ctx, s.write, `UPDATE update_run_machines SET reboot = ?,
		message = CASE WHEN message = '' THEN ? ELSE message || '; ' || ? END, updated_at = ?
		WHERE run_id = ? AND machine_id = ? AND reboot = ?`,
		reboot, message, message, micros(at), runID, machineID, wire.RebootStarted)
	if err != nil {
		return false, fmt.Errorf("record the reboot of machine %s in update run %s: %w", machineID, runID, err)
	}
	return n > 0, nil
}

func (s *Store) CountUpdateRunMachines(ctx context.Context, runID string) (map[int]map[string]int, error) {
	type count struct {
		wave   int
		status string
		n      int
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT wave, status, count(*) FROM update_run_machines WHERE run_id = ?
		GROUP BY wave, status`), runID)
	cs, err := collect(rows, err, func(r scanner) (count, error) {
		var c count
		return c, r.Scan(&c.wave, &c.status, &c.n)
	})
	if err != nil {
		return nil, fmt.Errorf("count the machines of update run %s: %w", runID, s.mapErr(err))
	}
	out := map[int]map[string]int{}
	for _, c := range cs {
		if out[c.wave] == nil {
			out[c.wave] = map[string]int{}
		}
		out[c.wave][c.status] = c.n
	}
	return out, nil
}

func (s *Store) DispatchUpdateWave(ctx context.Context, runID string, wave int, at time.Time) (map[string]int64, error) {
	var gens map[string]int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE update_run_machines SET dispatched = ?, updated_at = ?
			WHERE run_id = ? AND wave = ? AND dispatched = ? AND status = ? RETURNING machine_id`),
			true, micros(at), runID, wave, false, wire.UpdatePending)
		ids, err := collect(rows, err, func(r scanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil {
			return s.mapErr(err)
		}
		gens, err = s.bumpIDs(ctx, tx, ids, at)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dispatch wave %d of update run %s: %w", wave, runID, err)
	}
	return gens, nil
}

func (s *Store) CloseUpdateRunMachines(ctx context.Context, runID string, c store.UpdateRunMachineClose) (map[string]int64, error) {
	var w where
	w.add(`run_id = ?`, runID)
	w.add(`wave >= ?`, c.FromWave)
	if len(c.Statuses) > 0 {
		args := make([]any, len(c.Statuses))
		for i, st := range c.Statuses {
			args[i] = st
		}
		w.add(`status IN (`+marks(len(args))+`)`, args...)
	}
	if c.Dispatched != nil {
		w.add(`dispatched = ?`, *c.Dispatched)
	}
	if !c.StartedBefore.IsZero() {
		w.add(`started_at <> ? AND started_at < ?`, micros(time.Time{}), micros(c.StartedBefore))
	}
	var gens map[string]int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE update_run_machines SET status = ?, reason = ?, message = ?, current_pkg = '',
			finished_at = ?, updated_at = ?`+w.String()+` RETURNING machine_id, dispatched`),
			append([]any{c.Status, c.Reason, c.Message, micros(c.At), micros(c.At)}, w.args...)...)
		type closed struct {
			id         string
			dispatched bool
		}
		cs, err := collect(rows, err, func(r scanner) (closed, error) {
			var c closed
			return c, r.Scan(&c.id, &c.dispatched)
		})
		if err != nil {
			return s.mapErr(err)
		}
		var ids []string
		for _, c := range cs {
			if c.dispatched {
				ids = append(ids, c.id)
			}
		}
		gens, err = s.bumpIDs(ctx, tx, ids, c.At)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("close machines of update run %s: %w", runID, err)
	}
	return gens, nil
}

func (s *Store) ChangeUpdateRun(ctx context.Context, runID string, c store.UpdateRunChange) (bool, error) {
	from := make([]any, len(c.From))
	for i, f := range c.From {
		from[i] = f
	}
	n, err := s.exec(ctx, s.write, `UPDATE update_runs SET status = ?, reason = ?, message = ?, current_wave = ?, finished_at = ?,
		updated_at = ? WHERE id = ? AND status IN (`+marks(len(from))+`)`,
		append([]any{c.Status, c.Reason, c.Message, c.CurrentWave, micros(c.FinishedAt), micros(c.At), runID}, from...)...)
	if err != nil {
		return false, fmt.Errorf("change update run %s: %w", runID, err)
	}
	return n > 0, nil
}

const updateScheduleCols = `id, subscription, name, kind, scope, targets, cron, time_zone, at_time, window_ms, settings, rollout, origin,
	created_at, created_by, last_fired_at, last_run_id`

func scanUpdateSchedule(r scanner) (store.UpdateSchedule, error) {
	var u store.UpdateSchedule
	var at, window, created, fired int64
	err := r.Scan(&u.ID, &u.Subscription, &u.Name, &u.Kind, &u.Scope, &u.Targets, &u.Cron, &u.TimeZone, &at, &window, &u.Settings,
		&u.Rollout, &u.Origin, &created, &u.CreatedBy, &fired, &u.LastRunID)
	u.At, u.CreatedAt, u.LastFiredAt = fromMicros(at), fromMicros(created), fromMicros(fired)
	u.Window = time.Duration(window) * time.Millisecond
	return u, err
}

func (s *Store) CreateUpdateSchedule(ctx context.Context, u store.UpdateSchedule) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO update_schedules (`+updateScheduleCols+`) VALUES (`+marks(17)+`)`,
		u.ID, u.Subscription, u.Name, u.Kind, u.Scope, u.Targets, u.Cron, u.TimeZone, micros(u.At), u.Window.Milliseconds(), u.Settings,
		nilIfEmpty(u.Rollout), nilIfEmpty(u.Origin), micros(u.CreatedAt), u.CreatedBy, micros(u.LastFiredAt), u.LastRunID)
	if err != nil {
		return fmt.Errorf("create update schedule %q: %w", u.Name, err)
	}
	return nil
}

func (s *Store) GetUpdateSchedule(ctx context.Context, sub, name string) (store.UpdateSchedule, error) {
	u, err := scanUpdateSchedule(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+updateScheduleCols+` FROM update_schedules
		WHERE lower(subscription) = lower(?) AND lower(name) = lower(?)`), sub, name))
	if err != nil {
		return u, fmt.Errorf("get update schedule %q: %w", name, s.mapErr(err))
	}
	return u, nil
}

func (s *Store) ListUpdateSchedules(ctx context.Context, f store.UpdateScheduleFilter) ([]store.UpdateSchedule, error) {
	var w where
	if f.Subscription != "" {
		w.add(`lower(subscription) = lower(?)`, f.Subscription)
	}
	if f.Page.After != "" {
		w.add(`lower(name) > lower(?)`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+updateScheduleCols+` FROM update_schedules`+w.String()+`
		ORDER BY lower(name), id LIMIT ?`), append(w.args, limit(f.Page))...)
	us, err := collect(rows, err, scanUpdateSchedule)
	if err != nil {
		return nil, fmt.Errorf("list update schedules: %w", s.mapErr(err))
	}
	return us, nil
}

func (s *Store) DeleteUpdateSchedule(ctx context.Context, sub, name string) error {
	err := affected1(s.exec(ctx, s.write, `DELETE FROM update_schedules WHERE lower(subscription) = lower(?) AND lower(name) = lower(?)`, sub, name))
	if err != nil {
		return fmt.Errorf("delete update schedule %q: %w", name, err)
	}
	return nil
}

func (s *Store) FireUpdateSchedule(ctx context.Context, f store.UpdateFire) (map[string]int64, error) {
	var gens map[string]int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.exec(ctx, tx, `UPDATE update_schedules SET last_fired_at = ?, last_run_id = ? WHERE id = ? AND last_fired_at = ?`,
			micros(f.Fired), f.RunID, f.ScheduleID, micros(f.Previous))
		if err != nil {
			return err
		}
		if n == 0 {
			var one int
			err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM update_schedules WHERE id = ?`), f.ScheduleID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return s.mapErr(err)
			}
			return store.ErrConflict
		}
		switch {
		case f.Run != nil:
			gens, err = s.insertRun(ctx, tx, *f.Run, f.Machines)
		case len(f.Assessments) > 0:
			var ids []string
			if ids, err = s.insertAssessments(ctx, tx, f.Assessments, f.At); err == nil {
				gens, err = s.bumpIDs(ctx, tx, ids, f.At)
			}
		default:
			gens = map[string]int64{}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fire update schedule %s: %w", f.ScheduleID, err)
	}
	return gens, nil
}
