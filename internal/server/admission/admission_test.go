package admission_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/server/admission"
)

func TestGate(t *testing.T) {
	t.Parallel()
	g := admission.NewGate(admission.GateLimits{Slots: 2, Queue: 1, PerKey: 2, MaxWait: 50 * time.Millisecond})
	ctx := t.Context()
	r1, err := g.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	// Both slots taken: c queues and times out; a second waiter is refused
	// at once while c waits.
	waited := make(chan error, 1)
	go func() {
		_, err := g.Acquire(ctx, "c")
		waited <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, w := g.InUse(); w == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := g.Acquire(ctx, "d"); !errors.Is(err, admission.ErrBusy) {
		t.Errorf("acquire with full slots and queue: %v, want ErrBusy", err)
	}
	if err := <-waited; !errors.Is(err, admission.ErrBusy) {
		t.Errorf("queued past MaxWait: %v, want ErrBusy", err)
	}
	// Per key: a holds one; a second for a waits (queue) — a third is refused.
	r1b := make(chan func(), 1)
	go func() {
		r, err := g.Acquire(ctx, "a")
		if err != nil {
			r1b <- nil
			return
		}
		r1b <- r
	}()
	for {
		if _, w := g.InUse(); w == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := g.Acquire(ctx, "a"); !errors.Is(err, admission.ErrKeyBusy) {
		t.Errorf("third for one key: %v, want ErrKeyBusy", err)
	}
	r2() // frees a slot: the waiting "a" gets it
	r := <-r1b
	if r == nil {
		t.Fatal("the queued caller did not get the freed slot")
	}
	r()
	r1()
	r1() // release is idempotent
	if run, w := g.InUse(); run != 0 || w != 0 {
		t.Errorf("in use after every release: %d running, %d waiting", run, w)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ra, _ := g.Acquire(ctx, "x")
	rb, _ := g.Acquire(ctx, "y")
	if _, err := g.Acquire(cctx, "z"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
	ra()
	rb()
}

func TestWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := admission.NewWindow(3, time.Minute, 4)
	for i := range 3 {
		if ok, _ := w.Allow("a", t0.Add(time.Duration(i)*time.Second)); !ok {
			t.Fatalf("event %d refused", i)
		}
	}
	ok, retry := w.Allow("a", t0.Add(10*time.Second))
	if ok || retry != 50*time.Second {
		t.Errorf("fourth event: ok=%t retry=%s, want refused, 50s", ok, retry)
	}
	if ok, _ := w.Allow("b", t0); !ok {
		t.Error("another key is refused")
	}
	if ok, _ := w.Allow("a", t0.Add(time.Minute)); !ok {
		t.Error("refused in the next window")
	}
	if n := w.Count("a", t0.Add(time.Minute)); n != 1 {
		t.Errorf("count = %d, want 1", n)
	}
	// A spray of keys shares one overflow window once the map is full.
	allowed := 0
	for i := range 100 {
		if ok, _ := w.Allow(fmt.Sprintf("spray-%d", i), t0.Add(time.Minute)); ok {
			allowed++
		}
	}
	if allowed > 3+3 {
		t.Errorf("a spray of 100 keys got %d events through a 4-key map", allowed)
	}
	if ok, _ := admission.NewWindow(0, time.Minute, 0).Allow("x", t0); !ok {
		t.Error("a zero limit must allow everything")
	}
}
