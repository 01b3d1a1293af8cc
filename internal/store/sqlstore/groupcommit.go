package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/corralhq/corral/internal/store"
)

// Group commit, for an engine with one writer (SQLite). Every write
// transaction queues for the one write connection; under load (thousands of
// agents reporting at once) each one's BEGIN and COMMIT, and the commit's
// WAL writes of the same hot pages, were most of the writer's time, and the
// writer was the bottleneck. The committer takes the transactions waiting
// together and runs them in one transaction, each in a savepoint of its
// own: a function that fails is rolled back to its savepoint and the others
// commit; one commit writes the pages they share once.
//
// What a caller sees does not change: its function's changes are committed
// when inTx returns nil, and none are when it returns an error. An error
// that ends the shared transaction itself (a full disk, an I/O error, a
// statement interrupted because its caller's context ended: SQLite rolls
// the transaction back) or a failed commit is the error of every function
// in the group. A transaction alone in the queue runs as before (soloTx).

// Two queues: transactions made for a person waiting (store.Foreground:
// API calls by users and service principals) go before the background
// ones (agents' reports, sweeps) queued meanwhile; without that, a bulk
// change of 10,000 machines wrote each of its chunks behind the reports
// of the machines the chunks before had changed (~15 groups each).

// maxGroup bounds the transactions one commit takes.
const maxGroup = 64

type txRequest struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	done chan error
}

type committer struct {
	s *Store
	// foreground and background hold the transactions waiting for their
	// turn; a group takes the foreground ones first.
	foreground, background chan *txRequest
	// mu guards closed: no transaction is queued once it is set.
	mu     sync.RWMutex
	closed bool
	quit   chan struct{}
	wg     sync.WaitGroup
	// busy is set while a group runs; shared counts the groups of more
	// than one transaction (for tests).
	busy   atomic.Bool
	shared atomic.Int64
}

func newCommitter(s *Store) *committer {
	c := &committer{s: s, foreground: make(chan *txRequest, maxGroup), background: make(chan *txRequest, maxGroup),
		quit: make(chan struct{})}
	c.wg.Go(c.loop)
	return c
}

// errStoreClosed answers transactions that arrive after Close.
var errStoreClosed = errors.New("the store is closed")

// run queues fn and waits for its outcome. A caller whose ctx ends while it
// waits for room in the queue gives up; once queued, it waits for its
// group's commit (its function then runs even if ctx ends).
func (c *committer) run(ctx context.Context, fn func(tx *sql.Tx) error) error {
	req := &txRequest{ctx: ctx, fn: fn, done: make(chan error, 1)}
	queue := c.background
	if store.IsForeground(ctx) {
		queue = c.foreground
	}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return fmt.Errorf("begin transaction: %w", errStoreClosed)
	}
	select {
	case queue <- req:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return fmt.Errorf("begin transaction: %w", ctx.Err())
	}
	return <-req.done
}

// stop answers the transactions still queued and ends the loop.
func (c *committer) stop() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	close(c.quit)
	c.wg.Wait()
}

func (c *committer) loop() {
	for {
		req := c.next()
		if req == nil {
			select {
			case req = <-c.foreground:
			case req = <-c.background:
			case <-c.quit:
				c.refuseQueued()
				return
			}
		}
		group := []*txRequest{req}
		for len(group) < maxGroup {
			req := c.next()
			if req == nil {
				break
			}
			group = append(group, req)
		}
		c.busy.Store(true)
		c.commit(group)
		c.busy.Store(false)
	}
}

// next returns a queued transaction without waiting, a foreground one if
// any, or nil.
func (c *committer) next() *txRequest {
	select {
	case req := <-c.foreground:
		return req
	default:
	}
	select {
	case req := <-c.foreground:
		return req
	case req := <-c.background:
		return req
	default:
		return nil
	}
}

// refuseQueued answers the transactions still queued once the store closes.
func (c *committer) refuseQueued() {
	for req := c.next(); req != nil; req = c.next() {
		req.done <- fmt.Errorf("begin transaction: %w", errStoreClosed)
	}
}

// commit runs group and answers each request.
func (c *committer) commit(group []*txRequest) {
	if len(group) == 1 {
		group[0].done <- c.s.soloTx(group[0].ctx, group[0].fn)
		return
	}
	c.shared.Add(1)
	errs := make([]error, len(group))
	err := c.runShared(group, errs)
	for i, req := range group {
		if errs[i] == nil {
			errs[i] = err
		}
		req.done <- errs[i]
	}
}

// runShared runs the requests of group that are still wanted in one
// transaction, setting errs[i] for a function that failed or a request
// given up; the error it returns is that of every other request (nil when
// they committed).
func (c *committer) runShared(group []*txRequest, errs []error) error {
	s := c.s
	tx, err := s.write.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", s.mapErr(err))
	}
	ran := 0
	for i, req := range group {
		if err := req.ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("begin transaction: %w", err)
			continue
		}
		// The savepoint stays until the commit (releasing it would be one
		// more statement per function): ROLLBACK TO goes back to the
		// newest of the name, this function's.
		if _, err := tx.ExecContext(context.WithoutCancel(req.ctx), "SAVEPOINT grouped"); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("begin transaction: %w", s.mapErr(err))
		}
		ferr := req.fn(tx)
		if ferr == nil {
			ran++
			continue
		}
		errs[i] = s.mapErr(ferr)
		if _, err := tx.ExecContext(context.WithoutCancel(req.ctx), "ROLLBACK TO grouped"); err != nil {
			// The engine ended the transaction (SQLite does on a full
			// disk or an I/O error; the sqlite package's writer runs
			// statements to their end even when their caller's context
			// ends, as an interrupted write would end it too): nothing
			// of it stays.
			_ = tx.Rollback()
			return fmt.Errorf("the transaction this write shared was rolled back: %w", errs[i])
		}
	}
	if ran == 0 {
		_ = tx.Rollback()
		return nil
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", s.mapErr(err))
	}
	return nil
}
