package webui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

var alertStates = []string{wire.AlertActive, wire.AlertAcknowledged}

// securityFilter is the security view's query: which machines' protection
// to show (subscription, resource group) and which alerts.
type securityFilter struct {
	Sub, RG               string
	Scope, Machine, State string
	Skip                  string
	Top                   int
	stateGiven            bool
}

func parseSecurityFilter(q url.Values) (securityFilter, error) {
	f := securityFilter{Sub: strings.TrimSpace(q.Get("sub")), RG: strings.TrimSpace(q.Get("rg")), Scope: strings.TrimSpace(q.Get("scope")),
		Machine: strings.TrimSpace(q.Get("machine")), Skip: q.Get("skip"), Top: 50}
	if f.Sub == "" {
		f.Sub = "default"
	}
	if !resource.ValidName(f.Sub) || f.RG != "" && !resource.ValidName(f.RG) {
		return f, formError("Subscription and resource group must be names such as default and web.")
	}
	if f.Machine != "" && !resource.ValidName(f.Machine) {
		return f, formError("Machine must be a machine name.")
	}
	if f.Scope != "" {
		if _, err := resource.ParseScope(f.Scope); err != nil {
			return f, formError("Scope must be a resource path such as /subscriptions/default/resourceGroups/web.")
		}
	}
	_, f.stateGiven = q["state"]
	var ok bool
	if f.State, ok = canonical(q.Get("state"), alertStates); !ok {
		return f, formError("State must be Active or Acknowledged.")
	}
	if !f.stateGiven {
		f.State = wire.AlertActive
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

func (f securityFilter) uiURL(skip string) string {
	q := url.Values{"state": {f.State}}
	for k, v := range map[string]string{"sub": f.Sub, "rg": f.RG, "scope": f.Scope, "machine": f.Machine, "skip": skip} {
		if v != "" && !(k == "sub" && v == "default") {
			q.Set(k, v)
		}
	}
	if f.Top != 50 {
		q.Set("top", strconv.Itoa(f.Top))
	}
	return "/ui/security?" + q.Encode()
}

// securityData is the security view.
type securityData struct {
	Filter   securityFilter
	States   []string
	Machines []wire.MachineProtection
	// MachinesErr says why the statuses could not be read.
	MachinesErr *uiError
	Scopes      []wire.ProtectionAssignment
	Alerts      []alertRow
	NextURL     string
	FirstURL    string
	// Here is this page's URL, where an acknowledgement comes back to.
	Here string
}

type alertRow struct {
	wire.Alert
	AckURL     string
	Highlight  bool
	MachineURL string
}

func (h *Handler) security(u *uiRequest) {
	q := u.r.URL.Query()
	f, err := parseSecurityFilter(q)
	d := &securityData{Filter: f, States: alertStates, Here: f.uiURL(f.Skip)}
	p := &page{Title: "Security", Nav: "security", Me: &u.me, Data: d}
	if id := q.Get("acked"); id != "" {
		p.Notice = "Alert " + id + " acknowledged."
	}
	status := http.StatusOK
	if err != nil {
		p.Error = h.toUIError(u.r, err)
		h.render(u.w, u.r, p.Error.Status, "security", p)
		return
	}
	scope := resource.Subscription(f.Sub)
	if f.RG != "" {
		scope = resource.ResourceGroup(f.Sub, f.RG)
	}
	if ms, err := u.api.ListMachineProtection(u.ctx(), scope); err != nil {
		d.MachinesErr = h.toUIError(u.r, err)
	} else {
		d.Machines = ms
	}
	if ps, err := u.api.ListProtection(u.ctx(), scope.String()); err == nil {
		d.Scopes = ps
	}
	// Alerts of the machines shown unless another scope is asked for: a
	// reader of one resource group reads its alerts without typing it.
	alertScope := f.Scope
	if alertScope == "" {
		alertScope = scope.String()
	}
	aq := url.Values{"$top": {strconv.Itoa(f.Top)}}
	for k, v := range map[string]string{"scope": alertScope, "machine": f.Machine, "state": f.State, "$skipToken": f.Skip} {
		if v != "" {
			aq.Set(k, v)
		}
	}
	var list wire.List[wire.Alert]
	if err := u.api.Do(u.ctx(), http.MethodGet, withQuery(client.APIBase+"/protection/alerts", aq), nil, &list); err != nil {
		p.Error = h.toUIError(u.r, err)
		status = p.Error.Status
	}
	for _, a := range list.Value {
		row := alertRow{Alert: a, Highlight: a.ID == q.Get("acked"), MachineURL: machineURLOf(a.MachineID)}
		if a.State == wire.AlertActive {
			row.AckURL = "/ui/security/alerts/" + url.PathEscape(a.ID) + "/acknowledge"
		}
		d.Alerts = append(d.Alerts, row)
	}
	if next := skipTokenOf(list.NextLink); next != "" {
		d.NextURL = f.uiURL(next)
	}
	if f.Skip != "" {
		d.FirstURL = f.uiURL("")
	}
	h.render(u.w, u.r, status, "security", p)
}

// machineURLOf is the UI page of a machine resource id ("" if it is not one).
func machineURLOf(id string) string {
	rid, err := resource.Parse(id)
	if err != nil {
		return ""
	}
	segs := rid.Segments()
	if len(segs) != 3 || segs[2].Type != resource.Machines {
		return ""
	}
	return "/ui/machines/" + url.PathEscape(segs[0].Name) + "/" + url.PathEscape(segs[1].Name) + "/" + url.PathEscape(segs[2].Name)
}

// acknowledgeAlert goes through the API (which authorizes at the alert's
// machine and logs it) and returns to the view it came from.
func (h *Handler) acknowledgeAlert(u *uiRequest) {
	id := u.r.PathValue("id")
	back := u.r.PostForm.Get("back")
	if !strings.HasPrefix(back, "/ui/security?") {
		back = "/ui/security?"
	}
	if _, err := u.api.AcknowledgeAlert(u.ctx(), id); err != nil {
		p := &page{Title: "Security", Nav: "security", Me: &u.me, Error: h.toUIError(u.r, err)}
		p.Error.Message = "Alert " + id + " was not acknowledged: " + p.Error.Message
		h.render(u.w, u.r, p.Error.Status, "error", p)
		return
	}
	http.Redirect(u.w, u.r, back+"&"+url.Values{"acked": {id}}.Encode(), http.StatusSeeOther)
}
