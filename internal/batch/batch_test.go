package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

var errDown = errors.New("the store is out of reach")

// gate answers each key k with "v<k>" once release is closed, records the
// size of every batch, fails whole a batch holding key 7, and fails with
// errDown a batch holding key -1.
type gate struct {
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func (g *gate) do(_ context.Context, keys []int) ([]string, error) {
	g.mu.Lock()
	g.sizes = append(g.sizes, len(keys))
	g.mu.Unlock()
	<-g.release
	var out []string
	for _, k := range keys {
		switch k {
		case 7:
			return nil, errors.New("key 7's row cannot be read")
		case -1:
			return nil, errDown
		}
		out = append(out, fmt.Sprint("v", k))
	}
	return out, nil
}

func (g *gate) entered() (batches, keys int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range g.sizes {
		keys += n
	}
	return len(g.sizes), keys
}

func newQueue(t *testing.T) (*Queue[int, string], *gate) {
	g := &gate{release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	})
	return &Queue[int, string]{Max: 64, Leaders: 2, Do: g.do, Shared: func(err error) bool { return errors.Is(err, errDown) }}, g
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in 10s", what)
		}
	}
}

// Calls made while batches are being answered are answered together, each
// with its own key's value; a key whose batch fails because of it fails
// alone.
func TestCallsWaitingTogetherAreOneBatch(t *testing.T) {
	t.Parallel()
	q, g := newQueue(t)
	const n = 50
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = q.Call(t.Context(), i) })
	}
	// The first callers lead and wait at the gate; the others queue.
	eventually(t, "every call in a batch or queued", func() bool {
		_, in := g.entered()
		return in+q.Waiting() == n
	})
	first, in := g.entered()
	queued := n - in
	close(g.release)
	wg.Wait()
	for i := range n {
		switch {
		case i == 7:
			if errs[i] == nil {
				t.Errorf("key 7: no error")
			}
		case errs[i] != nil:
			t.Errorf("key %d: %v (only key 7 fails)", i, errs[i])
		case got[i] != fmt.Sprint("v", i):
			t.Errorf("key %d got %q, want its own v%d", i, got[i], i)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if queued < 2 || !slices.Contains(g.sizes[first:], queued) {
		t.Fatalf("batch sizes %v: want the %d queued calls answered together after the first %d batches", g.sizes, queued, first)
	}
}

// A caller that goes away while its key waits for a batch gets its
// context's error at once; the batch still answers the others.
func TestCallerGoesAway(t *testing.T) {
	t.Parallel()
	q, g := newQueue(t)
	var wg sync.WaitGroup
	for i := range q.Leaders {
		wg.Go(func() {
			if _, err := q.Call(t.Context(), 100+i); err != nil {
				t.Errorf("leader %d: %v", i, err)
			}
		})
	}
	eventually(t, "the leaders at the gate", func() bool { b, _ := g.entered(); return b == q.Leaders && q.Waiting() == 0 })
	ctx, cancel := context.WithCancel(t.Context())
	gone := make(chan error, 1)
	go func() {
		_, err := q.Call(ctx, 99)
		gone <- err
	}()
	eventually(t, "the call queued", func() bool { return q.Waiting() == 1 })
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("caller gone: %v, want context.Canceled", err)
	}
	close(g.release)
	wg.Wait()
	eventually(t, "the queue answered", func() bool { return q.Waiting() == 0 })
}

// A batch that fails with an error Shared says would fail every key alike
// is not answered again key by key.
func TestSharedErrorFailsTheBatchOnce(t *testing.T) {
	t.Parallel()
	q, g := newQueue(t)
	close(g.release)
	keys := []int{1, -1, 2}
	batch := make([]*wait[int, string], len(keys))
	for i, k := range keys {
		batch[i] = &wait[int, string]{key: k, done: make(chan struct{})}
	}
	q.answer(t.Context(), batch)
	for i, w := range batch {
		if !errors.Is(w.err, errDown) {
			t.Errorf("key %d: %v, want the shared error", keys[i], w.err)
		}
	}
	if b, _ := g.entered(); b != 1 {
		t.Errorf("Do ran %d times, want once for the batch", b)
	}
}

// A queue whose Leaders is left 0 leads with DefaultLeaders (none would
// leave every caller waiting).
func TestZeroLeadersMeansDefault(t *testing.T) {
	q := &Queue[int, int]{Max: 4, Do: func(_ context.Context, keys []int) ([]int, error) {
		out := make([]int, len(keys))
		for i, k := range keys {
			out[i] = k * 2
		}
		return out, nil
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if v, err := q.Call(ctx, 21); v != 42 || err != nil {
		t.Fatalf("call: %d, %v", v, err)
	}
}
