package testutil

import (
	"sync"
	"time"

	"github.com/corralhq/corral/internal/server"
)

// Clock is a settable clock for expiry tests. Its zero value starts at the
// real time of the first call.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the real time shifted by everything Advance added.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// WithClock makes the server read time from c.
func WithClock(c *Clock) Option { return func(cfg *server.Config) { cfg.Clock = c.Now } }
