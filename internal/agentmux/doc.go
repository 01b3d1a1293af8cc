// Package agentmux carries an agent's HTTP requests and its push channel over
// its one TLS connection with as little server memory per idle agent as the
// job allows: one goroutine (the connection's reader) and no buffers kept
// between frames.
//
// Why not HTTP/2: net/http's HTTP/2 server keeps three goroutines for a
// connection with one open stream (the connection's serve loop, its frame
// reader and the stream's handler), which at 10,000 connected agents was
// 41 KiB of goroutine stacks per agent on top of the heap. Here a request
// runs its handler in a goroutine only while it is in flight, and the push
// channel, once set up, is "detached": its frames are handed to callbacks in
// the reader goroutine, so an idle agent costs its reader, its TLS state and
// a few small structs.
//
// The protocol is negotiated with ALPN ("corral-agent/1") on the server's
// one TLS listener, next to h2 and http/1.1; a client whose server does not
// offer it (an older server, a TLS-terminating proxy) falls back to its
// HTTP/2 transport. Frames are HTTP/2-shaped: a 9-byte header (24-bit
// payload length, type, flags, 32-bit stream id) then the payload.
//
//	HEAD   (1) a request or response head in HTTP/1.1 text form; flag END: no body
//	DATA   (0) body bytes; flag END ends that direction
//	RESET  (3) abandons a stream (payload: a reason, for logs)
//	WINDOW (8) 4-byte credit for a stream's body bytes
//	PING   (6) 8 bytes, answered with flag ACK
//	GOAWAY (7) the server takes no new streams; the client dials again
//
// Only the client opens streams, with odd, increasing ids. Each direction of
// a stream may carry at most InitialWindow body bytes beyond what the
// receiver has consumed (it grants more with WINDOW as its reader reads), so
// a slow handler never makes the connection's reader wait, and a peer that
// sends more than it was granted, an oversized frame or an unknown type
// loses the connection. Requests are HTTP/2 in meaning (full duplex, many at
// once): handlers see ProtoMajor 2.
package agentmux
