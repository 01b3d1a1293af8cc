package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/store"
)

// probeFillerBytes is the size of the write probe's row: large enough that
// writing it needs new pages (a full disk shows), small enough to be cheap.
const probeFillerBytes = 16 << 10

// ProbeWrite replaces the one row of write_probe with fresh random filler,
// so that every probe writes new pages rather than rewriting equal ones.
func (s *Store) ProbeWrite(ctx context.Context, at time.Time) error {
	filler := make([]byte, probeFillerBytes)
	_, _ = rand.Read(filler)
	// One statement, an upsert: replicas probing at once never collide
	// (a delete then an insert did, on PostgreSQL, and a failed probe makes
	// the replica refuse every change).
	_, err := s.exec(ctx, s.write, `INSERT INTO write_probe (id, probed_at, filler) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at, filler = excluded.filler`, micros(at), filler)
	if err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	return nil
}

// bootstrapMarker names the marker of first-start bootstrap.
const bootstrapMarker = "bootstrap"

func (s *Store) MarkBootstrapped(ctx context.Context, at time.Time) (bool, error) {
	_, err := s.exec(ctx, s.write, `INSERT INTO server_markers (name, set_at) VALUES (?, ?)`, bootstrapMarker, micros(at))
	switch {
	case err == nil:
		return true, nil
	case isConflict(err):
		return false, nil
	}
	return false, fmt.Errorf("mark bootstrapped: %w", err)
}

func (s *Store) BootstrapUser(ctx context.Context, u store.User, grants []store.RoleAssignment, at time.Time) (bool, error) {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// A failed statement aborts a PostgreSQL transaction: look first,
		// and roll back (errBootstrapped) when the marker is there or a
		// concurrent replica's insert wins.
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM server_markers WHERE name = ?`), bootstrapMarker).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return errBootstrapped
		}
		_, err := s.exec(ctx, tx, `INSERT INTO server_markers (name, set_at) VALUES (?, ?)`, bootstrapMarker, micros(at))
		if isConflict(err) {
			return errBootstrapped
		}
		if err != nil {
			return err
		}
		if err := s.insertUser(ctx, tx, u); err != nil {
			return err
		}
		for _, a := range grants {
			if err := s.insertRoleAssignment(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errBootstrapped) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bootstrap user %q: %w", u.Name, err)
	}
	return true, nil
}

// errBootstrapped rolls back BootstrapUser when the marker is already set.
var errBootstrapped = errors.New("already bootstrapped")

func isConflict(err error) bool { return errors.Is(err, store.ErrConflict) }

// ListActivityBefore returns the oldest sealed entries before before, in
// chain order, stopping at the first entry of the chain that is not before
// it (so that what is purged is always a prefix of the chain). Unsealed
// entries are never returned: they are sealed within seconds.
func (s *Store) ListActivityBefore(ctx context.Context, before time.Time, n int) ([]store.ActivityEntry, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+activityReadCols+` FROM activity
		WHERE seq IS NOT NULL AND occurred_at < ?
		  AND seq < COALESCE((SELECT MIN(seq) FROM activity WHERE seq IS NOT NULL AND occurred_at >= ?), 9223372036854775807)
		ORDER BY seq LIMIT ?`), micros(before), micros(before), limit(store.Page{Limit: n}))
	es, err := collect(rows, err, scanActivity)
	if err != nil {
		return nil, fmt.Errorf("list activity before %s: %w", before.UTC().Format(time.RFC3339), s.mapErr(err))
	}
	return es, nil
}

// PurgeActivity deletes the exported prefix of the chain: the entries up to
// throughID's place in it (all before before, as ListActivityBefore
// returned them), and moves the chain's base to that entry, so the rest
// still verifies.
func (s *Store) PurgeActivity(ctx context.Context, throughID string, before time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var seq int64
		var hash string
		err := tx.QueryRowContext(ctx, s.q(`SELECT seq, hash FROM activity WHERE id = ? AND seq IS NOT NULL AND occurred_at < ?`),
			throughID, micros(before)).Scan(&seq, &hash)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // already purged, or not an exported entry
		}
		if err != nil {
			return s.mapErr(err)
		}
		if n, err = s.exec(ctx, tx, `DELETE FROM activity WHERE seq <= ?`, seq); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE activity_chain SET base_seq = ?, base_hash = ? WHERE id = 1 AND base_seq < ?`, seq, hash, seq)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge activity: %w", err)
	}
	return int(n), nil
}
