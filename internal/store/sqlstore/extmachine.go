package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

const machineExtensionCols = `machine_id, name, publisher, type, version, digest, settings, protected_settings, seq_no,
	deleting, delete_generation, state, message, reported_version, agent_reported, created_at, created_by, updated_at, updated_by, origin`

func scanMachineExtension(r scanner) (store.MachineExtension, error) {
	var e store.MachineExtension
	var created, updated int64
	err := r.Scan(&e.MachineID, &e.Name, &e.Publisher, &e.Type, &e.Version, &e.Digest, &e.Settings, &e.ProtectedSettings, &e.SeqNo,
		&e.Deleting, &e.DeleteGeneration, &e.State, &e.Message, &e.ReportedVersion, &e.AgentReported, &created, &e.CreatedBy,
		&updated, &e.UpdatedBy, &e.Origin)
	e.CreatedAt, e.UpdatedAt = fromMicros(created), fromMicros(updated)
	return e, err
}

// bumpGeneration increments a machine's desired-state generation inside tx
// and returns it; ErrNotFound if the machine is missing.
func (s *Store) bumpGeneration(ctx context.Context, tx *sql.Tx, machineID string) (int64, error) {
	var gen int64
	err := tx.QueryRowContext(ctx, s.q(`UPDATE machines SET generation = generation + 1 WHERE id = ? RETURNING generation`), machineID).Scan(&gen)
	if err != nil {
		return 0, fmt.Errorf("machine %s: %w", machineID, s.mapErr(err))
	}
	return gen, nil
}

// PutMachineExtension checks the expected SeqNo and writes the row in one
// transaction, after bumping the generation (which also locks the machine
// row on PostgreSQL, so concurrent sets on one machine serialize).
func (s *Store) PutMachineExtension(ctx context.Context, e store.MachineExtension, expectSeqNo int64) (int64, error) {
	var gen int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if gen, err = s.bumpGeneration(ctx, tx, e.MachineID); err != nil {
			return err
		}
		cur, err := scanMachineExtension(tx.QueryRowContext(ctx, s.q(`SELECT `+machineExtensionCols+` FROM machine_extensions
			WHERE machine_id = ? AND lower(name) = lower(?)`), e.MachineID, e.Name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if expectSeqNo != 0 {
				return fmt.Errorf("%w: extension %q no longer exists", store.ErrConflict, e.Name)
			}
			_, err = s.exec(ctx, tx, `INSERT INTO machine_extensions (`+machineExtensionCols+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				e.MachineID, e.Name, e.Publisher, e.Type, e.Version, e.Digest, nilIfEmpty(e.Settings), nilIfEmpty(e.ProtectedSettings),
				e.SeqNo, e.Deleting, e.DeleteGeneration, e.State, e.Message, e.ReportedVersion, e.AgentReported,
				micros(e.CreatedAt), e.CreatedBy, micros(e.UpdatedAt), e.UpdatedBy, nilIfEmpty(e.Origin))
			return err
		case err != nil:
			return s.mapErr(err)
		case cur.SeqNo != expectSeqNo:
			return fmt.Errorf("%w: extension %q changed concurrently (seqNo %d, expected %d)", store.ErrConflict, e.Name, cur.SeqNo, expectSeqNo)
		}
		_, err = s.exec(ctx, tx, `UPDATE machine_extensions SET publisher = ?, type = ?, version = ?, digest = ?, settings = ?,
			protected_settings = ?, seq_no = ?, deleting = ?, delete_generation = ?, state = ?, message = ?, reported_version = ?,
			updated_at = ?, updated_by = ?, origin = ?
			WHERE machine_id = ? AND name = ?`,
			e.Publisher, e.Type, e.Version, e.Digest, nilIfEmpty(e.Settings), nilIfEmpty(e.ProtectedSettings), e.SeqNo, e.Deleting,
			e.DeleteGeneration, e.State, e.Message, e.ReportedVersion, micros(e.UpdatedAt), e.UpdatedBy, nilIfEmpty(e.Origin), cur.MachineID, cur.Name)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("put extension %q of machine %s: %w", e.Name, e.MachineID, err)
	}
	return gen, nil
}

func (s *Store) GetMachineExtension(ctx context.Context, machineID, name string) (store.MachineExtension, error) {
	e, err := scanMachineExtension(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+machineExtensionCols+` FROM machine_extensions
		WHERE machine_id = ? AND lower(name) = lower(?)`), machineID, name))
	if err != nil {
		return e, fmt.Errorf("get extension %q of machine %s: %w", name, machineID, s.mapErr(err))
	}
	return e, nil
}

func (s *Store) ListMachineExtensions(ctx context.Context, machineID string) ([]store.MachineExtension, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+machineExtensionCols+` FROM machine_extensions
		WHERE machine_id = ? ORDER BY lower(name)`), machineID)
	es, err := collect(rows, err, scanMachineExtension)
	if err != nil {
		return nil, fmt.Errorf("list extensions of machine %s: %w", machineID, s.mapErr(err))
	}
	return es, nil
}

func (s *Store) MarkMachineExtensionDeleting(ctx context.Context, machineID, name, by string, origin []byte, at time.Time) (int64, error) {
	var gen int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if gen, err = s.bumpGeneration(ctx, tx, machineID); err != nil {
			return err
		}
		return affected1(s.exec(ctx, tx, `UPDATE machine_extensions SET deleting = ?, delete_generation = ?, state = ?, message = '',
			updated_at = ?, updated_by = ?, origin = ? WHERE machine_id = ? AND lower(name) = lower(?)`,
			true, gen, wire.ExtDeleting, micros(at), by, nilIfEmpty(origin), machineID, name))
	})
	if err != nil {
		return 0, fmt.Errorf("delete extension %q of machine %s: %w", name, machineID, err)
	}
	return gen, nil
}

// DeleteMachineExtension's condition on agent_reported sits in the
// statement, so a report that lands after the caller read the row keeps it.
func (s *Store) DeleteMachineExtension(ctx context.Context, machineID, name string) (int64, error) {
	var gen int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if gen, err = s.bumpGeneration(ctx, tx, machineID); err != nil {
			return err
		}
		n, err := s.exec(ctx, tx, `DELETE FROM machine_extensions WHERE machine_id = ? AND lower(name) = lower(?) AND agent_reported = ?`,
			machineID, name, false)
		if err != nil || n > 0 {
			return err
		}
		var exists int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM machine_extensions WHERE machine_id = ? AND lower(name) = lower(?)`),
			machineID, name).Scan(&exists); err != nil {
			return s.mapErr(err)
		}
		return fmt.Errorf("%w: the agent has reported on extension %q", store.ErrConflict, name)
	})
	if err != nil {
		return 0, fmt.Errorf("delete extension %q of machine %s: %w", name, machineID, err)
	}
	return gen, nil
}

// reportChunk bounds the reports of one statement. SQLite, without
// statistics, plans an UPDATE joined to a VALUES list of a few hundred rows
// as a scan of the whole table (seen from ~300); up to 64 it looks each
// row up by its index.
const reportChunk = 64

// ReportMachineExtensions locks the machines reported on in id order (as
// every transaction changing several does: a bulk operation's chunk
// changes their extensions too), reads the rows reported on (one query),
// updates those in the expected phase (one statement, its condition
// re-checked there) and appends the outcomes' entries (one insert). Two
// reports on one row go in successive rounds, so the second sees the
// first's change.
func (s *Store) ReportMachineExtensions(ctx context.Context, reports []store.ExtensionReportOn) ([]bool, error) {
	applied := make([]bool, len(reports))
	machines := make(map[string]bool, len(reports))
	for _, r := range reports {
		machines[r.MachineID] = true
	}
	ids := slices.Sorted(maps.Keys(machines))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		clear(applied)
		if err := s.lockMachines(ctx, tx, ids); err != nil {
			return err
		}
		var entries []store.ActivityEntry
		pending := make([]int, len(reports))
		for i := range pending {
			pending[i] = i
		}
		for len(pending) > 0 {
			before, err := s.reportedRows(ctx, tx, reports, pending)
			if err != nil {
				return err
			}
			var round, rest []int
			taken := make(map[extensionKey]bool, len(pending))
			for _, i := range pending {
				b, ok := before[i]
				switch {
				case !ok: // an unknown name: nothing to apply
				case taken[keyOf(b)]:
					rest = append(rest, i)
				default:
					taken[keyOf(b)] = true
					round = append(round, i)
				}
			}
			changed, err := s.updateReported(ctx, tx, reports, round)
			if err != nil {
				return err
			}
			for _, i := range round {
				b := before[i]
				if !changed[keyOf(b)] {
					continue
				}
				applied[i] = true
				if o := reports[i].Outcome; o != nil {
					if e, ok := o(b); ok {
						entries = append(entries, e)
					}
				}
			}
			pending = rest
		}
		return s.appendActivity(ctx, tx, entries)
	})
	if err != nil {
		return nil, fmt.Errorf("report on %d machine extensions: %w", len(reports), err)
	}
	return applied, nil
}

// extensionKey is a machine extension row's key as stored.
type extensionKey struct{ machineID, name string }

func keyOf(e store.MachineExtension) extensionKey { return extensionKey{e.MachineID, e.Name} }

func scanExtensionKey(r scanner) (extensionKey, error) {
	var k extensionKey
	return k, r.Scan(&k.machineID, &k.name)
}

// reportedRows reads the rows the reports of which name, by report index.
func (s *Store) reportedRows(ctx context.Context, tx *sql.Tx, reports []store.ExtensionReportOn, which []int) (map[int]store.MachineExtension, error) {
	out := make(map[int]store.MachineExtension, len(which))
	for chunk := range slices.Chunk(which, reportChunk) {
		args := make([]any, 0, 3*len(chunk))
		for _, i := range chunk {
			args = append(args, i, reports[i].MachineID, reports[i].Name)
		}
		// The values' columns are named apart from the table's, so the
		// table's need no qualifier.
		rows, err := tx.QueryContext(ctx, s.q(`WITH v(i, mid, nm) AS (VALUES `+rowsOf(len(chunk), "CAST(? AS BIGINT), ?, ?")+`)
			SELECT v.i, `+machineExtensionCols+` FROM v JOIN machine_extensions ON machine_id = v.mid AND lower(name) = lower(v.nm)`), args...)
		got, err := collect(rows, err, func(r scanner) (indexedExtension, error) {
			var x indexedExtension
			e, err := scanMachineExtension(leading{r, &x.i})
			x.e = e
			return x, err
		})
		if err != nil {
			return nil, s.mapErr(err)
		}
		for _, x := range got {
			out[x.i] = x.e
		}
	}
	return out, nil
}

type indexedExtension struct {
	i int
	e store.MachineExtension
}

// leading scans a row's first column into first, the rest into dest.
type leading struct {
	r     scanner
	first any
}

func (l leading) Scan(dest ...any) error { return l.r.Scan(append([]any{l.first}, dest...)...) }

// updateReported applies the reports of which (on distinct rows) whose rows
// are in the expected phase, and returns the rows it changed.
func (s *Store) updateReported(ctx context.Context, tx *sql.Tx, reports []store.ExtensionReportOn, which []int) (map[extensionKey]bool, error) {
	changed := make(map[extensionKey]bool, len(which))
	for chunk := range slices.Chunk(which, reportChunk) {
		args := make([]any, 0, 8*len(chunk)+1)
		for _, i := range chunk {
			r := reports[i]
			args = append(args, r.MachineID, r.Name, r.SeqNo, r.Remove, r.State, r.Message, r.Version, micros(r.At))
		}
		args = append(args, true)
		// A remove report applies while the row is being deleted and its
		// SeqNo is not newer than the row's; any other only to the row's
		// SeqNo while it is not being deleted.
		rows, err := tx.QueryContext(ctx, s.q(`WITH v(mid, nm, seq, rm, st, msg, ver, at) AS (VALUES `+
			rowsOf(len(chunk), "?, ?, CAST(? AS BIGINT), CAST(? AS BOOLEAN), ?, ?, ?, CAST(? AS BIGINT)")+`)
			UPDATE machine_extensions SET state = v.st, message = v.msg,
				reported_version = CASE WHEN v.ver = '' THEN reported_version ELSE v.ver END, agent_reported = ?, updated_at = v.at
			FROM v WHERE machine_id = v.mid AND lower(name) = lower(v.nm) AND deleting = v.rm AND (seq_no = v.seq OR v.rm AND seq_no > v.seq)
			RETURNING machine_id, name`), args...)
		keys, err := collect(rows, err, scanExtensionKey)
		if err != nil {
			return nil, s.mapErr(err)
		}
		for _, k := range keys {
			changed[k] = true
		}
	}
	return changed, nil
}

func (s *Store) RemoveMachineExtension(ctx context.Context, machineID, name string, seqNo int64, outcome store.ExtensionOutcome) (bool, error) {
	removed, err := s.changeReportedExtension(ctx, machineID, name, outcome, `DELETE FROM machine_extensions
		WHERE machine_id = ? AND lower(name) = lower(?) AND deleting = ? AND seq_no >= ?`, machineID, name, true, seqNo)
	if err != nil {
		return false, fmt.Errorf("remove extension %q of machine %s: %w", name, machineID, err)
	}
	return removed, nil
}

// changeReportedExtension runs change (an UPDATE or DELETE of one
// extension row) and says whether it changed the row. With outcome, the
// row as it was is read first and the outcome's entry appended, all in one
// transaction.
func (s *Store) changeReportedExtension(ctx context.Context, machineID, name string, outcome store.ExtensionOutcome, change string, args ...any) (bool, error) {
	if outcome == nil {
		n, err := s.exec(ctx, s.write, change, args...)
		return n > 0, err
	}
	var changed bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		before, err := scanMachineExtension(tx.QueryRowContext(ctx, s.q(`SELECT `+machineExtensionCols+` FROM machine_extensions
			WHERE machine_id = ? AND lower(name) = lower(?)`), machineID, name))
		if errors.Is(err, sql.ErrNoRows) {
			return nil // nothing to report on
		}
		if err != nil {
			return err
		}
		n, err := s.exec(ctx, tx, change, args...)
		if err != nil || n == 0 {
			return err
		}
		changed = true
		if e, ok := outcome(before); ok {
			return s.appendActivity(ctx, tx, []store.ActivityEntry{e})
		}
		return nil
	})
	return changed, err
}

// DropDeletedExtensions locks the machines in id order and deletes with
// one statement per chunk.
func (s *Store) DropDeletedExtensions(ctx context.Context, applied []store.AppliedGeneration) ([][]string, error) {
	gens := make(map[string]int64, len(applied))
	for _, a := range applied {
		gens[a.MachineID] = max(gens[a.MachineID], a.Generation)
	}
	ids := slices.Sorted(maps.Keys(gens))
	dropped := make(map[string][]string)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		clear(dropped)
		if err := s.lockMachines(ctx, tx, ids); err != nil {
			return err
		}
		for chunk := range slices.Chunk(ids, appliedChunk) {
			args := make([]any, 0, 2*len(chunk)+3)
			for _, id := range chunk {
				args = append(args, id, gens[id])
			}
			args = append(args, true, wire.ExtDeleting)
			rows, err := tx.QueryContext(ctx, s.q(`WITH ap (ap_id, ap_gen) AS (VALUES `+rowsOf(len(chunk), "?, CAST(? AS BIGINT)")+`)
				DELETE FROM machine_extensions WHERE machine_id IN (SELECT ap_id FROM ap) AND deleting = ? AND state = ?
					AND delete_generation <= (SELECT ap_gen FROM ap WHERE ap_id = machine_id) RETURNING machine_id, name`), args...)
			keys, err := collect(rows, err, scanExtensionKey)
			if err != nil {
				return err
			}
			for _, k := range keys {
				dropped[k.machineID] = append(dropped[k.machineID], k.name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("drop the deleted extensions of %d machines: %w", len(ids), s.mapErr(err))
	}
	out := make([][]string, len(applied))
	for i, a := range applied {
		out[i] = dropped[a.MachineID]
	}
	return out, nil
}
