// Package batch answers concurrent calls together. After a fleet-wide
// change every agent asks at once, and a store query's fixed cost (the
// driver, a statement, a read transaction) dwarfs the cost of one more row:
// answering the callers that wait at the same time with one query each
// batch is what keeps the server's CPU for the work itself.
//
// A caller joins the queue; up to Leaders callers at a time lead: each takes
// up to Max waiting keys and answers them together, until its own key is
// answered (then a new goroutine carries on if some still wait). Alone, a
// call is answered at once, as if unbatched: batches form only while
// earlier ones are being answered.
package batch

import (
	"context"
	"runtime"
	"sync"
)

// DefaultLeaders is the usual Queue.Leaders: a batch is CPU work (and,
// usually, a store connection), so about one per core.
var DefaultLeaders = max(2, runtime.GOMAXPROCS(0))

// Queue answers calls of Do in batches. Its fields are set before first use.
type Queue[K, V any] struct {
	// Max bounds the keys of one batch, Leaders the batches answered at
	// once (each is CPU work and, usually, a store connection; 0:
	// DefaultLeaders).
	Max, Leaders int
	// Do answers keys: one value per key, in order. When it fails and
	// the batch has more than one key, each key is answered alone (so one
	// key's bad row fails only its caller), unless Shared says the error
	// would fail every one alike (the store out of reach).
	Do     func(ctx context.Context, keys []K) ([]V, error)
	Shared func(error) bool

	mu      sync.Mutex
	queue   []*wait[K, V]
	leaders int
}

type wait[K, V any] struct {
	key  K
	v    V
	err  error
	done chan struct{}
}

// Call answers k, together with the keys of other callers waiting at the
// same time. A batch goes on if its leader's ctx ends (others wait on it),
// with the leader's context values.
func (q *Queue[K, V]) Call(ctx context.Context, k K) (V, error) {
	w := &wait[K, V]{key: k, done: make(chan struct{})}
	q.mu.Lock()
	q.queue = append(q.queue, w)
	limit := q.Leaders
	if limit == 0 {
		limit = DefaultLeaders
	}
	lead := q.leaders < limit
	if lead {
		q.leaders++
	}
	q.mu.Unlock()
	if lead {
		q.lead(context.WithoutCancel(ctx), w)
	}
	select {
	case <-w.done:
		return w.v, w.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// Waiting is how many calls wait for a batch to take them.
func (q *Queue[K, V]) Waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// lead answers batches of the queue until own is answered or the queue is
// empty; if calls still wait then, a new goroutine takes over the leader's
// place (own nil: until the queue is empty).
func (q *Queue[K, V]) lead(ctx context.Context, own *wait[K, V]) {
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.leaders--
			q.mu.Unlock()
			return
		}
		n := min(len(q.queue), q.Max)
		batch := q.queue[:n:n]
		q.queue = q.queue[n:]
		q.mu.Unlock()
		q.answer(ctx, batch)
		if own == nil {
			continue
		}
		select {
		case <-own.done:
			go q.lead(ctx, nil)
			return
		default:
		}
	}
}

func (q *Queue[K, V]) answer(ctx context.Context, batch []*wait[K, V]) {
	keys := make([]K, len(batch))
	for i, w := range batch {
		keys[i] = w.key
	}
	vs, err := q.Do(ctx, keys)
	for i, w := range batch {
		switch {
		case err == nil:
			w.v = vs[i]
		case len(batch) == 1, q.Shared != nil && q.Shared(err):
			w.err = err
		default:
			one, err := q.Do(ctx, keys[i:i+1])
			if err != nil {
				w.err = err
			} else {
				w.v = one[0]
			}
		}
		close(w.done)
	}
}
