package webui

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// Bulk operations (docs/bulk.md): the pages only read; operations are made
// with "corral bulk" or the API.

func (h *Handler) bulkRoutes() {
	h.mux.Handle("GET /ui/bulk", h.authed(h.bulkList))
	h.mux.Handle("GET /ui/bulk/{sub}/{id}", h.authed(h.bulkDetail))
}

func bulkAPIPath(sub string) string {
	return client.APIBase + "/subscriptions/" + url.PathEscape(sub) + "/bulkOperations"
}

func bulkURL(sub, id string) string {
	return "/ui/bulk/" + url.PathEscape(sub) + "/" + url.PathEscape(id)
}

// bulkListData is the list of a subscription's bulk operations.
type bulkListData struct {
	Subscription string
	Operations   []bulkRow
	NextURL      string
}

type bulkRow struct {
	wire.BulkOperation
	URL string
	// Package is "Publisher/Type Version" of an extensionSet.
	Package string
}

func bulkPackage(op wire.BulkOperation) string {
	if op.Publisher == "" {
		return ""
	}
	return op.Publisher + "/" + op.Type + " " + op.Version
}

func (h *Handler) bulkList(u *uiRequest) {
	q := u.r.URL.Query()
	sub := q.Get("sub")
	if sub == "" {
		sub = defaultSubscription
	}
	d := &bulkListData{Subscription: sub}
	p := &page{Title: "Bulk operations", Nav: "bulk", Me: &u.me, Data: d}
	api := url.Values{"$top": {"50"}}
	if skip := q.Get("skip"); skip != "" {
		api.Set("$skipToken", skip)
	}
	var list wire.List[wire.BulkOperation]
	status := http.StatusOK
	if err := u.api.Do(u.ctx(), http.MethodGet, withQuery(bulkAPIPath(sub), api), nil, &list); err != nil {
		p.Error = h.toUIError(u.r, err)
		status = p.Error.Status
	}
	for _, op := range list.Value {
		d.Operations = append(d.Operations, bulkRow{BulkOperation: op, URL: bulkURL(sub, op.Name), Package: bulkPackage(op)})
	}
	if next := skipTokenOf(list.NextLink); next != "" {
		d.NextURL = "/ui/bulk?" + url.Values{"sub": {sub}, "skip": {next}}.Encode()
	}
	h.render(u.w, u.r, status, "bulk", p)
}

// bulkDetailData is one bulk operation with its machines.
type bulkDetailData struct {
	Op          wire.BulkOperation
	Package     string
	Results     []string
	Result      string // the filter
	Machines    []bulkMachineRow
	FilterURL   string
	NextURL     string
	RefreshNote string
}

type bulkMachineRow struct {
	wire.BulkMachineResult
	URL, ExitCode, ResultClass string
}

func (h *Handler) bulkDetail(u *uiRequest) {
	sub, id := u.r.PathValue("sub"), u.r.PathValue("id")
	q := u.r.URL.Query()
	result, ok := canonical(q.Get("result"), wire.BulkResults)
	if !ok {
		h.renderError(u.w, u.r, &u.me, formError("Result must be Pending, Succeeded, Failed or Superseded."))
		return
	}
	d := &bulkDetailData{Results: wire.BulkResults, Result: result, FilterURL: bulkURL(sub, id)}
	if err := u.api.Do(u.ctx(), http.MethodGet, bulkAPIPath(sub)+"/"+url.PathEscape(id), nil, &d.Op); err != nil {
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	api := url.Values{"$top": {"100"}}
	if result != "" {
		api.Set("result", result)
	}
	if skip := q.Get("skip"); skip != "" {
		api.Set("$skipToken", skip)
	}
	var ms wire.List[wire.BulkMachineResult]
	if err := u.api.Do(u.ctx(), http.MethodGet, withQuery(bulkAPIPath(sub)+"/"+url.PathEscape(id)+"/machines", api), nil, &ms); err != nil {
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	for _, m := range ms.Value {
		row := bulkMachineRow{BulkMachineResult: m, ExitCode: "—", ResultClass: bulkResultClass(m.Result)}
		if m.ExitCode != nil {
			row.ExitCode = strconv.Itoa(*m.ExitCode)
		}
		if m.Name != "" && m.ResourceGroup != "" {
			row.URL = machineURL(wire.Machine{SubscriptionID: sub, ResourceGroup: m.ResourceGroup, Name: m.Name})
		}
		d.Machines = append(d.Machines, row)
	}
	if next := skipTokenOf(ms.NextLink); next != "" {
		v := url.Values{"skip": {next}}
		if result != "" {
			v.Set("result", result)
		}
		d.NextURL = bulkURL(sub, id) + "?" + v.Encode()
	}
	d.Package = bulkPackage(d.Op)
	p := &page{Title: "Bulk operation " + shortID(d.Op.Name), Nav: "bulk", Me: &u.me, Data: d}
	if !d.Op.Done {
		p.Refresh = refreshAfter(h.cfg.Clock(), d.Op.CreatedAt)
		d.RefreshNote = "Machines are still Pending: this page reloads itself every " + seconds(p.Refresh) + "."
	}
	h.render(u.w, u.r, http.StatusOK, "bulkop", p)
}

// bulkResultClass is the badge of a machine's result.
func bulkResultClass(r string) string {
	switch r {
	case wire.BulkSucceeded:
		return "badge badge-ok"
	case wire.BulkFailed:
		return "badge badge-bad"
	case wire.BulkPending:
		return "badge badge-busy"
	}
	return "badge"
}
