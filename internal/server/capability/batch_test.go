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
	return r.batches.Waiting()
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
