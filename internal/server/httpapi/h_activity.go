package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func (a *API) listActivity(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	q := r.URL.Query()
	scope := scopeQuery(r)
	if err := authz.ValidateScope(scope); err != nil {
		return errValidation("scope", "%s", err.Error())
	}
	f := store.ActivityFilter{CallerID: q.Get("caller"), Action: q.Get("action")}
	if scope != "/" {
		f.ScopePrefix = scope
	}
	if res := q.Get("result"); res != "" {
		v, ok := canonical(res, []string{wire.ResultSucceeded, wire.ResultFailed, wire.ResultDenied})
		if !ok {
			return errValidation("result", "result must be Succeeded, Failed or Denied")
		}
		f.Result = v
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(t.name); v != "" {
			ts, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return errValidation(t.name, "%s must be an RFC 3339 time such as 2026-11-24T08:00:00Z", t.name)
			}
			*t.dst = ts.UTC()
		}
	}
	if strings.Count(f.Action, "*") > 1 || (strings.Contains(f.Action, "*") && !strings.HasSuffix(f.Action, "*")) {
		return errValidation("action", "action filter may only end with '*'")
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	limit := p.Limit
	p.Limit++
	f.Page = p
	es, err := a.Store.ListActivity(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.List[wire.ActivityEntry]{Value: []wire.ActivityEntry{}}
	for i, e := range es {
		if i == limit {
			out.NextLink = nextLink(r, es[i-1].ID)
			break
		}
		out.Value = append(out.Value, wire.ActivityEntry(e))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
