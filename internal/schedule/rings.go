package schedule

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
)

// ErrBadRollout is returned for waves or a budget that cannot be used.
var ErrBadRollout = errors.New("bad rollout")

// Wave is one ring of a rollout: the targets under a scope, or a
// percentage of all targets. Exactly one is set.
type Wave struct {
	Scope   string `json:"scope,omitempty"`   // a resource path prefix, e.g. /subscriptions/s/resourceGroups/canary
	Percent int    `json:"percent,omitempty"` // 1–100, of all targets
}

// Target is a machine a deployment goes to.
type Target struct {
	ID    string // machine id
	Scope string // the machine's resource path
}

// Plan is a rollout split into waves of target ids, run in order.
type Plan struct {
	Waves [][]string
	// MaxFailedPercent is the disruption budget: a wave in which more than
	// this share of machines failed halts the rollout.
	MaxFailedPercent int
}

// PlanWaves splits targets into waves. Waves are filled in order, each
// from the targets not taken by an earlier wave: a scope wave takes every
// target at or under its scope; a percent wave takes ceil(Percent% of all
// targets) of them, chosen by a hash of seed and id (spread, and the same
// on every replica and every re-plan). Targets no wave took form a last
// wave. Waves that got no target are dropped. With no waves, all targets
// are one wave.
func PlanWaves(targets []Target, waves []Wave, maxFailedPercent int, seed string) (Plan, error) {
	if maxFailedPercent < 0 || maxFailedPercent > 100 {
		return Plan{}, fmt.Errorf("%w: disruption budget %d%%: want 0–100", ErrBadRollout, maxFailedPercent)
	}
	total := 0
	for i, w := range waves {
		switch {
		case w.Scope != "" && w.Percent != 0, w.Scope == "" && w.Percent == 0:
			return Plan{}, fmt.Errorf("%w: wave %d: give a scope or a percentage", ErrBadRollout, i+1)
		case w.Scope != "" && !strings.HasPrefix(w.Scope, "/"):
			return Plan{}, fmt.Errorf("%w: wave %d: scope %q is not a resource path", ErrBadRollout, i+1, w.Scope)
		case w.Percent < 0 || w.Percent > 100:
			return Plan{}, fmt.Errorf("%w: wave %d: %d%%: want 1–100", ErrBadRollout, i+1, w.Percent)
		}
		total += w.Percent
	}
	if total > 100 {
		return Plan{}, fmt.Errorf("%w: the percentages add up to %d%%", ErrBadRollout, total)
	}
	seen := map[string]bool{}
	var rest []Target
	for _, t := range targets {
		if t.ID == "" {
			return Plan{}, fmt.Errorf("%w: a target without an id", ErrBadRollout)
		}
		if !seen[t.ID] {
			seen[t.ID] = true
			rest = append(rest, t)
		}
	}
	key := func(t Target) uint64 {
		h := fnv.New64a()
		h.Write([]byte(seed + "\x00" + t.ID))
		return h.Sum64()
	}
	slices.SortFunc(rest, func(a, b Target) int {
		if ka, kb := key(a), key(b); ka != kb {
			if ka < kb {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	n := len(rest)
	plan := Plan{MaxFailedPercent: maxFailedPercent}
	for _, w := range waves {
		var take, keep []Target
		if w.Scope != "" {
			for _, t := range rest {
				if underScope(t.Scope, w.Scope) {
					take = append(take, t)
				} else {
					keep = append(keep, t)
				}
			}
		} else {
			k := min((n*w.Percent+99)/100, len(rest))
			take, keep = rest[:k], rest[k:]
		}
		rest = keep
		if len(take) > 0 {
			plan.Waves = append(plan.Waves, ids(take))
		}
	}
	if len(rest) > 0 {
		plan.Waves = append(plan.Waves, ids(rest))
	}
	return plan, nil
}

func ids(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	slices.Sort(out)
	return out
}

// underScope: path equals scope or lies below it, compared
// case-insensitively as resource paths are.
func underScope(path, scope string) bool {
	p, s := strings.ToLower(strings.TrimSuffix(path, "/")), strings.ToLower(strings.TrimSuffix(scope, "/"))
	return p == s || strings.HasPrefix(p, s+"/")
}

// Outcome is one machine's result in a rollout.
type Outcome string

// Outcomes. A machine with no outcome yet is pending.
const (
	OutcomePending   Outcome = ""
	OutcomeSucceeded Outcome = "Succeeded"
	OutcomeFailed    Outcome = "Failed"
)

// RolloutStatus is where a rollout stands.
type RolloutStatus string

// Rollout statuses.
const (
	RolloutInProgress RolloutStatus = "InProgress"
	RolloutHalted     RolloutStatus = "Halted"
	RolloutCompleted  RolloutStatus = "Completed"
)

// Progress is what Evaluate decided.
type Progress struct {
	Status RolloutStatus
	// Wave is the index of the wave to run now (InProgress) or the wave
	// that broke the budget (Halted); len(Waves) when Completed.
	Wave int
	// Failed and Size count the failed machines and the machines of Wave.
	Failed, Size int
	Reason       string
}

// Evaluate decides a rollout's next step from the outcomes so far: the
// first wave with more failures than the budget allows halts it (at once,
// even with machines still pending in it); the first wave with pending
// machines is the one to run; when every wave is done it is Completed.
func (p Plan) Evaluate(outcomes map[string]Outcome) Progress {
	for i, w := range p.Waves {
		failed, pending := 0, 0
		for _, id := range w {
			switch outcomes[id] {
			case OutcomeFailed:
				failed++
			case OutcomePending:
				pending++
			}
		}
		if failed*100 > p.MaxFailedPercent*len(w) {
			return Progress{Status: RolloutHalted, Wave: i, Failed: failed, Size: len(w),
				Reason: fmt.Sprintf("wave %d: %d of %d machines failed, more than the %d%% budget", i+1, failed, len(w), p.MaxFailedPercent)}
		}
		if pending > 0 {
			return Progress{Status: RolloutInProgress, Wave: i, Failed: failed, Size: len(w)}
		}
	}
	return Progress{Status: RolloutCompleted, Wave: len(p.Waves)}
}
