package capability

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/batch"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// gated writes each machine's name under "echo", once release is closed,
// counting the batches and machines it was given.
type gated struct {
	release           chan struct{}
	batches, machines atomic.Int64
}

func (g *gated) ContributeDesired(_ context.Context, batch []Desired) error {
	g.batches.Add(1)
	g.machines.Add(int64(len(batch)))
	<-g.release
	for _, d := range batch {
		if err := SetFeature(d.State, "echo", d.Machine.Name); err != nil {
			return err
		}
	}
	return nil
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
// together: the contributors see the queued machines as one batch, and each
// agent gets its own machine's desired state. (internal/batch tests the
// queue itself: failures, callers going away.)
func TestDesiredStatesAreAssembledTogether(t *testing.T) {
	t.Parallel()
	r, g := newGated(t)
	const n = 50
	got := make([]wire.DesiredState, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var err error
			if got[i], err = r.DesiredState(t.Context(), vmNamed(i, fmt.Sprint("vm", i))); err != nil {
				t.Errorf("machine %d: %v", i, err)
			}
		})
	}
	eventually(t, "every caller in a batch or queued", func() bool { return int(g.machines.Load())+r.queued() == n })
	close(g.release)
	wg.Wait()
	for i, ds := range got {
		if want := fmt.Sprintf(`"vm%d"`, i); string(ds.Features["echo"]) != want || ds.Generation != int64(100+i) {
			t.Errorf("machine %d got %s at generation %d, want its own %s at %d", i, ds.Features["echo"], ds.Generation, want, 100+i)
		}
	}
	if batches := g.batches.Load(); batches > int64(batch.DefaultLeaders)+1 {
		t.Errorf("%d batches for %d agents asking at once, want the queued ones together", batches, n)
	}
}
