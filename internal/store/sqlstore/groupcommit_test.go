package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/corralhq/corral/internal/store"
)

// groupStore is a Store with group commit over a real SQLite file, with
// one write connection as the sqlite package opens it.
func groupStore(t testing.TB) *Store { return sqliteStore(t, true) }

func sqliteStore(t testing.TB, group bool) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "g.db")
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	d := Dialect{Name: "sqlite", GroupCommit: group,
		IsUniqueViolation:     func(err error) bool { return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") },
		IsForeignKeyViolation: func(error) bool { return false }}
	s := New(d, db, db)
	t.Cleanup(func() { _ = s.Close() })
	if _, err := db.Exec(`CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)`); err != nil {
		t.Fatal(err)
	}
	return s
}

// Transactions queued together share a commit, each in its own savepoint:
// one that fails leaves nothing of its own and takes nothing of the others
// with it; one whose caller gave up before its turn is not run.
func TestGroupCommitKeepsEachTransactionWhole(t *testing.T) {
	t.Parallel()
	s := groupStore(t)
	ctx := t.Context()
	release, held := holdWriter(t, s, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES ('first', 0)`)
		return err
	})

	const n = 40
	gone, cancel := context.WithCancel(ctx)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := ctx
			if i%11 == 5 {
				c = gone
			}
			errs[i] = s.inTx(c, func(tx *sql.Tx) error {
				k := fmt.Sprint(i)
				if _, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (?, ?)`, k, i); err != nil {
					return err
				}
				if i%7 == 3 {
					// A second row with the same key: the whole
					// function's work must go, its first row too.
					_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (?, ?)`, k, -1)
					return err
				}
				return nil
			})
		})
	}
	testutilEventually(t, func() bool { return len(s.group.background) == n })
	cancel()
	close(release)
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		switch {
		case i%11 == 5:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("transaction %d, given up before its turn: %v, want context.Canceled", i, err)
			}
		case i%7 == 3:
			if !errors.Is(err, store.ErrConflict) {
				t.Errorf("transaction %d, which failed: %v, want ErrConflict", i, err)
			}
		case err != nil:
			t.Errorf("transaction %d: %v", i, err)
		}
	}
	for i := range n {
		var v int
		err := s.read.QueryRowContext(ctx, `SELECT v FROM t WHERE k = ?`, fmt.Sprint(i)).Scan(&v)
		want := i%11 != 5 && i%7 != 3
		if got := err == nil; got != want || (got && v != i) {
			t.Errorf("row %d: present %v (value %d, %v), want present %v", i, got, v, err, want)
		}
	}
	if s.groupsShared() == 0 {
		t.Error("no transactions shared a commit")
	}
}

// A write made for a person waiting (store.Foreground) goes before the
// background writes queued ahead of it.
func TestGroupCommitForegroundFirst(t *testing.T) {
	t.Parallel()
	s := groupStore(t)
	ctx := t.Context()
	release, held := holdWriter(t, s, func(*sql.Tx) error { return nil })

	var mu sync.Mutex
	var order []string
	write := func(ctx context.Context, k string) error {
		return s.inTx(ctx, func(tx *sql.Tx) error {
			mu.Lock()
			order = append(order, k)
			mu.Unlock()
			_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (?, 0)`, k)
			return err
		})
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		wg.Go(func() { errs <- write(ctx, fmt.Sprint("agent-", i)) })
	}
	testutilEventually(t, func() bool { return len(s.group.background) == n })
	wg.Go(func() { errs <- write(store.Foreground(ctx), "person") })
	testutilEventually(t, func() bool { return len(s.group.foreground)+len(s.group.background) == n+1 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if len(order) != n+1 || order[0] != "person" {
		t.Fatalf("order of the writes: %v, want the foreground one (person) first of %d", order, n+1)
	}
}

// holdWriter runs a transaction that waits for release before fn, so the
// next ones queue up behind it, and returns once it holds the writer; held
// gets its outcome.
func holdWriter(t *testing.T, s *Store, fn func(tx *sql.Tx) error) (release chan struct{}, held chan error) {
	release, held = make(chan struct{}), make(chan error, 1)
	go func() {
		held <- s.inTx(t.Context(), func(tx *sql.Tx) error {
			<-release
			return fn(tx)
		})
	}()
	testutilEventually(t, func() bool { return len(s.group.background) == 0 && s.groupBusy() })
	return release, held
}

// A store closed while transactions wait answers them instead of leaving
// them waiting.
func TestGroupCommitAfterClose(t *testing.T) {
	t.Parallel()
	s := groupStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.inTx(t.Context(), func(tx *sql.Tx) error { return nil })
	if err == nil {
		t.Fatal("a transaction after Close succeeded")
	}
}

func testutilEventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *Store) groupBusy() bool     { return s.group.busy.Load() }
func (s *Store) groupsShared() int64 { return s.group.shared.Load() }

// BenchmarkConcurrentWrites: many writers at once, each a small transaction
// (a read and two writes, as an agent's report with its outcome entry), with
// and without group commit. One op is one transaction.
func BenchmarkConcurrentWrites(b *testing.B) {
	for _, group := range []bool{false, true} {
		b.Run(map[bool]string{false: "solo", true: "grouped"}[group], func(b *testing.B) {
			s := sqliteStore(b, group)
			ctx := b.Context()
			var next atomic.Int64
			b.SetParallelism(32) // 64 writers on 2 cores: a burst of reports
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					err := s.inTx(ctx, func(tx *sql.Tx) error {
						var n int
						if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE k = ?`, fmt.Sprint(i-1)).Scan(&n); err != nil {
							return err
						}
						if _, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (?, ?)`, fmt.Sprint(i), i); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, `UPDATE t SET v = v + 1 WHERE k = ?`, fmt.Sprint(i))
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
