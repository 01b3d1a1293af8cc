package activity_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/server/activity"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func TestRecordAndList(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	svc := activity.New(testutil.Store(t), clock.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := t.Context()
	for i := range 5 {
		scope := "/subscriptions/default/resourceGroups/web"
		if i%2 == 1 {
			scope = "/subscriptions/other"
		}
		result := wire.ResultSucceeded
		if i == 4 {
			result = wire.ResultDenied
		}
		if err := svc.Record(ctx, store.ActivityEntry{ID: "ignored", Action: fmt.Sprintf("Corral.Test/%d/write", i), Scope: scope,
			Result: result, Caller: "alice", CallerID: "usr-1"}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	var actions []string
	q := activity.Query{Scope: "/subscriptions/default", Page: store.Page{Limit: 1}}
	for {
		page, err := svc.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Items {
			if e.ID == "ignored" || e.Time.IsZero() {
				t.Errorf("entry without its own id and time: %+v", e)
			}
			actions = append(actions, e.Action)
		}
		if page.After == "" {
			break
		}
		q.Page.After = page.After
	}
	if fmt.Sprint(actions) != "[Corral.Test/4/write Corral.Test/2/write Corral.Test/0/write]" {
		t.Errorf("newest first, in scope: %v", actions)
	}
	page, err := svc.List(ctx, activity.Query{Result: "denied", Action: "Corral.Test/*"})
	if err != nil || len(page.Items) != 1 || page.Items[0].Result != wire.ResultDenied {
		t.Errorf("denied: %+v %v", page.Items, err)
	}
	for _, bad := range []activity.Query{
		{Scope: "/subscriptions/"}, {Result: "Maybe"}, {From: "yesterday"}, {To: "2026-13-01T00:00:00Z"}, {Action: "Corral.*/write"},
	} {
		if _, err := svc.List(ctx, bad); !errors.Is(err, refusal.ErrInvalid) {
			t.Errorf("%+v: %v, want refused", bad, err)
		}
	}
}

// An outcome reports a change already committed: the agent hanging up on
// its request must not cost the log its entry.
func TestOutcomeOutlivesItsRequest(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	svc := activity.New(testutil.Store(t), clock.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := svc.RecordOutcome(ctx, capability.Outcome{Scope: "/subscriptions/default/resourceGroups/web/machines/m1",
		Action: "Corral.Test/things/write", Result: wire.ResultFailed, Message: "refused"}); err != nil {
		t.Fatalf("outcome after the request was cancelled: %v", err)
	}
	page, err := svc.List(t.Context(), activity.Query{Action: "Corral.Test/*"})
	if err != nil || len(page.Items) != 1 || page.Items[0].Message != "refused" {
		t.Fatalf("outcome entries = %+v, %v", page.Items, err)
	}
}

// An event a machine reports is recorded once however often its report is
// delivered (the agent resends what it did not see acknowledged); another
// report, or the same id from another machine, is recorded.
func TestOutcomeOfAReportDeliveredTwiceIsRecordedOnce(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	svc := activity.New(testutil.Store(t), clock.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := t.Context()
	const scope = "/subscriptions/default/resourceGroups/web/machines/m1"
	outcome := func(machine, report string) capability.Outcome {
		return capability.Outcome{Origin: capability.Origin{CallerID: machine, Caller: machine, CallerType: wire.PrincipalMachine},
			Action: "Corral.HybridCompute/machines/localConfiguration/changed", Scope: scope, Result: wire.ResultFailed,
			Message: "changed outside", ReportID: report}
	}
	for _, o := range []capability.Outcome{outcome("m1", "r1"), outcome("m1", "r1"), outcome("m1", "r2"), outcome("m1", "r1"), outcome("m2", "r1")} {
		if err := svc.RecordOutcome(ctx, o); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	page, err := svc.List(ctx, activity.Query{Scope: scope})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range page.Items {
		got[e.CallerID+" "+e.CorrelationID]++
	}
	want := map[string]int{"m1 report:r1": 1, "m1 report:r2": 1, "m2 report:r1": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries by machine and report: %v, want %v", got, want)
	}
}

// A final state reported again (the replica that applied it was killed
// before it logged the outcome) asks for the outcome Once: it is logged if
// that request has none yet, never twice, and the request's own entry (same
// correlation id, caller, action and scope) does not count as one.
func TestOnceOutcomeIsLoggedIfMissing(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	svc := activity.New(testutil.Store(t), clock.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := t.Context()
	const scope = "/subscriptions/default/resourceGroups/web/machines/m1/runCommands/r"
	origin := capability.Origin{CorrelationID: "corr-1", CallerID: "u1", Caller: "alice", CallerType: "User", Action: "Corral.HybridCompute/machines/runCommands/write"}
	if err := svc.Record(ctx, store.ActivityEntry{CorrelationID: origin.CorrelationID, CallerID: origin.CallerID, Caller: origin.Caller,
		CallerType: origin.CallerType, Action: origin.Action, Scope: scope, Result: wire.ResultSucceeded, Status: 201, Method: "PUT", Path: scope}); err != nil {
		t.Fatal(err)
	}
	once := capability.Outcome{Origin: origin, Scope: scope, Result: wire.ResultSucceeded, Message: "run r: Succeeded", Once: true}
	for range 3 {
		clock.Advance(time.Second)
		if err := svc.RecordOutcome(ctx, once); err != nil {
			t.Fatal(err)
		}
	}
	// Another request on the same run name (deleted and created again) has
	// its own outcome.
	again := once
	again.Origin.CorrelationID = "corr-2"
	if err := svc.RecordOutcome(ctx, again); err != nil {
		t.Fatal(err)
	}
	page, err := svc.List(ctx, activity.Query{Scope: "/subscriptions/default/resourceGroups/web/machines/m1"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range page.Items {
		got[e.Method+" "+e.CorrelationID]++
	}
	want := map[string]int{"PUT corr-1": 1, "AGENT corr-1": 1, "AGENT corr-2": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries: %v, want %v", got, want)
	}
}
