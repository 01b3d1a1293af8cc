package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// limitListener caps the connections the server holds: at most max in all
// and perSource from one source address (0: no cap). A connection over a
// cap is closed at once, before TLS, so a client holding many slow
// connections cannot starve agents and operators, and the server never
// runs out of file descriptors for them.
//
// Accept also absorbs temporary accept errors (EMFILE, ENFILE,
// ECONNABORTED): it backs off and retries itself, logging once a minute
// with how many it absorbed, instead of letting http.Server log one line
// per failure.
type limitListener struct {
	net.Listener
	max, perSource int
	log            *slog.Logger
	now            func() time.Time

	mu       sync.Mutex
	total    int
	bySource map[string]int
	refused  int // connections closed over a cap since the last log line
	failures int // accept errors absorbed since the last log line
	lastLog  time.Time
}

func newLimitListener(l net.Listener, max, perSource int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: l, max: max, perSource: perSource, log: log, now: time.Now, bySource: map[string]int{}}
}

// Accept returns the next connection within the caps.
func (l *limitListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAcceptError(err) {
				return nil, err
			}
			l.note(func() { l.failures++ }, "accept failed; retrying", "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		src := sourceOf(c.RemoteAddr())
		l.mu.Lock()
		over := (l.max > 0 && l.total >= l.max) || (l.perSource > 0 && l.bySource[src] >= l.perSource)
		if !over {
			l.total++
			l.bySource[src]++
		}
		l.mu.Unlock()
		if over {
			_ = c.Close()
			l.note(func() { l.refused++ }, "connection refused: over the connection limit", "source", src,
				"max_connections", l.max, "max_connections_per_source", l.perSource)
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(src) }}, nil
	}
}

// note counts an event with count and logs at most once a minute, with
// how many events the line stands for.
func (l *limitListener) note(count func(), msg string, args ...any) {
	l.mu.Lock()
	count()
	now := l.now()
	if now.Sub(l.lastLog) < time.Minute {
		l.mu.Unlock()
		return
	}
	refused, failures := l.refused, l.failures
	l.refused, l.failures, l.lastLog = 0, 0, now
	l.mu.Unlock()
	l.log.Warn(msg, append(args, "refused_since_last_log", refused, "accept_errors_since_last_log", failures)...)
}

func (l *limitListener) release(src string) {
	l.mu.Lock()
	l.total--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
	l.mu.Unlock()
}

// open reports the connections held now, in all and from src.
func (l *limitListener) open(src string) (total, fromSource int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.bySource[src]
}

func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// temporaryAcceptError is an accept failure that passes: out of file
// descriptors or memory, or a connection aborted before it was accepted.
func temporaryAcceptError(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// limitedConn gives its slot back when closed (once).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// serverErrorLog is http.Server's ErrorLog: its per-connection lines (TLS
// handshake errors from scanners and half-open clients) go to the debug
// level, so a flood of bad connections cannot flood the log.
type serverErrorLog struct{ log *slog.Logger }

func (w serverErrorLog) Write(p []byte) (int, error) {
	w.log.Log(context.Background(), slog.LevelDebug, "http server", "msg", string(p))
	return len(p), nil
}
