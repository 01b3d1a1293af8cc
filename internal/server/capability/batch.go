package capability

import (
	"context"

	"github.com/corralhq/corral/internal/batch"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Desired states are assembled in batches (internal/batch). After a
// fleet-wide change every agent asks at once; one snapshot and a dozen
// queries per agent were a fifth of the server's CPU and kept the store's
// read connections busy (a bulk operation's own reads waited behind them).
// Agents that ask while batches are being assembled are assembled together,
// up to maxBatch machines per snapshot; alone, a request is assembled at
// once, as before.

// maxBatch bounds the machines of one batch.
const maxBatch = 64

func (r *Registry) initBatches() {
	r.batches = &batch.Queue[store.Machine, wire.DesiredState]{Max: maxBatch, Do: r.DesiredStates, Shared: store.Unavailable}
}

// DesiredState assembles what the agent of m should reconcile toward (see
// DesiredStates), together with the machines whose agents ask at the same
// time. m is the machine as read when its agent authenticated. A batch
// that fails is assembled again machine by machine, so one machine's bad
// row fails only its own desired state.
func (r *Registry) DesiredState(ctx context.Context, m store.Machine) (wire.DesiredState, error) {
	return r.batches.Call(ctx, m)
}
