// Package sqlstore is the one implementation of store.Store over
// database/sql, shared by the SQLite and PostgreSQL backends. The queries are
// written once, with "?" placeholders, in the SQL both engines understand;
// the few places where they differ (placeholder syntax, reading a key of a
// JSON object, classifying constraint errors) go through a Dialect.
//
// Schema conventions both backends' migrations follow, so that the queries
// here stay portable:
//   - times are BIGINT unix microseconds in UTC (zero time.Time included);
//   - names compared case-insensitively are matched and ordered by lower(col)
//     (ASCII folding in both engines; PostgreSQL text columns use COLLATE "C"
//     so ordering is bytewise, as in SQLite);
//   - tags are a JSON object of strings, string lists are JSON arrays;
//   - opaque documents (machine properties, agent configuration) are bytes
//     stored verbatim (BLOB / bytea), nil as NULL.
//
// Maps and slices always come back non-nil (empty when nothing is stored).
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/store"
)

// Dialect holds what differs between the SQL engines.
type Dialect struct {
	// Name identifies the engine in error messages ("sqlite", "postgres").
	Name string
	// NumberedPlaceholders rewrites "?" to "$1", "$2", ... (PostgreSQL).
	NumberedPlaceholders bool
	// TagValue returns an SQL expression that yields the text value of the
	// key bound by the placeholder keyParam in the JSON object column col,
	// or NULL when the key is absent. Keys are bound, never spliced, so any
	// key is safe.
	TagValue func(col, keyParam string) string
	// IsUniqueViolation reports a unique or primary-key constraint error.
	IsUniqueViolation func(error) bool
	// IsForeignKeyViolation reports a foreign-key constraint error.
	IsForeignKeyViolation func(error) bool
	// IsStorageFull reports that the engine has no space left to write.
	IsStorageFull func(error) bool
	// IsUnavailable reports that the engine could not be reached or the
	// connection to it was lost (a server stopped or restarting); nil:
	// never (an embedded engine).
	IsUnavailable func(error) bool
	// IsDataError reports a value the engine refuses to store as given
	// (PostgreSQL's class 22, data exceptions); nil: never.
	IsDataError func(error) bool
	// LockRows is the clause that locks the rows a SELECT returns for an
	// update of them (PostgreSQL: "FOR NO KEY UPDATE"), for transactions
	// that must take several rows' locks in one order; "" for an engine
	// with a single writer, where no two transactions wait on each other.
	LockRows string
	// GroupCommit: the engine has one writer, so write transactions that
	// arrive together run in one transaction with one commit (SQLite; see
	// groupcommit.go).
	GroupCommit bool
}

// Store implements store.Store. Reads go to the read pool, every write (and
// every transaction, including its reads) to the write pool: SQLite gives the
// write pool a single connection so writers queue in Go instead of failing
// with SQLITE_BUSY; PostgreSQL passes the same pool twice.
type Store struct {
	d     Dialect
	read  *sql.DB
	write *sql.DB
	// group is the write transactions waiting for the group committer
	// (Dialect.GroupCommit).
	group *committer
}

var _ store.Store = (*Store)(nil)

// New returns a Store over migrated databases. The Store owns both pools and
// closes them in Close; read and write may be the same *sql.DB.
func New(d Dialect, read, write *sql.DB) *Store {
	s := &Store{d: d, read: read, write: write}
	if d.GroupCommit {
		s.group = newCommitter(s)
	}
	return s
}

// Ping checks both pools; an engine that cannot be reached is
// ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", s.d.Name, s.mapErr(err))
	}
	if s.read != s.write {
		if err := s.read.PingContext(ctx); err != nil {
			return fmt.Errorf("ping %s: %w", s.d.Name, s.mapErr(err))
		}
	}
	return nil
}

// Close closes both pools; later calls fail with database/sql's "database is
// closed".
func (s *Store) Close() error {
	if s.group != nil {
		s.group.stop()
	}
	err := s.write.Close()
	if s.read != s.write {
		err = errors.Join(err, s.read.Close())
	}
	if err != nil {
		return fmt.Errorf("close %s: %w", s.d.Name, err)
	}
	return nil
}

// q adapts a query written with "?" placeholders to the dialect. "?" inside
// single-quoted literals is left alone.
func (s *Store) q(query string) string {
	if !s.d.NumberedPlaceholders {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n, quoted := 0, false
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// snapshotKey carries a Snapshot's transaction in a context.
type snapshotKey struct{}

type snapshot struct {
	s  *Store // whose snapshot: another Store's reads are not in it
	tx *sql.Tx
}

// Snapshot implements store.Store: a read-only transaction on the read pool
// (PostgreSQL: REPEATABLE READ, so every query sees the transaction's first
// snapshot; SQLite: a deferred read transaction, which keeps the WAL
// snapshot its first read took).
func (s *Store) Snapshot(ctx context.Context, fn func(ctx context.Context) error) error {
	if sn, ok := ctx.Value(snapshotKey{}).(*snapshot); ok && sn.s == s {
		return fn(ctx)
	}
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return fmt.Errorf("begin snapshot: %w", s.mapErr(err))
	}
	// Nothing to commit: the end of a read-only transaction either way.
	defer func() { _ = tx.Rollback() }()
	// The reads are not watched one by one for ctx (the driver starts a
	// goroutine per statement to interrupt it): the transaction is, and
	// ends when ctx does, failing the reads after it.
	return fn(context.WithValue(context.WithoutCancel(ctx), snapshotKey{}, &snapshot{s: s, tx: tx}))
}

// reader is where a read made with ctx goes: the snapshot ctx carries, or
// the read pool.
func (s *Store) reader(ctx context.Context) querier {
	if sn, ok := ctx.Value(snapshotKey{}).(*snapshot); ok && sn.s == s {
		return sn.tx
	}
	return s.read
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn in a write transaction, committing when it returns nil.
// fn's changes are committed or none is; with group commit, fn may share
// its transaction with others (each in its own savepoint) and then runs to
// its end once begun, even if ctx is cancelled meanwhile.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if s.group != nil {
		return s.group.run(ctx, fn)
	}
	return s.soloTx(ctx, fn)
}

// soloTx runs fn in a transaction of its own.
func (s *Store) soloTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", s.mapErr(err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return s.mapErr(err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", s.mapErr(err))
	}
	return nil
}

// exec runs a statement and returns the number of rows it affected.
func (s *Store) exec(ctx context.Context, db querier, query string, args ...any) (int64, error) {
	res, err := db.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return 0, s.mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("rows affected: %w", err)
	}
	return n, nil
}

// mapErr turns driver errors into the store's sentinels, keeping the
// original in the chain: sql.ErrNoRows is ErrNotFound, a unique violation is
// ErrConflict, a foreign-key violation (a missing parent) is ErrNotFound, a
// full disk ErrFull, a lost or refused connection ErrUnavailable and a value
// the engine cannot keep ErrInvalidData.
// Callers that know better (a delete blocked by children) check first. An
// error already carrying a sentinel is returned as is.
func (s *Store) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotEmpty),
		errors.Is(err, store.ErrFull), errors.Is(err, store.ErrInvalidData), errors.Is(err, store.ErrUnavailable):
		return err
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case s.d.IsUniqueViolation(err):
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case s.d.IsForeignKeyViolation(err):
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case s.d.IsStorageFull != nil && s.d.IsStorageFull(err):
		return fmt.Errorf("%w: %w", store.ErrFull, err)
	case s.d.IsUnavailable != nil && s.d.IsUnavailable(err):
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	case s.d.IsDataError != nil && s.d.IsDataError(err):
		return fmt.Errorf("%w: %w", store.ErrInvalidData, err)
	}
	return err
}

// affected1 turns "no row matched" into ErrNotFound.
func affected1(n int64, err error) error {
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// limit applies the Page defaults: store.DefaultPageSize for none, at most
// store.MaxStoreLimit (a full API page and the one more item that tells
// whether another follows).
func limit(p store.Page) int {
	switch {
	case p.Limit <= 0:
		return store.DefaultPageSize
	case p.Limit > store.MaxStoreLimit:
		return store.MaxStoreLimit
	}
	return p.Limit
}

// micros encodes a time for storage: unix microseconds, so precision is kept
// well below the millisecond and the zero time survives a round trip.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros decodes a stored time, always in UTC.
func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// encodeTags stores nil and empty maps alike as "{}".
func encodeTags(tags map[string]string) (string, error) {
	if len(tags) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(tags)
	if err != nil {
		return "", fmt.Errorf("encode tags: %w", err)
	}
	return string(b), nil
}

// decodeTags returns a non-nil map.
func decodeTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	if s == "" {
		return tags, nil
	}
	if err := json.Unmarshal([]byte(s), &tags); err != nil {
		return nil, fmt.Errorf("decode tags: %w", err)
	}
	return tags, nil
}

// encodeList stores nil and empty lists alike as "[]".
func encodeList(l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("encode list: %w", err)
	}
	return string(b), nil
}

// decodeList returns a non-nil slice.
func decodeList(s string) ([]string, error) {
	l := []string{}
	if s == "" {
		return l, nil
	}
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decode list: %w", err)
	}
	return l, nil
}

// escapeLike escapes LIKE metacharacters for use with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// scopeCond matches col against a scope and everything below it, by whole
// path segments and case-insensitively: "/subscriptions/a" matches
// "/subscriptions/A/resourceGroups/x" but not "/subscriptions/ab". It returns
// "" when prefix selects everything ("" or "/").
func scopeCond(col, prefix string) (string, []any) {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return "", nil
	}
	return "(lower(" + col + ") = lower(?) OR lower(" + col + `) LIKE lower(?) || '/%' ESCAPE '\')`,
		[]any{prefix, escapeLike(prefix)}
}

// where joins conditions with AND.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// collect reads every row with scan.
func collect[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
