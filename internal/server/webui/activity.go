package webui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

var results = []string{wire.ResultSucceeded, wire.ResultFailed, wire.ResultDenied}

// activityFilter is the activity log query. From and To are kept as typed
// (for the form) and parsed into FromTime/ToTime.
type activityFilter struct {
	Scope, Caller, Action, Result, From, To string
	FromTime, ToTime                        time.Time
	Top                                     int
	Skip                                    string
}

// timeLayouts are what the form accepts: RFC 3339, and the value of an
// <input type="datetime-local">, which has no zone and is read as UTC.
var timeLayouts = []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"}

func parseFormTime(field, v string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, formError(field + " must be a time such as 2026-11-24T08:00 (UTC) or 2026-11-24T08:00:00+01:00.")
}

func parseActivityFilter(q url.Values) (activityFilter, error) {
	f := activityFilter{Scope: strings.TrimSpace(q.Get("scope")), Caller: strings.TrimSpace(q.Get("caller")),
		Action: strings.TrimSpace(q.Get("action")), From: strings.TrimSpace(q.Get("from")), To: strings.TrimSpace(q.Get("to")),
		Skip: q.Get("skip"), Top: 100}
	if f.Scope != "" && !strings.HasPrefix(f.Scope, "/") {
		return f, formError("Scope must be a resource path such as /subscriptions/default/resourceGroups/web.")
	}
	var ok bool
	if f.Result, ok = canonical(q.Get("result"), results); !ok {
		return f, formError("Result must be Succeeded, Failed or Denied.")
	}
	if strings.Count(f.Action, "*") > 1 || (strings.Contains(f.Action, "*") && !strings.HasSuffix(f.Action, "*")) {
		return f, formError("Action may only end with '*', for example Corral.HybridCompute/machines/*.")
	}
	var err error
	if f.From != "" {
		if f.FromTime, err = parseFormTime("From", f.From); err != nil {
			return f, err
		}
		f.From = f.FromTime.Format("2006-01-02T15:04:05")
	}
	if f.To != "" {
		if f.ToTime, err = parseFormTime("To", f.To); err != nil {
			return f, err
		}
		f.To = f.ToTime.Format("2006-01-02T15:04:05")
	}
	if !f.FromTime.IsZero() && !f.ToTime.IsZero() && f.ToTime.Before(f.FromTime) {
		return f, formError("To is before From.")
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

func (f activityFilter) apiQuery() url.Values {
	q := url.Values{"$top": {strconv.Itoa(f.Top)}}
	for k, v := range map[string]string{"scope": f.Scope, "caller": f.Caller, "action": f.Action, "result": f.Result, "$skipToken": f.Skip} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.FromTime.IsZero() {
		q.Set("from", f.FromTime.Format(time.RFC3339))
	}
	if !f.ToTime.IsZero() {
		q.Set("to", f.ToTime.Format(time.RFC3339))
	}
	return q
}

func (f activityFilter) uiURL(skip string) string {
	q := url.Values{}
	for k, v := range map[string]string{"scope": f.Scope, "caller": f.Caller, "action": f.Action, "result": f.Result,
		"from": f.From, "to": f.To, "skip": skip} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Top != 100 {
		q.Set("top", strconv.Itoa(f.Top))
	}
	if len(q) == 0 {
		return "/ui/activity"
	}
	return "/ui/activity?" + q.Encode()
}

// activityData is the activity log page.
type activityData struct {
	Filter   activityFilter
	Results  []string
	Entries  []wire.ActivityEntry
	NextURL  string
	FirstURL string
}

func (h *Handler) activity(u *uiRequest) {
	f, err := parseActivityFilter(u.r.URL.Query())
	d := &activityData{Filter: f, Results: results}
	p := &page{Title: "Activity log", Nav: "activity", Me: &u.me, Data: d}
	if err == nil {
		var list wire.List[wire.ActivityEntry]
		if err = u.api.Do(u.ctx(), http.MethodGet, withQuery(client.APIBase+"/activityLogs", f.apiQuery()), nil, &list); err == nil {
			d.Entries = list.Value
			if next := skipTokenOf(list.NextLink); next != "" {
				d.NextURL = f.uiURL(next)
			}
			if f.Skip != "" {
				d.FirstURL = f.uiURL("")
			}
		}
	}
	status := http.StatusOK
	if err != nil {
		p.Error = h.toUIError(u.r, err)
		status = p.Error.Status
		if status == http.StatusForbidden && f.Scope == "" {
			p.Error.Message += ". Enter a scope you may read, such as your resource group, in the filter above."
		}
	}
	h.render(u.w, u.r, status, "activity", p)
}
