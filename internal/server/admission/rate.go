package admission

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate admits at most perSecond operations a second on average, with
// bursts of burst (a token bucket), for everyone together: new agent
// channels and onboardings, whose storm after a restart or a network flap
// would otherwise arrive all at once. A refusal says when to come back:
// the time the callers refused in the last second need at the rate (at
// least a second), so that callers who add their own jitter (agents wait
// Retry-After plus up to as much again) come back spread out at about the
// rate the server admits. Safe for concurrent use.
type Rate struct {
	lim       *rate.Limiter
	perSecond float64

	mu           sync.Mutex
	windowStart  time.Time
	refused      int // in the window that started at windowStart
	refusedTotal uint64
}

// NewRate returns a Rate; perSecond <= 0 admits everything.
func NewRate(perSecond float64, burst int) *Rate {
	if perSecond <= 0 {
		return &Rate{}
	}
	return &Rate{lim: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1)), perSecond: perSecond}
}

// MaxRetryAfter caps what a refusal asks callers to wait.
const MaxRetryAfter = 2 * time.Minute

// Allow admits one operation at now, or says how long to wait.
func (r *Rate) Allow(now time.Time) (ok bool, retryAfter time.Duration) {
	if r.lim == nil || r.lim.AllowN(now, 1) {
		return true, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.windowStart) >= time.Second {
		r.windowStart, r.refused = now, 0
	}
	r.refused++
	r.refusedTotal++
	wait := time.Duration(float64(r.refused) / r.perSecond * float64(time.Second))
	return false, min(max(wait, time.Second), MaxRetryAfter)
}

// Refused is how many operations were refused since the start.
func (r *Rate) Refused() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refusedTotal
}
