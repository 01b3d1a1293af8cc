package capability

import (
	"context"
	"errors"
	"runtime"
	"sync"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Desired states are assembled in batches. After a fleet-wide change every
// agent asks at once; one snapshot and a dozen queries per agent were a
// fifth of the server's CPU and kept the store's read connections busy
// (a bulk operation's own reads waited behind them). An agent's request
// joins the queue; up to maxAssemblers requests at a time lead: each takes
// up to maxBatch waiting machines and assembles them together, until its
// own is answered (then another goroutine carries on if some still wait).
// Alone, a request is assembled at once, as before.

// maxBatch bounds the machines of one batch.
const maxBatch = 64

// maxAssemblers bounds the batches assembled at once: each is CPU work on
// one read transaction.
var maxAssemblers = max(2, runtime.GOMAXPROCS(0))

type batcher struct {
	mu      sync.Mutex
	queue   []*desiredWait
	leaders int
}

type desiredWait struct {
	m    store.Machine
	ds   wire.DesiredState
	err  error
	done chan struct{}
}

// DesiredState assembles what the agent of m should reconcile toward (see
// DesiredStates), together with the machines whose agents ask at the same
// time. m is the machine as read when its agent authenticated.
func (r *Registry) DesiredState(ctx context.Context, m store.Machine) (wire.DesiredState, error) {
	w := &desiredWait{m: m, done: make(chan struct{})}
	b := &r.batches
	b.mu.Lock()
	b.queue = append(b.queue, w)
	lead := b.leaders < maxAssemblers
	if lead {
		b.leaders++
	}
	b.mu.Unlock()
	if lead {
		// The batches go on if this caller goes away: others wait on them.
		r.assemble(context.WithoutCancel(ctx), w)
	}
	select {
	case <-w.done:
		return w.ds, w.err
	case <-ctx.Done():
		return wire.DesiredState{}, ctx.Err()
	}
}

// assemble answers batches of the queue until own is answered or the queue
// is empty; if machines still wait then, a new goroutine takes over the
// leader's place (own nil: until the queue is empty).
func (r *Registry) assemble(ctx context.Context, own *desiredWait) {
	b := &r.batches
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.leaders--
			b.mu.Unlock()
			return
		}
		n := min(len(b.queue), maxBatch)
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()
		r.answer(ctx, batch)
		if own == nil {
			continue
		}
		select {
		case <-own.done:
			go r.assemble(ctx, nil)
			return
		default:
		}
	}
}

// answer assembles batch and answers each waiter. A batch that fails is
// assembled again machine by machine, so one machine's bad row fails only
// its own desired state; not when the store is out of reach, which would
// fail each of them again.
func (r *Registry) answer(ctx context.Context, batch []*desiredWait) {
	ms := make([]store.Machine, len(batch))
	for i, w := range batch {
		ms[i] = w.m
	}
	dss, err := r.DesiredStates(ctx, ms)
	for i, w := range batch {
		switch {
		case err == nil:
			w.ds = dss[i]
		case len(batch) == 1, errors.Is(err, store.ErrUnavailable):
			w.err = err
		default:
			one, err := r.DesiredStates(ctx, ms[i:i+1])
			if err != nil {
				w.err = err
			} else {
				w.ds = one[0]
			}
		}
		close(w.done)
	}
}
