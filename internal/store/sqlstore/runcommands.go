package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

const runCommandCols = `id, machine_id, name, script, command, parameters, run_as_user, timeout_ms, state, exit_code, stdout, stderr,
	message, created_at, created_by, started_at, finished_at, updated_at, origin, protected_parameters`

func scanRunCommand(r scanner) (store.RunCommand, error) {
	var rc store.RunCommand
	var params string
	var timeoutMS, created, started, finished, updated int64
	var exit sql.NullInt64
	err := r.Scan(&rc.ID, &rc.MachineID, &rc.Name, &rc.Script, &rc.Command, &params, &rc.RunAsUser, &timeoutMS, &rc.State, &exit,
		&rc.Stdout, &rc.Stderr, &rc.Message, &created, &rc.CreatedBy, &started, &finished, &updated, &rc.Origin, &rc.ProtectedParameters)
	if err != nil {
		return rc, err
	}
	rc.Timeout = time.Duration(timeoutMS) * time.Millisecond
	if exit.Valid {
		code := int(exit.Int64)
		rc.ExitCode = &code
	}
	rc.CreatedAt, rc.StartedAt, rc.FinishedAt, rc.UpdatedAt = fromMicros(created), fromMicros(started), fromMicros(finished), fromMicros(updated)
	rc.Parameters = map[string]string{}
	if params != "" {
		if err := json.Unmarshal([]byte(params), &rc.Parameters); err != nil {
			return rc, fmt.Errorf("decode parameters: %w", err)
		}
	}
	return rc, nil
}

func exitCodeArg(c *int) any {
	if c == nil {
		return nil
	}
	return int64(*c)
}

// CreateRunCommand inserts the run and bumps the generation in one
// transaction.
func (s *Store) CreateRunCommand(ctx context.Context, rc store.RunCommand) (int64, error) {
	params, err := encodeTags(rc.Parameters)
	if err != nil {
		return 0, fmt.Errorf("create run command %q: %w", rc.Name, err)
	}
	var gen int64
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if gen, err = s.bumpGeneration(ctx, tx, rc.MachineID); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `INSERT INTO run_commands (`+runCommandCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rc.ID, rc.MachineID, rc.Name, rc.Script, rc.Command, params, rc.RunAsUser, rc.Timeout.Milliseconds(), rc.State,
			exitCodeArg(rc.ExitCode), rc.Stdout, rc.Stderr, rc.Message, micros(rc.CreatedAt), rc.CreatedBy, micros(rc.StartedAt),
			micros(rc.FinishedAt), micros(rc.UpdatedAt), nilIfEmpty(rc.Origin), nilIfEmpty(rc.ProtectedParameters))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("create run command %q of machine %s: %w", rc.Name, rc.MachineID, err)
	}
	return gen, nil
}

func (s *Store) GetRunCommand(ctx context.Context, machineID, name string) (store.RunCommand, error) {
	rc, err := scanRunCommand(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+runCommandCols+` FROM run_commands
		WHERE machine_id = ? AND lower(name) = lower(?)`), machineID, name))
	if err != nil {
		return rc, fmt.Errorf("get run command %q of machine %s: %w", name, machineID, s.mapErr(err))
	}
	return rc, nil
}

// ListRunCommands is newest first (by the caller's time-ordered id).
func (s *Store) ListRunCommands(ctx context.Context, f store.RunCommandFilter) ([]store.RunCommand, error) {
	var w where
	w.add(`machine_id = ?`, f.MachineID)
	if f.Unfinished {
		w.add(`state IN (?, ?)`, wire.RunPending, wire.RunRunning)
	}
	if f.Page.After != "" {
		w.add(`id < ?`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+runCommandCols+` FROM run_commands`+w.String()+`
		ORDER BY id DESC LIMIT ?`), append(w.args, limit(f.Page))...)
	rcs, err := collect(rows, err, scanRunCommand)
	if err != nil {
		return nil, fmt.Errorf("list run commands of machine %s: %w", f.MachineID, s.mapErr(err))
	}
	return rcs, nil
}

// UpdateRunCommand guards the state machine in the statement itself, so a
// re-delivered or late report cannot undo a final result.
func (s *Store) UpdateRunCommand(ctx context.Context, machineID, name string, u store.RunCommandUpdate) (bool, error) {
	set := []string{`state = ?`, `exit_code = ?`, `stdout = ?`, `stderr = ?`, `message = ?`, `updated_at = ?`}
	args := []any{u.State, exitCodeArg(u.ExitCode), u.Stdout, u.Stderr, u.Message, micros(u.At)}
	if !u.StartedAt.IsZero() {
		set = append(set, `started_at = ?`)
		args = append(args, micros(u.StartedAt))
	}
	if !u.FinishedAt.IsZero() {
		set = append(set, `finished_at = ?`)
		args = append(args, micros(u.FinishedAt))
	}
	args = append(args, machineID, name, wire.RunSucceeded, wire.RunFailed, wire.RunTimedOut)
	cond := ``
	if u.State == wire.RunPending {
		cond = ` AND state <> ?`
		args = append(args, wire.RunRunning)
	}
	n, err := s.exec(ctx, s.write, `UPDATE run_commands SET `+strings.Join(set, ", ")+`
		WHERE machine_id = ? AND lower(name) = lower(?) AND state NOT IN (?, ?, ?)`+cond, args...)
	if err != nil {
		return false, fmt.Errorf("update run command %q of machine %s: %w", name, machineID, err)
	}
	if n > 0 {
		return true, nil
	}
	if _, err := s.GetRunCommand(ctx, machineID, name); err != nil {
		return false, err
	}
	return false, nil
}

func (s *Store) ExpireRunCommands(ctx context.Context, now time.Time, grace time.Duration) (store.ExpiredRuns, error) {
	out := store.ExpiredRuns{Generations: map[string]int64{}}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		out = store.ExpiredRuns{Generations: map[string]int64{}}
		nowUS := micros(now)
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE run_commands SET
			message = CASE WHEN state = ? THEN ? ELSE ? END, state = ?, finished_at = ?, updated_at = ?
			WHERE (state = ? AND created_at + timeout_ms * 1000 <= ?)
			   OR (state = ? AND (CASE WHEN started_at > 0 THEN started_at ELSE created_at END) + timeout_ms * 1000 + ? <= ?)
			RETURNING machine_id, name`),
			wire.RunPending, store.RunNotStartedMessage, store.RunNoResultMessage, wire.RunFailed, nowUS, nowUS,
			wire.RunPending, nowUS, wire.RunRunning, grace.Microseconds(), nowUS)
		runs, err := collect(rows, err, func(r scanner) ([2]string, error) {
			var k [2]string
			return k, r.Scan(&k[0], &k[1])
		})
		if err != nil {
			return s.mapErr(err)
		}
		out.Runs = runs
		for _, k := range runs {
			if _, done := out.Generations[k[0]]; done {
				continue
			}
			gen, err := s.bumpGeneration(ctx, tx, k[0])
			if err != nil {
				return err
			}
			out.Generations[k[0]] = gen
		}
		return nil
	})
	if err != nil {
		return store.ExpiredRuns{}, fmt.Errorf("expire run commands: %w", err)
	}
	return out, nil
}
