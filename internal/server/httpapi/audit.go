package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// heldWriter holds a handler's answer until its activity entry is written:
// then it is sent as is, or dropped for an error if the entry could not be
// written. Answers of mutating calls and of the token endpoint are small
// JSON documents.
type heldWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newHeldWriter() *heldWriter { return &heldWriter{header: http.Header{}} }

func (h *heldWriter) Header() http.Header { return h.header }

func (h *heldWriter) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

func (h *heldWriter) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.body.Write(b)
}

func (h *heldWriter) written() int { return h.status }

// sendTo writes the held answer to w.
func (h *heldWriter) sendTo(w http.ResponseWriter) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	status := h.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(h.body.Bytes())
}

// printable makes text from a request safe for the activity log and every
// screen it is shown on: control characters (C0, DEL, C1) and bidirectional
// overrides are written as \xNN or \uNNNN escapes, invalid UTF-8 as \ufffd,
// and the result is cut to at most n bytes.
func printable(s string, n int) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || wire.UnsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return truncate(s, n)
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r < 0x100 && wire.UnsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case wire.UnsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		if b.Len() >= n {
			break
		}
	}
	return truncate(b.String(), n)
}

// anonymousDenials aggregates the activity entries of denied anonymous
// requests (failed sign-ins, missing or bad credentials) per source
// address and minute: the first of each minute is written at once with its
// details, the rest are counted and written as one summary entry when the
// minute is over (Flush). A client hammering the API without credentials
// then adds about two entries a minute instead of one per request.
//
// State is per replica and in memory, bounded to maxSources sources; the
// summaries of a replica that stops are written by Flush at shutdown.
type anonymousDenials struct {
	window     time.Duration
	maxSources int

	mu      sync.Mutex
	sources map[string]*denialBucket
}

type denialBucket struct {
	start   time.Time
	last    time.Time
	first   store.ActivityEntry
	more    int
	claimed []string // up to maxClaimed distinct claimed callers of the more
	actions []string // up to maxActions distinct actions of the more
}

const (
	maxClaimed = 5
	maxActions = 5
)

func newAnonymousDenials(window time.Duration, maxSources int) *anonymousDenials {
	return &anonymousDenials{window: window, maxSources: maxSources, sources: map[string]*denialBucket{}}
}

// overflowSource collects denials of new sources once maxSources are tracked.
const overflowSource = "(other sources)"

// admit reports whether e (a denied anonymous request at now) is to be
// written now; if not, it was counted in its source's bucket.
func (d *anonymousDenials) admit(e store.ActivityEntry, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	src := e.SourceIP
	b := d.sources[src]
	if b != nil && now.Sub(b.start) >= d.window {
		// The minute is over; its summary goes out with the next Flush.
		// The new minute starts with a written entry.
		return true
	}
	if b == nil {
		if len(d.sources) >= d.maxSources {
			src = overflowSource
			b = d.sources[src]
		}
		if b == nil {
			d.sources[src] = &denialBucket{start: now, last: now, first: e}
			return src != overflowSource
		}
	}
	b.more++
	b.last = now
	if !slices.Contains(b.claimed, e.Caller) && len(b.claimed) < maxClaimed {
		b.claimed = append(b.claimed, e.Caller)
	}
	if !slices.Contains(b.actions, e.Action) && len(b.actions) < maxActions {
		b.actions = append(b.actions, e.Action)
	}
	return false
}

// due removes and returns the summaries of the buckets whose minute is
// over at now (all of them if all is set).
func (d *anonymousDenials) due(now time.Time, all bool) []store.ActivityEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []store.ActivityEntry
	for src, b := range d.sources {
		if !all && now.Sub(b.start) < d.window {
			continue
		}
		delete(d.sources, src)
		if b.more == 0 {
			continue
		}
		e := b.first
		e.CorrelationID = ""
		e.Caller, e.CallerID, e.CallerType = "anonymous", "anonymous", ""
		if src == overflowSource {
			e.SourceIP = overflowSource
		}
		msg := strconv.Itoa(b.more) + " more denied requests without valid credentials from " + e.SourceIP +
			" between " + b.start.UTC().Format(time.RFC3339) + " and " + b.last.UTC().Format(time.RFC3339) +
			" (actions: " + strings.Join(b.actions, ", ")
		if len(b.claimed) > 0 {
			msg += "; claimed callers: " + strings.Join(b.claimed, ", ")
		}
		e.Message = printable(msg+")", 2048)
		e.Path = "(aggregated)"
		e.Method = "-"
		out = append(out, e)
	}
	return out
}

// FlushAnonymousDenials writes the summary entries of anonymous denials
// whose minute is over (all of them when final, at shutdown). The server
// calls it every few seconds.
func (a *API) FlushAnonymousDenials(ctx context.Context, final bool) error {
	es := a.denials.due(a.now(), final)
	if len(es) == 0 {
		return nil
	}
	for _, e := range es {
		if err := a.Activity.Record(ctx, e); err != nil {
			return fmt.Errorf("write %d aggregated denial entries: %w", len(es), err)
		}
		a.Metrics.activityEntries.Inc()
	}
	return nil
}

// StoreHealth tracks whether the store can write: the server's periodic
// write probe and every request that met a full store report to it; the
// readiness check and the fail-closed refusal of mutating calls and sign-ins
// read it. Safe for concurrent use; the zero value is a healthy store.
type StoreHealth struct {
	mu    sync.Mutex
	err   error
	since time.Time
}

// Failed records that the store could not write (err).
func (h *StoreHealth) Failed(err error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	if h.err == nil {
		h.since = time.Now()
	}
	h.err = err
	h.mu.Unlock()
}

// Succeeded records that a write went through.
func (h *StoreHealth) Succeeded() {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.err = nil
	h.mu.Unlock()
}

// Err is why the store cannot write, or nil.
func (h *StoreHealth) Err() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}
