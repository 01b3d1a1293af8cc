package agentmux

import (
	"bytes"
	"crypto/tls"
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
