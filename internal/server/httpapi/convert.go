package httpapi

import (
	"net/http"
	"net/url"
)

// machineScopeOf is the resource id of the authenticated machine (agent routes).
func machineScopeOf(r *http.Request) string {
	if c := info(r).caller; c != nil && c.Machine != nil {
		return c.Machine.ResourceID().String()
	}
	return ""
}

// nextLink builds the link to the page after `after`, keeping the query.
func nextLink(r *http.Request, after string) string {
	q := r.URL.Query()
	q.Set("$skipToken", encodeSkipToken(after))
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	return u.String()
}
