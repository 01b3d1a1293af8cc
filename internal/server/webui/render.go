package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// page is what every template receives; Data holds the page's own data.
type page struct {
	Title   string
	Nav     string // the active nav item
	Me      *wire.Me
	Roles   []string
	CSRF    string // this session's CSRF token, for forms
	Now     time.Time
	Version string
	// CorrelationID ties what the user sees to the server log and the
	// activity log.
	CorrelationID string
	Notice        string
	Error         *uiError
	// Refresh, when set, makes ui.js reload the page after that many
	// seconds unless the user is typing in a form (an operation is in
	// progress). Only pages rendered for a GET set it.
	Refresh int
	Data    any
}

// pageNames are the templates under templates/, each rendered inside layout.html.
var pageNames = []string{"signin", "machines", "machine", "run", "activity", "devicecodes", "error", "security", "password",
	"updates", "updaterun", "machineupdates", "updateschedules", "access", "bulk", "bulkop", "policy", "policyassignment"}

// partials are templates that pages include (besides layout.html).
var partials = map[string][]string{"machine": {"extensions.html", "runcommands.html"},
	"updates": {"updateform.html"}, "machineupdates": {"updateform.html"}, "updateschedules": {"updateform.html"}}

// pages holds one parsed template set per page. The templates are embedded,
// so a parse error is a build defect and fails at start (and in every test).
var pages = func() map[string]*template.Template {
	m := map[string]*template.Template{}
	for _, name := range pageNames {
		files := []string{"templates/layout.html", "templates/" + name + ".html"}
		for _, p := range partials[name] {
			files = append(files, "templates/"+p)
		}
		m[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, files...))
	}
	return m
}()

var funcs = template.FuncMap{
	"asset":       assetURL,
	"lastSegment": lastSegment,
	"ts":          formatTime,
	"ago":         ago,
	"bytes":       formatBytes,
	"join":        func(s []string) string { return strings.Join(s, ", ") },
	"statusClass": statusClass,
	"stateClass":  stateClass,
	"machineURL":  machineURL,
	"tagURL":      tagURL,
	"osLabel":     osLabel,
	"expiry":      expiry,
	"pathBreaks":  pathBreaks,
	"shortID":     shortID,
	"duration":    func(d wire.Duration) string { return time.Duration(d).String() },
}

// pathBreaks escapes a resource path or action and lets the browser wrap it
// only after a "/", never in the middle of a name.
func pathBreaks(s string) template.HTML {
	parts := strings.Split(s, "/")
	for i, p := range parts {
		parts[i] = template.HTMLEscapeString(p)
	}
	return template.HTML(strings.Join(parts, "/<wbr>"))
}

// shortID is the first 8 characters of a long id (the page shows the whole
// id on hover).
func shortID(s string) string {
	if len(s) <= 12 {
		return s
	}
	return s[:8] + "…"
}

// render executes a page into a buffer first, so a template failure becomes
// a clean 500 instead of half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	p.Now = h.cfg.Clock().UTC()
	p.Version = h.cfg.Version
	p.CorrelationID = correlationID(r)
	if p.Me != nil {
		p.Roles = roleNames(p.Me)
		p.CSRF = sessionCSRF(sessionToken(r))
	}
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		h.cfg.Logger.ErrorContext(r.Context(), "render web UI page", "page", name, "correlation_id", p.CorrelationID, "err", err)
		http.Error(w, "internal error rendering the page; correlation id "+p.CorrelationID, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// assetVersions maps each static file to a short hash of its content;
// asset URLs carry it so browsers may cache them for good.
var assetVersions = func() map[string]string {
	m := map[string]string{}
	_ = fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[strings.TrimPrefix(p, "static/")] = hex.EncodeToString(sum[:6])
		return nil
	})
	return m
}()

func assetURL(name string) (string, error) {
	v, ok := assetVersions[name]
	if !ok {
		return "", fmt.Errorf("no static asset %q", name)
	}
	return "/ui/static/" + name + "?v=" + v, nil
}

// staticHandler serves the embedded assets. A URL with the current content
// hash is cacheable forever; anything else must be revalidated.
func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/ui/static/")
		v, ok := assetVersions[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("v") == v {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago is a short relative time: "45s ago", "3m ago", "in 2d".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, ""
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh", int(d.Hours()))
	default:
		s = fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	if suffix == "" {
		return "in " + s
	}
	return s + suffix
}

// expiry says how long until t: "in 89 days", "in 5h", "expired 2d ago".
func expiry(now, t time.Time) string {
	switch d := t.Sub(now); {
	case t.IsZero():
		return ""
	case d <= 0:
		return "expired " + ago(now, t)
	case d >= 48*time.Hour:
		return fmt.Sprintf("in %d days", int(d.Hours()/24))
	default:
		return ago(now, t)
	}
}

func formatBytes(n uint64) string {
	if n == 0 {
		return "—"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func statusClass(status string) string {
	switch status {
	case wire.StatusConnected:
		return "badge badge-ok"
	case wire.StatusDisconnected:
		return "badge badge-warn"
	case wire.StatusExpired:
		return "badge badge-bad"
	}
	return "badge"
}

// stateClass is the badge of an extension or run command state: green when
// it succeeded, red when it failed or timed out, blue while in progress.
func stateClass(state string) string {
	switch state {
	case wire.ExtSucceeded:
		return "badge badge-ok"
	case wire.ExtFailed, wire.RunTimedOut:
		return "badge badge-bad"
	case wire.ExtCreating, wire.ExtUpdating, wire.ExtDeleting, wire.RunPending, wire.RunRunning:
		return "badge badge-busy"
	}
	return "badge"
}

// machineURL is the UI page of a machine.
func machineURL(m wire.Machine) string {
	return "/ui/machines/" + url.PathEscape(m.SubscriptionID) + "/" + url.PathEscape(m.ResourceGroup) + "/" + url.PathEscape(m.Name)
}

// tagURL is the inventory filtered by one tag.
func tagURL(sub, k, v string) string {
	q := url.Values{"tag": {k + "=" + v}}
	if sub != "" && sub != defaultSubscription {
		q.Set("sub", sub)
	}
	return "/ui/machines?" + q.Encode()
}

func osLabel(p wire.MachineProperties) string {
	if p.OSPrettyName != "" {
		return p.OSPrettyName
	}
	s := strings.TrimSpace(p.OSName + " " + p.OSVersion)
	if s == "" {
		return "—"
	}
	return s
}
