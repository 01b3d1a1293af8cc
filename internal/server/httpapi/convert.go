package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/store"
)

// machineScopeOf is the resource id of the authenticated machine (agent routes).
func machineScopeOf(r *http.Request) string {
	if c := info(r).caller; c != nil && c.Machine != nil {
		return c.Machine.ResourceID().String()
	}
	return ""
}

// validateName checks a resource name (resource.CheckName).
func validateName(kind, target, name string) error {
	if err := resource.CheckName(kind, name); err != nil {
		return errValidation(target, "%v", err)
	}
	return nil
}

// validateTags checks tag keys and values (resource.CheckTags).
func validateTags(tags map[string]string) error {
	if err := resource.CheckTags(tags); err != nil {
		return errValidation("tags", "%v", err)
	}
	return nil
}

func canonical(v string, allowed []string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, true
		}
	}
	return "", false
}

// notFoundAs turns store.ErrNotFound into a 404 with a specific message.
func notFoundAs(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound(format, args...)
	}
	return err
}

// nextLink builds the link to the page after `after`, keeping the query.
func nextLink(r *http.Request, after string) string {
	q := r.URL.Query()
	q.Set("$skipToken", encodeSkipToken(after))
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	return u.String()
}
