package agentmux

import "time"

// Requests are served on goroutines kept for the next request. A handler's
// stack grows to tens of KiB (the SQLite driver under it is deep), and a
// new goroutine per request copied its stack up two or three times on every
// request: ~4 % of the server's CPU when every agent asks at once. A
// goroutine that served a request waits up to workerIdle for another one,
// then ends, so an idle server keeps none.

const workerIdle = 2 * time.Second

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
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-idleWorkers:
		case <-idle.C:
			return
		}
	}
}
