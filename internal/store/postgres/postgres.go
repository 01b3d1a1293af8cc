// Package postgres opens Corral's scale-out store: PostgreSQL through pgx's
// database/sql adapter, migrated with goose, queried through the shared
// sqlstore implementation. Several server replicas may share one database;
// migrations take goose's PostgreSQL session lock so replicas starting
// together apply them once.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// SQLSTATE codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
	diskFull            = "53100"
	dataExceptionClass  = "22"
	// Class 08 (connection exception) and the server going away:
	// admin_shutdown, crash_shutdown, cannot_connect_now (starting up or
	// shutting down).
	connectionExceptionClass = "08"
	adminShutdown            = "57P01"
	crashShutdown            = "57P02"
	cannotConnectNow         = "57P03"
)

// Dialect is PostgreSQL's side of the shared queries.
var Dialect = sqlstore.Dialect{
	Name:                 "postgres",
	NumberedPlaceholders: true,
	// The cast picks jsonb ->> text (a key) over jsonb ->> int (an index).
	TagValue: func(col, keyParam string) string {
		return "(" + col + " ->> CAST(" + keyParam + " AS TEXT))"
	},
	IsUniqueViolation:     func(err error) bool { return sqlState(err) == uniqueViolation },
	IsForeignKeyViolation: func(err error) bool { return sqlState(err) == foreignKeyViolation },
	IsStorageFull:         func(err error) bool { return sqlState(err) == diskFull },
	IsUnavailable:         isUnavailable,
	// Class 22, e.g. 22021 for a NUL byte in text, 22P05 for \u0000 in
	// jsonb: the same value fails the same way every time.
	IsDataError: func(err error) bool { return strings.HasPrefix(sqlState(err), dataExceptionClass) },
	// Not FOR UPDATE: rows of other tables that reference the locked ones
	// can still be inserted meanwhile (they take KEY SHARE).
	LockRows: "FOR NO KEY UPDATE",
}

// isUnavailable reports that PostgreSQL could not be reached or the session
// was lost: a failed connect (refused, timed out, the server starting or
// stopping), a session ended by the server (SQLSTATE 08..., 57P01-57P03),
// or a connection that broke mid-query (pgx reports a network error, an
// unexpected EOF or "conn closed"; database/sql's ErrBadConn when it gave up
// retrying, ErrConnDone for a transaction whose connection is gone).
func isUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	var ne *net.OpError
	switch code := sqlState(err); {
	case code != "":
		return strings.HasPrefix(code, connectionExceptionClass) || code == adminShutdown || code == crashShutdown || code == cannotConnectNow
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, sql.ErrConnDone):
		return true
	}
	return false
}

func sqlState(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// DefaultMaxConns is the size of a store's connection pool unless the DSN's
// pool_max_conns says otherwise.
const DefaultMaxConns = 32

// Open connects with a pgx DSN (postgres://user@host:port/db?sslmode=...;
// extra query parameters such as search_path become session settings) and
// applies pending migrations. pool_max_conns (pgx's name for it) sizes the
// connection pool, DefaultMaxConns by default: with several replicas their
// pools together must fit in the server's max_connections.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	cfg, err := pgx.ParseConfig(dsn) // its errors redact the password
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	maxConns, err := poolSize(cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(min(8, maxConns))
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open postgres %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
	}
	if err := migrate(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open postgres %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
	}
	return sqlstore.New(Dialect, db, db), nil
}

// poolSize takes pool_max_conns out of the session settings (PostgreSQL
// would refuse it as an unknown parameter) and returns the pool size.
func poolSize(cfg *pgx.ConnConfig) (int, error) {
	v, ok := cfg.RuntimeParams["pool_max_conns"]
	if !ok {
		return DefaultMaxConns, nil
	}
	delete(cfg.RuntimeParams, "pool_max_conns")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, fmt.Errorf("pool_max_conns=%q in the store DSN must be a number from 1 to 10000", v)
	}
	return n, nil
}

// migrate brings the schema up to date under a session-level advisory lock.
// The lock id is derived from the schema the DSN's search_path selects, so
// replicas sharing a schema serialize while stores in different schemas (one
// per test) do not wait for each other.
func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("current schema: %w", err)
	}
	if !schema.Valid {
		return errors.New("no schema to migrate: the search_path names no existing schema")
	}
	h := fnv.New64a()
	h.Write([]byte("corral-migrations/" + schema.String))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64()>>1)),
		lock.WithLockTimeout(1, 300), // probe every second for up to 5 minutes
	)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
