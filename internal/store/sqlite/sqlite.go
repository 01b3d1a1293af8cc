// Package sqlite opens Corral's embedded store: one SQLite file in WAL mode,
// driven by the pure-Go modernc.org/sqlite (no C toolchain), migrated with
// goose, queried through the shared sqlstore implementation.
//
// SQLite allows one writer at a time. Instead of letting concurrent writers
// collide and retry on SQLITE_BUSY, the store keeps two pools: a write pool of
// exactly one connection (writers queue in database/sql, and transactions
// begin IMMEDIATE so a read-then-write transaction never has to upgrade its
// lock) and a read-only pool that WAL lets run alongside it.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeoutMillis bounds how long a connection waits for a lock held by
// another process (a backup, the sqlite3 shell) before failing.
const busyTimeoutMillis = 5000

// Dialect is SQLite's side of the shared queries.
var Dialect = sqlstore.Dialect{
	Name: "sqlite",
	// One writer: write transactions that arrive together share a commit.
	GroupCommit: true,
	// json_each matches the key literally; a JSON path built from the key
	// would misread keys holding '.' or '"'.
	TagValue: func(col, keyParam string) string {
		return "(SELECT value FROM json_each(" + col + ") WHERE key = " + keyParam + ")"
	},
	IsUniqueViolation: func(err error) bool {
		code, ok := errorCode(err)
		return ok && (code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},
	IsForeignKeyViolation: func(err error) bool {
		code, ok := errorCode(err)
		return ok && code == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	},
	// SQLITE_FULL, or an I/O error whose cause is a full disk (the primary
	// code is the low byte of an extended code).
	IsStorageFull: func(err error) bool {
		code, ok := errorCode(err)
		return ok && code&0xff == sqlite3.SQLITE_FULL || errors.Is(err, syscall.ENOSPC)
	},
}

func errorCode(err error) (int, bool) {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}

// Open opens (creating if needed) the database file at path and applies
// pending migrations. path is a file name, not a URI; in-memory databases are
// refused because the read and write pools would each see their own.
func Open(ctx context.Context, path string) (store.Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite %q: want a plain file path (no URI, query or in-memory database)", path)
	}
	// The store holds password hashes, sealed settings and the activity
	// log: owner-only, and SQLite gives its -wal and -shm files the mode of
	// the database file. A file made by an older version is tightened too.
	if err := privateFile(path); err != nil {
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	pragmas := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)", busyTimeoutMillis)

	// The writer's temporary files stay in memory: group commit
	// (sqlstore) runs each transaction in a savepoint, and SQLite copies
	// every page a savepoint first changes to a sub-journal, by default a
	// temporary file (a pwrite per page, on the one writer's path).
	// Its statements run to their end whatever their context
	// (writerDriverName).
	write, err := sql.Open(writerDriverName, path+"?"+pragmas+"&_pragma=journal_mode(WAL)&_pragma=temp_store(MEMORY)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)
	if err := migrate(ctx, write); err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}

	// journal_mode is persistent: the write pool has switched the file to WAL.
	read, err := sql.Open(driverName, path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	if err := read.PingContext(ctx); err != nil {
		_ = write.Close()
		_ = read.Close()
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	return sqlstore.New(Dialect, read, write), nil
}

// privateFile creates path with mode 0600 if it is missing and makes an
// existing file (and its -wal and -shm companions) 0600.
func privateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// migrate brings the schema up to date.
func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
