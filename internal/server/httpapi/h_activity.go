package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/corralhq/corral/internal/server/activity"
)

func (a *API) listActivity(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var asc bool
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		asc = true
	default:
		return errValidation("order", "order must be asc (oldest first) or desc (newest first, the default)")
	}
	page, err := a.Activity.List(r.Context(), activity.Query{Scope: scopeQuery(r), CallerID: q.Get("caller"), Action: q.Get("action"),
		Result: q.Get("result"), From: q.Get("from"), To: q.Get("to"), Page: p, Ascending: asc})
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

// getActivityChain serves the tamper-evident chain in order, for clients
// that verify it themselves (corral activity verify).
func (a *API) getActivityChain(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	q := r.URL.Query()
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errValidation("after", "after must be a sequence number, 0 or more")
		}
		after = n
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	if p.After != "" {
		return errValidation("$skipToken", "the chain pages with after=SEQ (see nextLink), not $skipToken")
	}
	page, more, err := a.Activity.ChainPage(r.Context(), after, p.Limit)
	if err != nil {
		return err
	}
	if more {
		v := url.Values{"after": {strconv.FormatInt(page.Value[len(page.Value)-1].Seq, 10)}}
		if p.Limit > 0 {
			v.Set("$top", strconv.Itoa(p.Limit))
		}
		page.NextLink = (&url.URL{Path: r.URL.Path, RawQuery: v.Encode()}).String()
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}
