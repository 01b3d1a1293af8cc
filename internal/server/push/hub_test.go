package push

import (
	"context"
	"testing"

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
