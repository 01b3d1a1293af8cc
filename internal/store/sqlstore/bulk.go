package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

const bulkOperationCols = `id, subscription, scope, tag, kind, name, publisher, type, version, machines, created_at, created_by`

func scanBulkOperation(r scanner) (store.BulkOperation, error) {
	var op store.BulkOperation
	var created int64
	err := r.Scan(&op.ID, &op.Subscription, &op.Scope, &op.Tag, &op.Kind, &op.Name, &op.Publisher, &op.Type, &op.Version,
		&op.Machines, &created, &op.CreatedBy)
	op.CreatedAt = fromMicros(created)
	return op, err
}

func (s *Store) CreateBulkOperation(ctx context.Context, op store.BulkOperation) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO bulk_operations (`+bulkOperationCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		op.ID, op.Subscription, op.Scope, op.Tag, op.Kind, op.Name, op.Publisher, op.Type, op.Version, op.Machines,
		micros(op.CreatedAt), op.CreatedBy)
	if err != nil {
		return fmt.Errorf("create bulk operation %s: %w", op.ID, err)
	}
	return nil
}

func (s *Store) GetBulkOperation(ctx context.Context, sub, id string) (store.BulkOperation, error) {
	op, err := scanBulkOperation(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+bulkOperationCols+` FROM bulk_operations
		WHERE id = ? AND lower(subscription) = lower(?)`), id, sub))
	if err != nil {
		return op, fmt.Errorf("get bulk operation %s: %w", id, s.mapErr(err))
	}
	return op, nil
}

func (s *Store) ListBulkOperations(ctx context.Context, sub string, p store.Page) ([]store.BulkOperation, error) {
	q, args := `SELECT `+bulkOperationCols+` FROM bulk_operations WHERE lower(subscription) = lower(?)`, []any{sub}
	if p.After != "" {
		q += ` AND id < ?`
		args = append(args, p.After)
	}
	args = append(args, limit(p))
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(q+` ORDER BY lower(subscription), id DESC LIMIT ?`), args...)
	ops, err := collect(rows, err, scanBulkOperation)
	if err != nil {
		return nil, fmt.Errorf("list bulk operations of %s: %w", sub, s.mapErr(err))
	}
	return ops, nil
}

// BulkTargets reads with three queries over the machines' ids.
func (s *Store) BulkTargets(ctx context.Context, ids []string, name string) (map[string]store.BulkTarget, error) {
	out := make(map[string]store.BulkTarget, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if len(ids) > store.BulkChunk {
		return nil, fmt.Errorf("bulk targets: %d machines, at most %d", len(ids), store.BulkChunk)
	}
	in := anys(ids)
	err := func() error {
		rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT m.id,
			(SELECT count(*) FROM machine_extensions x WHERE x.machine_id = m.id),
			(SELECT count(*) FROM run_commands r WHERE r.machine_id = m.id AND r.state IN (?, ?)),
			(SELECT count(*) FROM run_commands r WHERE r.machine_id = m.id AND lower(r.name) = lower(?))
			FROM machines m WHERE m.id IN (`+marks(len(ids))+`)`), append([]any{wire.RunPending, wire.RunRunning, name}, in...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var t store.BulkTarget
			var runs int
			if err := rows.Scan(&id, &t.Extensions, &t.UnfinishedRuns, &runs); err != nil {
				return err
			}
			t.HasRun = runs > 0
			out[id] = t
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("bulk targets: %w", s.mapErr(err))
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+machineExtensionCols+` FROM machine_extensions
		WHERE lower(name) = lower(?) AND machine_id IN (`+marks(len(ids))+`)`), append([]any{name}, in...)...)
	es, err := collect(rows, err, scanMachineExtension)
	if err != nil {
		return nil, fmt.Errorf("bulk targets: %w", s.mapErr(err))
	}
	for _, e := range es {
		if t, ok := out[e.MachineID]; ok {
			t.Extension, t.HasExtension = e, true
			out[e.MachineID] = t
		}
	}
	return out, nil
}

// insertBulkMachines records machines of an operation, inside tx.
func (s *Store) insertBulkMachines(ctx context.Context, tx *sql.Tx, opID string, ms []store.BulkMachine) error {
	for chunk := range slices.Chunk(ms, 200) {
		args := make([]any, 0, 5*len(chunk))
		for _, m := range chunk {
			args = append(args, opID, m.MachineID, m.SeqNo, m.State, m.Message)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO bulk_operation_machines (operation_id, machine_id, seq_no, state, message)
			VALUES `+rowMarks(len(chunk), 5), args...); err != nil {
			return err
		}
	}
	return nil
}

// insertNewExtensions inserts the extensions of puts that are new on their
// machine (ExpectSeqNo 0) of the machines of gens, each with its machine's
// new generation as SeqNo, a hundred rows per statement, and says which
// machines got theirs: a machine that has an extension of the name already
// keeps it (ON CONFLICT DO NOTHING). One statement per machine was ~50 µs
// of the one writer's time each.
func (s *Store) insertNewExtensions(ctx context.Context, tx *sql.Tx, puts []store.BulkExtensionPut,
	gens map[string]int64) (map[string]bool, error) {
	var rows []store.MachineExtension
	for _, p := range puts {
		if _, ok := gens[p.Extension.MachineID]; ok && p.ExpectSeqNo == 0 {
			rows = append(rows, p.Extension)
		}
	}
	inserted := make(map[string]bool, len(rows))
	for chunk := range slices.Chunk(rows, 100) {
		args := make([]any, 0, 20*len(chunk))
		for _, e := range chunk {
			args = append(args, e.MachineID, e.Name, e.Publisher, e.Type, e.Version, e.Digest, nilIfEmpty(e.Settings),
				nilIfEmpty(e.ProtectedSettings), gens[e.MachineID], false, 0, e.State, e.Message, e.ReportedVersion, false,
				micros(e.CreatedAt), e.CreatedBy, micros(e.UpdatedAt), e.UpdatedBy, nilIfEmpty(e.Origin))
		}
		rs, err := tx.QueryContext(ctx, s.q(`INSERT INTO machine_extensions (`+machineExtensionCols+`) VALUES `+rowMarks(len(chunk), 20)+`
			ON CONFLICT DO NOTHING RETURNING machine_id`), args...)
		ids, err := collect(rs, err, func(r scanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			inserted[id] = true
		}
	}
	return inserted, nil
}

// BulkSetExtensions bumps the generations of every machine of puts first
// (locking their rows in id order on PostgreSQL, as a single set does
// before it touches the extension), then writes each row under its
// condition: an insert takes the new generation as its SeqNo and does
// nothing if the name exists; a replace applies only at the expected
// SeqNo.
func (s *Store) BulkSetExtensions(ctx context.Context, opID string, puts []store.BulkExtensionPut, fixed []store.BulkMachine,
	at time.Time) (store.BulkApplied, error) {
	res := store.BulkApplied{Generations: map[string]int64{}}
	if len(puts) > store.BulkChunk {
		return res, fmt.Errorf("bulk set: %d machines, at most %d", len(puts), store.BulkChunk)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids := make([]string, len(puts))
		for i, p := range puts {
			ids[i] = p.Extension.MachineID
		}
		gens, err := s.bumpIDs(ctx, tx, ids, at)
		if err != nil {
			return err
		}
		inserted, err := s.insertNewExtensions(ctx, tx, puts, gens)
		if err != nil {
			return err
		}
		upd, err := tx.PrepareContext(ctx, s.q(`UPDATE machine_extensions SET publisher = ?, type = ?, version = ?, digest = ?,
			settings = ?, protected_settings = ?, seq_no = ?, deleting = ?, delete_generation = 0, state = ?, message = ?,
			updated_at = ?, updated_by = ?, origin = ?
			WHERE machine_id = ? AND lower(name) = lower(?) AND seq_no = ?`))
		if err != nil {
			return err
		}
		defer upd.Close()
		recorded := slices.Clone(fixed)
		for _, p := range puts {
			e := p.Extension
			if _, ok := gens[e.MachineID]; !ok {
				continue // the machine is gone
			}
			seq := e.SeqNo
			if p.ExpectSeqNo == 0 {
				if !inserted[e.MachineID] {
					res.Conflicts = append(res.Conflicts, e.MachineID)
					continue
				}
				seq = gens[e.MachineID]
			} else {
				r, err := upd.ExecContext(ctx, e.Publisher, e.Type, e.Version, e.Digest, nilIfEmpty(e.Settings),
					nilIfEmpty(e.ProtectedSettings), e.SeqNo, false, e.State, e.Message, micros(e.UpdatedAt), e.UpdatedBy,
					nilIfEmpty(e.Origin), e.MachineID, e.Name, p.ExpectSeqNo)
				if err != nil {
					return err
				}
				if n, err := r.RowsAffected(); err != nil || n == 0 {
					if err != nil {
						return err
					}
					res.Conflicts = append(res.Conflicts, e.MachineID)
					continue
				}
			}
			res.Generations[e.MachineID] = gens[e.MachineID]
			recorded = append(recorded, store.BulkMachine{MachineID: e.MachineID, SeqNo: seq})
		}
		return s.insertBulkMachines(ctx, tx, opID, recorded)
	})
	if err != nil {
		return store.BulkApplied{}, fmt.Errorf("bulk set extensions of operation %s: %w", opID, err)
	}
	return res, nil
}

// BulkDeleteExtensions bumps first, then per machine drops the row the
// agent never reported on or marks it Deleting at the new generation.
func (s *Store) BulkDeleteExtensions(ctx context.Context, opID, name string, ids []string, fixed []store.BulkMachine, by string,
	origin []byte, at time.Time) (store.BulkApplied, error) {
	res := store.BulkApplied{Generations: map[string]int64{}}
	if len(ids) > store.BulkChunk {
		return res, fmt.Errorf("bulk delete: %d machines, at most %d", len(ids), store.BulkChunk)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		gens, err := s.bumpIDs(ctx, tx, ids, at)
		if err != nil {
			return err
		}
		drop, err := tx.PrepareContext(ctx, s.q(`DELETE FROM machine_extensions WHERE machine_id = ? AND lower(name) = lower(?) AND agent_reported = ?`))
		if err != nil {
			return err
		}
		defer drop.Close()
		mark, err := tx.PrepareContext(ctx, s.q(`UPDATE machine_extensions SET deleting = ?, delete_generation = ?, state = ?, message = '',
			updated_at = ?, updated_by = ?, origin = ? WHERE machine_id = ? AND lower(name) = lower(?)`))
		if err != nil {
			return err
		}
		defer mark.Close()
		recorded := slices.Clone(fixed)
		for _, id := range ids {
			gen, ok := gens[id]
			if !ok {
				continue // the machine is gone
			}
			res.Generations[id] = gen
			r, err := drop.ExecContext(ctx, id, name, false)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n > 0 {
				recorded = append(recorded, store.BulkMachine{MachineID: id, SeqNo: gen, State: wire.ExtSucceeded, Message: store.BulkDroppedMessage})
				continue
			}
			r, err = mark.ExecContext(ctx, true, gen, wire.ExtDeleting, micros(at), by, nilIfEmpty(origin), id, name)
			if err != nil {
				return err
			}
			bm := store.BulkMachine{MachineID: id, SeqNo: gen}
			if n, _ := r.RowsAffected(); n == 0 {
				bm.State, bm.Message = wire.ExtSucceeded, store.BulkNotPresentMessage
			}
			recorded = append(recorded, bm)
		}
		return s.insertBulkMachines(ctx, tx, opID, recorded)
	})
	if err != nil {
		return store.BulkApplied{}, fmt.Errorf("bulk delete extension %q of operation %s: %w", name, opID, err)
	}
	return res, nil
}

func (s *Store) BulkCreateRunCommands(ctx context.Context, opID string, rcs []store.RunCommand, fixed []store.BulkMachine,
	at time.Time) (store.BulkApplied, error) {
	res := store.BulkApplied{Generations: map[string]int64{}}
	if len(rcs) > store.BulkChunk {
		return res, fmt.Errorf("bulk runs: %d machines, at most %d", len(rcs), store.BulkChunk)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids := make([]string, len(rcs))
		for i, rc := range rcs {
			ids[i] = rc.MachineID
		}
		gens, err := s.bumpIDs(ctx, tx, ids, at)
		if err != nil {
			return err
		}
		ins, err := tx.PrepareContext(ctx, s.q(`INSERT INTO run_commands (`+runCommandCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`))
		if err != nil {
			return err
		}
		defer ins.Close()
		recorded := slices.Clone(fixed)
		for _, rc := range rcs {
			if _, ok := gens[rc.MachineID]; !ok {
				continue
			}
			params, err := encodeTags(rc.Parameters)
			if err != nil {
				return err
			}
			r, err := ins.ExecContext(ctx, rc.ID, rc.MachineID, rc.Name, rc.Script, rc.Command, params, rc.RunAsUser, rc.Timeout.Milliseconds(),
				rc.State, exitCodeArg(rc.ExitCode), rc.Stdout, rc.Stderr, rc.Message, micros(rc.CreatedAt), rc.CreatedBy,
				micros(rc.StartedAt), micros(rc.FinishedAt), micros(rc.UpdatedAt), nilIfEmpty(rc.Origin), nilIfEmpty(rc.ProtectedParameters))
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n == 0 {
				res.Conflicts = append(res.Conflicts, rc.MachineID)
				continue
			}
			res.Generations[rc.MachineID] = gens[rc.MachineID]
			recorded = append(recorded, store.BulkMachine{MachineID: rc.MachineID})
		}
		return s.insertBulkMachines(ctx, tx, opID, recorded)
	})
	if err != nil {
		return store.BulkApplied{}, fmt.Errorf("bulk runs of operation %s: %w", opID, err)
	}
	return res, nil
}

func (s *Store) ScanBulkMachines(ctx context.Context, opID, after string, fn func(store.BulkMachineResult) bool) error {
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT b.machine_id, b.seq_no, b.state, b.message,
		m.id IS NOT NULL, COALESCE(m.subscription, ''), COALESCE(m.resource_group, ''), COALESCE(m.name, ''),
		x.machine_id IS NOT NULL, COALESCE(x.seq_no, 0), COALESCE(x.deleting, ?), COALESCE(x.delete_generation, 0),
		COALESCE(x.state, ''), COALESCE(x.message, ''),
		r.id IS NOT NULL, COALESCE(r.state, ''), COALESCE(r.message, ''), r.exit_code
		FROM bulk_operation_machines b
		JOIN bulk_operations o ON o.id = b.operation_id
		LEFT JOIN machines m ON m.id = b.machine_id
		LEFT JOIN machine_extensions x ON o.kind <> ? AND x.machine_id = b.machine_id AND lower(x.name) = lower(o.name)
		LEFT JOIN run_commands r ON o.kind = ? AND r.machine_id = b.machine_id AND lower(r.name) = lower(o.name)
		WHERE b.operation_id = ? AND b.machine_id > ? ORDER BY b.machine_id`),
		false, wire.BulkRunCommand, wire.BulkRunCommand, opID, after)
	if err != nil {
		return fmt.Errorf("scan machines of bulk operation %s: %w", opID, s.mapErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var r store.BulkMachineResult
		var exit sql.NullInt64
		if err := rows.Scan(&r.MachineID, &r.SeqNo, &r.State, &r.Message, &r.MachineFound, &r.Subscription, &r.ResourceGroup,
			&r.MachineName, &r.ExtensionFound, &r.ExtSeqNo, &r.ExtDeleting, &r.ExtDeleteGen, &r.ExtState, &r.ExtMessage,
			&r.RunFound, &r.RunState, &r.RunMessage, &exit); err != nil {
			return fmt.Errorf("scan machines of bulk operation %s: %w", opID, s.mapErr(err))
		}
		if exit.Valid {
			c := int(exit.Int64)
			r.RunExitCode = &c
		}
		if !fn(r) {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scan machines of bulk operation %s: %w", opID, s.mapErr(err))
	}
	return nil
}
