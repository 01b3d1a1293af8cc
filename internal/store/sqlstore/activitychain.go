package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/corralhq/corral/internal/store"
)

// sealChunk bounds the entries one statement seals (4 bind parameters
// each).
const sealChunk = 500

// SealActivity seals the oldest unsealed entries into the chain. The first
// statement updates the head row, which locks it until the transaction
// ends (PostgreSQL; SQLite has one writer anyway): a sealer on another
// replica waits, then finds these entries sealed.
func (s *Store) SealActivity(ctx context.Context, limit int, hash func(prev string, seq int64, e store.ActivityEntry) string) (int, error) {
	limit = min(max(limit, 1), store.MaxPageSize*10)
	sealed := 0
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		sealed = 0
		var seq int64
		var prev string
		if err := tx.QueryRowContext(ctx, s.q(`UPDATE activity_chain SET head_seq = head_seq WHERE id = 1 RETURNING head_seq, head_hash`)).
			Scan(&seq, &prev); err != nil {
			return fmt.Errorf("lock the chain head: %w", s.mapErr(err))
		}
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+activityReadCols+` FROM activity WHERE seq IS NULL ORDER BY id LIMIT ?`), limit)
		es, err := collect(rows, err, scanActivity)
		if err != nil {
			return fmt.Errorf("read unsealed entries: %w", s.mapErr(err))
		}
		if len(es) == 0 {
			return nil
		}
		// One statement per chunk: thousands of entries a second arrive
		// when every agent reports at once, and a statement each held the
		// one writer (SQLite) or cost a round trip (PostgreSQL) per entry.
		// The unary + keeps SQLite's planner (no statistics) from walking
		// every unsealed entry and scanning the list for each.
		for chunk := range slices.Chunk(es, sealChunk) {
			args := make([]any, 0, 4*len(chunk))
			for _, e := range chunk {
				seq++
				h := hash(prev, seq, e)
				args = append(args, e.ID, seq, prev, h)
				prev = h
			}
			n, err := s.exec(ctx, tx, `WITH sl (sl_id, sl_seq, sl_prev, sl_hash) AS (VALUES `+rowsOf(len(chunk), "?, CAST(? AS BIGINT), ?, ?")+`)
				UPDATE activity SET seq = sl.sl_seq, prev_hash = sl.sl_prev, hash = sl.sl_hash
				FROM sl WHERE activity.id = sl.sl_id AND +activity.seq IS NULL`, args...)
			if err != nil {
				return fmt.Errorf("seal entries %s to %s: %w", chunk[0].ID, chunk[len(chunk)-1].ID, err)
			}
			if n != int64(len(chunk)) {
				return fmt.Errorf("seal entries %s to %s: %d of %d were sealed meanwhile: %w", chunk[0].ID, chunk[len(chunk)-1].ID,
					int64(len(chunk))-n, len(chunk), store.ErrConflict)
			}
			sealed += len(chunk)
		}
		_, err = s.exec(ctx, tx, `UPDATE activity_chain SET head_seq = ?, head_hash = ? WHERE id = 1`, seq, prev)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("seal activity: %w", err)
	}
	return sealed, nil
}

// ActivityChain returns the chain's base and head.
func (s *Store) ActivityChain(ctx context.Context) (base, head store.ChainLink, err error) {
	err = s.reader(ctx).QueryRowContext(ctx, `SELECT base_seq, base_hash, head_seq, head_hash FROM activity_chain WHERE id = 1`).
		Scan(&base.Seq, &base.Hash, &head.Seq, &head.Hash)
	if err != nil {
		return base, head, fmt.Errorf("read the activity chain: %w", s.mapErr(err))
	}
	return base, head, nil
}

// ListActivityChain lists sealed entries after afterSeq in Seq order.
func (s *Store) ListActivityChain(ctx context.Context, afterSeq int64, n int) ([]store.ActivityEntry, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+activityReadCols+` FROM activity WHERE seq > ? ORDER BY seq LIMIT ?`),
		afterSeq, limit(store.Page{Limit: n}))
	es, err := collect(rows, err, scanActivity)
	if err != nil {
		return nil, fmt.Errorf("list the activity chain: %w", s.mapErr(err))
	}
	return es, nil
}
