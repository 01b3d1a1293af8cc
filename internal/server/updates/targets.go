package updates

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Limits of requests.
const (
	MaxListedMachines = 1000
	MaxWaves          = 10
	maxPatternLength  = 200
	maxTextBytes      = 4 << 10
)

// TargetScopes are the scopes at which a caller must hold the operation's
// action for targets t in subscription sub: each listed machine, the given
// scope, or the subscription (a tag alone, or targets that do not parse —
// the service refuses those after authorization).
func TargetScopes(sub string, t wire.UpdateTargets) []string {
	subScope := resource.Subscription(sub).String()
	switch {
	case len(t.Machines) > 0 && len(t.Machines) <= MaxListedMachines:
		out := make([]string, 0, len(t.Machines))
		for _, m := range t.Machines {
			id, err := resource.ParseScope(m)
			if err != nil || len(id.Segments()) != 3 {
				return []string{subScope}
			}
			out = append(out, id.String())
		}
		return out
	case t.Scope != "":
		if id, err := resource.ParseScope(t.Scope); err == nil && !id.IsRoot() {
			return []string{id.String()}
		}
	}
	return []string{subScope}
}

// resolved is what a request's targets name.
type resolved struct {
	scope    string // the request's scope (a machine's id for one machine)
	machines []store.Machine
}

// sameSub reports whether id lies in subscription sub.
func sameSub(id resource.ID, sub string) bool {
	return strings.EqualFold(id.Name(resource.Subscriptions), sub)
}

// resolveTargets checks t and lists its machines: exactly one of Machines
// and Scope, or a Tag alone (the whole subscription); a Tag narrows a
// Scope. Expired machines of a scope are left out; a listed Expired
// machine is refused. A selection without machines is refused.
func (s *Service) resolveTargets(ctx context.Context, sub string, t wire.UpdateTargets) (resolved, error) {
	var r resolved
	tagKey, tagValue, hasTag := "", "", t.Tag != ""
	if hasTag {
		k, v, ok := strings.Cut(t.Tag, "=")
		if !ok || !resource.ValidTagKey(strings.TrimSpace(k)) {
			return r, refusal.Invalid("tag", "tag %q is not KEY=VALUE", t.Tag)
		}
		tagKey, tagValue = strings.TrimSpace(k), v
		if tagValue == "" {
			return r, refusal.Invalid("tag", "tag %q has no value: use KEY=VALUE", t.Tag)
		}
	}
	switch {
	case len(t.Machines) > 0 && t.Scope != "":
		return r, refusal.Invalid("scope", "give machines or a scope, not both")
	case len(t.Machines) > 0 && hasTag:
		return r, refusal.Invalid("tag", "a tag selects machines of a scope; it cannot narrow a list of machines")
	case len(t.Machines) > MaxListedMachines:
		return r, refusal.Invalid("machines", "at most %d machines may be listed; use a scope or a tag for more", MaxListedMachines)
	case len(t.Machines) == 0 && t.Scope == "" && !hasTag:
		return r, refusal.Invalid("machines", "give machines, a scope or a tag")
	}
	if len(t.Machines) > 0 {
		seen := map[string]bool{}
		for i, mid := range t.Machines {
			id, err := resource.ParseScope(mid)
			if err != nil || len(id.Segments()) != 3 {
				return r, refusal.Invalid("machines", "machines[%d] %q is not a machine resource id (/subscriptions/S/resourceGroups/RG/machines/NAME)", i, mid)
			}
			if !sameSub(id, sub) {
				return r, refusal.Invalid("machines", "machine %q is not in subscription %q", mid, sub)
			}
			m, err := s.store.GetMachine(ctx, sub, id.Name(resource.ResourceGroups), id.Name(resource.Machines))
			if errors.Is(err, store.ErrNotFound) {
				return r, refusal.NotFound("machine %q was not found", mid)
			}
			if err != nil {
				return r, err
			}
			if m.Status == wire.StatusExpired {
				return r, refusal.Conflict("machine %q is Expired: onboard it again first", m.Name)
			}
			if !seen[m.ID] {
				seen[m.ID] = true
				r.machines = append(r.machines, m)
			}
		}
		r.scope = resource.Subscription(sub).String()
		if len(r.machines) == 1 {
			r.scope = r.machines[0].ResourceID().String()
		} else if rg := commonGroup(r.machines); rg != "" {
			r.scope = resource.ResourceGroup(sub, rg).String()
		}
		return r, nil
	}
	scope := resource.Subscription(sub)
	if t.Scope != "" {
		id, err := resource.ParseScope(t.Scope)
		if err != nil || id.IsRoot() {
			return r, refusal.Invalid("scope", "scope %q is not /subscriptions/S[/resourceGroups/RG[/machines/M]]", t.Scope)
		}
		if !sameSub(id, sub) {
			return r, refusal.Invalid("scope", "scope %q is not in subscription %q", t.Scope, sub)
		}
		scope = id
	}
	f := store.MachineFilter{Subscription: sub, ResourceGroup: scope.Name(resource.ResourceGroups), TagKey: tagKey, TagValue: tagValue,
		Page: store.Page{Limit: store.MaxPageSize}}
	name := scope.Name(resource.Machines)
	for {
		ms, err := s.store.ListMachines(ctx, f)
		if err != nil {
			return r, err
		}
		for _, m := range ms {
			if m.Status != wire.StatusExpired && (name == "" || strings.EqualFold(m.Name, name)) {
				r.machines = append(r.machines, m)
			}
		}
		if len(ms) < store.MaxPageSize {
			break
		}
		last := ms[len(ms)-1]
		f.Page.After = last.ResourceGroup + "/" + last.Name
	}
	r.scope = scope.String()
	if len(r.machines) == 0 {
		what := "scope " + scope.String()
		if hasTag {
			what += " with tag " + t.Tag
		}
		return r, refusal.Invalid("scope", "%s has no machines (Expired machines are left out)", what)
	}
	return r, nil
}

func commonGroup(ms []store.Machine) string {
	rg := ""
	for _, m := range ms {
		switch {
		case rg == "":
			rg = m.ResourceGroup
		case !strings.EqualFold(rg, m.ResourceGroup):
			return ""
		}
	}
	return rg
}

// canonical matches v case-insensitively against allowed.
func canonical(v string, allowed []string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSpace(v), a) {
			return a, true
		}
	}
	return v, false
}

// cleanText refuses NUL and control characters other than tab and newline
// (scripts keep their newlines).
func cleanText(s string, multiline bool) bool {
	for _, r := range s {
		if r == 0 || r == unicode.ReplacementChar || (unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r'))) {
			return false
		}
	}
	return true
}

// validateSettings checks a deployment's settings and returns them in
// canonical form: classifications spelled and ordered as
// wire.UpdateClassifications, the reboot setting spelled as
// wire.RebootSettings (default IfRequired), the window defaulted to 235
// minutes.
func validateSettings(in wire.UpdateDeploymentSettings) (wire.UpdateDeploymentSettings, error) {
	out := in
	if len(in.Classifications) == 0 {
		return out, refusal.Invalid("classifications", "give at least one classification: Critical, Security or Other")
	}
	var cls []string
	for _, c := range in.Classifications {
		cc, ok := canonical(c, wire.UpdateClassifications)
		if !ok {
			return out, refusal.Invalid("classifications", "unknown classification %q: want Critical, Security or Other", c)
		}
		if !slices.Contains(cls, cc) {
			cls = append(cls, cc)
		}
	}
	slices.SortFunc(cls, func(a, b string) int {
		return slices.Index(wire.UpdateClassifications, a) - slices.Index(wire.UpdateClassifications, b)
	})
	out.Classifications = cls
	if in.Reboot == "" {
		out.Reboot = wire.RebootIfRequired
	} else if rb, ok := canonical(in.Reboot, wire.RebootSettings); ok {
		out.Reboot = rb
	} else {
		return out, refusal.Invalid("reboot", "unknown reboot setting %q: want IfRequired, Never or Always", in.Reboot)
	}
	w := time.Duration(in.Window)
	if w == 0 {
		w = schedule.DefaultWindow
	}
	if err := schedule.ValidateWindow(w); err != nil {
		return out, refusal.Invalid("window", "maintenance window %s is outside 60–235 minutes", fmtMinutes(w))
	}
	out.Window = wire.Duration(w)
	for field, pats := range map[string][]string{"include": in.Include, "exclude": in.Exclude} {
		if len(pats) > wire.MaxUpdatePatterns {
			return out, refusal.Invalid(field, "at most %d %s patterns", wire.MaxUpdatePatterns, field)
		}
		for _, p := range pats {
			if strings.TrimSpace(p) == "" || len(p) > maxPatternLength || !cleanText(p, false) || strings.ContainsAny(p, " /") {
				return out, refusal.Invalid(field, "%s pattern %q is not a package name pattern (a shell glob such as linux-image-* of at most %d characters)", field, p, maxPatternLength)
			}
			if _, err := path.Match(p, ""); err != nil {
				return out, refusal.Invalid(field, "%s pattern %q is malformed: %v", field, p, err)
			}
		}
	}
	for field, sc := range map[string]string{"preScript": in.PreScript, "postScript": in.PostScript} {
		if len(sc) > wire.MaxUpdateScriptBytes {
			return out, refusal.Invalid(field, "%s is larger than %d bytes", field, wire.MaxUpdateScriptBytes)
		}
		if !cleanText(sc, true) {
			return out, refusal.Invalid(field, "%s contains a NUL or control character or invalid UTF-8", field)
		}
	}
	return out, nil
}

func fmtMinutes(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", int64(d/time.Minute))
	}
	return d.String()
}

// validateRollout checks a rollout's waves and budget for subscription sub.
func validateRollout(sub string, r *wire.UpdateRollout) error {
	if r == nil {
		return nil
	}
	if len(r.Waves) == 0 {
		return refusal.Invalid("rollout.waves", "a rollout needs at least one wave (a scope or a percentage)")
	}
	if len(r.Waves) > MaxWaves {
		return refusal.Invalid("rollout.waves", "at most %d waves", MaxWaves)
	}
	if r.MaxFailedPercent < 0 || r.MaxFailedPercent > 100 {
		return refusal.Invalid("rollout.maxFailedPercent", "maxFailedPercent %d is outside 0–100", r.MaxFailedPercent)
	}
	for i, w := range r.Waves {
		if w.Scope == "" {
			continue
		}
		id, err := resource.ParseScope(w.Scope)
		if err != nil || id.IsRoot() || !sameSub(id, sub) {
			return refusal.Invalid("rollout.waves", "wave %d: scope %q is not a scope in subscription %q", i+1, w.Scope, sub)
		}
	}
	if _, err := schedule.PlanWaves(nil, toScheduleWaves(r.Waves), r.MaxFailedPercent, ""); err != nil {
		return refusal.Invalid("rollout.waves", "%s", strings.TrimPrefix(err.Error(), schedule.ErrBadRollout.Error()+": "))
	}
	return nil
}

func toScheduleWaves(ws []wire.UpdateWave) []schedule.Wave {
	out := make([]schedule.Wave, len(ws))
	for i, w := range ws {
		out[i] = schedule.Wave{Scope: w.Scope, Percent: w.Percent}
		if w.Scope != "" {
			if id, err := resource.ParseScope(w.Scope); err == nil {
				out[i].Scope = id.String()
			}
		}
	}
	return out
}
