package heartbeat

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
)

type recorder struct {
	mu      sync.Mutex
	batches [][]store.Heartbeat
	fail    bool
}

func (r *recorder) RecordHeartbeats(_ context.Context, hs []store.Heartbeat) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("down")
	}
	r.batches = append(r.batches, hs)
	return nil
}

func TestBatcherKeepsLatestAndRetries(t *testing.T) {
	t.Parallel()
	r := &recorder{fail: true}
	b := NewBatcher(r, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Hour, 1000)
	t0 := time.Now()
	b.Add(store.Heartbeat{MachineID: "a", At: t0})
	b.Add(store.Heartbeat{MachineID: "a", At: t0.Add(time.Second)})
	b.Add(store.Heartbeat{MachineID: "b", At: t0})
	b.Flush(context.Background()) // fails: kept for the next flush
	r.fail = false
	b.Flush(context.Background())
	if len(r.batches) != 1 || len(r.batches[0]) != 2 {
		t.Fatalf("batches %+v", r.batches)
	}
	for _, h := range r.batches[0] {
		if h.MachineID == "a" && !h.At.Equal(t0.Add(time.Second)) {
			t.Errorf("latest heartbeat not kept: %v", h.At)
		}
	}
}

func TestBatcherFlushesWhenFullAndOnStop(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	b := NewBatcher(r, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Hour, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	b.Add(store.Heartbeat{MachineID: "a"})
	b.Add(store.Heartbeat{MachineID: "b"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.batches)
		r.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("full batch not flushed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Add(store.Heartbeat{MachineID: "c"})
	cancel()
	<-done
	if len(r.batches) != 2 {
		t.Fatalf("pending heartbeat not flushed on stop: %d batches", len(r.batches))
	}
}
