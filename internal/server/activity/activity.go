// Package activity is the control plane's activity context: the append-only
// log of every mutating and every denied call (who, what, where, result),
// and the queries over it. No API changes or deletes an entry.
//
// Record gives each entry a time-ordered id and the server's time, so
// entries sort by id in the order they were written. Refusals of bad
// queries are *refusal.Error. The Service is safe for concurrent use; it
// holds no state of its own.
package activity

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Store is what the context needs from persistence.
type Store interface {
	store.Activity
}

// Service implements the activity context.
type Service struct {
	store Store
	clock func() time.Time
	log   *slog.Logger
}

// New returns a Service. clock is the injected time source.
func New(st Store, clock func() time.Time, log *slog.Logger) *Service {
	return &Service{store: st, clock: clock, log: log}
}

// Record appends e to the log with a new time-ordered id and the current
// time (any ID and Time given are replaced).
func (s *Service) Record(ctx context.Context, e store.ActivityEntry) error {
	e.ID = uuid.Must(uuid.NewV7()).String()
	e.Time = s.clock().UTC()
	return s.store.AppendActivity(ctx, e)
}

// RecordOutcome logs the outcome of an operation a machine carried out, in
// the name of whoever asked for it and under the request's correlation id,
// so `corral activity list --result Failed` finds a refused install or a
// failed run next to the request that started it.
func (s *Service) RecordOutcome(ctx context.Context, o capability.Outcome) error {
	e := s.OutcomeEntry(o)
	// The state change this entry reports is already committed: an agent
	// that gives up on its request (and sends the report again later, when
	// it may be applied as a no-op) must not cost the log its entry.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	defer cancel()
	if o.ReportID != "" {
		e.CorrelationID = "report:" + truncateUTF8(o.ReportID, 128)
	}
	if o.ReportID != "" || o.Once {
		if seen, err := s.recordedFor(ctx, e); err != nil || seen {
			return err
		}
	}
	return s.store.AppendActivity(ctx, e)
}

// OutcomeEntry implements capability.Outcomes: the entry of o in the name
// of whoever asked for the operation, under the request's correlation id.
func (s *Service) OutcomeEntry(o capability.Outcome) store.ActivityEntry {
	action := o.Action
	if action == "" {
		action = o.Origin.Action
	}
	status := 200
	if o.Result != wire.ResultSucceeded {
		status = 0
	}
	caller, callerType := o.Origin.Caller, o.Origin.CallerType
	if caller == "" {
		caller, callerType = "corral", "System"
	}
	e := store.ActivityEntry{ID: uuid.Must(uuid.NewV7()).String(), Time: o.At.UTC(), CallerID: o.Origin.CallerID, Caller: caller,
		CallerType: callerType, Action: action, Scope: o.Scope, Result: o.Result, Status: status, Message: truncateUTF8(o.Message, 2048),
		CorrelationID: o.Origin.CorrelationID, SourceIP: o.Origin.SourceIP, Method: "AGENT", Path: "outcome"}
	if e.Time.IsZero() {
		e.Time = s.clock().UTC()
	}
	return e
}

// outcomeTimeout bounds writing one outcome entry once its request is gone.
const outcomeTimeout = 30 * time.Second

// recordedFor reports whether an entry like e (caller, action, scope and
// correlation id) is among the newest of its kind: a report delivered again
// comes right after the delivery whose acknowledgement was lost, so the
// newest page is enough.
func (s *Service) recordedFor(ctx context.Context, e store.ActivityEntry) (bool, error) {
	es, err := s.store.ListActivity(ctx, store.ActivityFilter{ScopePrefix: e.Scope, CallerID: e.CallerID, Action: e.Action,
		Page: store.Page{Limit: store.DefaultPageSize}})
	if err != nil {
		return false, fmt.Errorf("look for the outcome of %s: %w", e.CorrelationID, err)
	}
	for _, x := range es {
		// Only outcome entries count: the request's own entry shares its
		// correlation id, caller, action and scope.
		if x.CorrelationID == e.CorrelationID && x.Scope == e.Scope && x.CallerID == e.CallerID && x.Method == e.Method && x.Path == e.Path {
			return true, nil
		}
	}
	return false, nil
}

var _ capability.Outcomes = (*Service)(nil)

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Query selects entries, newest first. Scope, result, times and the action
// pattern are as the API takes them (strings), checked here.
type Query struct {
	Scope    string // "/" (or "") for everything, else a scope and what is below it
	CallerID string // principal id or caller display name
	Action   string // exact, or a prefix ending in "*"
	Result   string // Succeeded, Failed or Denied, any casing
	From, To string // RFC 3339; From inclusive, To exclusive
	Page     store.Page
	// Ascending lists oldest first.
	Ascending bool
}

var results = []string{wire.ResultSucceeded, wire.ResultFailed, wire.ResultDenied}

func (q Query) filter() (store.ActivityFilter, error) {
	f := store.ActivityFilter{CallerID: q.CallerID, Action: q.Action, Ascending: q.Ascending}
	scope := q.Scope
	if scope == "" {
		scope = "/"
	}
	if _, err := resource.ParseScope(scope); err != nil {
		return f, refusal.Invalid("scope", "%v", err)
	}
	if scope != "/" {
		f.ScopePrefix = scope
	}
	if q.Result != "" {
		ok := false
		for _, r := range results {
			if strings.EqualFold(r, q.Result) {
				f.Result, ok = r, true
			}
		}
		if !ok {
			return f, refusal.Invalid("result", "result must be Succeeded, Failed or Denied")
		}
	}
	for _, t := range []struct {
		name, v string
		dst     *time.Time
	}{{"from", q.From, &f.From}, {"to", q.To, &f.To}} {
		if t.v == "" {
			continue
		}
		ts, err := time.Parse(time.RFC3339, t.v)
		if err != nil {
			return f, refusal.Invalid(t.name, "%s must be an RFC 3339 time such as 2026-11-24T08:00:00Z", t.name)
		}
		*t.dst = ts.UTC()
	}
	if strings.Count(f.Action, "*") > 1 || (strings.Contains(f.Action, "*") && !strings.HasSuffix(f.Action, "*")) {
		return f, refusal.Invalid("action", "action filter may only end with '*'")
	}
	return f, nil
}

// List returns one page of entries matching q, newest first (oldest first
// with q.Ascending).
func (s *Service) List(ctx context.Context, q Query) (store.PageOf[wire.ActivityEntry], error) {
	f, err := q.filter()
	if err != nil {
		return store.PageOf[wire.ActivityEntry]{}, err
	}
	es, after, err := store.FetchPage(q.Page, func(p store.Page) ([]store.ActivityEntry, error) {
		f.Page = p
		return s.store.ListActivity(ctx, f)
	}, func(e store.ActivityEntry) string { return e.ID })
	if err != nil {
		return store.PageOf[wire.ActivityEntry]{}, err
	}
	out := store.PageOf[wire.ActivityEntry]{Items: make([]wire.ActivityEntry, 0, len(es)), After: after}
	for _, e := range es {
		out.Items = append(out.Items, wire.ActivityEntry(e))
	}
	return out, nil
}
