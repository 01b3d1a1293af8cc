package guest

import (
	"context"
	"time"
)

// State is a rule's compliance state on one machine.
type State string

// Compliance states of a guest rule.
const (
	Compliant    State = "Compliant"
	NonCompliant State = "NonCompliant"
	Unknown      State = "Unknown"
)

// Result is one rule's outcome, with evidence in words.
type Result struct {
	Rule      string    `json:"rule"`
	Title     string    `json:"title"`
	Severity  string    `json:"severity"`
	State     State     `json:"complianceState"`
	Evidence  string    `json:"evidence"`
	SSGRuleID string    `json:"ssgRuleId,omitempty"`
	Time      time.Time `json:"timestamp"`
}

// Evaluate evaluates every rule of the configuration; rules share one read
// cache, so a file several rules read is read once. A cancelled context
// makes the remaining rules Unknown.
func (c *Configuration) Evaluate(ctx context.Context, env Env) []Result {
	s := newSnapshot(env)
	out := make([]Result, 0, len(c.Rules))
	for _, r := range c.Rules {
		out = append(out, r.evaluateIn(ctx, s))
	}
	return out
}

// Evaluate evaluates one rule.
func (r *Rule) Evaluate(ctx context.Context, env Env) Result {
	return r.evaluateIn(ctx, newSnapshot(env))
}

func (r *Rule) evaluateIn(ctx context.Context, s *snapshot) Result {
	res := Result{Rule: r.ID, Title: r.Title, Severity: r.Severity, SSGRuleID: r.SSGRuleID, Time: s.env.now().UTC()}
	if err := ctx.Err(); err != nil {
		res.State, res.Evidence = Unknown, "not evaluated: "+err.Error()
		return res
	}
	res.State, res.Evidence = r.evaluate(s)
	return res
}

// evaluate applies the rule's applicability, then its check.
func (r *Rule) evaluate(s *snapshot) (State, string) {
	if r.OnlyIfInstalled != "" {
		installed, err := s.packageInstalled(r.OnlyIfInstalled)
		if err != nil {
			return Unknown, err.Error()
		}
		if !installed {
			return Compliant, r.OnlyIfInstalled + " is not installed: the rule does not apply"
		}
	}
	return r.check.evaluate(s)
}

// WatchPaths lists the paths inside the root that the rule reads: files and
// the directories whose entries it reads (drop-in directories), for inotify
// watches. Paths that do not exist yet are included (their parent is what
// to watch).
func (r *Rule) WatchPaths(env Env) []string {
	return r.watch(newSnapshot(env))
}

func (r *Rule) watch(s *snapshot) []string {
	w := r.check.watch(s)
	if r.OnlyIfInstalled != "" {
		w = append(w, dpkgStatus)
	}
	return w
}

// WatchPaths is the union of the rules' watch paths, sorted.
func (c *Configuration) WatchPaths(env Env) []string {
	s := newSnapshot(env)
	seen := map[string]bool{}
	var out []string
	for _, r := range c.Rules {
		for _, p := range r.watch(s) {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sortStrings(out)
	return out
}
