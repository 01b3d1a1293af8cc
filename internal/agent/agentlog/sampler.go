package agentlog

import (
	"sync"
	"time"
)

// Sampler bounds how many log records of one kind get through per window,
// so that a control plane sending thousands of refused operations cannot
// rotate the agent's real history out of its logs. It is safe for
// concurrent use; the zero value is not usable (use NewSampler).
type Sampler struct {
	mu     sync.Mutex
	per    int
	window time.Duration
	now    func() time.Time
	kinds  map[string]*sample
}

type sample struct {
	start      time.Time
	n          int
	suppressed int
}

// NewSampler lets per records of each kind through per window.
func NewSampler(per int, window time.Duration) *Sampler {
	return &Sampler{per: per, window: window, now: time.Now, kinds: map[string]*sample{}}
}

// Allow says whether a record of kind may be logged now; when a new window
// starts, suppressed says how many of the kind were dropped in the last one
// (worth a line of its own).
func (s *Sampler) Allow(kind string) (ok bool, suppressed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	k := s.kinds[kind]
	if k == nil || now.Sub(k.start) >= s.window {
		if k != nil {
			suppressed = k.suppressed
		}
		k = &sample{start: now}
		s.kinds[kind] = k
	}
	if k.n >= s.per {
		k.suppressed++
		return false, suppressed
	}
	k.n++
	return true, suppressed
}
