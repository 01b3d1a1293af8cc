package agentmux_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agentmux"
)

type testServer struct {
	*httptest.Server
	accepted atomic.Int64 // connections that spoke the protocol
	cancel   context.CancelFunc
}

// newServer serves h over TLS with the protocol offered next to h2 and
// http/1.1 (offer=false: an older server that does not know it).
func newServer(t testing.TB, h http.Handler, offer bool) *testServer {
	t.Helper()
	ts := &testServer{Server: httptest.NewUnstartedServer(h)}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	if offer {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		ts.Config.Protocols = &p
		ts.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
			agentmux.ALPN: func(_ *http.Server, c *tls.Conn, h http.Handler) {
				ts.accepted.Add(1)
				agentmux.Serve(c, h, agentmux.ServerOptions{BaseContext: ctx, IdleTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			},
		}
		ts.TLS = &tls.Config{NextProtos: []string{agentmux.ALPN, "h2", "http/1.1"}}
	} else {
		ts.EnableHTTP2 = true
	}
	ts.StartTLS()
	t.Cleanup(func() { cancel(); ts.Close() })
	return ts
}

func (ts *testServer) transport(t testing.TB) *agentmux.Transport {
	cfg := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	fb := &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true}
	tr := &agentmux.Transport{TLSClientConfig: cfg, Fallback: fb}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func TestRoundTrips(t *testing.T) {
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 || r.TLS == nil || r.Host == "" || r.RemoteAddr == "" {
			http.Error(w, fmt.Sprintf("proto %d tls %v host %q remote %q", r.ProtoMajor, r.TLS != nil, r.Host, r.RemoteAddr), 500)
			return
		}
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("X-Query", r.URL.Query().Get("q"))
			w.Header().Set("X-In", r.Header.Get("X-In"))
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(bytes.Repeat([]byte("0123456789abcdef"), 5<<20/16))
		case "/none":
			w.WriteHeader(http.StatusNoContent)
		}
	}), true)
	hc := &http.Client{Transport: ts.transport(t)}

	body := bytes.Repeat([]byte("x"), 3<<20+17)
	req, _ := http.NewRequest("POST", ts.URL+"/echo?q=a%20b", bytes.NewReader(body))
	req.Header.Set("X-In", "v1")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body))
	if resp.StatusCode != 200 || string(got) != want || resp.Header.Get("X-Query") != "a b" || resp.Header.Get("X-In") != "v1" || resp.ProtoMajor != 2 {
		t.Fatalf("echo: %d %q %v, want %q", resp.StatusCode, got, resp.Header, want)
	}

	resp, err = hc.Get(ts.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 5<<20 {
		t.Fatalf("big: %d bytes, %v", n, err)
	}

	resp, err = hc.Get(ts.URL + "/none")
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("204: %v %v", resp, err)
	}
	resp.Body.Close()

	// Many at once, on the one connection.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			b := []byte(strings.Repeat("y", i*1000))
			resp, err := hc.Post(ts.URL+"/echo", "text/plain", bytes.NewReader(b))
			if err != nil {
				errs <- err
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d %x", len(b), sha256.Sum256(b)); string(got) != want {
				errs <- fmt.Errorf("got %q want %q", got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ts.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// A small body goes with its head in one write; one whose length is not
// the ContentLength it claims is refused before anything is sent, and the
// connection goes on.
func TestSmallBodyMustHaveItsLength(t *testing.T) {
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d:%s", len(b), b)
	}), true)
	hc := &http.Client{Transport: ts.transport(t)}
	for _, tc := range []struct {
		body   string
		length int64
	}{{"abc", 5}, {"abcdef", 5}} {
		req, _ := http.NewRequest("POST", ts.URL+"/", strings.NewReader(tc.body))
		req.ContentLength = tc.length
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("a %d-byte body sent as %d bytes: %d, want an error", len(tc.body), tc.length, resp.StatusCode)
		}
	}
	resp, err := hc.Post(ts.URL+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "5:hello" {
		t.Errorf("after the refusals: %q", got)
	}
	if n := ts.accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// A handler that does not read its body does not stop the connection: the
// client's writer waits for window, other requests go on.
func TestSlowHandlerDoesNotBlockTheConnection(t *testing.T) {
	release := make(chan struct{})
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
			return
		}
		fmt.Fprint(w, "fast")
	}), true)
	hc := &http.Client{Transport: ts.transport(t)}
	done := make(chan string, 1)
	go func() {
		resp, err := hc.Post(ts.URL+"/slow", "", bytes.NewReader(make([]byte, 8<<20)))
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	for range 20 {
		resp, err := hc.Get(ts.URL + "/fast")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "fast" {
			t.Fatalf("fast: %q", b)
		}
	}
	close(release)
	if got := <-done; got != fmt.Sprint(8<<20) {
		t.Fatalf("slow: %s", got)
	}
}

// The push channel's shape: the handler detaches the stream and returns;
// the client's lines arrive in recv, the server's writes reach the client,
// and CloseStream delivers what was written first.
func TestDetachedStream(t *testing.T) {
	type detached struct {
		w   http.ResponseWriter
		d   agentmux.Detacher
		got chan string
		end chan error
	}
	ch := make(chan *detached, 1)
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := &detached{w: w, d: w.(agentmux.Detacher), got: make(chan string, 10), end: make(chan error, 1)}
		first, _ := bufio.NewReader(io.LimitReader(r.Body, 6)).ReadString('\n') // read before detaching
		d.got <- first
		w.WriteHeader(200)
		var line []byte
		err := d.d.Detach(func(p []byte, end bool) {
			line = append(line, p...)
			for {
				i := bytes.IndexByte(line, '\n')
				if i < 0 {
					break
				}
				d.got <- string(line[:i+1])
				line = line[i+1:]
			}
			if end {
				d.got <- "END"
			}
		}, func(err error) { d.end <- err })
		if err != nil {
			t.Error(err)
		}
		ch <- d
	}), true)
	hc := &http.Client{Transport: ts.transport(t)}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", ts.URL+"/ch", pr)
	go pw.Write([]byte("hello\nsecond\n"))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	d := <-ch
	if got := <-d.got; got != "hello\n" {
		t.Fatalf("first line %q", got)
	}
	if got := <-d.got; got != "second\n" {
		t.Fatalf("second line %q", got)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		fmt.Fprintf(d.w, "push %d\n", i)
		d.w.(http.Flusher).Flush()
		if line, err := br.ReadString('\n'); err != nil || line != fmt.Sprintf("push %d\n", i) {
			t.Fatalf("push %d: %q %v", i, line, err)
		}
		fmt.Fprintf(pw, "beat %d\n", i)
		if got := <-d.got; got != fmt.Sprintf("beat %d\n", i) {
			t.Fatalf("beat %d: %q", i, got)
		}
	}
	fmt.Fprint(d.w, "bye\n")
	d.d.CloseStream()
	if line, _ := br.ReadString('\n'); line != "bye\n" {
		t.Fatalf("last line %q", line)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("read after CloseStream succeeded")
	}
	select {
	case <-d.end:
	case <-time.After(5 * time.Second):
		t.Fatal("onEnd not called")
	}
	pw.Close()
}

// The client ends its side of a detached stream: recv sees the end; the
// connection dying ends every detached stream.
func TestDetachedStreamEnds(t *testing.T) {
	ends := make(chan error, 2)
	gotEnd := make(chan bool, 2)
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(agentmux.Detacher).Detach(func(p []byte, end bool) {
			if end {
				gotEnd <- true
			}
		}, func(err error) { ends <- err })
	}), true)
	tr := ts.transport(t)
	hc := &http.Client{Transport: tr}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", ts.URL+"/a", pr)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pw.Close()
	select {
	case <-gotEnd:
	case <-time.After(5 * time.Second):
		t.Fatal("recv did not see the client's end")
	}
	resp.Body.Close() // abandons the stream
	select {
	case <-ends:
	case <-time.After(5 * time.Second):
		t.Fatal("onEnd not called after the client abandoned the stream")
	}

	pr2, pw2 := io.Pipe()
	defer pw2.Close()
	req, _ = http.NewRequest("POST", ts.URL+"/b", pr2)
	if _, err := hc.Do(req); err != nil {
		t.Fatal(err)
	}
	ts.CloseClientConnections()
	tr.CloseIdleConnections()
	// The server notices the connection is gone on its next read.
	select {
	case <-ends:
	case <-time.After(5 * time.Second):
		t.Fatal("onEnd not called when the connection closed")
	}
}

func TestCancelReachesTheHandler(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan struct{})
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		close(cancelled)
	}), true)
	hc := &http.Client{Transport: ts.transport(t)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
	if _, err := hc.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
}

func TestFallbackWhenNotOffered(t *testing.T) {
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Proto)
	}), false)
	hc := &http.Client{Transport: ts.transport(t)}
	for range 2 {
		resp, err := hc.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2.0" {
			t.Fatalf("served over %q, want the fallback's HTTP/2", b)
		}
	}
}

func TestDrainSendsClientsElsewhere(t *testing.T) {
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }), true)
	hc := &http.Client{Transport: ts.transport(t)}
	get := func() error {
		resp, err := hc.Get(ts.URL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	ts.cancel() // the server's base context: GOAWAY, then close
	deadline := time.Now().Add(5 * time.Second)
	for ts.accepted.Load() < 2 && time.Now().Before(deadline) {
		get() // the drained connection is replaced by a new one
		time.Sleep(20 * time.Millisecond)
	}
	if ts.accepted.Load() < 2 {
		t.Fatal("no new connection after GOAWAY")
	}
}

// rawConn speaks the protocol by hand, as a hostile client could.
func rawConn(t *testing.T, ts *testServer) *tls.Conn {
	cfg := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{agentmux.ALPN}
	c, err := tls.Dial("tcp", ts.Listener.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func frame(typ, flags byte, id uint32, payload []byte) []byte {
	n := len(payload)
	b := []byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags}
	b = binary.BigEndian.AppendUint32(b, id)
	return append(b, payload...)
}

// Each broken frame closes that connection; the server goes on serving.
func TestBadFramesCloseTheConnection(t *testing.T) {
	ts := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		io.Copy(io.Discard, r.Body)
	}), true)
	head := []byte("POST / HTTP/1.1\r\nHost: x\r\n\r\n")
	for name, frames := range map[string][][]byte{
		"unknown type":       {frame(42, 0, 1, nil)},
		"oversized DATA":     {frame(1, 0, 1, head), append(frame(0, 0, 1, nil)[:0], 0x01, 0x00, 0x00, 0, 0, 0, 0, 0, 1)},
		"even stream":        {frame(1, 0, 2, head)},
		"stream 0":           {frame(1, 0, 0, head)},
		"decreasing ids":     {frame(1, 0, 5, head), frame(1, 0, 3, head)},
		"DATA never opened":  {frame(0, 0, 7, []byte("x"))},
		"bad WINDOW":         {frame(8, 0, 1, []byte{1})},
		"bad PING":           {frame(6, 0, 0, []byte{1, 2})},
		"over the window":    {frame(1, 0, 1, head), bytes.Repeat(frame(0, 0, 1, make([]byte, agentmux.MaxData)), agentmux.InitialWindow/agentmux.MaxData+1)},
		"DATA after its end": {frame(1, 0, 1, head), frame(0, 1, 1, nil), frame(0, 0, 1, []byte("x"))},
	} {
		t.Run(name, func(t *testing.T) {
			c := rawConn(t, ts)
			for _, f := range frames {
				if _, err := c.Write(f); err != nil {
					break
				}
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the connection stayed open")
			}
		})
	}
	// A head that is not HTTP gets a 400 on its stream.
	c := rawConn(t, ts)
	c.Write(frame(1, 1, 1, []byte("\x00garbage\r\n\r\n")))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[3] != 1 {
		t.Fatalf("no HEAD answer: %v %v", hdr, err)
	}
	p := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
	io.ReadFull(c, p)
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 400")) {
		t.Fatalf("answer %q", p)
	}

	hc := &http.Client{Transport: ts.transport(t)}
	resp, err := hc.Get(ts.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the bad clients: %v %v", resp, err)
	}
	resp.Body.Close()
}

// A server that stops answering is found by the client's ping.
func TestSilentServerIsPingedAndDropped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvCfg := httptest.NewTLSServer(nil)
	defer srvCfg.Close()
	tlsCfg := srvCfg.TLS.Clone()
	tlsCfg.NextProtos = []string{agentmux.ALPN}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, tlsCfg)
				tc.Handshake()
				io.Copy(io.Discard, tc) // reads, never answers
			}()
		}
	}()
	cfg := srvCfg.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tr := &agentmux.Transport{TLSClientConfig: cfg, Fallback: http.DefaultTransport,
		PingAfterSilence: 200 * time.Millisecond, PingTimeout: 200 * time.Millisecond}
	defer tr.CloseIdleConnections()
	start := time.Now()
	req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/", nil)
	req.Host = "example.com"
	cfg.ServerName = "example.com"
	_, err = (&http.Client{Transport: tr}).Do(req)
	if err == nil {
		t.Fatal("a request to a silent server succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("gave up after %s", d)
	}
}
