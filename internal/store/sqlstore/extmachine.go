package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

func (s *Store) ReportMachineExtension(ctx context.Context, machineID, name string, seqNo int64, remove bool, r store.ExtensionReport) (bool, error) {
	cond := `deleting = ? AND seq_no = ?`
	if remove {
		cond = `deleting = ? AND seq_no >= ?`
	}
	applied, err := s.changeReportedExtension(ctx, machineID, name, r.Outcome, `UPDATE machine_extensions SET state = ?, message = ?,
		reported_version = CASE WHEN ? = '' THEN reported_version ELSE ? END, agent_reported = ?, updated_at = ?
		WHERE machine_id = ? AND lower(name) = lower(?) AND `+cond,
		r.State, r.Message, r.Version, r.Version, true, micros(r.At), machineID, name, remove, seqNo)
	if err != nil {
		return false, fmt.Errorf("report extension %q of machine %s: %w", name, machineID, err)
	}
	return applied, nil
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

func (s *Store) DropDeletedExtensions(ctx context.Context, machineID string, applied int64) ([]string, error) {
	rows, err := s.write.QueryContext(ctx, s.q(`DELETE FROM machine_extensions
		WHERE machine_id = ? AND deleting = ? AND state = ? AND delete_generation <= ? RETURNING name`),
		machineID, true, wire.ExtDeleting, applied)
	names, err := collect(rows, err, func(r scanner) (string, error) {
		var n string
		return n, r.Scan(&n)
	})
	if err != nil {
		return nil, fmt.Errorf("drop deleted extensions of machine %s: %w", machineID, s.mapErr(err))
	}
	return names, nil
}
