package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// machineScopeOf is the resource id of the authenticated machine (agent routes).
func machineScopeOf(r *http.Request) string {
	if c := info(r).caller; c != nil && c.Machine != nil {
		return c.Machine.ResourceID().String()
	}
	return ""
}

func toWireSubscription(s store.Subscription) wire.Subscription {
	return wire.Subscription{ID: resource.Subscription(s.Name).String(), Name: s.Name, DisplayName: s.DisplayName, CreatedAt: s.CreatedAt, CreatedBy: s.CreatedBy}
}

func toWireResourceGroup(g store.ResourceGroup) wire.ResourceGroup {
	return wire.ResourceGroup{ID: resource.ResourceGroup(g.Subscription, g.Name).String(), Name: g.Name, SubscriptionID: g.Subscription,
		Tags: g.Tags, CreatedAt: g.CreatedAt, CreatedBy: g.CreatedBy}
}

func (a *API) toWireMachine(m store.Machine) wire.Machine {
	out := wire.Machine{
		ID: m.ResourceID().String(), Name: m.Name, SubscriptionID: m.Subscription,
		ResourceGroup: m.ResourceGroup, MachineID: m.ID, Tags: m.Tags, Status: m.Status, LastHeartbeat: m.LastHeartbeat,
		AgentVersion: m.AgentVersion, CreatedAt: m.CreatedAt, CreatedBy: m.CreatedBy, CertificateNotAfter: m.CertNotAfter,
	}
	out.AgentSupported = AgentVersionSupported(m.AgentVersion, a.now(), a.Settings.AgentSupportWindow)
	if len(m.Properties) > 0 {
		_ = json.Unmarshal(m.Properties, &out.Properties) // written by us from a validated report
	}
	if len(m.AgentConfig) > 0 {
		var c wire.AgentConfig
		if json.Unmarshal(m.AgentConfig, &c) == nil {
			out.AgentConfig = &c
		}
	}
	return out
}

// AgentVersionSupported reports whether a calendar version "YYYY.MM.N" was
// released less than window before now. Corral versions are calendar
// versions so that support can be judged without a release catalog.
func AgentVersionSupported(version string, now time.Time, window time.Duration) bool {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	y, err1 := strconv.Atoi(parts[0])
	mo, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || mo < 1 || mo > 12 {
		return false
	}
	released := time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, time.UTC)
	return now.Sub(released) < window
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// validateName checks a resource name: 1-63 characters, letters, digits,
// '.', '_' and '-', starting with a letter or digit.
func validateName(kind, target, name string) error {
	if !nameRE.MatchString(name) {
		return errValidation(target, "%s name %q is not valid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", kind, name)
	}
	return nil
}

var tagKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)

// validateTags checks tag keys and values (at most 50 tags).
func validateTags(tags map[string]string) error {
	if len(tags) > 50 {
		return errValidation("tags", "at most 50 tags are allowed")
	}
	for k, v := range tags {
		if !tagKeyRE.MatchString(k) {
			return errValidation("tags", "tag key %q is not valid: 1-128 letters, digits or ._:/-", k)
		}
		if len(v) > 256 || strings.ContainsAny(v, "\x00\n\r") {
			return errValidation("tags", "tag %q has a value longer than 256 characters or with control characters", k)
		}
	}
	return nil
}

// nextLink builds the link to the page after `after`, keeping the query.
func nextLink(r *http.Request, after string) string {
	q := r.URL.Query()
	q.Set("$skipToken", encodeSkipToken(after))
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	return u.String()
}
