package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
)

// fakeListener fails Accept with EMFILE failures times, then hands out
// connections from 10.0.0.1 and 10.0.0.2 alternately.
type fakeListener struct {
	failures int
	n        int
}

type fakeConn struct {
	net.Conn
	remote net.Addr
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { c.closed = true; return nil }

func (l *fakeListener) Accept() (net.Conn, error) {
	if l.failures > 0 {
		l.failures--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	l.n++
	return &fakeConn{remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, byte(1+l.n%2)), Port: 1000 + l.n}}, nil
}
func (l *fakeListener) Close() error   { return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

// Issue 7, finding 3: accept errors (out of file descriptors) are absorbed
// and logged once a minute with their count, not once per failure; the
// listener keeps accepting afterwards.
func TestAcceptErrorsAreLoggedOnce(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	l := newLimitListener(&fakeListener{failures: 5}, 0, 0, slog.New(slog.NewTextHandler(&logs, nil)))
	c, err := l.Accept()
	if err != nil || c == nil {
		t.Fatalf("accept after 5 EMFILE failures: %v", err)
	}
	if n := strings.Count(logs.String(), "accept failed"); n != 1 {
		t.Errorf("5 accept failures logged %d times, want once:\n%s", n, logs.String())
	}
}

// scriptedListener hands out connections from the given sources in order,
// then fails with net.ErrClosed.
type scriptedListener struct {
	sources []string
	handed  []*fakeConn
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	if len(l.sources) == 0 {
		return nil, net.ErrClosed
	}
	c := &fakeConn{remote: &net.TCPAddr{IP: net.ParseIP(l.sources[0]), Port: 1000 + len(l.handed)}}
	l.sources = l.sources[1:]
	l.handed = append(l.handed, c)
	return c, nil
}
func (l *scriptedListener) Close() error   { return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{} }

// The caps: a connection over the per-source or the total cap is closed at
// once (before TLS) and the listener goes on; closing one frees its slot.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	src := &scriptedListener{sources: []string{"10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}}
	l := newLimitListener(src, 3, 2, slog.New(slog.DiscardHandler))
	var got []net.Conn
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	var closed []string
	for _, c := range src.handed {
		if c.closed {
			closed = append(closed, c.remote.String())
		}
	}
	// .1 gets two (its share), the third .1 is closed; .2 is the third in
	// all; .3 and .4 are over the total.
	if len(got) != 3 || fmt.Sprint(closed) != "[10.0.0.1:1002 10.0.0.3:1004 10.0.0.4:1005]" {
		t.Errorf("accepted %d, closed %v", len(got), closed)
	}
	got[0].Close()
	got[0].Close() // the slot is given back once
	if total, from := l.open("10.0.0.1"); total != 2 || from != 1 {
		t.Errorf("after a close: %d open, %d from 10.0.0.1; want 2 and 1", total, from)
	}
}
