package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/corralhq/corral/internal/agentmux"
	"github.com/corralhq/corral/internal/wire"
)

// Channel is an agent's push channel, whatever carries it: an HTTP/2 stream
// of JSON lines on the agent's one connection, or a WebSocket where the way
// to the server speaks only HTTP/1.1.
type Channel interface {
	// Read returns the next message from the server; ctx ending ends it.
	Read(ctx context.Context) (wire.StreamMessage, error)
	// Write sends msg within a bounded time.
	Write(ctx context.Context, msg wire.StreamMessage) error
	// End tells the server the agent is leaving, then closes.
	End(reason string)
	// Close releases the channel.
	Close()
	// Transport names what carries it: "agentmux", "http2" or "websocket".
	Transport() string
}

// ErrNeedsWebSocket says the server (or a proxy on the way) cannot carry
// the HTTP/2 channel: DialWebSocket instead.
var ErrNeedsWebSocket = errors.New("the HTTP/2 channel is not available")

// DialChannel opens the agent's push channel over HTTP/2, on the same
// connection as every other request made through c (the machine's mTLS
// client). Over HTTP/1.1 (a proxy on the way, an older server) it returns
// ErrNeedsWebSocket.
func (c *Client) DialChannel(ctx context.Context) (Channel, error) {
	chCtx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	u, err := c.resolve(wire.PathChannel)
	if err != nil {
		cancel()
		return nil, err
	}
	req, err := http.NewRequestWithContext(chCtx, http.MethodPost, u, pr)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("User-Agent", c.userAgent)
	// Whatever ends the channel's context ends its body too, so a request
	// stuck writing it (HTTP/1.1 waits for the body) always returns.
	context.AfterFunc(chCtx, func() { pw.CloseWithError(context.Cause(chCtx)) })
	// Over HTTP/1.1 a full-duplex body is not dependable: find out from the
	// TLS handshake (ALPN) before the request is written, and fall back.
	var http1 atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(chCtx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if tc, ok := info.Conn.(*tls.Conn); ok && !fullDuplex(tc.ConnectionState().NegotiatedProtocol) {
			http1.Store(true)
			cancel()
		}
	}}))
	// The channel lives as long as the connection: no client timeout, but
	// the same transport (and so the same HTTP/2 connection) as every other
	// request. The answer's headers must come within 30 s.
	hc := &http.Client{Transport: c.hc.Transport, CheckRedirect: c.hc.CheckRedirect, Jar: c.hc.Jar}
	timer := time.AfterFunc(30*time.Second, cancel)
	resp, err := hc.Do(req)
	timer.Stop()
	if http1.Load() {
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("%w (the connection speaks HTTP/1.1)", ErrNeedsWebSocket)
	}
	if err != nil {
		cancel()
		pw.Close()
		return nil, fmt.Errorf("open push channel: %w", err)
	}
	switch {
	case resp.ProtoMajor < 2 || resp.StatusCode == http.StatusUpgradeRequired || resp.StatusCode == http.StatusNotFound:
		// HTTP/1.1 on the way, or a server older than the channel.
		resp.Body.Close()
		cancel()
		pw.Close()
		return nil, fmt.Errorf("%w (%s, status %d)", ErrNeedsWebSocket, resp.Proto, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		err := fmt.Errorf("the control plane refused the push channel: %w", decodeError(resp))
		resp.Body.Close()
		cancel()
		pw.Close()
		return nil, err
	}
	transport := "http2"
	if resp.TLS != nil && resp.TLS.NegotiatedProtocol == agentmux.ALPN {
		transport = "agentmux"
	}
	return &h2Channel{pw: pw, body: resp.Body, r: bufio.NewReaderSize(resp.Body, 4096), cancel: cancel, transport: transport}, nil
}

// fullDuplex reports whether a connection negotiated with this ALPN
// protocol carries full-duplex requests: HTTP/2 and the agent's own.
func fullDuplex(proto string) bool { return proto == "h2" || proto == agentmux.ALPN }

// h2Channel is the channel over one full-duplex stream (agentmux or
// HTTP/2): JSON lines both ways.
type h2Channel struct {
	pw        *io.PipeWriter
	body      io.ReadCloser
	r         *bufio.Reader
	cancel    context.CancelFunc
	transport string // "agentmux" or "http2"

	wmu sync.Mutex
	rmu sync.Mutex
}

func (c *h2Channel) Transport() string { return c.transport }

func (c *h2Channel) Read(ctx context.Context) (wire.StreamMessage, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	stop := context.AfterFunc(ctx, c.cancel) // a read ends with its context
	defer stop()
	var msg wire.StreamMessage
	line, err := readLine(c.r, 1<<20)
	if err != nil {
		if ctx.Err() != nil {
			return msg, ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			return msg, errors.New("the server ended the push channel")
		}
		return msg, err
	}
	if err := json.Unmarshal(line, &msg); err != nil {
		return msg, fmt.Errorf("malformed push message: %w", err)
	}
	return msg, nil
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
			return nil, errors.New("push message too large")
		}
		if !isPrefix {
			return line, nil
		}
	}
}

func (c *h2Channel) Write(ctx context.Context, msg wire.StreamMessage) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// A write the connection does not take within 15 s ends the channel.
	timer := time.AfterFunc(15*time.Second, func() { c.pw.CloseWithError(errors.New("push channel write timed out")) })
	defer timer.Stop()
	stop := context.AfterFunc(ctx, func() { c.pw.CloseWithError(ctx.Err()) })
	defer stop()
	_, err = c.pw.Write(append(b, '\n'))
	return err
}

func (c *h2Channel) End(string) { c.Close() }

func (c *h2Channel) Close() {
	c.pw.Close()
	c.cancel()
	c.body.Close()
}

// DialWebSocket opens the agent's push channel over a WebSocket (its own
// HTTP/1.1 connection).
func (c *Client) DialWebSocket(ctx context.Context) (Channel, error) {
	u, err := c.resolve(wire.PathStream)
	if err != nil {
		return nil, err
	}
	u = "wss" + strings.TrimPrefix(strings.TrimPrefix(u, "https"), "http")
	dialCtx, cancelDial := context.WithTimeout(ctx, 30*time.Second)
	conn, resp, err := websocket.Dial(dialCtx, u, &websocket.DialOptions{HTTPClient: c.hc,
		HTTPHeader: http.Header{"User-Agent": {c.userAgent}}})
	cancelDial()
	if err != nil {
		if resp != nil && resp.Body != nil && resp.StatusCode >= 400 {
			return nil, fmt.Errorf("the control plane refused the push channel: %w", decodeError(resp))
		}
		return nil, fmt.Errorf("connect push channel: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	return &wsChannel{c: conn}, nil
}

// wsChannel is the channel over a WebSocket (HTTP/1.1 fallback).
type wsChannel struct{ c *websocket.Conn }

func (c *wsChannel) Transport() string { return "websocket" }

func (c *wsChannel) Read(ctx context.Context) (wire.StreamMessage, error) {
	var msg wire.StreamMessage
	err := wsjson.Read(ctx, c.c, &msg)
	return msg, err
}

func (c *wsChannel) Write(ctx context.Context, msg wire.StreamMessage) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return wsjson.Write(ctx, c.c, msg)
}

func (c *wsChannel) End(reason string) { c.c.Close(websocket.StatusNormalClosure, reason) }

func (c *wsChannel) Close() { c.c.CloseNow() }

// CloseReason turns a WebSocket close into a readable error.
func CloseReason(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("the server closed the push channel (%d %s)", ce.Code, ce.Reason)
	}
	return err
}
