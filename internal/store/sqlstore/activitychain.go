package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/corralhq/corral/internal/store"
)

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
		for _, e := range es {
			seq++
			h := hash(prev, seq, e)
			n, err := s.exec(ctx, tx, `UPDATE activity SET seq = ?, prev_hash = ?, hash = ? WHERE id = ? AND seq IS NULL`, seq, prev, h, e.ID)
			if err != nil {
				return fmt.Errorf("seal entry %s: %w", e.ID, err)
			}
			if n != 1 {
				return fmt.Errorf("seal entry %s: %w", e.ID, store.ErrConflict)
			}
			prev = h
			sealed++
		}
		if sealed == 0 {
			return nil
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
