package schedule

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func targets(n int, scope func(i int) string) []Target {
	var ts []Target
	for i := range n {
		ts = append(ts, Target{ID: fmt.Sprintf("m%03d", i), Scope: scope(i)})
	}
	return ts
}

func TestPlanWaves(t *testing.T) {
	t.Parallel()
	rg := func(i int) string {
		if i < 3 {
			return "/subscriptions/s/resourceGroups/canary/providers/Corral.Machines/machines/x"
		}
		return "/subscriptions/s/resourceGroups/prod/providers/Corral.Machines/machines/x"
	}
	ts := targets(20, rg)
	p, err := PlanWaves(ts, []Wave{{Scope: "/subscriptions/s/resourceGroups/Canary"}, {Percent: 10}, {Percent: 50}}, 20, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	all := map[string]bool{}
	for _, w := range p.Waves {
		sizes = append(sizes, len(w))
		for _, id := range w {
			if all[id] {
				t.Errorf("%s in two waves", id)
			}
			all[id] = true
		}
	}
	// canary 3; 10% of 20 = 2; 50% of 20 = 10; the rest 5.
	if diff := cmp.Diff([]int{3, 2, 10, 5}, sizes); diff != "" {
		t.Errorf("wave sizes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"m000", "m001", "m002"}, p.Waves[0]); diff != "" {
		t.Errorf("canary wave (-want +got):\n%s", diff)
	}
	if len(all) != 20 {
		t.Errorf("%d targets planned, want 20", len(all))
	}
	again, _ := PlanWaves(ts, []Wave{{Scope: "/subscriptions/s/resourceGroups/Canary"}, {Percent: 10}, {Percent: 50}}, 20, "run-1")
	if diff := cmp.Diff(p, again); diff != "" {
		t.Errorf("re-planning differs:\n%s", diff)
	}
	one, _ := PlanWaves(ts, nil, 0, "x")
	if len(one.Waves) != 1 || len(one.Waves[0]) != 20 {
		t.Errorf("no waves: %v, want one wave of all", one.Waves)
	}
	// A scope must match on path segments, not on a string prefix.
	p2, _ := PlanWaves([]Target{{ID: "a", Scope: "/subscriptions/s/resourceGroups/canary2/x"}}, []Wave{{Scope: "/subscriptions/s/resourceGroups/canary"}}, 0, "")
	if len(p2.Waves) != 1 || p2.Waves[0][0] != "a" {
		t.Errorf("canary2 matched the canary scope: %v", p2.Waves)
	}
}

func TestPlanWavesErrors(t *testing.T) {
	t.Parallel()
	ts := targets(4, func(int) string { return "/subscriptions/s" })
	for _, tc := range []struct {
		waves  []Wave
		budget int
	}{
		{[]Wave{{}}, 10},
		{[]Wave{{Scope: "/s", Percent: 5}}, 10},
		{[]Wave{{Percent: 60}, {Percent: 50}}, 10},
		{[]Wave{{Percent: 101}}, 10},
		{[]Wave{{Scope: "canary"}}, 10},
		{nil, 101},
		{nil, -1},
	} {
		if _, err := PlanWaves(ts, tc.waves, tc.budget, ""); !errors.Is(err, ErrBadRollout) {
			t.Errorf("PlanWaves(%+v, %d) = %v, want ErrBadRollout", tc.waves, tc.budget, err)
		}
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	p := Plan{Waves: [][]string{{"a", "b", "c", "d"}, {"e", "f"}}, MaxFailedPercent: 25}
	S, F := OutcomeSucceeded, OutcomeFailed
	for _, tc := range []struct {
		name     string
		outcomes map[string]Outcome
		want     Progress
	}{
		{"start", nil, Progress{Status: RolloutInProgress, Wave: 0, Size: 4}},
		{"first wave running", map[string]Outcome{"a": S, "b": F}, Progress{Status: RolloutInProgress, Wave: 0, Failed: 1, Size: 4}},
		{"first wave done within budget (25% failed)", map[string]Outcome{"a": S, "b": F, "c": S, "d": S},
			Progress{Status: RolloutInProgress, Wave: 1, Size: 2}},
		{"budget exceeded halts at once", map[string]Outcome{"a": F, "b": F},
			Progress{Status: RolloutHalted, Wave: 0, Failed: 2, Size: 4, Reason: "wave 1: 2 of 4 machines failed, more than the 25% budget"}},
		{"second wave fails", map[string]Outcome{"a": S, "b": S, "c": S, "d": S, "e": F, "f": S},
			Progress{Status: RolloutHalted, Wave: 1, Failed: 1, Size: 2, Reason: "wave 2: 1 of 2 machines failed, more than the 25% budget"}},
		{"completed", map[string]Outcome{"a": S, "b": S, "c": S, "d": F, "e": S, "f": S}, Progress{Status: RolloutCompleted, Wave: 2}},
	} {
		if diff := cmp.Diff(tc.want, p.Evaluate(tc.outcomes)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	zero := Plan{Waves: [][]string{{"a", "b"}}, MaxFailedPercent: 0}
	if got := zero.Evaluate(map[string]Outcome{"a": F}); got.Status != RolloutHalted {
		t.Errorf("budget 0 with a failure: %+v, want Halted", got)
	}
}
