package agentmux

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Transport is an http.RoundTripper that sends every request to a server
// over one connection speaking this protocol. Where it cannot (a proxy is
// to be used, or the server does not offer the protocol) it hands the
// request to Fallback.
type Transport struct {
	// TLSClientConfig is cloned for each connection, with NextProtos set.
	TLSClientConfig *tls.Config
	// DialContext dials the TCP connection (net.Dialer when nil).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Proxy, when it names a proxy for a request, sends it to Fallback.
	Proxy func(*http.Request) (*url.URL, error)
	// Fallback carries what this transport does not (required).
	Fallback http.RoundTripper
	// HandshakeTimeout bounds the TLS handshake (default 15 s).
	HandshakeTimeout time.Duration
	// PingAfterSilence and PingTimeout: a connection the server sent
	// nothing on for PingAfterSilence is pinged, and closed when nothing
	// comes within PingTimeout (defaults 30 s and 15 s).
	PingAfterSilence, PingTimeout time.Duration
	// IdleTimeout closes a connection without streams (default 90 s).
	IdleTimeout time.Duration

	mu       sync.Mutex
	conns    map[string]*clientConn
	dialing  map[string]*dialCall
	fallback map[string]time.Time // servers that did not offer the protocol, until when
}

type dialCall struct {
	done chan struct{}
	cc   *clientConn
	err  error
}

// errNotOffered says the server did not negotiate the protocol.
var errNotOffered = errors.New("agentmux: the server does not offer " + ALPN)

// fallbackFor is how long a server that did not offer the protocol is sent
// everything through Fallback before it is tried again.
const fallbackFor = 10 * time.Minute

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return t.Fallback.RoundTrip(req)
	}
	if t.Proxy != nil {
		if u, err := t.Proxy(req); err != nil {
			return nil, err
		} else if u != nil {
			return t.Fallback.RoundTrip(req)
		}
	}
	addr := hostPort(req.URL)
	for attempt := 0; ; attempt++ {
		t.mu.Lock()
		until, fb := t.fallback[addr]
		t.mu.Unlock()
		if fb && time.Now().Before(until) {
			return t.Fallback.RoundTrip(req)
		}
		cc, err := t.conn(req.Context(), addr, req.URL.Hostname())
		if errors.Is(err, errNotOffered) {
			t.mu.Lock()
			if t.fallback == nil {
				t.fallback = map[string]time.Time{}
			}
			t.fallback[addr] = time.Now().Add(fallbackFor)
			t.mu.Unlock()
			return t.Fallback.RoundTrip(req)
		}
		if err != nil {
			return nil, err
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.GotConn != nil {
			trace.GotConn(httptrace.GotConnInfo{Conn: cc.nc, Reused: attempt > 0 || cc.used.Swap(true)})
		}
		resp, err := cc.roundTrip(req)
		var retry retryable
		if errors.As(err, &retry) && attempt < 2 && (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil) {
			if req.Body != nil && req.Body != http.NoBody {
				body, gerr := req.GetBody()
				if gerr != nil {
					return nil, err
				}
				req = req.Clone(req.Context())
				req.Body = body
			}
			continue // the server took nothing of it: another connection
		}
		return resp, err
	}
}

// CloseIdleConnections closes connections without streams, and Fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var idle []*clientConn
	for _, cc := range t.conns {
		idle = append(idle, cc)
	}
	t.mu.Unlock()
	for _, cc := range idle {
		cc.mu.Lock()
		empty := len(cc.streams) == 0
		cc.mu.Unlock()
		if empty {
			cc.close(errors.New("idle"))
		}
	}
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "443")
}

// conn returns the live connection to addr, dialing one if needed.
func (t *Transport) conn(ctx context.Context, addr, serverName string) (*clientConn, error) {
	t.mu.Lock()
	if cc := t.conns[addr]; cc != nil && cc.usable() {
		t.mu.Unlock()
		return cc, nil
	}
	call := t.dialing[addr]
	if call == nil {
		call = &dialCall{done: make(chan struct{})}
		if t.dialing == nil {
			t.dialing = map[string]*dialCall{}
		}
		t.dialing[addr] = call
		go func() {
			call.cc, call.err = t.dial(addr, serverName)
			t.mu.Lock()
			delete(t.dialing, addr)
			if call.err == nil {
				if t.conns == nil {
					t.conns = map[string]*clientConn{}
				}
				t.conns[addr] = call.cc
			}
			t.mu.Unlock()
			close(call.done)
		}()
	}
	t.mu.Unlock()
	select {
	case <-call.done:
		return call.cc, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (t *Transport) dial(addr, serverName string) (*clientConn, error) {
	hs := t.HandshakeTimeout
	if hs <= 0 {
		hs = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+hs)
	defer cancel()
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{}
	if t.TLSClientConfig != nil {
		cfg = t.TLSClientConfig.Clone()
	}
	cfg.NextProtos = []string{ALPN}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	tc := tls.Client(nc, cfg)
	hctx, hcancel := context.WithTimeout(ctx, hs)
	err = tc.HandshakeContext(hctx)
	hcancel()
	if err != nil {
		nc.Close()
		if strings.Contains(err.Error(), "no application protocol") {
			return nil, errNotOffered
		}
		return nil, err
	}
	if tc.ConnectionState().NegotiatedProtocol != ALPN {
		tc.Close()
		return nil, errNotOffered
	}
	return t.newClientConn(tc, tc.ConnectionState, addr), nil
}

// newClientConn starts the connection's reader and its liveness checks.
func (t *Transport) newClientConn(nc net.Conn, state func() tls.ConnectionState, addr string) *clientConn {
	cc := &clientConn{conn: conn{nc: nc, writeTimeout: 30 * time.Second, streams: map[uint32]*stream{}}, state: state, t: t, addr: addr, nextID: 1}
	cc.onEmpty = cc.armIdle
	cc.lastRead.Store(time.Now().UnixNano())
	go cc.readLoop()
	cc.watch()
	cc.armIdle()
	return cc
}

// clientConn is one connection to the server.
type clientConn struct {
	conn
	state func() tls.ConnectionState
	t     *Transport
	addr  string

	openMu   sync.Mutex  // orders opening streams
	nextID   uint32      // under mu
	used     atomic.Bool // a request went on it
	lastRead atomic.Int64
	pinged   atomic.Int64 // when the unanswered PING was sent (0: none)
	idle     *time.Timer  // under mu
	liveness *time.Timer
}

func (cc *clientConn) usable() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err == nil && !cc.goAway && cc.nextID < 1<<31-1
}

func (cc *clientConn) armIdle() {
	d := cc.t.IdleTimeout
	if d <= 0 {
		d = 90 * time.Second
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil || len(cc.streams) > 0 {
		return
	}
	if cc.goAway {
		go cc.close(errors.New("server going away"))
		return
	}
	if cc.idle != nil {
		cc.idle.Stop()
	}
	cc.idle = time.AfterFunc(d, func() {
		cc.mu.Lock()
		empty := len(cc.streams) == 0
		cc.mu.Unlock()
		if empty {
			cc.close(errors.New("idle"))
		}
	})
}

// watch pings a silent server and closes the connection when it does not
// answer.
func (cc *clientConn) watch() {
	after, timeout := cc.t.PingAfterSilence, cc.t.PingTimeout
	if after <= 0 {
		after = 30 * time.Second
	}
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	var check func()
	check = func() {
		if cc.closed() {
			return
		}
		now := time.Now()
		silent := now.Sub(time.Unix(0, cc.lastRead.Load()))
		if p := cc.pinged.Load(); p != 0 {
			if now.Sub(time.Unix(0, p)) >= timeout && silent >= timeout {
				cc.close(errors.New("agentmux: the server did not answer a ping"))
				return
			}
		}
		next := after - silent
		if silent >= after {
			if cc.pinged.Load() == 0 {
				cc.pinged.Store(now.UnixNano())
				_ = cc.writeFrame(framePing, 0, 0, make([]byte, 8))
			}
			next = timeout
		}
		cc.mu.Lock()
		if cc.err == nil {
			cc.liveness = time.AfterFunc(next, check)
		}
		cc.mu.Unlock()
	}
	cc.mu.Lock()
	cc.liveness = time.AfterFunc(after, check)
	cc.mu.Unlock()
}

func (cc *clientConn) close(err error) {
	cc.mu.Lock()
	if cc.idle != nil {
		cc.idle.Stop()
	}
	if cc.liveness != nil {
		cc.liveness.Stop()
	}
	cc.mu.Unlock()
	cc.conn.close(err)
	cc.t.mu.Lock()
	if cc.t.conns[cc.addr] == cc {
		delete(cc.t.conns, cc.addr)
	}
	cc.t.mu.Unlock()
}

func (cc *clientConn) readLoop() {
	err := cc.read()
	cc.close(err)
}

func (cc *clientConn) read() error {
	for {
		h, payload, err := readFrame(cc.nc)
		if err != nil {
			return err
		}
		cc.lastRead.Store(time.Now().UnixNano())
		cc.pinged.Store(0)
		if ok, err := cc.handleCommon(h, payload); ok {
			if err != nil {
				return err
			}
			continue
		}
		switch h.typ {
		case frameGoAway:
			cc.mu.Lock()
			cc.goAway = true
			empty := len(cc.streams) == 0
			cc.mu.Unlock()
			if empty {
				return errors.New("server going away")
			}
		case frameHead:
			s := cc.lookup(h.stream)
			if s == nil {
				continue // abandoned here
			}
			if err := s.gotHead(payload, h.flags&flagEnd != 0); err != nil {
				return err
			}
		case frameData:
			s := cc.lookup(h.stream)
			if s == nil {
				continue
			}
			if !s.hasHead() {
				return protocolError("DATA before the response head")
			}
			if err := s.deliver(payload, h.flags&flagEnd != 0); err != nil {
				return err
			}
		}
	}
}

// retryable is an error of a request the server never took.
type retryable struct{ error }

func (r retryable) Unwrap() error { return r.error }

// roundTrip sends req on a new stream and waits for the response head.
func (cc *clientConn) roundTrip(req *http.Request) (*http.Response, error) {
	head, err := requestHead(req)
	if err != nil {
		return nil, err
	}
	// A body with ContentLength 0 is of unknown length, as in net/http.
	hasBody := req.Body != nil && req.Body != http.NoBody
	// A small body that can be had again (a retry on another connection
	// takes it from GetBody) goes with the head in one write: one TLS
	// record and one frame for the server to read instead of three.
	var whole []byte
	if hasBody && req.GetBody != nil && req.ContentLength > 0 && req.ContentLength <= MaxData {
		b := make([]byte, req.ContentLength)
		_, err := io.ReadFull(req.Body, b)
		if err == nil {
			// Nothing after ContentLength bytes.
			var one [1]byte
			if n, _ := req.Body.Read(one[:]); n > 0 {
				err = fmt.Errorf("agentmux: the request body is longer than its ContentLength %d", req.ContentLength)
			}
		}
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("agentmux: request body: %w", err)
		}
		whole, hasBody = b, false
	}
	// Ids must reach the server in order: taking one and writing its HEAD
	// is one step.
	cc.openMu.Lock()
	cc.mu.Lock()
	switch {
	case cc.err != nil || cc.goAway:
		cc.mu.Unlock()
		cc.openMu.Unlock()
		return nil, retryable{ErrClosed}
	case len(cc.streams) >= MaxStreams:
		cc.mu.Unlock()
		cc.openMu.Unlock()
		return nil, errors.New("agentmux: too many requests at once on the connection")
	}
	id := cc.nextID
	cc.nextID += 2
	s := newStream(&cc.conn, id)
	s.ready = make(chan struct{})
	cc.streams[id] = s
	if cc.idle != nil {
		cc.idle.Stop()
	}
	cc.mu.Unlock()

	var flags uint8
	if !hasBody {
		flags = flagEnd
		s.outEnd = true
	}
	if whole != nil {
		s.sendWindow -= len(whole) // a new stream's window holds MaxData
		err = cc.writeFrames(id, frame{frameHead, 0, head}, frame{frameData, flagEnd, whole})
	} else {
		err = cc.writeFrame(frameHead, flags, id, head)
	}
	cc.openMu.Unlock()
	if err != nil {
		s.fail(err, false)
		return nil, retryable{err}
	}
	if hasBody {
		go func() {
			defer req.Body.Close()
			if err := copyBody(s, req.Body); err != nil {
				s.fail(errLocalReset, true)
			}
		}()
	} else if req.Body != nil {
		req.Body.Close()
	}
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { s.fail(context.Cause(ctx), true) })
	select {
	case <-s.ready:
	case <-ctx.Done():
		s.fail(context.Cause(ctx), true)
		stop()
		return nil, ctx.Err()
	}
	s.mu.Lock()
	rhead, err := s.head, s.err
	s.mu.Unlock()
	if rhead == nil {
		stop()
		if errors.Is(err, ErrReset) {
			return nil, fmt.Errorf("agentmux: the server refused the request: %w", err)
		}
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(bytes.NewReader(rhead), len(rhead)+16), req)
	if err != nil {
		stop()
		s.fail(errLocalReset, true)
		return nil, fmt.Errorf("agentmux: malformed response head: %w", err)
	}
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/2.0", 2, 0
	resp.Close = false
	st := cc.state()
	resp.TLS = &st
	if s.headEnd || req.Method == http.MethodHead {
		resp.Body = http.NoBody
		stop()
		if !s.headEnd {
			s.fail(errLocalReset, true)
		}
	} else {
		resp.Body = &responseBody{s: s, stop: stop}
	}
	return resp, nil
}

// requestHead is req's head in HTTP/1.1 text form.
func requestHead(req *http.Request) ([]byte, error) {
	var b bytes.Buffer
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	uri := req.URL.RequestURI()
	if strings.ContainsAny(uri, " \r\n") || strings.ContainsAny(host, " \r\n") || strings.ContainsAny(req.Method, " \r\n") {
		return nil, errors.New("agentmux: invalid request line")
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, uri, host)
	h := req.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", "Go-http-client/agentmux")
	}
	if req.ContentLength > 0 {
		h.Set("Content-Length", fmt.Sprint(req.ContentLength))
	}
	h.Del("Host")
	h.Del("Connection")
	h.Del("Transfer-Encoding")
	for k, vs := range h {
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") || strings.ContainsAny(k, " \r\n:") {
				return nil, fmt.Errorf("agentmux: invalid header %q", k)
			}
		}
	}
	if err := h.Write(&b); err != nil {
		return nil, err
	}
	b.WriteString("\r\n")
	if b.Len() > MaxHead {
		return nil, errors.New("agentmux: request head too large")
	}
	return b.Bytes(), nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, MaxData); return &b }}

func copyBody(s *stream, r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.write(buf[:n], false); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			_, werr := s.write(nil, true)
			return werr
		}
		if err != nil {
			return err
		}
	}
}

// responseBody is a response's body as the caller reads it.
type responseBody struct {
	s      *stream
	stop   func() bool
	closed atomic.Bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.s.Read(p)
	if err != nil && err != io.EOF {
		var ne net.Error
		if !errors.As(err, &ne) {
			err = fmt.Errorf("agentmux: reading the response: %w", err)
		}
	}
	return n, err
}

// Close abandons what the server may still send.
func (b *responseBody) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.stop()
	b.s.mu.Lock()
	whole := b.s.inEnd && b.s.inLen == 0
	b.s.mu.Unlock()
	if !whole {
		b.s.fail(errLocalReset, true)
	}
	return nil
}

// gotHead takes the response head (the reader goroutine).
func (s *stream) gotHead(head []byte, end bool) error {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil // abandoned here
	}
	if s.ready == nil || s.head != nil {
		s.mu.Unlock()
		return protocolError("unexpected HEAD")
	}
	s.head, s.headEnd = head, end
	if end {
		s.inEnd = true
	}
	finished := end && s.finishedLocked()
	s.mu.Unlock()
	close(s.ready)
	if finished {
		s.c.remove(s)
	}
	return nil
}

func (s *stream) hasHead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head != nil
}
