package agentmux

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

var (
	// ErrClosed is the error of a stream whose connection ended.
	ErrClosed = errors.New("agentmux: connection closed")
	// ErrReset is the error of a stream the peer abandoned.
	ErrReset = errors.New("agentmux: stream reset by the peer")
	// errLocalReset is the error of a stream this side abandoned.
	errLocalReset = errors.New("agentmux: stream abandoned")
)

// conn is what the client and the server share: frame writing, the stream
// table and flow control. Reading is the owner's loop.
type conn struct {
	nc           net.Conn
	writeTimeout time.Duration

	wmu  sync.Mutex // one frame write at a time
	werr error      // under wmu: the first write error; later writes fail at once

	mu      sync.Mutex
	streams map[uint32]*stream
	err     error // set once the connection is closed
	goAway  bool  // no new streams (sent by the server, or received by the client)
	// onEmpty runs (without mu) when the last stream ends.
	onEmpty func()
}

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, headerLen+MaxData); return &b }}

// writeFrame writes one frame; a failed write closes the connection.
func (c *conn) writeFrame(typ frameType, flags uint8, id uint32, payload []byte) error {
	return c.writeFrames(id, frame{typ, flags, payload})
}

// frame is one frame of a writeFrames.
type frame struct {
	typ     frameType
	flags   uint8
	payload []byte
}

// writeFrames writes frames of stream id in one write.
func (c *conn) writeFrames(id uint32, fs ...frame) error {
	bp := writeBufs.Get().(*[]byte)
	b := (*bp)[:0]
	for _, f := range fs {
		b = appendFrame(b, f.typ, f.flags, id, f.payload)
	}
	err := c.write(b)
	if cap(b) <= 4*(headerLen+MaxData) {
		*bp = b[:0]
		writeBufs.Put(bp)
	}
	return err
}

func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	err := c.werr
	if err == nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		if _, err = c.nc.Write(b); err != nil {
			c.werr = err
		}
	}
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
		return ErrClosed
	}
	return nil
}

// close ends the connection and every stream on it.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	streams := c.streams
	c.streams = nil
	c.mu.Unlock()
	_ = c.nc.Close()
	for _, s := range streams {
		s.fail(ErrClosed, false)
	}
}

func (c *conn) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

func (c *conn) lookup(id uint32) *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

func (c *conn) remove(s *stream) {
	c.mu.Lock()
	if c.streams[s.id] != s {
		c.mu.Unlock()
		return
	}
	delete(c.streams, s.id)
	empty := len(c.streams) == 0 && c.err == nil
	onEmpty := c.onEmpty
	c.mu.Unlock()
	if empty && onEmpty != nil {
		onEmpty()
	}
}

// ping answers a PING.
func (c *conn) ping(payload []byte) error { return c.writeFrame(framePing, flagAck, 0, payload) }

// stream is one request and its response. Body bytes received wait in
// chunks until read (or go to recv, for a detached stream); the peer may
// send at most recvAllowed more.
type stream struct {
	c  *conn
	id uint32

	readWake  chan struct{} // a reader may go on
	writeWake chan struct{} // a writer may go on

	mu            sync.Mutex
	in            [][]byte
	inLen         int
	inEnd         bool  // the peer ended its direction
	err           error // the stream failed (reset, connection closed)
	recvAllowed   int   // bytes the peer may still send
	consumed      int   // read since the last WINDOW
	readDeadline  time.Time
	sendWindow    int // bytes this side may still send
	outEnd        bool
	writeDeadline time.Time
	recv          func(p []byte, end bool) // detached: body bytes go here, in the reader
	onFail        func(err error)          // runs once when the stream fails
	done          bool                     // failed, or both directions ended

	// A client's stream: ready is closed when the response head came
	// (head) or the stream failed.
	ready   chan struct{}
	head    []byte
	headEnd bool
}

func newStream(c *conn, id uint32) *stream {
	return &stream{c: c, id: id, readWake: make(chan struct{}, 1), writeWake: make(chan struct{}, 1),
		recvAllowed: InitialWindow, sendWindow: InitialWindow}
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// deliver takes body bytes from the peer (the reader goroutine).
func (s *stream) deliver(p []byte, end bool) error {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil // abandoned here: what was in flight is dropped
	}
	if s.inEnd {
		s.mu.Unlock()
		return protocolError("DATA after the end of the stream")
	}
	if len(p) > s.recvAllowed {
		s.mu.Unlock()
		return protocolError("more data than the window allows")
	}
	s.recvAllowed -= len(p)
	if end {
		s.inEnd = true
	}
	if recv := s.recv; recv != nil {
		s.consumed += len(p)
		credit := s.takeCredit()
		finished := s.finishedLocked()
		s.mu.Unlock()
		recv(p, end)
		s.sendCredit(credit)
		if finished {
			s.c.remove(s)
		}
		return nil
	}
	if len(p) > 0 {
		s.in = append(s.in, p)
		s.inLen += len(p)
	}
	s.mu.Unlock()
	wake(s.readWake)
	return nil
}

// takeCredit returns the bytes to grant back to the peer, if enough were
// consumed to be worth a frame (under mu).
func (s *stream) takeCredit() int {
	if s.inEnd || s.consumed < InitialWindow/4 {
		return 0
	}
	n := s.consumed
	s.consumed = 0
	s.recvAllowed += n
	return n
}

func (s *stream) sendCredit(n int) {
	if n > 0 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(n))
		_ = s.c.writeFrame(frameWindow, 0, s.id, b[:])
	}
}

// addWindow takes a WINDOW frame.
func (s *stream) addWindow(n uint32) error {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil
	}
	if n == 0 || int64(s.sendWindow)+int64(n) > 1<<31-1 {
		s.mu.Unlock()
		return protocolError("bad WINDOW increment")
	}
	s.sendWindow += int(n)
	s.mu.Unlock()
	wake(s.writeWake)
	return nil
}

// Read reads body bytes from the peer.
func (s *stream) Read(p []byte) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if s.inLen > 0 {
			n := 0
			for n < len(p) && len(s.in) > 0 {
				k := copy(p[n:], s.in[0])
				n += k
				if k == len(s.in[0]) {
					s.in[0] = nil
					s.in = s.in[1:]
				} else {
					s.in[0] = s.in[0][k:]
				}
			}
			if len(s.in) == 0 {
				s.in = nil
			}
			s.inLen -= n
			s.consumed += n
			credit := s.takeCredit()
			s.mu.Unlock()
			s.sendCredit(credit)
			return n, nil
		}
		switch {
		case s.inEnd:
			finished := s.finishedLocked()
			s.mu.Unlock()
			if finished {
				s.c.remove(s)
			}
			return 0, io.EOF
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return 0, err
		}
		deadline := s.readDeadline
		s.mu.Unlock()
		if err := wait(s.readWake, deadline, &timer); err != nil {
			return 0, err
		}
	}
}

// wait waits for a wake-up on ch or the deadline (none when zero), reusing
// *timer across the calls of one Read or write.
func wait(ch chan struct{}, deadline time.Time, timer **time.Timer) error {
	var expired <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		if *timer == nil {
			*timer = time.NewTimer(d)
		} else {
			(*timer).Reset(d)
		}
		expired = (*timer).C
	}
	select {
	case <-ch:
	case <-expired:
	}
	return nil
}

// write sends body bytes, waiting for window; end ends this direction.
func (s *stream) write(p []byte, end bool) (int, error) {
	written := 0
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return written, err
		}
		if s.outEnd {
			s.mu.Unlock()
			return written, errors.New("agentmux: write after the end of the body")
		}
		n := min(len(p), MaxData, s.sendWindow)
		if n == 0 && len(p) > 0 {
			deadline := s.writeDeadline
			s.mu.Unlock()
			if err := wait(s.writeWake, deadline, &timer); err != nil {
				return written, err
			}
			continue
		}
		last := end && n == len(p)
		s.sendWindow -= n
		if last {
			s.outEnd = true
		}
		finished := last && s.finishedLocked()
		s.mu.Unlock()
		var flags uint8
		if last {
			flags = flagEnd
		}
		if err := s.c.writeFrame(frameData, flags, s.id, p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
		if finished {
			s.c.remove(s)
		}
		if len(p) == 0 && (!end || last) {
			return written, nil
		}
	}
}

// finishedLocked reports whether both directions ended, marking the stream
// done the first time (under mu).
// takeWindowForEnd takes n bytes of the send window for a last DATA frame
// of n <= MaxData bytes, if the window has them: ok says so (the caller
// then writes that frame), finished that both directions are now done.
func (s *stream) takeWindowForEnd(n int) (ok, finished bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.outEnd || n > MaxData || s.sendWindow < n {
		return false, false
	}
	s.sendWindow -= n
	s.outEnd = true
	return true, s.finishedLocked()
}

func (s *stream) finishedLocked() bool {
	if s.done || !s.inEnd || !s.outEnd || s.inLen > 0 {
		return false
	}
	s.done = true
	return true
}

// fail ends the stream with err; sendReset tells the peer.
func (s *stream) fail(err error, sendReset bool) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	wasDone := s.done
	s.done = true
	onFail := s.onFail
	s.onFail = nil
	if s.ready != nil && s.head == nil {
		close(s.ready)
	}
	s.mu.Unlock()
	wake(s.readWake)
	wake(s.writeWake)
	if sendReset && !wasDone {
		_ = s.c.writeFrame(frameReset, 0, s.id, nil)
	}
	s.c.remove(s)
	if onFail != nil {
		onFail(err)
	}
}

func (s *stream) setReadDeadline(t time.Time) {
	s.mu.Lock()
	s.readDeadline = t
	s.mu.Unlock()
	wake(s.readWake)
}

func (s *stream) setWriteDeadline(t time.Time) {
	s.mu.Lock()
	s.writeDeadline = t
	s.mu.Unlock()
	wake(s.writeWake)
}

// readFrame reads the next frame, its payload into a new slice.
func readFrame(r io.Reader) (frameHeader, []byte, error) {
	h, err := readHeader(r)
	if err != nil || h.length == 0 {
		return h, nil, err
	}
	b := make([]byte, h.length)
	_, err = io.ReadFull(r, b)
	return h, b, err
}

// handleCommon handles the frames both sides treat alike; it reports
// whether the frame was one of them.
func (c *conn) handleCommon(h frameHeader, payload []byte) (bool, error) {
	switch h.typ {
	case frameWindow:
		if s := c.lookup(h.stream); s != nil {
			return true, s.addWindow(binary.BigEndian.Uint32(payload))
		}
		return true, nil
	case frameReset:
		if s := c.lookup(h.stream); s != nil {
			s.fail(ErrReset, false)
		}
		return true, nil
	case framePing:
		if h.flags&flagAck == 0 {
			return true, c.ping(payload)
		}
		return true, nil
	}
	return false, nil
}
