package testutil

import (
	"sync"
	"testing"
)

// Gate holds the calls that enter it until Release, counting them and the
// items each carries: a test of a batching queue wraps the store method
// its batches call, so it sees how few calls many callers made.
type Gate struct {
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	calls   int
	items   int
}

// NewGate returns a closed-for-now gate, released at the end of the test
// if it still holds calls.
func NewGate(t testing.TB) *Gate {
	g := &Gate{release: make(chan struct{})}
	t.Cleanup(g.Release)
	return g
}

// Enter counts a call of items and waits for Release.
func (g *Gate) Enter(items int) {
	g.mu.Lock()
	g.calls++
	g.items += items
	g.mu.Unlock()
	<-g.release
}

// Release lets every call through, now and later.
func (g *Gate) Release() { g.once.Do(func() { close(g.release) }) }

// Counts is how many calls entered, and the items they carried.
func (g *Gate) Counts() (calls, items int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls, g.items
}
