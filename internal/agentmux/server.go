package agentmux

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

// ServerOptions configure Serve.
type ServerOptions struct {
	// BaseContext is the parent of every request's context (by default the
	// one net/http gives the connection, with http.ServerContextKey). When
	// it ends the server sends GOAWAY and closes the connection once its
	// streams are done, or DrainTimeout later.
	BaseContext context.Context
	// IdleTimeout closes a connection the client sent nothing on for this
	// long (its agent pings after 30 s of silence, and heartbeats).
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one frame.
	WriteTimeout time.Duration
	// DrainTimeout bounds the wait for streams after BaseContext ends.
	DrainTimeout time.Duration
	// Logger gets handler panics and protocol errors (at debug).
	Logger *slog.Logger
}

func (o *ServerOptions) defaults() {
	if o.BaseContext == nil {
		o.BaseContext = context.Background()
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 3 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Serve serves a connection that negotiated ALPN until it ends, running h
// for each request. It runs in the goroutine that called it, which is the
// connection's reader for its whole life: call it from a goroutine with a
// small stack (not the one that ran the TLS handshake, whose stack stays
// as deep as the handshake needed), or from http.Server.TLSNextProto.
func Serve(tc *tls.Conn, h http.Handler, o ServerOptions) {
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok && o.BaseContext == nil {
		o.BaseContext = bc.BaseContext()
	}
	serve(tc, tc.ConnectionState, h, o)
}

// serve is Serve over any connection (tests and fuzzing use a pipe).
func serve(nc net.Conn, state func() tls.ConnectionState, h http.Handler, o ServerOptions) {
	o.defaults()
	sc := &serverConn{conn: conn{nc: nc, writeTimeout: o.WriteTimeout, streams: map[uint32]*stream{}}, state: state, h: h, o: o}
	stop := context.AfterFunc(o.BaseContext, sc.drain)
	defer stop()
	err := sc.readLoop()
	sc.close(err)
	var pe protocolError
	if errors.As(err, &pe) {
		o.Logger.Debug("agent connection closed", "remote", nc.RemoteAddr().String(), "err", err)
	}
}

type serverConn struct {
	conn
	state  func() tls.ConnectionState
	h      http.Handler
	o      ServerOptions
	lastID uint32
}

func (sc *serverConn) readLoop() error {
	for {
		_ = sc.nc.SetReadDeadline(time.Now().Add(sc.o.IdleTimeout))
		h, payload, err := readFrame(sc.nc)
		if err != nil {
			return err
		}
		if ok, err := sc.handleCommon(h, payload); ok {
			if err != nil {
				return err
			}
			continue
		}
		switch h.typ {
		case frameHead:
			if err := sc.newRequest(h, payload); err != nil {
				return err
			}
		case frameData:
			s := sc.lookup(h.stream)
			if s == nil {
				if h.stream > sc.lastID {
					return protocolError("DATA on a stream never opened")
				}
				continue // a stream already ended here
			}
			if err := s.deliver(payload, h.flags&flagEnd != 0); err != nil {
				return err
			}
		case frameGoAway:
			return nil // the client leaves
		}
	}
}

// drain stops taking streams and closes the connection once they are
// done (or DrainTimeout later).
func (sc *serverConn) drain() {
	sc.mu.Lock()
	if sc.err != nil || sc.goAway {
		sc.mu.Unlock()
		return
	}
	sc.goAway = true
	empty := len(sc.streams) == 0
	sc.onEmpty = func() { sc.close(errors.New("drained")) }
	sc.mu.Unlock()
	_ = sc.writeFrame(frameGoAway, 0, 0, []byte("server shutting down"))
	if empty {
		sc.close(errors.New("drained"))
		return
	}
	time.AfterFunc(sc.o.DrainTimeout, func() { sc.close(errors.New("drain timeout")) })
}

func (sc *serverConn) newRequest(h frameHeader, head []byte) error {
	if h.stream%2 != 1 || h.stream <= sc.lastID {
		if sc.lookup(h.stream) != nil {
			return protocolError("a second HEAD on a request stream")
		}
		return protocolError("stream ids must be odd and increasing")
	}
	sc.lastID = h.stream
	s := newStream(&sc.conn, h.stream)
	if h.flags&flagEnd != 0 {
		s.inEnd = true
	}
	sc.mu.Lock()
	refuse := ""
	switch {
	case sc.err != nil:
		sc.mu.Unlock()
		return nil
	case sc.goAway:
		refuse = "server shutting down"
	case len(sc.streams) >= MaxStreams:
		refuse = "too many streams"
	default:
		sc.streams[h.stream] = s
	}
	sc.mu.Unlock()
	if refuse != "" {
		return sc.writeFrame(frameReset, 0, h.stream, []byte(refuse))
	}
	req, err := sc.parseRequest(s, head)
	if err != nil {
		// Answered like net/http answers a malformed request.
		rw := &responseWriter{s: s, header: http.Header{}}
		http.Error(rw, "400 Bad Request: "+err.Error(), http.StatusBadRequest)
		go rw.finish()
		return nil
	}
	goServe(func() { sc.serveStream(s, req) })
	return nil
}

func (sc *serverConn) parseRequest(s *stream, head []byte) (*http.Request, error) {
	req, err := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(head), len(head)+16))
	if err != nil {
		return nil, err
	}
	if req.Header.Get("Transfer-Encoding") != "" || req.Method == http.MethodConnect {
		return nil, errors.New("Transfer-Encoding and CONNECT are not used here")
	}
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	req.Close = false
	req.RemoteAddr = sc.nc.RemoteAddr().String()
	st := sc.state()
	req.TLS = &st
	req.RequestURI = req.URL.RequestURI()
	if s.inEnd {
		req.Body, req.ContentLength = http.NoBody, 0
	} else {
		req.Body = &requestBody{s: s}
		if req.ContentLength == 0 && req.Header.Get("Content-Length") == "" {
			req.ContentLength = -1
		}
	}
	ctx, cancel := context.WithCancel(sc.o.BaseContext)
	s.onFail = func(error) { cancel() }
	return req.WithContext(ctx), nil
}

func (sc *serverConn) serveStream(s *stream, req *http.Request) {
	rw := &responseWriter{s: s, header: http.Header{}}
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				sc.o.Logger.Error("panic serving agent request", "path", req.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			s.fail(errLocalReset, true)
			return
		}
		rw.finish()
	}()
	sc.h.ServeHTTP(rw, req)
}

// requestBody is a request's body as the handler reads it.
type requestBody struct{ s *stream }

func (b *requestBody) Read(p []byte) (int, error) { return b.s.Read(p) }

// Close abandons what the client may still send: the stream is reset once
// the response is written.
func (b *requestBody) Close() error { return nil }

// Detacher is implemented by the ResponseWriter of this transport: a handler
// of a long-lived full-duplex stream (the agent's push channel) can hand
// the stream over to callbacks and return, so the stream costs no
// goroutine while it is idle.
type Detacher interface {
	// Detach sends the response head (WriteHeader must have been called)
	// and from then on hands each body chunk the client sends to recv, in
	// the connection's reader goroutine (recv must not block; end says the
	// client ended its side). onEnd runs once when the stream ends for any
	// reason. If Detach returns an error (the stream had already ended),
	// onEnd never runs; otherwise it runs exactly once. After Detach the
	// handler returns; the ResponseWriter stays usable (Write, Flush; writes
	// from one goroutine at a time) and CloseStream ends the stream.
	Detach(recv func(p []byte, end bool), onEnd func(err error)) error
	// CloseStream ends a detached stream (what was written is still
	// delivered first).
	CloseStream()
}

// DetacherOf finds the Detacher under w and the middleware wrapping it
// (each of which offers Unwrap, as for http.ResponseController).
func DetacherOf(w http.ResponseWriter) (Detacher, bool) {
	for {
		if d, ok := w.(Detacher); ok {
			return d, true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil, false
		}
		w = u.Unwrap()
	}
}

// responseWriter is a handler's http.ResponseWriter.
type responseWriter struct {
	s      *stream
	header http.Header

	mu       sync.Mutex // writes after Detach may come from another goroutine than the handler's
	status   int
	headSent bool
	buf      []byte
	detached bool
	finished bool
}

var _ Detacher = (*responseWriter)(nil)

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *responseWriter) writeHeaderLocked(code int) {
	if w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 {
		return // informational answers are not carried
	}
	w.status = code
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished {
		return 0, http.ErrHandlerTimeout
	}
	w.writeHeaderLocked(http.StatusOK)
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= MaxData {
		if err := w.flushLocked(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// Flush sends what was written.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *responseWriter) FlushError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(http.StatusOK)
	return w.flushLocked(false)
}

// flushLocked sends the head if not yet sent and the buffered body; end
// ends the response.
func (w *responseWriter) flushLocked(end bool) error {
	if !w.headSent {
		w.headSent = true
		if w.header.Get("Content-Type") == "" && len(w.buf) > 0 && w.header.Get("Content-Encoding") == "" {
			w.header.Set("Content-Type", http.DetectContentType(w.buf))
		}
		if end && bodyAllowed(w.status) && w.header.Get("Content-Length") == "" {
			w.header.Set("Content-Length", strconv.Itoa(len(w.buf)))
		}
		var flags uint8
		if end && len(w.buf) == 0 {
			flags = flagEnd
		}
		if end && len(w.buf) > 0 {
			// The whole response at once (most are): head and body in one
			// write, so one TLS record and one syscall.
			if ok, finished := w.s.takeWindowForEnd(len(w.buf)); ok {
				err := w.s.c.writeFrames(w.s.id, frame{frameHead, 0, w.head()}, frame{frameData, flagEnd, w.buf})
				w.buf = nil
				if err == nil && finished {
					w.s.c.remove(w.s)
				}
				return err
			}
		}
		if err := w.s.c.writeFrame(frameHead, flags, w.s.id, w.head()); err != nil {
			return err
		}
		if flags != 0 {
			w.s.mu.Lock()
			w.s.outEnd = true
			finished := w.s.finishedLocked()
			w.s.mu.Unlock()
			if finished {
				w.s.c.remove(w.s)
			}
			return nil
		}
	}
	if len(w.buf) == 0 && !end {
		return nil
	}
	_, err := w.s.write(w.buf, end)
	w.buf = w.buf[:0]
	if cap(w.buf) > 4*MaxData {
		w.buf = nil
	}
	return err
}

func (w *responseWriter) head() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %03d %s\r\n", w.status, http.StatusText(w.status))
	h := w.header.Clone()
	h.Del("Connection")
	h.Del("Transfer-Encoding")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}

// finish ends the response when the handler returns.
func (w *responseWriter) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.detached {
		return
	}
	w.finished = true
	w.writeHeaderLocked(http.StatusOK)
	if err := w.flushLocked(true); err != nil {
		return
	}
	// A request body the handler did not read to its end is abandoned.
	w.s.mu.Lock()
	unread := !w.s.inEnd || w.s.inLen > 0
	w.s.mu.Unlock()
	if unread {
		w.s.fail(errLocalReset, true)
	} else {
		w.s.fail(errLocalReset, false) // both ended: releases the request context
	}
}

// SetWriteDeadline is for http.ResponseController: a write waiting for the
// client's window gives up at t.
func (w *responseWriter) SetWriteDeadline(t time.Time) error {
	w.s.setWriteDeadline(t)
	return nil
}

// SetReadDeadline is for http.ResponseController: a read of the request
// body gives up at t.
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	w.s.setReadDeadline(t)
	return nil
}

// EnableFullDuplex is for http.ResponseController: streams are always full
// duplex.
func (w *responseWriter) EnableFullDuplex() error { return nil }

func (w *responseWriter) Detach(recv func(p []byte, end bool), onEnd func(err error)) error {
	w.mu.Lock()
	if w.status == 0 {
		w.mu.Unlock()
		return errors.New("agentmux: Detach before WriteHeader")
	}
	w.detached = true
	w.mu.Unlock()

	// Hand over what the handler left unread, in order: recv is installed
	// only once nothing is pending, so the reader's next chunk follows.
	s := w.s
	for {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		pending := s.in
		s.consumed += s.inLen
		s.in, s.inLen = nil, 0
		credit := s.takeCredit()
		if len(pending) == 0 {
			end := s.inEnd
			s.recv = recv
			prev := s.onFail
			s.onFail = func(err error) {
				if prev != nil {
					prev(err)
				}
				onEnd(err)
			}
			s.mu.Unlock()
			s.sendCredit(credit)
			if end {
				recv(nil, true)
			}
			break
		}
		s.mu.Unlock()
		for _, p := range pending {
			recv(p, false)
		}
		s.sendCredit(credit)
	}
	// From here on any end of the stream runs onEnd, a failed head too.
	w.mu.Lock()
	_ = w.flushLocked(false)
	w.mu.Unlock()
	return nil
}

func (w *responseWriter) CloseStream() {
	w.mu.Lock()
	_ = w.flushLocked(false)
	w.finished = true
	w.mu.Unlock()
	w.s.fail(errLocalReset, true)
}

var _ io.Reader = (*requestBody)(nil)
