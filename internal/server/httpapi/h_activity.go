package httpapi

import (
	"net/http"

	"github.com/corralhq/corral/internal/server/activity"
)

func (a *API) listActivity(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	page, err := a.Activity.List(r.Context(), activity.Query{Scope: scopeQuery(r), CallerID: q.Get("caller"), Action: q.Get("action"),
		Result: q.Get("result"), From: q.Get("from"), To: q.Get("to"), Page: p})
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}
