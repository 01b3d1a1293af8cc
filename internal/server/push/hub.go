// Package push keeps the control plane's side of every agent's push channel:
// which machines have a live stream on this server, and a bounded outbound
// queue per stream. A change of desired state calls Notify and reaches the
// agent as soon as its stream writer runs.
//
// Notifier is the one interface contexts push through: the Hub is the
// notifier of a single server; package replicas fans out across replicas.
//
// Concurrency: all methods are safe for concurrent use. A Stream is owned by
// the HTTP handler that registered it. For a stream attached with a Writer
// the hub writes itself, from a short-lived goroutine per burst of messages
// (so an idle agent costs no goroutine of the hub's, and the handler's own
// goroutine only reads); a stream registered without one is drained by its
// handler from Out. When a stream's queue is full the hub ends it rather
// than block: the agent reconnects and its welcome carries the current
// generation, so nothing is lost.
package push

import (
	"context"
	"sync"

	"github.com/corralhq/corral/internal/wire"
)

// Notifier delivers push messages to whichever replica holds a machine's
// stream, as soon as the change they announce is committed. Delivery is
// best effort: an agent that misses a message catches up from the
// generation in its next welcome. Implementations take ctx for the I/O
// they may do (never under a lock), finish that I/O even if ctx is
// cancelled after the change was committed (within a bounded time), and
// never block on one machine's stream.
type Notifier interface {
	// Notify tells the machine its desired state changed to generation gen.
	Notify(ctx context.Context, machineID string, gen int64)
	// Goodbye tells the machine its identity is gone; its stream closes.
	Goodbye(ctx context.Context, machineID, reason string)
}

var _ Notifier = (*Hub)(nil)

// ManyNotifier is a Notifier that announces many generations at once more
// cheaply than one by one (PostgreSQL: one round trip for thousands).
type ManyNotifier interface {
	NotifyMany(ctx context.Context, gens map[string]int64)
}

// NotifyAll tells each machine of gens its new generation, through n's
// NotifyMany if it has one.
func NotifyAll(ctx context.Context, n Notifier, gens map[string]int64) {
	if len(gens) == 0 {
		return
	}
	if m, ok := n.(ManyNotifier); ok {
		m.NotifyMany(ctx, gens)
		return
	}
	for id, gen := range gens {
		n.Notify(ctx, id, gen)
	}
}

// QueueSize is the number of messages buffered per stream, not counting
// tunnel requests (MaxPendingTunnels). Syncs are coalesced (a queued sync
// takes the newer generation), so a burst of changes queues one.
const QueueSize = 16

// MaxPendingTunnels bounds the tunnel requests queued for one stream; more
// are refused as Busy, the stream stays.
const MaxPendingTunnels = 256

// Writer is what the hub writes an attached stream's messages with.
type Writer interface {
	// Deliver writes msg to the agent within a bounded time.
	Deliver(msg wire.StreamMessage) error
	// End ends the channel, telling the agent why; the handler's read then
	// fails and it returns. goingAway says the agent should reconnect.
	End(reason string, goingAway bool)
}

// Stream is one agent's live push channel on this server.
type Stream struct {
	MachineID string
	// Out carries the messages not yet read, for a stream whose handler
	// drains it itself (Register); nil for an attached stream.
	Out chan wire.StreamMessage
	// Closed is closed when the hub drops the stream (replaced by a newer
	// stream of the same machine, queue overflow, or goodbye).
	Closed chan struct{}
	once   sync.Once

	w Writer
	// An attached stream's queue: nil while idle, so an idle agent costs
	// no buffer. draining is set while a goroutine writes it (and until
	// Start).
	mu       sync.Mutex
	q        []wire.StreamMessage
	tunnels  int
	draining bool
}

func (s *Stream) close() { s.once.Do(func() { close(s.Closed) }) }

// end ends an attached stream's channel (once) and closes the stream.
func (s *Stream) end(reason string, goingAway bool) {
	s.once.Do(func() {
		close(s.Closed)
		if s.w != nil {
			s.w.End(reason, goingAway)
		}
	})
}

// Start lets the hub write an attached stream's queued messages: call it
// once the handler has written its own first message (the welcome).
func (s *Stream) Start() {
	s.mu.Lock()
	s.draining = len(s.q) > 0
	run := s.draining
	s.mu.Unlock()
	if run {
		go s.drain()
	}
}

// Delivery is what became of a message offered to a machine's stream.
type Delivery int

const (
	// NoStream: this server holds no stream of the machine.
	NoStream Delivery = iota
	// Queued: the message will be written.
	Queued
	// Busy: too many tunnel requests wait; this one is dropped, the
	// stream stays.
	Busy
	// Overflowed: the queue was full; the stream was ended (the agent
	// reconnects and its welcome carries the current generation).
	Overflowed
)

// enqueue adds msg to an attached stream's queue.
func (s *Stream) enqueue(msg wire.StreamMessage) Delivery {
	s.mu.Lock()
	if msg.Type == wire.MsgSync {
		for i := range s.q {
			if s.q[i].Type == wire.MsgSync {
				s.q[i].Generation = max(s.q[i].Generation, msg.Generation)
				s.mu.Unlock()
				return Queued
			}
		}
	}
	switch {
	case msg.Type == wire.MsgTunnel && s.tunnels >= MaxPendingTunnels:
		s.mu.Unlock()
		return Busy
	case msg.Type != wire.MsgTunnel && len(s.q)-s.tunnels >= QueueSize:
		s.mu.Unlock()
		return Overflowed
	}
	if msg.Type == wire.MsgTunnel {
		s.tunnels++
	}
	s.q = append(s.q, msg)
	run := !s.draining
	s.draining = true
	s.mu.Unlock()
	if run {
		go s.drain()
	}
	return Queued
}

// drain writes the queued messages, then stops.
func (s *Stream) drain() {
	for {
		s.mu.Lock()
		if len(s.q) == 0 {
			s.q = nil
			s.draining = false
			s.mu.Unlock()
			return
		}
		msg := s.q[0]
		s.q[0] = wire.StreamMessage{}
		s.q = s.q[1:]
		if msg.Type == wire.MsgTunnel {
			s.tunnels--
		}
		s.mu.Unlock()
		select {
		case <-s.Closed:
			return
		default:
		}
		if err := s.w.Deliver(msg); err != nil {
			s.end("", false)
			return
		}
		if msg.Type == wire.MsgGoodbye {
			s.end("goodbye", false)
			return
		}
	}
}

// Hub indexes live streams by machine id.
type Hub struct {
	mu      sync.Mutex
	streams map[string]*Stream
	// OnCount, when set, is called with the number of live streams after
	// every change (metrics). It must not call back into the hub.
	OnCount func(n int)
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{streams: make(map[string]*Stream)} }

// Register adds a stream for machineID whose handler drains Out itself,
// closing any older stream of the same machine (an agent has at most one).
func (h *Hub) Register(machineID string) *Stream { return h.add(machineID, nil) }

// Attach adds a stream the hub writes with w (after Start), closing any
// older stream of the same machine.
func (h *Hub) Attach(machineID string, w Writer) *Stream { return h.add(machineID, w) }

func (h *Hub) add(machineID string, w Writer) *Stream {
	s := &Stream{MachineID: machineID, Closed: make(chan struct{}), w: w}
	if w == nil {
		s.Out = make(chan wire.StreamMessage, QueueSize)
	}
	s.draining = w != nil // held until Start
	h.mu.Lock()
	if old := h.streams[machineID]; old != nil {
		old.end("stream replaced", false)
	}
	h.streams[machineID] = s
	n := len(h.streams)
	h.mu.Unlock()
	h.count(n)
	return s
}

// Unregister removes s if it is still the machine's current stream.
func (h *Hub) Unregister(s *Stream) {
	h.mu.Lock()
	if h.streams[s.MachineID] == s {
		delete(h.streams, s.MachineID)
	}
	n := len(h.streams)
	h.mu.Unlock()
	s.end("", false)
	h.count(n)
}

// Send queues msg for the machine's stream. It reports whether the machine
// has a stream here; a full queue closes the stream.
func (h *Hub) Send(machineID string, msg wire.StreamMessage) bool {
	return h.Offer(machineID, msg) != NoStream
}

// Offer queues msg for the machine's stream and says what became of it.
func (h *Hub) Offer(machineID string, msg wire.StreamMessage) Delivery {
	h.mu.Lock()
	s := h.streams[machineID]
	h.mu.Unlock()
	if s == nil {
		return NoStream
	}
	if s.w != nil {
		d := s.enqueue(msg)
		if d == Overflowed {
			h.Unregister(s)
		}
		return d
	}
	select {
	case s.Out <- msg:
		return Queued
	default:
		h.Unregister(s)
		return Overflowed
	}
}

// Notify implements Notifier for the streams of this server.
func (h *Hub) Notify(_ context.Context, machineID string, gen int64) {
	h.Send(machineID, wire.StreamMessage{Type: wire.MsgSync, Generation: gen})
}

// Goodbye implements Notifier for the streams of this server: the stream
// is dropped after the message is written.
func (h *Hub) Goodbye(_ context.Context, machineID, reason string) {
	h.Send(machineID, wire.StreamMessage{Type: wire.MsgGoodbye, Reason: reason})
}

// Connected returns the number of live streams on this server.
func (h *Hub) Connected() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}

// MachineIDs returns the machines with a live stream here.
func (h *Hub) MachineIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.streams))
	for id := range h.streams {
		ids = append(ids, id)
	}
	return ids
}

// Has reports whether machineID has a live stream here.
func (h *Hub) Has(machineID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[machineID] != nil
}

func (h *Hub) count(n int) {
	if h.OnCount != nil {
		h.OnCount(n)
	}
}
