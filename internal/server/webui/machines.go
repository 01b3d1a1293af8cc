package webui

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

const defaultSubscription = "default"

var (
	statuses = []string{wire.StatusConnected, wire.StatusDisconnected, wire.StatusExpired}
)

// machineFilter is the inventory's query: the same filters as the API and
// `corral machine list`, plus paging.
type machineFilter struct {
	Sub, RG, Environment, Status, OS, Tag, Name string
	Top                                         int
	Skip                                        string // the API's opaque $skipToken
}

// parseMachineFilter reads and checks the inventory query.
func parseMachineFilter(q url.Values) (machineFilter, error) {
	f := machineFilter{
		Sub: strings.TrimSpace(q.Get("sub")), RG: strings.TrimSpace(q.Get("rg")), OS: strings.TrimSpace(q.Get("os")),
		Tag: strings.TrimSpace(q.Get("tag")), Name: strings.TrimSpace(q.Get("name")), Skip: q.Get("skip"), Top: 100,
	}
	if f.Sub == "" {
		f.Sub = defaultSubscription
	}
	// The API's own name and tag rules (package resource), so that bad
	// input gets a message naming the form field before any call is made.
	if !resource.ValidName(f.Sub) {
		return f, formError("Subscription must be a name of 1-63 letters, digits, '.', '_' or '-'.")
	}
	if f.RG != "" && !resource.ValidName(f.RG) {
		return f, formError("Resource group must be a name of 1-63 letters, digits, '.', '_' or '-'.")
	}
	var ok bool
	if f.Environment, ok = canonical(q.Get("environment"), wire.Environments); !ok {
		return f, formError("Environment must be one of " + strings.Join(wire.Environments, ", ") + ".")
	}
	if f.Status, ok = canonical(q.Get("status"), statuses); !ok {
		return f, formError("Status must be Connected, Disconnected or Expired.")
	}
	if key, _, _ := strings.Cut(f.Tag, "="); f.Tag != "" && !resource.ValidTagKey(key) {
		return f, formError("Tag must be KEY or KEY=VALUE, for example env=prod.")
	}
	if len(f.Name) > 63 || len(f.OS) > 64 {
		return f, formError("Name and OS filters are at most 63 characters.")
	}
	if v := q.Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, formError("Page size must be a number from 1 to 1000.")
		}
		f.Top = n
	}
	return f, nil
}

// canonical matches v case-insensitively against allowed; "" is allowed.
func canonical(v string, allowed []string) (string, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", true
	}
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, true
		}
	}
	return v, false
}

func (f machineFilter) apiPath() string {
	scope := resource.Subscription(f.Sub)
	if f.RG != "" {
		scope = resource.ResourceGroup(f.Sub, f.RG)
	}
	return client.ResourcePath(scope) + "/" + resource.Machines
}

func (f machineFilter) apiQuery() url.Values {
	q := url.Values{"$top": {strconv.Itoa(f.Top)}}
	for k, v := range map[string]string{"environment": f.Environment, "status": f.Status, "os": f.OS, "tag": f.Tag, "name": f.Name, "$skipToken": f.Skip} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// uiURL is the inventory URL of this filter at page skip ("" = first page).
func (f machineFilter) uiURL(skip string) string {
	q := url.Values{}
	for k, v := range map[string]string{"rg": f.RG, "environment": f.Environment, "status": f.Status, "os": f.OS,
		"tag": f.Tag, "name": f.Name, "skip": skip} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Sub != defaultSubscription {
		q.Set("sub", f.Sub)
	}
	if f.Top != 100 {
		q.Set("top", strconv.Itoa(f.Top))
	}
	if len(q) == 0 {
		return "/ui/machines"
	}
	return "/ui/machines?" + q.Encode()
}

// inventoryData is the machine inventory page.
type inventoryData struct {
	Filter        machineFilter
	Subscriptions []string
	Environments  []string
	Statuses      []string
	PageSizes     []int
	Rows          []machineRow
	NextURL       string
	FirstURL      string // set when not on the first page
	Filtered      bool
}

func (h *Handler) inventory(u *uiRequest) {
	f, err := parseMachineFilter(u.r.URL.Query())
	d := &inventoryData{Filter: f, Environments: wire.Environments, Statuses: statuses, PageSizes: []int{25, 50, 100, 250, 500, 1000},
		Filtered: f.RG != "" || f.Environment != "" || f.Status != "" || f.OS != "" || f.Tag != "" || f.Name != ""}
	p := &page{Title: "Machines", Nav: "machines", Me: &u.me, Data: d}
	if name := u.r.URL.Query().Get("deleted"); resource.ValidName(name) {
		p.Notice = "Machine " + strconv.Quote(name) + " was deleted. Its agent has been told to stop."
	}
	if subs, err := u.api.ListSubscriptions(u.ctx()); err == nil {
		for _, s := range subs {
			d.Subscriptions = append(d.Subscriptions, s.Name)
		}
	}
	if err != nil {
		p.Error = h.toUIError(u.r, err)
		h.render(u.w, u.r, p.Error.Status, "machines", p)
		return
	}
	var list wire.List[wire.Machine]
	if err := u.api.Do(u.ctx(), http.MethodGet, withQuery(f.apiPath(), f.apiQuery()), nil, &list); err != nil {
		p.Error = h.toUIError(u.r, err)
		if p.Error.Status == http.StatusForbidden && f.RG == "" {
			p.Error.Message += ". If you were given access to a resource group, enter it in the filter above."
		}
		h.render(u.w, u.r, p.Error.Status, "machines", p)
		return
	}
	d.Rows = machineRows(list.Value, f.Sub, h.cfg.Clock())
	h.fillUpdates(u, d.Rows, list.Value, f.Sub)
	if next := skipTokenOf(list.NextLink); next != "" {
		d.NextURL = f.uiURL(next)
	}
	if f.Skip != "" {
		d.FirstURL = f.uiURL("")
	}
	h.render(u.w, u.r, http.StatusOK, "machines", p)
}

// machineRow is one inventory row, formatted in Go: a 1,000-row page then
// costs one escaped action per cell instead of several template calls.
type machineRow struct {
	Name, URL, ResourceGroup, Status, StatusClass, Environment, OS, AgentVersion string
	Unsupported                                                                  bool
	HeartbeatAgo, HeartbeatTime                                                  string
	Tags                                                                         []tagChip
	// Updates is the machine's pending update counts (updates.go).
	Updates    updateCell
	UpdatesURL string
}

// tagChip is a tag that links to the inventory filtered by it.
type tagChip struct{ Label, URL string }

func machineRows(ms []wire.Machine, sub string, now time.Time) []machineRow {
	rows := make([]machineRow, len(ms))
	for i, m := range ms {
		r := machineRow{Name: m.Name, URL: machineURL(m), ResourceGroup: m.ResourceGroup, Status: m.Status,
			StatusClass: statusClass(m.Status), Environment: orDash(m.Properties.Environment), OS: osLabel(m.Properties),
			AgentVersion: orDash(m.AgentVersion), Unsupported: !m.AgentSupported,
			HeartbeatAgo: ago(now, m.LastHeartbeat), HeartbeatTime: formatTime(m.LastHeartbeat)}
		for _, k := range slices.Sorted(maps.Keys(m.Tags)) {
			r.Tags = append(r.Tags, tagChip{Label: k + "=" + m.Tags[k], URL: tagURL(sub, k, m.Tags[k])})
		}
		rows[i] = r
	}
	return rows
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// machineData is the machine detail page.
type machineData struct {
	Machine     wire.Machine
	AgentConfig []configRow
	ActivityURL string
	DeleteURL   string
	extensionsData
	runsData
	// Updates is the machine's update status card (nil: not readable).
	Updates *updateCard
	// Compliance is the machine's policy compliance (nil: none or not
	// readable).
	Compliance *machineCompliance
	// InProgress is set when an extension or a run on the page is still
	// being worked on; RefreshNote says what the page does about it.
	InProgress  bool
	RefreshNote string
}

// configRow is one key of the local agent configuration (DESIGN.md §4).
type configRow struct{ Key, Value string }

func agentConfigRows(c *wire.AgentConfig) []configRow {
	if c == nil {
		return nil
	}
	list := func(v []string) string {
		if len(v) == 0 {
			return ""
		}
		return strings.Join(v, ", ")
	}
	num := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n) + "%"
	}
	return []configRow{
		{"extensions.allowlist", list(c.ExtensionsAllowlist)},
		{"extensions.blocklist", list(c.ExtensionsBlocklist)},
		{"extensions.enabled", strconv.FormatBool(c.ExtensionsEnabled)},
		{"guestconfiguration.enabled", strconv.FormatBool(c.GuestConfigurationEnabled)},
		{"config.mode", c.Mode},
		{"incomingconnections.enabled", strconv.FormatBool(c.IncomingConnectionsEnabled)},
		{"incomingconnections.ports", list(c.IncomingConnectionsPorts)},
		{"proxy.url", c.ProxyURL},
		{"proxy.bypass", list(c.ProxyBypass)},
		{"extensions.agent.cpulimit", num(c.ExtensionsCPULimit)},
		{"guestconfiguration.agent.cpulimit", num(c.GuestConfigurationCPULimit)},
	}
}

// machineRef is the machine named in the UI URL.
func machineRef(r *http.Request) resource.MachineRef {
	return resource.MachineRef{Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Name: r.PathValue("name")}
}

// machinePath is the API path of the machine named in the UI URL.
func machinePath(r *http.Request) string { return client.ResourcePath(machineRef(r).ID()) }

// machinePageURL is the UI page of the machine named in the UI URL.
func machinePageURL(r *http.Request) string {
	return "/ui/machines/" + url.PathEscape(r.PathValue("sub")) + "/" + url.PathEscape(r.PathValue("rg")) + "/" + url.PathEscape(r.PathValue("name"))
}

func (h *Handler) machineDetail(u *uiRequest) {
	q := u.r.URL.Query()
	v := machineView{status: http.StatusOK, get: true, edit: q.Get("edit"), runsSkip: q.Get("runs")}
	if name := q.Get("extension"); resource.ValidName(name) {
		v.notice, v.highlight = "Extension "+strconv.Quote(name)+" was submitted to the machine; its state is shown below.", name
	}
	if name := q.Get("removed"); resource.ValidName(name) {
		v.notice, v.highlight = "Removal of extension "+strconv.Quote(name)+" was requested.", name
	}
	h.showMachine(u, v)
}

// machineView says how to render the machine page: for a GET, or again
// after a form post that failed, with the API's status, the error next to
// the form it concerns and the form as typed.
type machineView struct {
	status    int
	pageErr   *uiError       // a failed machine delete, shown at the top
	extErr    *uiError       // a failed extension set or remove
	runErr    *uiError       // a run command that was not created
	extForm   *extensionForm // as posted (never with protected settings)
	runForm   *runForm       // as posted
	notice    string
	highlight string // the extension row to mark
	edit      string // the extension whose values fill the form
	runsSkip  string // the API's $skipToken of the runs list
	// get is set when rendering for a GET, the only kind of page that may
	// reload itself (reloading a post's answer would post again).
	get bool
}

func (v machineView) actionErr() *uiError {
	for _, e := range []*uiError{v.pageErr, v.extErr, v.runErr} {
		if e != nil {
			return e
		}
	}
	return nil
}

// showMachine renders the detail page with its extensions and run commands.
// Each section that the API refuses to read says why; the rest of the page
// is still shown.
func (h *Handler) showMachine(u *uiRequest, v machineView) {
	ref := machineRef(u.r)
	m, err := u.api.GetMachine(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name)
	if err != nil {
		if ae := v.actionErr(); ae != nil {
			h.render(u.w, u.r, ae.Status, "error", &page{Title: "Machine", Nav: "machines", Me: &u.me, Error: ae})
			return
		}
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	d := &machineData{Machine: m, AgentConfig: agentConfigRows(m.AgentConfig),
		ActivityURL: "/ui/activity?" + url.Values{"scope": {m.ID}}.Encode(), DeleteURL: machineURL(m) + "/delete"}
	d.Updates = h.machineUpdateSummary(u, m)
	d.Compliance = h.machineComplianceOf(u, m)
	since := h.loadExtensions(u, m, d, v)
	if t := h.loadRuns(u, m, d, v); t.After(since) {
		since = t
	}
	p := &page{Title: m.Name, Nav: "machines", Me: &u.me, Error: v.pageErr, Notice: v.notice, Data: d}
	d.InProgress = !since.IsZero()
	switch {
	case !d.InProgress:
	case m.Status != wire.StatusConnected:
		d.RefreshNote = "The machine is " + m.Status + ": operations in progress continue when its agent connects again."
	case v.get:
		p.Refresh = refreshAfter(h.cfg.Clock(), since)
		d.RefreshNote = "An operation is in progress: this page reloads itself every " + seconds(p.Refresh) +
			" while you are not typing in a form."
	}
	h.render(u.w, u.r, v.status, "machine", p)
}

// seconds says "second" or "N seconds".
func seconds(n int) string {
	if n == 1 {
		return "second"
	}
	return strconv.Itoa(n) + " seconds"
}

// refreshAfter is how many seconds a page showing an operation in progress
// since `since` waits before it reloads: every second at first, when most
// operations end (a connected agent usually reports within a second), then
// less and less often, so a page left open on a slow agent costs little.
func refreshAfter(now, since time.Time) int {
	switch age := now.Sub(since); {
	case age < 10*time.Second:
		return 1
	case age < time.Minute:
		return 2
	case age < 10*time.Minute:
		return 5
	default:
		return 15
	}
}

// deleteMachine goes through the API's DELETE, so only a caller with
// machines/delete at the machine's scope succeeds and the attempt is in the
// activity log either way.
func (h *Handler) deleteMachine(u *uiRequest) {
	ref := machineRef(u.r)
	err := u.api.DeleteMachine(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name)
	if err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "The machine was not deleted: " + ue.Message
		h.showMachine(u, machineView{status: ue.Status, pageErr: ue})
		return
	}
	f := machineFilter{Sub: u.r.PathValue("sub"), Top: 100}
	target := f.uiURL("")
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	http.Redirect(u.w, u.r, target+sep+url.Values{"deleted": {u.r.PathValue("name")}}.Encode(), http.StatusSeeOther)
}
