package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/corralhq/corral/internal/store"
)

// The activity log is append-only: this file has an insert and a select and
// must never grow an update or a delete of an entry's content (sealing, in
// activitychain.go, sets only an entry's place in the chain; retention's
// purge of the oldest entries has its own contract).

const activityCols = `id, occurred_at, caller_id, caller, caller_type, action, scope, result, status, message,
	correlation_id, source_ip, method, path`

// activityReadCols are activityCols and the entry's place in the chain.
const activityReadCols = activityCols + `, COALESCE(seq, 0), prev_hash, hash`

// activityChunk bounds the bind parameters per INSERT (14 each).
const activityChunk = 200

// AppendActivity inserts all entries in one transaction; a duplicate id
// fails the whole call with ErrConflict.
func (s *Store) AppendActivity(ctx context.Context, entries ...store.ActivityEntry) error {
	if len(entries) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error { return s.appendActivity(ctx, tx, entries) })
	if err != nil {
		return fmt.Errorf("append %d activity entries: %w", len(entries), err)
	}
	return nil
}

// appendActivity inserts entries in tx.
func (s *Store) appendActivity(ctx context.Context, tx *sql.Tx, entries []store.ActivityEntry) error {
	for chunk := range slices.Chunk(entries, activityChunk) {
		args := make([]any, 0, 14*len(chunk))
		for _, e := range chunk {
			args = append(args, e.ID, micros(e.Time), e.CallerID, e.Caller, e.CallerType, e.Action, e.Scope,
				e.Result, e.Status, e.Message, e.CorrelationID, e.SourceIP, e.Method, e.Path)
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO activity (`+activityCols+`) VALUES `+rowMarks(len(chunk), 14), args...); err != nil {
			return err
		}
	}
	return nil
}

func scanActivity(r scanner) (store.ActivityEntry, error) {
	var e store.ActivityEntry
	var at int64
	err := r.Scan(&e.ID, &at, &e.CallerID, &e.Caller, &e.CallerType, &e.Action, &e.Scope, &e.Result, &e.Status,
		&e.Message, &e.CorrelationID, &e.SourceIP, &e.Method, &e.Path, &e.Seq, &e.PrevHash, &e.Hash)
	e.Time = fromMicros(at)
	return e, err
}

// ListActivity orders by id, newest first: ids are time-ordered by contract,
// so paging with Page.After (the last id of the previous page) is a plain
// "id < After". CallerID matches the principal id exactly or the caller's
// display name case-insensitively; Action compares case-insensitively, as
// action names do in role definitions.
func (s *Store) ListActivity(ctx context.Context, f store.ActivityFilter) ([]store.ActivityEntry, error) {
	var w where
	if cond, args := scopeCond("scope", f.ScopePrefix); cond != "" {
		w.add(cond, args...)
	}
	if f.CallerID != "" {
		w.add(`(caller_id = ? OR lower(caller) = lower(?))`, f.CallerID, f.CallerID)
	}
	if prefix, ok := strings.CutSuffix(f.Action, "*"); ok {
		if prefix != "" {
			w.add(`lower(action) LIKE lower(?) || '%' ESCAPE '\'`, escapeLike(prefix))
		}
	} else if f.Action != "" {
		w.add(`lower(action) = lower(?)`, f.Action)
	}
	if f.Result != "" {
		w.add(`result = ?`, f.Result)
	}
	if !f.From.IsZero() {
		w.add(`occurred_at >= ?`, micros(f.From))
	}
	if !f.To.IsZero() {
		w.add(`occurred_at < ?`, micros(f.To))
	}
	order := "DESC"
	if f.Ascending {
		order = "ASC"
	}
	if f.Page.After != "" {
		if f.Ascending {
			w.add(`id > ?`, f.Page.After)
		} else {
			w.add(`id < ?`, f.Page.After)
		}
	}
	rows, err := s.reader(ctx).QueryContext(ctx,
		s.q(`SELECT `+activityReadCols+` FROM activity`+w.String()+` ORDER BY id `+order+` LIMIT ?`), append(w.args, limit(f.Page))...)
	es, err := collect(rows, err, scanActivity)
	if err != nil {
		return nil, fmt.Errorf("list activity: %w", s.mapErr(err))
	}
	return es, nil
}
