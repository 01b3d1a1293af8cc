// Package admission bounds what anonymous and authenticated callers can make
// the control plane spend before it has decided anything: a Gate bounds how
// many costly operations (argon2id password hashes, 19 MiB each) run at once,
// overall and per source address, with a short queue; a Window bounds how
// many requests of a kind one key (a source address, a principal) may make
// per period.
//
// Both are in memory and per replica: they bound load, they are not a record
// of anything (the activity log is). Their maps are bounded, so a spray of
// distinct keys cannot grow them without limit. Both are safe for concurrent
// use; their zero values are not ready, use NewGate and NewWindow.
package admission

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Refusals of a Gate. Callers answer 503 (ErrBusy) or 429 (ErrKeyBusy) with
// a Retry-After.
var (
	// ErrBusy: every slot is taken and the queue is full, or the wait for
	// a slot ran out.
	ErrBusy = errors.New("too many operations of this kind are in progress")
	// ErrKeyBusy: this key already has its share of slots and queue.
	ErrKeyBusy = errors.New("too many operations of this kind are in progress for this source")
)

// GateLimits configure a Gate.
type GateLimits struct {
	// Slots run at once (for password hashing: about the number of cores).
	Slots int
	// Queue may wait for a slot beyond Slots; more are refused at once.
	Queue int
	// PerKey is the most one key may hold running and waiting together.
	PerKey int
	// MaxWait is how long a queued caller waits for a slot before ErrBusy.
	MaxWait time.Duration
}

// Gate admits at most Slots operations at a time, queues at most Queue more
// for at most MaxWait, and lets one key hold at most PerKey of both.
type Gate struct {
	lim   GateLimits
	slots chan struct{}

	mu      sync.Mutex
	waiting int
	perKey  map[string]int
}

// NewGate returns a gate with limits l (zero or negative values are raised
// to 1, MaxWait to a second).
func NewGate(l GateLimits) *Gate {
	l.Slots, l.PerKey = max(l.Slots, 1), max(l.PerKey, 1)
	l.Queue = max(l.Queue, 0)
	if l.MaxWait <= 0 {
		l.MaxWait = time.Second
	}
	return &Gate{lim: l, slots: make(chan struct{}, l.Slots), perKey: map[string]int{}}
}

// Limits returns the gate's limits.
func (g *Gate) Limits() GateLimits { return g.lim }

// Acquire takes a slot for key, waiting in the queue if need be. The caller
// must call release exactly once when the operation is done.
func (g *Gate) Acquire(ctx context.Context, key string) (release func(), err error) {
	g.mu.Lock()
	if g.perKey[key] >= g.lim.PerKey {
		g.mu.Unlock()
		return nil, ErrKeyBusy
	}
	g.perKey[key]++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		if g.perKey[key]--; g.perKey[key] <= 0 {
			delete(g.perKey, key)
		}
		g.mu.Unlock()
	}
	select {
	case g.slots <- struct{}{}:
		return g.releaser(done), nil
	default:
	}
	g.mu.Lock()
	if g.waiting >= g.lim.Queue {
		g.mu.Unlock()
		done()
		return nil, ErrBusy
	}
	g.waiting++
	g.mu.Unlock()
	t := time.NewTimer(g.lim.MaxWait)
	defer t.Stop()
	defer func() {
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
	}()
	select {
	case g.slots <- struct{}{}:
		return g.releaser(done), nil
	case <-t.C:
		done()
		return nil, ErrBusy
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

func (g *Gate) releaser(done func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			<-g.slots
			done()
		})
	}
}

// InUse reports the slots taken and the callers waiting now.
func (g *Gate) InUse() (running, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.slots), g.waiting
}

// Window allows at most Max events per key in each Period (a fixed window
// per key, starting at the key's first event), with an injected clock.
type Window struct {
	max    int
	period time.Duration
	// maxKeys bounds the map; beyond it, windows that ended are dropped
	// and, if none did, the new key shares one overflow window.
	maxKeys int

	mu   sync.Mutex
	keys map[string]*window
}

type window struct {
	start time.Time
	n     int
}

// overflowKey is where keys go once maxKeys live windows are tracked.
const overflowKey = "\x00overflow"

// NewWindow allows max events per key per period, tracking at most maxKeys
// keys (0: 100,000).
func NewWindow(max int, period time.Duration, maxKeys int) *Window {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	return &Window{max: max, period: period, maxKeys: maxKeys, keys: map[string]*window{}}
}

// Allow counts an event of key at now and reports whether it is within the
// limit; if not, retryAfter is when the key's window ends. A Window with
// max <= 0 allows everything.
func (w *Window) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if w.max <= 0 {
		return true, 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	win := w.keys[key]
	if win == nil {
		if len(w.keys) >= w.maxKeys {
			w.sweep(now)
		}
		if len(w.keys) >= w.maxKeys {
			key = overflowKey
			win = w.keys[key]
		}
	}
	if win == nil || now.Sub(win.start) >= w.period {
		win = &window{start: now}
		w.keys[key] = win
	}
	if win.n >= w.max {
		return false, win.start.Add(w.period).Sub(now)
	}
	win.n++
	return true, 0
}

// Count returns how many events key has in its current window at now
// (without counting one).
func (w *Window) Count(key string, now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	win := w.keys[key]
	if win == nil || now.Sub(win.start) >= w.period {
		return 0
	}
	return win.n
}

// Reset forgets key's window.
func (w *Window) Reset(key string) {
	w.mu.Lock()
	delete(w.keys, key)
	w.mu.Unlock()
}

// sweep drops windows that ended. Caller holds w.mu.
func (w *Window) sweep(now time.Time) {
	for k, win := range w.keys {
		if now.Sub(win.start) >= w.period {
			delete(w.keys, k)
		}
	}
}
