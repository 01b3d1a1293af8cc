package agentmux

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goroutineID reads the running goroutine's id from its stack header.
func goroutineID() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b, _ = bytes.CutPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// Requests served one after another run on one goroutine; requests served
// at once each get their own; an idle worker ends after workerIdle.
func TestWorkersAreReusedThenEnd(t *testing.T) {
	// Workers left idle by earlier tests end first (this test is not
	// parallel: no other test runs meanwhile).
	time.Sleep(workerIdle + 500*time.Millisecond)
	base := runtime.NumGoroutine()
	ids := map[uint64]bool{}
	for range 20 {
		done := make(chan uint64)
		goServe(func() { done <- goroutineID() })
		ids[<-done] = true
		// Let the worker reach its wait for the next request.
		for deadline := time.Now().Add(5 * time.Second); idle.Load() != 1 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Millisecond)
	}
	// One, or two if a request came just before its worker waited.
	if len(ids) > 2 {
		t.Errorf("20 requests one after another ran on %d goroutines, want one reused", len(ids))
	}

	release := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy := map[uint64]bool{}
	for range 10 {
		wg.Add(1)
		goServe(func() {
			defer wg.Done()
			mu.Lock()
			busy[goroutineID()] = true
			mu.Unlock()
			<-release
		})
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := len(busy)
		mu.Unlock()
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 10 requests started at once", n)
		}
	}
	close(release)
	wg.Wait()

	for deadline := time.Now().Add(workerIdle + 10*time.Second); runtime.NumGoroutine() > base; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left %s after the last request, want %d", runtime.NumGoroutine(), workerIdle+10*time.Second, base)
		}
	}
}

// At most maxIdleWorkers wait for a request; the others end at once.
func TestIdleWorkersAreBounded(t *testing.T) {
	time.Sleep(workerIdle + 500*time.Millisecond)
	base := runtime.NumGoroutine()
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range maxIdleWorkers + 50 {
		wg.Add(1)
		goServe(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > base+maxIdleWorkers; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers left waiting, want at most %d", runtime.NumGoroutine()-base, maxIdleWorkers)
		}
	}
	if n := idle.Load(); n > maxIdleWorkers {
		t.Errorf("%d idle workers counted", n)
	}
}
