// Package heartbeat batches agent heartbeats into few store transactions.
//
// Thousands of agents each heartbeat every interval; writing one row per
// heartbeat would cost a transaction each (see docs/dependencies.md for the
// measured gap). The batcher keeps the latest heartbeat per machine in memory
// and flushes them together every FlushInterval or when MaxBatch machines are
// pending. A heartbeat can thus reach the store up to FlushInterval late,
// which is far below the Disconnected threshold.
package heartbeat

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/store"
)

// Writer is the store method the batcher needs.
type Writer interface {
	RecordHeartbeats(ctx context.Context, hs []store.Heartbeat) error
}

// Batcher collects heartbeats. Run owns the flushing goroutine.
type Batcher struct {
	w             Writer
	log           *slog.Logger
	flushInterval time.Duration
	maxBatch      int

	mu      sync.Mutex
	pending map[string]store.Heartbeat
	kick    chan struct{}
	// OnFlush, when set, observes each flush (metrics).
	OnFlush func(n int, d time.Duration, err error)
}

// NewBatcher returns a batcher writing to w.
func NewBatcher(w Writer, log *slog.Logger, flushInterval time.Duration, maxBatch int) *Batcher {
	return &Batcher{w: w, log: log, flushInterval: flushInterval, maxBatch: maxBatch,
		pending: make(map[string]store.Heartbeat), kick: make(chan struct{}, 1)}
}

// Add records a heartbeat; it never blocks on I/O.
func (b *Batcher) Add(h store.Heartbeat) {
	b.mu.Lock()
	b.pending[h.MachineID] = h
	full := len(b.pending) >= b.maxBatch
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// Run flushes until ctx is done, then flushes what is left.
func (b *Batcher) Run(ctx context.Context) {
	t := time.NewTicker(b.flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.Flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
		case <-b.kick:
		}
		b.Flush(ctx)
	}
}

// Flush writes every pending heartbeat now.
func (b *Batcher) Flush(ctx context.Context) {
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	batch := make([]store.Heartbeat, 0, len(b.pending))
	for _, h := range b.pending {
		batch = append(batch, h)
	}
	b.pending = make(map[string]store.Heartbeat, len(batch))
	b.mu.Unlock()

	start := time.Now()
	err := b.w.RecordHeartbeats(ctx, batch)
	if err != nil {
		b.log.ErrorContext(ctx, "heartbeat flush failed", "count", len(batch), "err", err)
		// Put them back unless newer ones arrived meanwhile; retried next tick.
		b.mu.Lock()
		for _, h := range batch {
			if _, ok := b.pending[h.MachineID]; !ok {
				b.pending[h.MachineID] = h
			}
		}
		b.mu.Unlock()
	}
	if b.OnFlush != nil {
		b.OnFlush(len(batch), time.Since(start), err)
	}
}
