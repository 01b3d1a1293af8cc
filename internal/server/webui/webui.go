package webui

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// Config is what the web UI needs from the server.
type Config struct {
	// API is the REST API handler (httpapi). The UI calls it in process for
	// every read and write.
	API http.Handler
	// Logger receives failures the user cannot fix (template errors, API
	// answers that do not decode). Tokens and form values are never logged.
	Logger *slog.Logger
	// Clock gives "now" for relative times ("3m ago"); time.Now if nil.
	Clock func() time.Time
	// Version is shown in the footer.
	Version string
}

// Handler serves the web UI under /ui/. Its zero value is not usable; make
// one with New. It holds no per-user state.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the web UI handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.Handle("GET /ui/static/", staticHandler())
	h.mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/machines", http.StatusFound)
	})
	h.mux.HandleFunc("GET /ui/signin", h.signInPage)
	h.mux.HandleFunc("POST /ui/signin", h.signIn)
	h.mux.HandleFunc("POST /ui/signout", h.signOut)
	h.mux.Handle("GET /ui/machines", h.authed(h.inventory))
	h.mux.Handle("GET /ui/machines/{sub}/{rg}/{name}", h.authed(h.machineDetail))
	h.mux.Handle("POST /ui/machines/{sub}/{rg}/{name}/delete", h.authedPost(h.deleteMachine))
	h.mux.Handle(patternSetExtension, h.authedPost(h.setExtension))
	h.mux.Handle("POST /ui/machines/{sub}/{rg}/{name}/extensions/{ext}/delete", h.authedPost(h.deleteExtension))
	h.mux.Handle(patternRunCommand, h.authedPost(h.createRunCommand))
	h.mux.Handle("GET /ui/machines/{sub}/{rg}/{name}/runCommands/{run}", h.authed(h.runCommandDetail))
	h.mux.Handle("GET /ui/activity", h.authed(h.activity))
	h.mux.Handle("GET /ui/devicecodes", h.authed(h.deviceCodes))
	h.mux.Handle("POST /ui/devicecodes/approve", h.authedPost(h.approveDeviceCode))
	h.mux.Handle("GET /ui/security", h.authed(h.security))
	h.mux.Handle("POST /ui/security/alerts/{id}/acknowledge", h.authedPost(h.acknowledgeAlert))
	h.mux.Handle("GET /ui/password", h.authed(h.passwordPage))
	h.mux.Handle("POST /ui/password", h.authedPost(h.changePassword))
	h.updatesRoutes()
	h.bulkRoutes()
	h.mux.Handle("GET /ui/access", h.authed(h.access))
	h.mux.Handle("POST /ui/access/jit", h.authedPost(h.requestJIT))
	h.mux.Handle("POST /ui/access/jit/{id}/{action}", h.authedPost(h.jitAction))
	h.mux.Handle("POST /ui/access/sessions/{id}/end", h.authedPost(h.endSession))
	h.mux.Handle("GET /ui/policy", h.authed(h.policy))
	h.mux.Handle("GET /ui/policy/assignments/{name}", h.authed(h.policyAssignment))
	h.mux.HandleFunc("/ui/", h.notFound)
	return h
}

// contentSecurityPolicy admits only our own stylesheet and script: no
// inline script or style, no framing, forms post only to us.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// maxFormBytes bounds every form the UI accepts, except those in
// largeForms.
const maxFormBytes = 16 << 10

// Patterns of the forms that carry documents: a script (up to 256 KiB in
// the API) or extension settings. Their bound is the API's default body
// limit; URL encoding may take up to three bytes per byte.
const (
	patternSetExtension = "POST /ui/machines/{sub}/{rg}/{name}/extensions"
	patternRunCommand   = "POST /ui/machines/{sub}/{rg}/{name}/runCommands"
)

var largeForms = map[string]int64{patternSetExtension: 1 << 20, patternRunCommand: 1 << 20}

// formLimit is how many bytes the form posted in r may have.
func (h *Handler) formLimit(r *http.Request) int64 {
	if _, pattern := h.mux.Handler(r); largeForms[pattern] > 0 {
		return largeForms[pattern]
	}
	return maxFormBytes
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	cid := correlationID(r)
	hd.Set("X-Correlation-ID", cid)
	r = r.WithContext(context.WithValue(r.Context(), correlationKey{}, cid))
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, h.formLimit(r))
	}
	h.mux.ServeHTTP(w, r)
}

type correlationKey struct{}

// correlationID keeps a well-formed X-Correlation-ID from the browser (so a
// support case can be traced) or makes a new one; every API call of one UI
// request carries it.
func correlationID(r *http.Request) string {
	if id, ok := r.Context().Value(correlationKey{}).(string); ok {
		return id
	}
	id := r.Header.Get("X-Correlation-ID")
	if id == "" || len(id) > 64 || strings.ContainsFunc(id, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		return uuid.NewString()
	}
	return id
}

// uiRequest is one signed-in UI request.
type uiRequest struct {
	w   http.ResponseWriter
	r   *http.Request
	api *client.Client // acts with the session's token
	me  wire.Me
}

func (u *uiRequest) ctx() context.Context { return u.r.Context() }

// authed runs fn for a signed-in user. Without a session, or when the API
// no longer accepts its token (expired, user deleted or disabled), the
// browser is sent to sign-in and comes back here afterwards.
func (h *Handler) authed(fn func(*uiRequest)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := sessionToken(r)
		if tok == "" {
			redirectToSignIn(w, r, "")
			return
		}
		u := &uiRequest{w: w, r: r, api: h.apiFor(r, tok)}
		me, err := u.api.Me(r.Context())
		if err != nil {
			if isUnauthenticated(err) {
				setCookie(w, sessionCookie, "", 0)
				redirectToSignIn(w, r, "expired")
				return
			}
			h.renderError(w, r, nil, err)
			return
		}
		u.me = me
		if me.PasswordChangeRequired && r.URL.Path != "/ui/password" {
			// This session may only change the password.
			http.Redirect(w, r, "/ui/password", http.StatusSeeOther)
			return
		}
		fn(u)
	})
}

// authedPost is authed for form posts: it parses the form and refuses it
// unless it came from our own pages with this session's CSRF token. A
// refused post reaches neither the API nor the store.
func (h *Handler) authedPost(fn func(*uiRequest)) http.Handler {
	inner := h.authed(fn)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := sessionToken(r)
		if tok == "" {
			redirectToSignIn(w, r, "")
			return
		}
		if err := h.checkPost(r, sessionCSRF(tok)); err != nil {
			h.refusePost(w, r, err)
			return
		}
		inner.ServeHTTP(w, r)
	})
}

// checkPost parses a posted form and checks its origin and CSRF token.
func (h *Handler) checkPost(r *http.Request, wantToken string) error {
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errors.New("the form is too large")
		}
		return errors.New("the form could not be read")
	}
	if err := checkSameOrigin(r); err != nil {
		return err
	}
	if !tokenMatches(r.PostForm.Get(csrfField), wantToken) {
		return errCrossSite
	}
	return nil
}

func (h *Handler) refusePost(w http.ResponseWriter, r *http.Request, err error) {
	h.cfg.Logger.WarnContext(r.Context(), "web UI form refused", "path", r.URL.Path,
		"correlation_id", correlationID(r), "err", err)
	h.render(w, r, http.StatusForbidden, "error", &page{Title: "Request refused",
		Error: &uiError{Status: http.StatusForbidden, Code: "CSRFCheckFailed", Message: err.Error()}})
}

// redirectToSignIn sends the browser to the sign-in page, remembering where
// it was going (GET pages only: a form post cannot be replayed).
func redirectToSignIn(w http.ResponseWriter, r *http.Request, reason string) {
	q := url.Values{}
	if r.Method == http.MethodGet {
		q.Set("next", r.URL.RequestURI())
	}
	if reason != "" {
		q.Set("reason", reason)
	}
	http.Redirect(w, r, "/ui/signin?"+q.Encode(), http.StatusSeeOther)
}

func isUnauthenticated(err error) bool {
	var ae *wire.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusUnauthorized
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusNotFound, "error", &page{Title: "Not found",
		Error: &uiError{Status: http.StatusNotFound, Code: wire.CodeNotFound, Message: "there is no page at " + r.URL.Path}})
}

// uiError is what an error banner shows: the API's code and message, or a
// message about the form.
type uiError struct {
	Status  int
	Code    string
	Message string
}

// toUIError maps an error to what the user sees. API errors keep their
// message (it is written to be shown); anything else is logged and shown as
// an internal error with the correlation id.
func (h *Handler) toUIError(r *http.Request, err error) *uiError {
	var ae *wire.APIError
	if errors.As(err, &ae) {
		return &uiError{Status: ae.Status, Code: ae.Code, Message: ae.Message}
	}
	var fe formError
	if errors.As(err, &fe) {
		return &uiError{Status: http.StatusBadRequest, Code: wire.CodeValidation, Message: string(fe)}
	}
	h.cfg.Logger.ErrorContext(r.Context(), "web UI request failed", "path", r.URL.Path,
		"correlation_id", correlationID(r), "err", err)
	return &uiError{Status: http.StatusInternalServerError, Code: wire.CodeInternal,
		Message: "internal error; see the server log with the correlation id"}
}

// formError is bad input on a form or in a page's query: shown as is.
type formError string

func (e formError) Error() string { return string(e) }

// renderError shows an error page (or a page-less banner) for err.
func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, me *wire.Me, err error) {
	ue := h.toUIError(r, err)
	h.render(w, r, ue.Status, "error", &page{Title: http.StatusText(ue.Status), Me: me, Error: ue})
}

// roleNames lists the distinct roles of the caller, for the nav bar.
func roleNames(me *wire.Me) []string {
	var out []string
	for _, a := range me.Assignments {
		n := a.RoleName
		if n == "" {
			n = a.RoleID
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
