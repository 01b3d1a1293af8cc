package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// activityID makes time-ordered ids, as the caller's UUIDv7s are.
func activityID(i int) string { return fmt.Sprintf("01J%09d", i) }

func activityEntry(i int) store.ActivityEntry {
	return store.ActivityEntry{ID: activityID(i), Time: t0.Add(time.Duration(i) * time.Minute),
		CallerID: "usr-1", Caller: "Alice", CallerType: "User",
		Action: "Corral.HybridCompute/machines/write", Scope: "/subscriptions/a/resourceGroups/rg/machines/m1",
		Result: wire.ResultSucceeded, Status: 200, Message: "ok", CorrelationID: fmt.Sprintf("corr-%d", i),
		SourceIP: "192.0.2.1", Method: "PUT", Path: "/api/v1/subscriptions/a/resourceGroups/rg/machines/m1"}
}

func listActivityIDs(t *testing.T, s store.Store, f store.ActivityFilter) []string {
	t.Helper()
	es, err := s.ListActivity(t.Context(), f)
	ok(t, err, "list activity %+v", f)
	ids := []string{}
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

func ids(is ...int) []string {
	out := []string{}
	for _, i := range is {
		out = append(out, activityID(i))
	}
	return out
}

func testActivity(t *testing.T, s store.Store) {
	ctx := t.Context()
	ok(t, s.AppendActivity(ctx), "append nothing")
	e1, e2, e3 := activityEntry(1), activityEntry(2), activityEntry(3)
	e2.Result, e2.Status, e2.Message = wire.ResultDenied, 403, "missing Corral.HybridCompute/machines/write"
	ok(t, s.AppendActivity(ctx, e1), "append one")
	ok(t, s.AppendActivity(ctx, e3, e2), "append a batch")

	es, err := s.ListActivity(ctx, store.ActivityFilter{})
	ok(t, err, "list activity")
	diff(t, es, []store.ActivityEntry{e3, e2, e1}, "entries, newest first")

	isErr(t, s.AppendActivity(ctx, activityEntry(4), activityEntry(1)), store.ErrConflict, "append a duplicate id")
	diff(t, listActivityIDs(t, s, store.ActivityFilter{}), ids(3, 2, 1), "a failed batch appends nothing")
}

func testActivityFilters(t *testing.T, s store.Store) {
	var es []store.ActivityEntry
	for i := 1; i <= 8; i++ {
		es = append(es, activityEntry(i))
	}
	// Entry n is es[n-1]; every entry not changed here is usr-1 (Alice)
	// writing a machine in /subscriptions/a/resourceGroups/rg, Succeeded.
	es[1].Scope = "/subscriptions/ab"
	es[2].Scope = "/subscriptions/A"
	es[3].Scope = "/"
	es[4].CallerID, es[4].Caller = "sp-1", "deployer"
	es[5].Action, es[5].Result = "Corral.Authorization/roleAssignments/write", wire.ResultDenied
	es[6].Action = "Corral.HybridCompute/machines/read"
	es[7].Result, es[7].Status, es[7].Scope = wire.ResultFailed, 500, "/subscriptions/a/resourceGroups/other"
	ok(t, s.AppendActivity(t.Context(), es...), "append")

	for _, tc := range []struct {
		name string
		f    store.ActivityFilter
		want []string
	}{
		{"everything", store.ActivityFilter{}, ids(8, 7, 6, 5, 4, 3, 2, 1)},
		{"scope and below, by segment", store.ActivityFilter{ScopePrefix: "/subscriptions/a"}, ids(8, 7, 6, 5, 3, 1)},
		{"scope other casing", store.ActivityFilter{ScopePrefix: "/SUBSCRIPTIONS/a/resourcegroups/RG"}, ids(7, 6, 5, 1)},
		{"exact scope", store.ActivityFilter{ScopePrefix: "/subscriptions/ab"}, ids(2)},
		{"root scope", store.ActivityFilter{ScopePrefix: "/"}, ids(8, 7, 6, 5, 4, 3, 2, 1)},
		{"caller id", store.ActivityFilter{CallerID: "sp-1"}, ids(5)},
		{"caller name", store.ActivityFilter{CallerID: "DEPLOYER"}, ids(5)},
		{"action exact", store.ActivityFilter{Action: "corral.hybridcompute/machines/read"}, ids(7)},
		{"action prefix", store.ActivityFilter{Action: "Corral.HybridCompute/*"}, ids(8, 7, 5, 4, 3, 2, 1)},
		{"action prefix, underscore literal", store.ActivityFilter{Action: "Corral.Hybrid_ompute/*"}, ids()},
		{"action star", store.ActivityFilter{Action: "*"}, ids(8, 7, 6, 5, 4, 3, 2, 1)},
		{"action is not a prefix without star", store.ActivityFilter{Action: "Corral.HybridCompute"}, ids()},
		{"result", store.ActivityFilter{Result: wire.ResultDenied}, ids(6)},
		{"from inclusive", store.ActivityFilter{From: es[5].Time}, ids(8, 7, 6)},
		{"to exclusive", store.ActivityFilter{To: es[2].Time}, ids(2, 1)},
		{"time range", store.ActivityFilter{From: es[2].Time, To: es[4].Time.Add(time.Millisecond)}, ids(5, 4, 3)},
		{"combined", store.ActivityFilter{ScopePrefix: "/subscriptions/a", CallerID: "usr-1", Action: "Corral.HybridCompute/*",
			Result: wire.ResultSucceeded, From: es[0].Time.Add(time.Millisecond)}, ids(7, 3)},
	} {
		diff(t, listActivityIDs(t, s, tc.f), tc.want, "%s", tc.name)
	}
}

func testActivityPages(t *testing.T, s store.Store) {
	var es []store.ActivityEntry
	for i := 1; i <= 1001; i++ {
		e := activityEntry(i)
		if i%2 == 0 {
			e.Result = wire.ResultDenied
		}
		es = append(es, e)
	}
	ok(t, s.AppendActivity(t.Context(), es...), "append 1001 entries in one call")

	for _, tc := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {3, 3}, {1000, 1000}, {1001, 1001}, {99999, 1001}} {
		if got := len(listActivityIDs(t, s, store.ActivityFilter{Page: store.Page{Limit: tc.limit}})); got != tc.want {
			t.Errorf("Limit %d: got %d entries, want %d", tc.limit, got, tc.want)
		}
	}

	diff(t, listActivityIDs(t, s, store.ActivityFilter{Page: store.Page{Limit: 3}}), ids(1001, 1000, 999), "first page")
	diff(t, listActivityIDs(t, s, store.ActivityFilter{Page: store.Page{After: activityID(999), Limit: 3}}), ids(998, 997, 996),
		"the next page holds older entries")
	diff(t, listActivityIDs(t, s, store.ActivityFilter{Page: store.Page{After: activityID(3), Limit: 3}}), ids(2, 1), "last page")
	diff(t, listActivityIDs(t, s, store.ActivityFilter{Page: store.Page{After: activityID(1), Limit: 3}}), ids(), "past the end")

	// Walk every Denied entry, 200 at a time.
	var walked []string
	after := ""
	for range 10 { // 500 entries: 3 pages and an empty one
		page := listActivityIDs(t, s, store.ActivityFilter{Result: wire.ResultDenied, Page: store.Page{After: after, Limit: 200}})
		if len(page) == 0 {
			break
		}
		walked = append(walked, page...)
		after = page[len(page)-1]
	}
	var want []string
	for i := 1000; i >= 2; i -= 2 {
		want = append(want, activityID(i))
	}
	diff(t, walked, want, "walking filtered pages")
}
