package server

import (
	"net/http"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// longLived are the paths of long-lived agent streams: their connection is
// taken over (WebSocket) and lives for hours, so the per-request deadlines
// do not apply — they are cleared instead, since a connection reused from
// an earlier request would otherwise keep that request's deadlines.
var longLived = map[string]bool{wire.PathStream: true}

// withDeadlines bounds every request but the long-lived streams: its body
// must be read within read, its answer written within write, from the
// moment the headers were read. A client trickling a body a byte at a time
// holds its connection for at most read (the connection limits bound how
// many it can hold). Writers that are not connections (the web UI's
// in-process API calls) have no deadlines to set; that is fine.
func withDeadlines(h http.Handler, read, write time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Method == http.MethodGet && longLived[r.URL.Path] {
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
