package agentmux

import (
	"sync/atomic"
	"time"
)

// Requests are served on goroutines kept for the next request. A handler's
// stack grows to tens of KiB (the SQLite driver under it is deep), and a
// new goroutine per request copied its stack up two or three times on every
// request: ~4 % of the server's CPU when every agent asks at once. A
// goroutine that served a request waits up to workerIdle for another one,
// then ends, so an idle server keeps none; at most maxIdleWorkers wait at
// once (each holds its grown stack).

const (
	workerIdle     = 2 * time.Second
	maxIdleWorkers = 128
)

// idle counts the workers waiting for a request.
var idle atomic.Int32

// idleWorkers hands a request to a goroutine waiting for one.
var idleWorkers = make(chan func())

// goServe runs f on an idle worker, or on a new one if none waits.
func goServe(f func()) {
	select {
	case idleWorkers <- f:
	default:
		go work(f)
	}
}

func work(f func()) {
	var timer *time.Timer
	for {
		f()
		if idle.Add(1) > maxIdleWorkers {
			idle.Add(-1)
			return
		}
		if timer == nil {
			timer = time.NewTimer(workerIdle)
		} else {
			timer.Reset(workerIdle)
		}
		select {
		case f = <-idleWorkers:
			idle.Add(-1)
		case <-timer.C:
			idle.Add(-1)
			return
		}
	}
}
