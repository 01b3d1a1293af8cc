package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func openCached(t testing.TB) *sql.DB {
	db, err := sql.Open(driverName, filepath.Join(t.TempDir(), "c.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	// Two connections: a query nested in the loop over another runs on the
	// other one (inside a transaction it shares the one connection).
	db.SetMaxOpenConns(2)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := db.Exec(`INSERT INTO t (k, v) VALUES (?, ?)`, i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// nested runs a query and, for each of its rows, the same query again and a
// single-row lookup: the cached statement is busy while its rows are open.
func nested(t *testing.T, q querier) {
	t.Helper()
	const all = `SELECT k, v FROM t WHERE k >= ? ORDER BY k`
	rows, err := q.QueryContext(t.Context(), all, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var k int
		var v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		if k != n || v != fmt.Sprint("v", n) {
			t.Fatalf("row %d = %d %q", n, k, v)
		}
		inner, err := q.QueryContext(t.Context(), all, k)
		if err != nil {
			t.Fatal(err)
		}
		m := 0
		for inner.Next() {
			m++
		}
		inner.Close()
		if m != 5-k {
			t.Fatalf("inner query from %d saw %d rows, want %d", k, m, 5-k)
		}
		var got string
		if err := q.QueryRowContext(t.Context(), `SELECT v FROM t WHERE k = ?`, k).Scan(&got); err != nil || got != v {
			t.Fatalf("lookup %d = %q, %v", k, got, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Fatalf("outer query saw %d rows", n)
	}
}

func TestStatementCacheNestedQueries(t *testing.T) {
	db := openCached(t)
	for range 3 { // the second and third rounds run on cached statements
		nested(t, db)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE t SET v = v WHERE k = ?`, 1); err != nil {
		t.Fatal(err)
	}
	nested(t, tx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// A broken query still reports SQLite's error, and the connection
	// goes on.
	if _, err := db.Exec(`SELECT nope FROM t`); err == nil {
		t.Fatal("a broken query succeeded")
	}
	nested(t, db)
}

func TestStatementCacheIsBounded(t *testing.T) {
	db := openCached(t)
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range maxCachedStatements + 50 {
		var n int
		if err := conn.QueryRowContext(t.Context(), fmt.Sprintf("SELECT count(*) + %d FROM t", i)).Scan(&n); err != nil || n != 5+i {
			t.Fatalf("query %d = %d, %v", i, n, err)
		}
	}
	err = conn.Raw(func(dc any) error {
		if got := len(dc.(*cachingConn).stmts); got != maxCachedStatements {
			return fmt.Errorf("%d statements cached, want the bound %d", got, maxCachedStatements)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPreparedLookup: a primary-key lookup with the statement cache
// and without (the plain driver compiles the statement each time).
func BenchmarkPreparedLookup(b *testing.B) {
	const q = `SELECT k, v FROM t WHERE k = ? AND v IS NOT NULL AND k IN (SELECT k FROM t WHERE k >= 0)`
	for _, name := range []string{driverName, "sqlite"} {
		b.Run(name, func(b *testing.B) {
			db, err := sql.Open(name, filepath.Join(b.TempDir(), "b.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			db.Exec(`CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)`)
			db.Exec(`INSERT INTO t VALUES (1, 'a')`)
			b.ReportAllocs()
			for b.Loop() {
				var k int
				var v string
				if err := db.QueryRow(q, 1).Scan(&k, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A write statement on the writer's connection runs to its end when its
// context ends meanwhile, so the transaction it shares (group commit) keeps
// the other writes in it; SQLite rolls back the whole transaction when the
// driver interrupts a write inside it.
func TestWriterStatementsRunToTheirEnd(t *testing.T) {
	db, err := sql.Open(writerDriverName, filepath.Join(t.TempDir(), "w.db")+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (k INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Another caller's write, earlier in the shared transaction.
	if _, err := tx.Exec(`INSERT INTO t VALUES (-1)`); err != nil {
		t.Fatal(err)
	}
	// A long write whose caller goes away 5 ms in (it takes hundreds).
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(5*time.Millisecond, cancel)
	const rows = 400_000
	if _, err := tx.ExecContext(ctx, `INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT x FROM c`, rows); err != nil {
		t.Fatalf("the write whose context ended: %v, want it run to its end", err)
	}
	if ctx.Err() == nil {
		t.Fatal("the context did not end during the write: make it longer")
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit after it: %v", err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil || n != rows+1 {
		t.Fatalf("%d rows (%v), want the other write and all %d", n, err, rows)
	}
}
