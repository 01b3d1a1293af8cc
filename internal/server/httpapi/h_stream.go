package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/agentmux"
	"github.com/corralhq/corral/internal/server/admission"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// streamConn is one agent push channel, whatever carries it: an HTTP/2
// stream of JSON lines (the agent's one connection) or a WebSocket (the
// HTTP/1.1 fallback).
type streamConn interface {
	// Read returns the next message from the agent.
	Read() (wire.StreamMessage, error)
	// Write sends msg, within a bounded time.
	Write(ctx context.Context, msg wire.StreamMessage) error
	// End closes the channel telling the agent why.
	End(reason string, how endKind)
}

// endKind is how a channel ends.
type endKind int

const (
	endNormal    endKind = iota // done (goodbye sent, or the agent left)
	endGoingAway                // the server stops or the stream was replaced: reconnect
	endRefused                  // the agent broke the protocol
)

// maxStreamMessage bounds one message from an agent.
const maxStreamMessage = 64 << 10

// serveStream runs one agent's push channel: hello, welcome, then the hub
// writes what is pushed while this goroutine — the only one the channel
// keeps — reads heartbeats, until either side ends it.
func (a *API) serveStream(ctx context.Context, m *store.Machine, conn streamConn) {
	stream, agentVersion, ok := a.openStream(ctx, m, conn)
	if !ok {
		return
	}
	defer a.Hub.Unregister(stream)
	stop := context.AfterFunc(ctx, func() { conn.End("server shutting down", endGoingAway) })
	defer stop()
	for {
		msg, err := conn.Read()
		if err != nil {
			return
		}
		a.onStreamMessage(m.ID, agentVersion, msg)
	}
}

// openStream takes the agent's hello, registers the stream with the hub and
// sends the welcome; after it the hub may write.
func (a *API) openStream(ctx context.Context, m *store.Machine, conn streamConn) (*push.Stream, string, bool) {
	noHello := time.AfterFunc(10*time.Second, func() { conn.End("no hello within 10s", endRefused) })
	hello, err := conn.Read()
	if !noHello.Stop() {
		return nil, "", false
	}
	if err != nil || hello.Type != wire.MsgHello {
		conn.End("first message must be hello", endRefused)
		return nil, "", false
	}
	if hello.ProtocolVersion < 1 || hello.ProtocolVersion > wire.ProtocolVersion {
		conn.End("unsupported protocol version", endRefused)
		return nil, "", false
	}
	a.Heartbeats.Add(store.Heartbeat{MachineID: m.ID, At: a.now(), AgentVersion: wire.CleanReported(hello.AgentVersion, 64)})
	stream := a.Hub.Attach(m.ID, hubWriter{a, conn})
	// Registered first, so nothing pushed after the machine was read is
	// lost; the hub writes it after the welcome (Start).
	welcome := wire.StreamMessage{Type: wire.MsgWelcome, ProtocolVersion: wire.ProtocolVersion, Generation: m.Generation,
		HeartbeatInterval: wire.Duration(a.Settings.HeartbeatInterval), SentAt: a.now()}
	if err := conn.Write(ctx, welcome); err != nil {
		a.Hub.Unregister(stream)
		return nil, "", false
	}
	stream.Start()
	return stream, hello.AgentVersion, true
}

// hubWriter lets the hub write to a channel.
type hubWriter struct {
	a    *API
	conn streamConn
}

func (w hubWriter) Deliver(msg wire.StreamMessage) error {
	msg.SentAt = w.a.now()
	return w.conn.Write(context.Background(), msg)
}

func (w hubWriter) End(reason string, goingAway bool) {
	how := endNormal
	if goingAway {
		how = endGoingAway
	}
	w.conn.End(reason, how)
}

// onStreamMessage handles one message of an open channel from the agent.
func (a *API) onStreamMessage(machineID, agentVersion string, msg wire.StreamMessage) {
	switch msg.Type {
	case wire.MsgHeartbeat:
		v := agentVersion
		if msg.AgentVersion != "" {
			v = msg.AgentVersion
		}
		a.Heartbeats.Add(store.Heartbeat{MachineID: machineID, At: a.now(), AgentVersion: wire.CleanReported(v, 64)})
		a.Metrics.heartbeats.Inc()
	case wire.MsgPong:
		// Latency probes are measured by the sender of the ping.
	}
}

// admit paces new channels and onboardings: over the rate, the caller gets
// 503 with a Retry-After that spreads a storm of them out.
func (a *API) admit(r *admission.Rate, kind, what string) error {
	ok, wait := r.Allow(a.now())
	if ok {
		return nil
	}
	if a.Metrics != nil {
		a.Metrics.admissionRefused.WithLabelValues(kind).Inc()
	}
	return &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable, retryAfter: wait, paced: true,
		message: fmt.Sprintf("too many %s at once on this server; try again in %d s", what, int((wait+time.Second-1)/time.Second))}
}

// postChannel is the push channel over HTTP/2: the request and response
// bodies stay open, one JSON message per line each way. It refuses
// HTTP/1.1, where a full-duplex body is not dependable; the agent then uses
// the WebSocket stream.
func (a *API) postChannel(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if r.ProtoMajor < 2 {
		return &apiError{status: http.StatusUpgradeRequired, code: "HTTP2Required",
			message: "the agent channel needs HTTP/2; use the WebSocket stream " + wire.PathStream}
	}
	if err := a.admit(a.streamAdmit, "stream", "agents connecting"); err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil
	}
	conn := &h2Conn{rc: rc, w: w, body: r.Body, r: bufio.NewReaderSize(r.Body, 512)}
	if d, ok := agentmux.DetacherOf(w); ok {
		a.serveDetached(r.Context(), c.Machine, conn, d)
		return nil
	}
	defer conn.finish()
	a.serveStream(r.Context(), c.Machine, conn)
	return nil
}

// serveDetached runs the channel over the agent's own protocol
// (agentmux): hello and welcome in this handler, then the stream is
// detached and the handler returns. The agent's lines are handled in its
// connection's reader goroutine and the hub writes pushes, so an idle
// agent's channel holds no goroutine. The channel ends when the server
// shuts down (the connection's base context: GOAWAY), the hub ends it, or
// the agent leaves or breaks the protocol.
func (a *API) serveDetached(ctx context.Context, m *store.Machine, conn *h2Conn, d agentmux.Detacher) {
	conn.detacher = d
	stream, agentVersion, ok := a.openStream(ctx, m, conn)
	if !ok {
		conn.finish()
		return
	}
	machineID := m.ID
	lines := lineSplitter{max: maxStreamMessage}
	recv := func(p []byte, end bool) {
		err := lines.feed(p, func(line []byte) bool {
			var msg wire.StreamMessage
			if err := json.Unmarshal(line, &msg); err != nil {
				conn.End("malformed message", endRefused)
				return false
			}
			a.onStreamMessage(machineID, agentVersion, msg)
			return true
		})
		switch {
		case err != nil:
			conn.End(err.Error(), endRefused)
		case end:
			conn.End("", endNormal) // the agent left
		}
	}
	// What the hello's reader took beyond the hello goes first.
	if n := conn.r.Buffered(); n > 0 {
		rest, _ := conn.r.Peek(n)
		recv(bytes.Clone(rest), false)
	}
	conn.r = nil
	// The request's context lives as long as the detached stream and ends
	// with the server's connections (shutdown): the agent is told to go
	// elsewhere.
	stop := context.AfterFunc(ctx, func() { conn.End("server shutting down", endGoingAway) })
	err := d.Detach(recv, func(error) {
		stop()
		a.Hub.Unregister(stream)
		conn.finish()
	})
	if err != nil {
		stop()
		a.Hub.Unregister(stream)
		conn.finish()
	}
}

// h2Conn carries the channel over an HTTP/2 stream.
type h2Conn struct {
	rc   *http.ResponseController
	w    http.ResponseWriter
	body io.Closer
	r    *bufio.Reader

	mu       sync.Mutex // serializes writes
	finished bool       // the handler returned: w must not be touched (under mu)
	ended    atomic.Bool
	// detacher is set when the channel runs detached over agentmux: the
	// stream outlives the handler and End closes it.
	detacher agentmux.Detacher
}

// finish marks the handler returned. The hub may still be delivering a
// message from its own goroutine; that write is refused instead of reaching
// a ResponseWriter net/http has already recycled.
func (c *h2Conn) finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finished = true
}

func (c *h2Conn) Read() (wire.StreamMessage, error) {
	var msg wire.StreamMessage
	line, err := readLine(c.r, maxStreamMessage)
	if err != nil {
		return msg, err
	}
	if err := json.Unmarshal(line, &msg); err != nil {
		return msg, fmt.Errorf("malformed message: %w", err)
	}
	return msg, nil
}

// lineSplitter cuts a stream of chunks into lines (without their '\n') of
// at most max bytes, keeping only the unfinished line between chunks.
type lineSplitter struct {
	max     int
	line    []byte
	refused bool
}

// feed calls emit for each line p completes, until emit returns false; a
// line over max is an error, and nothing is taken after either.
func (l *lineSplitter) feed(p []byte, emit func([]byte) bool) error {
	for len(p) > 0 && !l.refused {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(l.line)+len(p) > l.max {
				l.refused = true
				return errors.New("message too large")
			}
			l.line = append(l.line, p...)
			return nil
		}
		if len(l.line)+i > l.max {
			l.refused = true
			return errors.New("message too large")
		}
		line := p[:i]
		if len(l.line) > 0 {
			line = append(l.line, line...)
		}
		if !emit(line) {
			l.refused = true
			return nil
		}
		l.line = l.line[:0]
		if cap(l.line) > 4096 {
			l.line = nil // a long line's buffer is not kept for an idle channel
		}
		p = p[i+1:]
	}
	return nil
}

// readLine reads one line of at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		part, isPrefix, err := r.ReadLine()
		if err == io.EOF && len(line) > 0 {
			// A last line without its newline that filled the buffer: the
			// shorter ones come back whole, so this one does too.
			return line, nil
		}
		if err != nil {
			return nil, err
		}
		line = append(line, part...)
		if len(line) > max {
			return nil, errors.New("message too large")
		}
		if !isPrefix {
			return line, nil
		}
	}
}

func (c *h2Conn) Write(_ context.Context, msg wire.StreamMessage) error {
	if c.ended.Load() && msg.Type != wire.MsgClose {
		return errors.New("channel ended")
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished {
		return errors.New("channel ended")
	}
	// A write the agent does not take within 10 s ends the channel; the
	// deadline is lifted afterwards, since on HTTP/2 a deadline that passes
	// resets the stream even while it is idle.
	_ = c.rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	defer c.rc.SetWriteDeadline(time.Time{})
	if _, err := c.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return c.rc.Flush()
}

func (c *h2Conn) End(reason string, _ endKind) {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	if reason != "" {
		_ = c.Write(context.Background(), wire.StreamMessage{Type: wire.MsgClose, Reason: reason})
	}
	if c.detacher != nil {
		c.detacher.CloseStream()
		return
	}
	// Closing the request body ends the handler's read, and the handler's
	// return ends the stream; the connection and the agent's other
	// requests on it go on.
	c.body.Close()
}

// getStream upgrades to the WebSocket push channel (agents that cannot
// speak HTTP/2 to the server, e.g. through an HTTP/1.1-only proxy).
func (a *API) getStream(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.admit(a.streamAdmit, "stream", "agents connecting"); err != nil {
		return err
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{})
	if err != nil {
		return nil // Accept already wrote the HTTP error
	}
	conn.SetReadLimit(maxStreamMessage)
	defer conn.CloseNow()
	a.serveStream(r.Context(), c.Machine, &wsConn{c: conn})
	return nil
}

// wsConn carries the channel over a WebSocket.
type wsConn struct{ c *websocket.Conn }

func (c *wsConn) Read() (wire.StreamMessage, error) {
	var msg wire.StreamMessage
	// The read must not watch the request's context: the library closes
	// the connection abruptly when a read's context ends, which would race
	// the "going away" close at shutdown. It ends when the connection does.
	err := wsjson.Read(context.Background(), c.c, &msg)
	return msg, err
}

func (c *wsConn) Write(ctx context.Context, msg wire.StreamMessage) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return wsjson.Write(ctx, c.c, msg)
}

func (c *wsConn) End(reason string, how endKind) {
	code := websocket.StatusNormalClosure
	switch how {
	case endGoingAway:
		code = websocket.StatusGoingAway
	case endRefused:
		code = websocket.StatusPolicyViolation
	}
	c.c.Close(code, reason)
}
