package capability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// gated writes each machine's name under "echo", once release is closed,
// and records the size of every batch it was given. A batch holding a
// machine named "bad" fails whole.
type gated struct {
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func (g *gated) ContributeDesired(_ context.Context, batch []Desired) error {
	g.mu.Lock()
	g.sizes = append(g.sizes, len(batch))
	g.mu.Unlock()
	<-g.release
	for _, d := range batch {
		if d.Machine.Name == "bad" {
			return errors.New("a row of machine bad cannot be read")
		}
		if err := SetFeature(d.State, "echo", d.Machine.Name); err != nil {
			return err
		}
	}
	return nil
}

func (g *gated) entered() (batches, machines int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range g.sizes {
		machines += n
	}
	return len(g.sizes), machines
}

func (r *Registry) queued() int {
	r.batches.mu.Lock()
	defer r.batches.mu.Unlock()
	return len(r.batches.queue)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in 10s", what)
		}
	}
}

func newGated(t *testing.T) (*Registry, *gated) {
	r := NewRegistry(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	g := &gated{release: make(chan struct{})}
	r.AddContributor("echo", g)
	t.Cleanup(func() {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	})
	return r, g
}

func vmNamed(i int, name string) store.Machine {
	return store.Machine{ID: fmt.Sprint("m-", i), Subscription: "default", ResourceGroup: "rg", Name: name, Generation: int64(100 + i)}
}

// Agents that ask while batches are being assembled are assembled
// together, each answered with its own machine's desired state; one
// machine whose part fails fails alone.
func TestDesiredStatesAreAssembledTogether(t *testing.T) {
	t.Parallel()
	r, g := newGated(t)
	const n = 50
	got := make([]wire.DesiredState, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		name := fmt.Sprint("vm", i)
		if i == 7 {
			name = "bad"
		}
		wg.Go(func() { got[i], errs[i] = r.DesiredState(t.Context(), vmNamed(i, name)) })
	}
	// The first callers lead and wait at the gate; the others queue.
	eventually(t, "every caller in a batch or queued", func() bool {
		_, in := g.entered()
		return in+r.queued() == n
	})
	first, in := g.entered()
	queued := n - in
	close(g.release)
	wg.Wait()
	for i := range n {
		want := fmt.Sprintf(`"vm%d"`, i)
		switch {
		case i == 7:
			if errs[i] == nil {
				t.Errorf("machine bad: no error")
			}
		case errs[i] != nil:
			t.Errorf("machine %d: %v (only machine bad's part fails)", i, errs[i])
		case string(got[i].Features["echo"]) != want || got[i].Generation != int64(100+i):
			t.Errorf("machine %d got %s at generation %d, want its own %s at %d", i, got[i].Features["echo"], got[i].Generation, want, 100+i)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The queued callers went in one batch (fewer than maxBatch of them);
	// a batch holding machine bad failed, then each of its machines was
	// assembled alone.
	if queued < 2 || !slices.Contains(g.sizes[first:], queued) {
		t.Fatalf("batch sizes %v: want the %d queued callers assembled together after the first %d batches", g.sizes, queued, first)
	}
}

// A caller that goes away while its machine waits for a batch gets its
// context's error at once; the batch still answers the others.
func TestDesiredStateCallerGoesAway(t *testing.T) {
	t.Parallel()
	r, g := newGated(t)
	var wg sync.WaitGroup
	for i := range maxAssemblers {
		wg.Go(func() {
			if _, err := r.DesiredState(t.Context(), vmNamed(i, fmt.Sprint("vm", i))); err != nil {
				t.Errorf("leader %d: %v", i, err)
			}
		})
	}
	eventually(t, "the leaders at the gate", func() bool { _, in := g.entered(); return in+r.queued() == maxAssemblers && r.queued() == 0 })
	ctx, cancel := context.WithCancel(t.Context())
	gone := make(chan error, 1)
	go func() {
		_, err := r.DesiredState(ctx, vmNamed(99, "vm99"))
		gone <- err
	}()
	eventually(t, "the caller queued", func() bool { return r.queued() == 1 })
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("caller gone: %v, want context.Canceled", err)
	}
	close(g.release)
	wg.Wait()
	eventually(t, "the queue answered", func() bool { return r.queued() == 0 })
}

// unreachable fails every batch as a store out of reach does.
type unreachable struct{ calls int }

func (u *unreachable) ContributeDesired(context.Context, []Desired) error {
	u.calls++
	return fmt.Errorf("list extensions: %w", store.ErrUnavailable)
}

// A batch that fails because the store is out of reach is not assembled
// again machine by machine: each would fail the same way.
func TestUnreachableStoreFailsTheBatchOnce(t *testing.T) {
	t.Parallel()
	r := NewRegistry(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	u := &unreachable{}
	r.AddContributor("down", u)
	var batch []*desiredWait
	for i := range 3 {
		batch = append(batch, &desiredWait{m: vmNamed(i, fmt.Sprint("vm", i)), done: make(chan struct{})})
	}
	r.answer(t.Context(), batch)
	for i, w := range batch {
		if !errors.Is(w.err, store.ErrUnavailable) {
			t.Errorf("machine %d: %v, want the store's unavailability", i, w.err)
		}
	}
	if u.calls != 1 {
		t.Errorf("the contributor ran %d times, want once for the batch", u.calls)
	}
}
