package agentmux

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// FuzzServe feeds arbitrary bytes to the server as a client would send
// them: it must never panic, and must end the connection once the client
// is gone, whatever the frames said.
func FuzzServe(f *testing.F) {
	head := []byte("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n")
	var seed []byte
	seed = appendFrame(seed, frameHead, 0, 1, head)
	seed = appendFrame(seed, frameData, flagEnd, 1, []byte("abc"))
	f.Add(seed)
	f.Add(appendFrame(appendFrame(nil, frameHead, flagEnd, 1, []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n")), framePing, 0, 0, make([]byte, 8)))
	f.Add(appendFrame(appendFrame(nil, frameHead, 0, 3, head), frameWindow, 0, 3, []byte{0, 0, 1, 0}))
	f.Add(appendFrame(appendFrame(nil, frameHead, 0, 1, head), frameReset, 0, 1, nil))
	f.Add(appendFrame(nil, frameHead, flagEnd, 1, []byte("\x00\r\n\r\n")))
	f.Add(appendFrame(nil, frameGoAway, 0, 0, []byte("bye")))
	f.Add([]byte{0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			serve(server, func() tls.ConnectionState { return tls.ConnectionState{} }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
				w.Write(bytes.ToUpper(b))
			}), ServerOptions{IdleTimeout: 5 * time.Second, WriteTimeout: time.Second})
		}()
		go io.Copy(io.Discard, client) // the server's answers
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(in)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not end the connection after the client left")
		}
	})
}

// FuzzClient: a hostile server (the malicious control plane of
// docs/security.md) answers a request with arbitrary bytes. The client must
// never panic and must end the request with a response or an error.
func FuzzClient(f *testing.F) {
	var ok []byte
	ok = appendFrame(ok, frameHead, 0, 1, []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"))
	ok = appendFrame(ok, frameData, flagEnd, 1, []byte("hi"))
	f.Add(ok)
	f.Add(appendFrame(nil, frameHead, flagEnd, 1, []byte("HTTP/1.1 204 No Content\r\n\r\n")))
	f.Add(appendFrame(nil, frameData, 0, 1, []byte("data before head")))
	f.Add(appendFrame(nil, frameHead, 0, 1, []byte("garbage")))
	f.Add(appendFrame(nil, frameReset, 0, 1, nil))
	f.Add(appendFrame(nil, frameGoAway, 0, 0, nil))
	f.Add(appendFrame(appendFrame(nil, framePing, 0, 0, make([]byte, 8)), frameWindow, 0, 1, []byte{0x7f, 0xff, 0xff, 0xff}))
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		tr := &Transport{Fallback: http.DefaultTransport, IdleTimeout: time.Minute}
		cc := tr.newClientConn(client, func() tls.ConnectionState { return tls.ConnectionState{} }, "x:443")
		go func() {
			if h, err := readHeader(server); err == nil { // the request's HEAD, then the hostile answer
				io.CopyN(io.Discard, server, int64(h.length))
			}
			server.SetWriteDeadline(time.Now().Add(2 * time.Second))
			server.Write(in)
			go io.Copy(io.Discard, server) // the client's credits, pings, resets
			time.Sleep(50 * time.Millisecond)
			server.Close()
		}()
		req, _ := http.NewRequest("GET", "https://x/", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := cc.roundTrip(req.WithContext(ctx))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			t.Fatal("the request did not end")
		}
		cc.close(errors.New("done"))
	})
}
