package server

import (
	"net/http"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/server/relay"
	"github.com/corralhq/corral/internal/wire"
)

// longLived says whether r is a long-lived stream: the agent's push
// channel (a WebSocket that takes its connection over, or an HTTP/2 stream
// whose bodies stay open for hours) and the byte streams of tunnels (the
// agent's side, the user's side, a replica handing one over). The
// per-request deadlines do not apply to them — they are cleared instead,
// since a connection reused from an earlier request would otherwise keep
// that request's deadlines, and on HTTP/2 a passed deadline resets the
// stream even while it is idle.
func longLived(r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet:
		return r.URL.Path == wire.PathStream
	case r.Method != http.MethodPost:
		return false
	case r.URL.Path == wire.PathChannel, strings.HasPrefix(r.URL.Path, wire.PathTunnels), strings.HasPrefix(r.URL.Path, relay.PathInternal):
		return true
	default:
		return strings.HasPrefix(r.URL.Path, "/api/v1/subscriptions/") && strings.HasSuffix(r.URL.Path, "/tunnel")
	}
}

// withDeadlines bounds every request but the long-lived streams: its body
// must be read within read, its answer written within write, from the
// moment the headers were read. A client trickling a body a byte at a time
// holds its connection for at most read (the connection limits bound how
// many it can hold). Writers that are not connections (the web UI's
// in-process API calls) have no deadlines to set; that is fine.
func withDeadlines(h http.Handler, read, write time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if longLived(r) {
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
		} else {
			now := time.Now()
			_ = rc.SetReadDeadline(now.Add(read))
			_ = rc.SetWriteDeadline(now.Add(write))
		}
		h.ServeHTTP(w, r)
	})
}
