package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/agentmux"
)

// handshakeListener completes the TLS handshake of every connection itself,
// each in a goroutine of its own, then hands a connection that negotiated
// agentmux to serveAgent in a new goroutine and returns the others from
// Accept, handshake done, to net/http (which serves HTTP/2 and HTTP/1.1 on
// them as on any TLS connection).
//
// Why: a connected agent costs the server the one goroutine that reads its
// connection, and a goroutine's stack grows to what its deepest call
// needed. The handshake (a post-quantum key exchange, the client
// certificate's verification) is far deeper than reading frames; when the
// reader was the goroutine that had run it (net/http's, through
// TLSNextProto), every idle agent kept a 16 KiB stack. The handshake's
// goroutine now ends with the handshake.
type handshakeListener struct {
	inner   net.Listener
	cfg     *tls.Config
	timeout time.Duration
	agent   func(*tls.Conn)
	log     *slog.Logger

	conns chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
}

func newHandshakeListener(inner net.Listener, cfg *tls.Config, timeout time.Duration, agent func(*tls.Conn), log *slog.Logger) *handshakeListener {
	l := &handshakeListener{inner: inner, cfg: cfg, timeout: timeout, agent: agent, log: log,
		conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *handshakeListener) acceptLoop() {
	for {
		c, err := l.inner.Accept() // temporary errors are retried there
		if err != nil {
			l.errc <- err
			return
		}
		go l.handshake(c)
	}
}

func (l *handshakeListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// As net/http does: a plain HTTP request gets a plain answer, and
		// a failed handshake (a scanner, a load balancer's TCP check) is a
		// debug line.
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_ = re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		l.log.Debug("TLS handshake error", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == agentmux.ALPN {
		go l.agent(tc)
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

// Accept returns the next connection whose handshake is done and which did
// not negotiate agentmux.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept fails the same way
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; handshakes in progress end with their connection.
func (l *handshakeListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (l *handshakeListener) Addr() net.Addr { return l.inner.Addr() }

// looksLikeHTTP reports whether a TLS record header is the start of a plain
// HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
