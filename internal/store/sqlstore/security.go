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
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM write_probe WHERE id = 1`); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO write_probe (id, probed_at, filler) VALUES (1, ?, ?)`, micros(at), filler)
		return err
	})
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

// ListActivityBefore returns the oldest entries before before, oldest first.
func (s *Store) ListActivityBefore(ctx context.Context, before time.Time, n int) ([]store.ActivityEntry, error) {
	rows, err := s.read.QueryContext(ctx, s.q(`SELECT `+activityCols+` FROM activity WHERE occurred_at < ?
		ORDER BY id LIMIT ?`), micros(before), limit(store.Page{Limit: n}))
	es, err := collect(rows, err, scanActivity)
	if err != nil {
		return nil, fmt.Errorf("list activity before %s: %w", before.UTC().Format(time.RFC3339), s.mapErr(err))
	}
	return es, nil
}

// PurgeActivity deletes the exported prefix of the log: ids up to throughID
// and times before before.
func (s *Store) PurgeActivity(ctx context.Context, throughID string, before time.Time) (int, error) {
	n, err := s.exec(ctx, s.write, `DELETE FROM activity WHERE id <= ? AND occurred_at < ?`, throughID, micros(before))
	if err != nil {
		return 0, fmt.Errorf("purge activity: %w", err)
	}
	return int(n), nil
}
