package push

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

func TestHubRegisterReplaceAndOverflow(t *testing.T) {
	t.Parallel()
	var counts []int
	h := NewHub()
	h.OnCount = func(n int) { counts = append(counts, n) }
	a := h.Register("m1")
	ctx := context.Background()
	if !h.Send("m1", wire.StreamMessage{Type: wire.MsgSync, Generation: 2}) || h.Send("m2", wire.StreamMessage{Type: wire.MsgSync, Generation: 2}) {
		t.Fatal("notify routing")
	}
	if msg := <-a.Out; msg.Type != wire.MsgSync || msg.Generation != 2 {
		t.Fatalf("got %+v", msg)
	}
	b := h.Register("m1") // reconnect replaces the old stream
	select {
	case <-a.Closed:
	default:
		t.Fatal("old stream not closed")
	}
	h.Unregister(a) // a late unregister of the old stream keeps the new one
	if !h.Has("m1") || h.Connected() != 1 {
		t.Fatal("new stream lost")
	}
	for range QueueSize + 1 {
		h.Notify(ctx, "m1", 3)
	}
	select {
	case <-b.Closed:
	default:
		t.Fatal("overflowing stream not dropped")
	}
	if h.Connected() != 0 || counts[len(counts)-1] != 0 {
		t.Fatalf("connected %d counts %v", h.Connected(), counts)
	}
}

// recorder is a Writer that holds every write until released.
type recorder struct {
	mu      sync.Mutex
	got     []wire.StreamMessage
	release chan struct{}
	ended   chan string
}

func (r *recorder) Deliver(msg wire.StreamMessage) error {
	<-r.release
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, msg)
	return nil
}

func (r *recorder) End(reason string, _ bool) { r.ended <- reason }

func (r *recorder) messages() []wire.StreamMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// An attached stream coalesces syncs, takes many tunnel requests at once
// without ending the channel, refuses the ones beyond its bound as Busy,
// and writes everything in order once started.
func TestAttachedStreamCoalescesSyncsAndBoundsTunnels(t *testing.T) {
	t.Parallel()
	h := NewHub()
	w := &recorder{release: make(chan struct{}), ended: make(chan string, 1)}
	close(w.release)
	s := h.Attach("m1", w)
	for g := int64(2); g < 50; g++ {
		if d := h.Offer("m1", wire.StreamMessage{Type: wire.MsgSync, Generation: g}); d != Queued {
			t.Fatalf("sync %d: %v", g, d)
		}
	}
	for i := range MaxPendingTunnels {
		if d := h.Offer("m1", wire.StreamMessage{Type: wire.MsgTunnel, Tunnel: &wire.TunnelRequest{ID: fmt.Sprint(i), Port: 22}}); d != Queued {
			t.Fatalf("tunnel %d: %v", i, d)
		}
	}
	if d := h.Offer("m1", wire.StreamMessage{Type: wire.MsgTunnel, Tunnel: &wire.TunnelRequest{ID: "one too many", Port: 22}}); d != Busy {
		t.Fatalf("tunnel beyond the bound: %v, want Busy", d)
	}
	if !h.Has("m1") {
		t.Fatal("a busy stream was dropped")
	}
	s.Start()
	deadline := time.Now().Add(10 * time.Second)
	for len(w.messages()) < MaxPendingTunnels+1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := w.messages()
	if len(got) != MaxPendingTunnels+1 || got[0].Type != wire.MsgSync || got[0].Generation != 49 {
		t.Fatalf("wrote %d messages, first %+v; want one sync at generation 49 then the tunnels", len(got), got[0])
	}
	for i, m := range got[1:] {
		if m.Tunnel == nil || m.Tunnel.ID != fmt.Sprint(i) {
			t.Fatalf("message %d out of order: %+v", i+1, m)
		}
	}
	// Drained: the stream keeps no buffer, and a new burst is written too.
	s.mu.Lock()
	idle := s.q == nil && !s.draining && s.tunnels == 0
	s.mu.Unlock()
	if !idle {
		t.Error("a drained stream still holds its queue")
	}
	h.Goodbye(context.Background(), "m1", "deleted")
	select {
	case reason := <-w.ended:
		if reason != "goodbye" {
			t.Errorf("ended with %q", reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("goodbye did not end the stream")
	}
}

// Messages other than syncs and tunnels overflow the bounded queue of a
// stream whose agent does not read: the stream is ended, not waited on.
func TestAttachedStreamOverflowEndsIt(t *testing.T) {
	t.Parallel()
	h := NewHub()
	w := &recorder{release: make(chan struct{}), ended: make(chan string, 1)}
	s := h.Attach("m1", w) // not started: nothing is written
	var last Delivery
	for range QueueSize + 1 {
		last = h.Offer("m1", wire.StreamMessage{Type: wire.MsgGoodbye, Reason: "x"})
	}
	if last != Overflowed || h.Has("m1") {
		t.Fatalf("last offer %v, has stream %v; want Overflowed and dropped", last, h.Has("m1"))
	}
	select {
	case <-s.Closed:
	default:
		t.Fatal("overflowed stream not closed")
	}
	close(w.release)
}
