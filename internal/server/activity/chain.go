package activity

import (
	"context"
	"time"

	"github.com/corralhq/corral/internal/auditchain"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// sealBatch is how many entries one sealing transaction takes.
const sealBatch = 2000

// chainHash hashes a stored entry as clients see it (auditchain.Hash of
// its API form), so clients verify with the same code.
func chainHash(prev string, seq int64, e store.ActivityEntry) string {
	return auditchain.Hash(prev, seq, wire.ActivityEntry(e))
}

// Seal seals every entry written so far into the chain and returns how
// many it sealed. Replicas may run it at once: the store serializes them.
func (s *Service) Seal(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.store.SealActivity(ctx, sealBatch, chainHash)
		total += n
		if err != nil || n < sealBatch {
			return total, err
		}
	}
}

// RunSealer seals new entries every interval until ctx ends, so an entry
// is in the chain about interval after it was written. A failed pass is
// logged and tried again at the next tick; nothing is lost meanwhile (the
// entries wait, unsealed).
func (s *Service) RunSealer(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Seal(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "seal the activity log", "err", err)
		}
	}
}

// ChainPage returns up to limit sealed entries after afterSeq in chain
// order, with the chain's base and head as they were before the entries
// were read (so a walk to head never waits on entries sealed later).
func (s *Service) ChainPage(ctx context.Context, afterSeq int64, limit int) (wire.ActivityChainPage, bool, error) {
	if afterSeq < 0 {
		return wire.ActivityChainPage{}, false, refusal.Invalid("after", "after must be a sequence number, 0 or more")
	}
	base, head, err := s.store.ActivityChain(ctx)
	if err != nil {
		return wire.ActivityChainPage{}, false, err
	}
	if limit <= 0 {
		limit = store.DefaultPageSize
	}
	limit = min(limit, store.MaxPageSize)
	es, err := s.store.ListActivityChain(ctx, max(afterSeq, base.Seq), limit)
	if err != nil {
		return wire.ActivityChainPage{}, false, err
	}
	page := wire.ActivityChainPage{Base: wire.ChainLink(base), Head: wire.ChainLink(head), Value: make([]wire.ActivityEntry, 0, len(es))}
	for _, e := range es {
		if e.Seq > head.Seq {
			break // sealed after the head was read: the next walk's
		}
		page.Value = append(page.Value, wire.ActivityEntry(e))
	}
	more := len(page.Value) == limit && page.Value[len(page.Value)-1].Seq < head.Seq
	return page, more, nil
}
