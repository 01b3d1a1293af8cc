package httpapi

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/identity"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// AuthKind says how a route authenticates its caller.
type AuthKind int

const (
	// AuthPublic routes need no credentials (health, token endpoint).
	AuthPublic AuthKind = iota
	// AuthBearer routes need a user or service principal token.
	AuthBearer
	// AuthMachine routes need the machine's client certificate (mTLS).
	AuthMachine
)

// Route is one entry of the routing table.
type Route struct {
	Method  string
	Pattern string // net/http ServeMux pattern, without the method
	// Action is the RBAC action the route performs. For AuthBearer routes it
	// is checked at Scope(r) unless CheckInHandler is set (lists that
	// filter per item, or actions whose scope is in the body).
	Action         string
	Auth           AuthKind
	Scope          func(r *http.Request) string
	CheckInHandler bool
	// AllowRestricted admits tokens restricted to onboarding (device code).
	AllowRestricted bool
	// ForPasswordChange admits tokens restricted to changing the password
	// (a user whose password must change): reading /api/v1/me and the
	// change itself.
	ForPasswordChange bool
	// Streams: the answer is a byte or message stream that stays open (the
	// agent's channel, tunnels), so it cannot be held until its activity
	// entry is written; a stream a user opens is refused while the store
	// cannot write, and records its entry when it ends.
	Streams bool
	Summary string
	Handle  func(w http.ResponseWriter, r *http.Request, c *Caller) error

	// The API description (OpenAPI) of the route, read from the same table
	// (see openapi.go; a test refuses a route that leaves them out):
	// Request is a zero value of the JSON body type (NoBody{} for a
	// POST/PUT/PATCH that takes none; Form, Raw for other bodies),
	// Response a zero value of the success body type (wire.List[T]{} for a
	// list; Raw, WebSocket for others; nil only with Status 204), Status
	// the success status (0: 200), AlsoStatus other success statuses
	// answered with the same body (e.g. 200 when a PUT finds it already as
	// asked), Query the query parameters it takes, and Errors the error
	// statuses it can answer besides those every route of its kind can
	// (401 and 403 with credentials, 400/413/415 with a body, 404 with a
	// path parameter, 500 always).
	Request    any
	Response   any
	Status     int
	AlsoStatus []int
	Query      []QueryParam
	Errors     []int
}

// QueryParam describes one query parameter of a route.
type QueryParam struct {
	Name        string
	Description string
	// Type is an OpenAPI type: string, integer, boolean.
	Type string
	// Enum lists the allowed values, if any.
	Enum []string
	// Min and Max bound an integer (0: no bound).
	Min, Max int
	// Format is an OpenAPI format (date-time, uuid...), if any.
	Format string
	// Default is the value the server uses when the parameter is absent.
	Default any
}

// Caller is the authenticated principal of a request.
type Caller struct {
	ID   string
	Name string
	Type string // wire.PrincipalUser, PrincipalServicePrincipal, PrincipalMachine
	// Restriction limits a token to one purpose (device-code onboarding,
	// a password change).
	Restriction string
	// ViaAPIToken: the caller presented an API token.
	ViaAPIToken bool
	// Machine is set for AuthMachine callers.
	Machine *store.Machine

	assignments []authz.Assignment
	loaded      bool
}

type requestInfo struct {
	correlationID string
	sourceIP      string
	caller        *Caller
	// auditScope, auditMessage can be set by handlers whose scope is only
	// known after decoding the body.
	auditScope   string
	auditMessage string
	// auditAlways forces an activity entry for a read (e.g. failed logins).
	auditAlways bool
}

type ctxKey struct{}

func info(r *http.Request) *requestInfo {
	ri, _ := r.Context().Value(ctxKey{}).(*requestInfo)
	if ri == nil {
		return &requestInfo{}
	}
	return ri
}

// setAuditScope records the scope a handler acted on when the route's own
// scope function could not know it.
func setAuditScope(r *http.Request, scope string) { info(r).auditScope = scope }

// statusWriter remembers the status code for metrics and the activity log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and the WebSocket upgrade reach the
// underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (a *API) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{correlationID: correlationID(r), sourceIP: sourceIP(r)}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Set("X-Correlation-ID", ri.correlationID)

		// A mutating call and a sign-in are answered only once their
		// activity entry is written (fail closed): the handler writes into
		// a buffer that is sent after the entry, or replaced by an error if
		// the entry cannot be written.
		var out interface {
			http.ResponseWriter
			written() int
		} = sw
		var held *heldWriter
		recorded := mustRecord(r, rt) && !rt.Streams
		if recorded {
			held = newHeldWriter()
			out = held
		}
		var err error
		switch {
		case hasNUL(r):
			err = errValidation("", "the request path or query contains a NUL character")
		case (recorded || rt.Streams && rt.Auth == AuthBearer) && a.StoreHealth.Err() != nil:
			err = a.unwritableError(a.StoreHealth.Err())
		default:
			err = a.serve(out, r, rt, ri)
		}
		if err != nil {
			ae := toAPIError(err)
			if errors.Is(err, store.ErrFull) {
				a.StoreHealth.Failed(err)
			}
			switch {
			case ae.status >= 500 && r.Context().Err() != nil && errors.Is(err, context.Canceled):
				// The caller hung up first (an agent's request timeout, a
				// dropped connection): nothing failed here worth an error.
				a.Logger.InfoContext(context.WithoutCancel(r.Context()), "request abandoned by the caller", "route", rt.Pattern,
					"method", r.Method, "correlation_id", ri.correlationID, "err", err)
			case ae.paced:
				a.Logger.DebugContext(r.Context(), "request paced", "route", rt.Pattern, "method", r.Method,
					"correlation_id", ri.correlationID, "err", err)
			case ae.status >= 500:
				a.Logger.ErrorContext(r.Context(), "request failed", "route", rt.Pattern, "method", r.Method,
					"correlation_id", ri.correlationID, "err", err)
			}
			if out.written() == 0 {
				writeError(out, ae)
			}
			ri.auditMessage = ae.message
		}
		status := out.written()
		if status == 0 {
			status = http.StatusOK
		}
		auditErr := a.audit(r, rt, ri, status)
		if held != nil {
			if auditErr != nil && status < 400 {
				// Nothing the caller asked for is handed out without its
				// entry in the activity log.
				ae := a.unwritableError(auditErr)
				a.Logger.ErrorContext(r.Context(), "request refused: its activity entry could not be written", "route", rt.Pattern,
					"method", r.Method, "correlation_id", ri.correlationID, "err", auditErr)
				if r.Method != http.MethodPost || rt.Pattern != wire.PathToken {
					ae.message += " (the change itself may have been made; check before repeating it)"
				}
				writeError(sw, ae)
			} else {
				held.sendTo(sw)
			}
		}
		a.Metrics.observeRequest(rt.Method+" "+rt.Pattern, sw.written(), time.Since(start))
	})
}

// written returns the status written so far (0: none).
func (s *statusWriter) written() int { return s.status }

// mustRecord says whether the answer to r waits for its activity entry:
// mutating calls (except agent telemetry) and the token endpoint.
func mustRecord(r *http.Request, rt Route) bool {
	if rt.Pattern == wire.PathToken {
		return true
	}
	return r.Method != http.MethodGet && r.Method != http.MethodHead && rt.Pattern != wire.PathReports
}

// unwritableError is the answer when the store cannot take the activity
// entry of a request: 507 while it is full, else 503.
func (a *API) unwritableError(cause error) *apiError {
	if errors.Is(cause, store.ErrFull) {
		ae := errStoreFull(cause)
		ae.message = "the control plane's store has no space left to write, so this request (which must be recorded in the activity log) was refused. An operator must free disk space on the server (or its database)"
		return ae
	}
	if errors.Is(cause, store.ErrUnavailable) {
		ae := errStoreUnavailable(cause)
		ae.message = "the control plane cannot reach its store (database) right now, so this request (which must be recorded in the activity log) was refused; try again later"
		return ae
	}
	return &apiError{status: http.StatusServiceUnavailable, code: wire.CodeActivityLogUnavailable, cause: cause, retryAfter: 10 * time.Second,
		message: "the activity log cannot be written right now, so this request (which must be recorded) was refused; try again later"}
}

// hasNUL reports a NUL character in the request's path or query, which no
// name or filter may hold (PostgreSQL text cannot keep one).
func hasNUL(r *http.Request) bool {
	return strings.ContainsRune(r.URL.Path, 0) || strings.Contains(strings.ToLower(r.URL.RawQuery), "%00") ||
		strings.ContainsRune(r.URL.RawQuery, 0)
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, rt Route, ri *requestInfo) error {
	switch rt.Auth {
	case AuthBearer:
		c, err := a.authenticateBearer(r)
		if err != nil {
			return err
		}
		ri.caller = c
		switch {
		case c.Restriction == identity.RestrictPasswordChange:
			if !rt.ForPasswordChange {
				return &apiError{status: http.StatusForbidden, code: wire.CodePasswordChangeRequired,
					message: "your password was set by an administrator and must be changed first: run \"corral user password\" (PUT " + wire.PathMyPassword + ")"}
			}
		case c.Restriction != "" && !rt.AllowRestricted:
			return errForbidden("this token is restricted to machine onboarding and cannot call the API")
		}
		if !rt.CheckInHandler && rt.Action != authz.ActSelfRead && rt.Action != authz.ActSelfWrite {
			if err := a.authorize(r.Context(), c, rt.Action, rt.Scope(r)); err != nil {
				return err
			}
		}
		// A person (or a service principal's caller) waits on this
		// request: its writes go before queued agent telemetry.
		r = r.WithContext(store.Foreground(r.Context()))
	case AuthMachine:
		c, err := a.authenticateMachine(r)
		if err != nil {
			return err
		}
		ri.caller = c
	}
	if c := ri.caller; c != nil {
		// Operations a machine carries out later are logged, when it reports
		// their outcome, in this caller's name and under this correlation id.
		r = r.WithContext(capability.WithOrigin(r.Context(), capability.Origin{CorrelationID: ri.correlationID,
			CallerID: c.ID, Caller: c.Name, CallerType: c.Type, SourceIP: ri.sourceIP, Action: rt.Action}))
	}
	return rt.Handle(w, r, ri.caller)
}

// authorize checks that c may perform action at scope.
func (a *API) authorize(ctx context.Context, c *Caller, action, scope string) error {
	ok, err := a.allowed(ctx, c, action, scope)
	if err != nil {
		return err
	}
	if !ok {
		return errForbidden("%s %q does not have authorization to perform action %q over scope %q", c.Type, c.Name, action, scope)
	}
	return nil
}

func (a *API) allowed(ctx context.Context, c *Caller, action, scope string) (bool, error) {
	if c.Type == wire.PrincipalMachine {
		return false, nil
	}
	if err := a.loadCallerAssignments(ctx, c); err != nil {
		return false, err
	}
	return authz.Allowed(c.assignments, action, scope), nil
}

func (a *API) loadCallerAssignments(ctx context.Context, c *Caller) error {
	if c.loaded {
		return nil
	}
	as, err := a.Roles.Assignments(ctx, c.ID)
	if err != nil {
		return err
	}
	c.assignments, c.loaded = as, true
	return nil
}

// authorizeAnywhere allows action if the caller holds it at any scope (for
// global, unscoped catalogs).
func (a *API) authorizeAnywhere(ctx context.Context, c *Caller, action string) error {
	if c.Type != wire.PrincipalMachine {
		if err := a.loadCallerAssignments(ctx, c); err != nil {
			return err
		}
		if authz.AllowedAnywhere(c.assignments, action) {
			return nil
		}
	}
	return errForbidden("%s %q does not have authorization to perform action %q over any scope", c.Type, c.Name, action)
}

// audit writes the activity entry for mutating and denied calls. Denials
// of anonymous callers are aggregated per source address and minute (see
// anonymousDenials); only the first of each minute is written at once. The
// error is that of the write, for the fail-closed answer.
func (a *API) audit(r *http.Request, rt Route, ri *requestInfo, status int) error {
	denied := status == http.StatusUnauthorized || status == http.StatusForbidden
	mutating := r.Method != http.MethodGet && r.Method != http.MethodHead
	if rt.Pattern == wire.PathReports && !denied {
		return nil // agent telemetry, not an operation
	}
	if !mutating && !denied && !ri.auditAlways {
		return nil
	}
	if (rt.Pattern == wire.PathStream || rt.Pattern == wire.PathChannel) && !denied {
		return nil
	}
	scope := ri.auditScope
	if scope == "" && rt.Scope != nil {
		scope = rt.Scope(r)
	}
	result := wire.ResultSucceeded
	switch {
	case denied:
		result = wire.ResultDenied
	case status >= 400:
		result = wire.ResultFailed
	}
	e := store.ActivityEntry{
		Action: rt.Action, Scope: printable(scope, 1024), Result: result, Status: status,
		Message: printable(ri.auditMessage, 2048), CorrelationID: ri.correlationID, SourceIP: ri.sourceIP,
		Method: r.Method, Path: printable(r.URL.Path, 1024), CallerID: "anonymous", Caller: "anonymous",
	}
	if c := ri.caller; c != nil {
		e.CallerID, e.Caller, e.CallerType = c.ID, c.Name, c.Type
	} else if claimed := claimedCaller(r); claimed != "" {
		e.Caller = claimed
	}
	if ri.caller == nil && denied && !a.denials.admit(e, a.now()) {
		return nil // counted in the source's summary entry
	}
	// The activity log is the audit trail: write it even if the client left.
	ctx := context.WithoutCancel(r.Context())
	err := a.Activity.Record(ctx, e)
	if err != nil {
		if errors.Is(err, store.ErrFull) {
			a.StoreHealth.Failed(err)
		}
		a.Logger.ErrorContext(ctx, "activity log write failed", "action", rt.Action, "correlation_id", ri.correlationID, "err", err)
		return err
	}
	a.Metrics.activityEntries.Inc()
	return nil
}

// claimedCaller names who an unauthenticated request claimed to be (the
// OAuth2 client id or user name), never a secret.
func claimedCaller(r *http.Request) string {
	if r.PostForm == nil {
		return ""
	}
	if id := r.PostForm.Get("client_id"); id != "" {
		return "unverified:" + printable(truncate(id, 64), 256)
	}
	if u := r.PostForm.Get("username"); u != "" {
		return "unverified:" + printable(truncate(u, 64), 256)
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func correlationID(r *http.Request) string {
	id := r.Header.Get("X-Correlation-ID")
	if id == "" || len(id) > 64 || strings.ContainsFunc(id, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		return uuid.NewString()
	}
	return id
}

// sourceIP is the TCP peer address. X-Forwarded-For is not trusted: the
// server terminates TLS itself.
func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// pageQuery describes the query parameters pageFromQuery reads, for the
// Query of paged list routes.
func pageQuery(extra ...QueryParam) []QueryParam {
	return append(extra,
		QueryParam{Name: "$top", Type: "integer", Min: 1, Max: 1000, Default: 100,
			Description: "The most items to return in one page."},
		QueryParam{Name: "$skipToken", Type: "string",
			Description: "Where the page starts: the opaque token of the previous page's nextLink."})
}

// pageFromQuery reads $top and $skipToken.
func pageFromQuery(r *http.Request) (store.Page, error) {
	var p store.Page
	if v := r.URL.Query().Get("$top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return p, errValidation("$top", "$top must be an integer from 1 to 1000")
		}
		p.Limit = n
	}
	if v := r.URL.Query().Get("$skipToken"); v != "" {
		after, err := decodeSkipToken(v)
		if err != nil {
			return p, errValidation("$skipToken", "$skipToken is not valid; use the nextLink of the previous page")
		}
		p.After = after
	}
	if p.Limit == 0 {
		p.Limit = 100
	}
	return p, nil
}

// found is a resource a handler looked up by the id in its path, with the
// scope its authorization is checked at and the scope its activity entry
// names (the resource's own id when it has one).
type found struct {
	scope, auditScope string
	// hidden, when set, is the 404 answered to a caller who may not even
	// read at scope, so ids elsewhere are not confirmed to exist; without
	// it such a caller gets 403.
	hidden     func() error
	readAction string // the read action hidden is decided by
}

// lookupAt authorizes action for what get finds: a caller who holds action
// nowhere is refused before the lookup (ids cannot be probed), then action
// is checked at the scope where the resource lives.
func lookupAt[T any](a *API, r *http.Request, c *Caller, action string, get func(context.Context) (T, error), where func(T) found) (T, error) {
	var zero T
	if err := a.authorizeAnywhere(r.Context(), c, action); err != nil {
		return zero, err
	}
	v, err := get(r.Context())
	if err != nil {
		return v, err
	}
	f := where(v)
	setAuditScope(r, cmp.Or(f.auditScope, f.scope))
	if f.hidden != nil {
		if ok, err := a.allowed(r.Context(), c, action, f.scope); err != nil || ok {
			return v, err
		}
		if ok, _ := a.allowed(r.Context(), c, f.readAction, f.scope); !ok {
			return v, f.hidden()
		}
	}
	return v, a.authorize(r.Context(), c, action, f.scope)
}
