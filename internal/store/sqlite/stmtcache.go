package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"modernc.org/sqlite"
)

// The store's queries are a fixed set of texts, run over and over; SQLite
// spends more time compiling a statement than running these (at 10,000
// agents fetching their desired state, parsing and planning were over a
// third of the server's CPU). Each connection of the pools therefore keeps
// its statements prepared, by text, the first time they run.
//
// The cache lives in a thin layer over the driver's connection, so it
// serves transactions and plain queries alike. database/sql never uses one
// connection from two goroutines at once; a statement whose rows are still
// open on its connection (a query repeated inside the loop over its own
// results) is run uncached.
const driverName = "sqlite-stmtcache"

// writerDriverName is driverName for the one write connection, whose
// statements also run to their end whatever their context: group commit
// (sqlstore) runs the writes of many callers in one transaction, and SQLite
// rolls back the whole transaction when a write statement in it is
// interrupted, which the driver does when the statement's context ends. One
// caller going away mid-statement failed every other caller of its group.
// A write is short, and group commit already runs a caller's function to
// its end once begun; reads stay interruptible.
const writerDriverName = "sqlite-stmtcache-writer"

// maxCachedStatements bounds the statements one connection keeps; past it,
// queries run as before (compiled each time). The store has a few hundred
// distinct texts.
const maxCachedStatements = 512

func init() {
	sql.Register(driverName, cachingDriver{})
	sql.Register(writerDriverName, cachingDriver{uninterruptible: true})
}

type cachingDriver struct{ uninterruptible bool }

func (d cachingDriver) Open(name string) (driver.Conn, error) {
	c, err := (&sqlite.Driver{}).Open(name)
	if err != nil {
		return nil, err
	}
	inner, ok := c.(innerConn)
	if !ok {
		c.Close()
		return nil, errors.New("sqlite driver connection lacks the context interfaces")
	}
	return &cachingConn{innerConn: inner, stmts: map[string]*cachedStmt{}, uninterruptible: d.uninterruptible}, nil
}

// innerConn is what the driver's connection offers and the cache forwards.
type innerConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type cachingConn struct {
	innerConn
	stmts map[string]*cachedStmt
	// uninterruptible: statements ignore the end of their context.
	uninterruptible bool
}

// statementContext is ctx as a statement of c runs under.
func (c *cachingConn) statementContext(ctx context.Context) context.Context {
	if c.uninterruptible {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

type cachedStmt struct {
	st   driver.Stmt
	busy bool // its rows are open
}

// stmt returns the prepared statement for query, or nil to run it uncached.
func (c *cachingConn) stmt(ctx context.Context, query string) *cachedStmt {
	if cs := c.stmts[query]; cs != nil {
		if cs.busy {
			return nil
		}
		return cs
	}
	if len(c.stmts) >= maxCachedStatements {
		return nil
	}
	st, err := c.innerConn.PrepareContext(ctx, query)
	if err != nil {
		return nil // the uncached run reports the error
	}
	if _, ok := st.(driver.StmtQueryContext); !ok {
		st.Close()
		return nil
	}
	if _, ok := st.(driver.StmtExecContext); !ok {
		st.Close()
		return nil
	}
	cs := &cachedStmt{st: st}
	c.stmts[query] = cs
	return cs
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ctx = c.statementContext(ctx)
	if cs := c.stmt(ctx, query); cs != nil {
		return cs.st.(driver.StmtExecContext).ExecContext(ctx, args)
	}
	return c.innerConn.ExecContext(ctx, query, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	ctx = c.statementContext(ctx)
	cs := c.stmt(ctx, query)
	if cs == nil {
		return c.innerConn.QueryContext(ctx, query, args)
	}
	rows, err := cs.st.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	cs.busy = true
	return &cachedRows{Rows: rows, cs: cs}, nil
}

func (c *cachingConn) Close() error {
	var errs []error
	for q, cs := range c.stmts {
		errs = append(errs, cs.st.Close())
		delete(c.stmts, q)
	}
	errs = append(errs, c.innerConn.Close())
	return errors.Join(errs...)
}

// cachedRows frees its statement for the next run when closed.
type cachedRows struct {
	driver.Rows
	cs *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.cs.busy = false
	return err
}
