package capability_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/sqlite"
	"github.com/corralhq/corral/internal/wire"
)

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// patching is a small capability as a later one would be: a slice of the
// desired state under its feature name, and its own report kind.
type patching struct {
	window  string
	applied []string // "machine:report id" of every report it applied
	fail    error    // returned by HandleReport when set
}

type patchReport struct {
	Installed int `json:"installed"`
}

func (p *patching) Register(r *capability.Registry) {
	r.AddContributor("patching", p)
	r.AddReportHandler("patchResult", p)
}

func (p *patching) ContributeDesired(_ context.Context, batch []capability.Desired) error {
	for _, d := range batch {
		if err := capability.SetFeature(d.State, "patching", map[string]string{"window": p.window, "machine": d.Machine.Name}); err != nil {
			return err
		}
	}
	return nil
}

func (p *patching) HandleReport(_ context.Context, m store.Machine, r wire.Report, _ time.Time) error {
	var body patchReport
	if err := capability.DecodeReport(r, &body); err != nil {
		return err
	}
	if p.fail != nil {
		return p.fail
	}
	p.applied = append(p.applied, m.ID+":"+r.ID)
	return nil
}

// core writes what inventory writes, so the order of parts shows.
type core struct{ appliedSeen *[]string }

func (c core) Register(r *capability.Registry) {
	r.AddContributor("core", c)
	r.AddReportHandler(wire.ReportApplied, capability.ReportHandlerFunc(func(_ context.Context, _ store.Machine, rep wire.Report, _ time.Time) error {
		*c.appliedSeen = append(*c.appliedSeen, "core:"+rep.ID)
		return nil
	}))
}

func (core) ContributeDesired(_ context.Context, batch []capability.Desired) error {
	for _, d := range batch {
		d.State.ResourceID, d.State.Tags = d.Machine.ResourceID().String(), d.Machine.Tags
	}
	return nil
}

func report(id, kind, body string) wire.Report {
	return wire.Report{ID: id, Kind: kind, TakenAt: t0, Body: []byte(body)}
}

var vm = store.Machine{ID: "m-1", Subscription: "default", ResourceGroup: "rg", Name: "vm", Generation: 7, Tags: map[string]string{"env": "prod"}}

func TestDesiredStateAssemblesEveryPart(t *testing.T) {
	t.Parallel()
	reg := capability.NewRegistry(quiet(), nil)
	var seen []string
	reg.Register(core{&seen}, &patching{window: "sun 02:00"})
	ds, err := reg.DesiredState(t.Context(), vm)
	if err != nil {
		t.Fatal(err)
	}
	want := wire.DesiredState{Generation: 7, ResourceID: "/subscriptions/default/resourceGroups/rg/machines/vm",
		Tags:     map[string]string{"env": "prod"},
		Features: map[string]json.RawMessage{"patching": json.RawMessage(`{"machine":"vm","window":"sun 02:00"}`)}}
	if d := cmp.Diff(want, ds); d != "" {
		t.Errorf("desired state (-want +got):\n%s", d)
	}
	// The agent reads its slice back by feature name.
	b, _ := json.Marshal(ds)
	var back wire.DesiredState
	if err := json.Unmarshal(b, &back); err != nil || string(back.Features["patching"]) != `{"machine":"vm","window":"sun 02:00"}` {
		t.Errorf("round trip: %s %v", back.Features["patching"], err)
	}
}

type failing struct{}

func (failing) ContributeDesired(context.Context, []capability.Desired) error {
	return errors.New("database is gone")
}

func TestDesiredStateFailsWhole(t *testing.T) {
	t.Parallel()
	reg := capability.NewRegistry(quiet(), nil)
	var seen []string
	reg.Register(core{&seen})
	reg.AddContributor("broken", failing{})
	ds, err := reg.DesiredState(t.Context(), vm)
	if err == nil || !strings.Contains(err.Error(), "broken part") || ds.ResourceID != "" {
		t.Errorf("got %+v, %v; want no partial desired state and an error naming the part", ds, err)
	}
	// Two contributors writing one feature is caught.
	reg = capability.NewRegistry(quiet(), nil)
	reg.Register(&patching{}, &patching{})
	if _, err := reg.DesiredState(t.Context(), vm); err == nil || !strings.Contains(err.Error(), `"patching" written twice`) {
		t.Errorf("got %v, want a clash", err)
	}
}

func TestApplyReports(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var seen []string
	p := &patching{}
	reg := capability.NewRegistry(quiet(), nil)
	reg.Register(core{&seen}, p)
	// A second context also takes "applied", after core.
	reg.AddReportHandler(wire.ReportApplied, capability.ReportHandlerFunc(func(_ context.Context, _ store.Machine, rep wire.Report, _ time.Time) error {
		seen = append(seen, "second:"+rep.ID)
		return nil
	}))

	batch := []wire.Report{
		report("r1", "patchResult", `{"installed":3}`),
		report("r2", "patchResult", `{"installed":"three"}`), // malformed: dropped
		report("r3", "patchResult", `{"installed":1,"extra":true}`),
		report("r4", "fromTheFuture", `{}`), // unknown kind: dropped
		report("r5", wire.ReportApplied, `{"generation":7}`),
	}
	ack, err := reg.ApplyReports(ctx, vm, batch, t0)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"r1", "r2", "r3", "r4", "r5"}, ack.Accepted); d != "" {
		t.Errorf("acknowledged (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"m-1:r1"}, p.applied); d != "" {
		t.Errorf("applied (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"core:r5", "second:r5"}, seen); d != "" {
		t.Errorf("handlers of one kind run in registration order (-want +got):\n%s", d)
	}

	// A refusal of kind ErrInvalid from the handler itself is dropped too.
	p.fail = refusal.Invalid("reports.body", "no such patch")
	if ack, err := reg.ApplyReports(ctx, vm, batch[:1], t0); err != nil || len(ack.Accepted) != 1 {
		t.Errorf("invalid report: %+v %v; want it acknowledged", ack, err)
	}
	// A value the store cannot keep (a NUL in PostgreSQL text) fails the
	// same way every time: dropped alone, the rest of the batch applied
	// (issue 7, finding 12).
	p.fail = fmt.Errorf("update machine: %w", store.ErrInvalidData)
	if ack, err := reg.ApplyReports(ctx, vm, batch[:1], t0); err != nil || len(ack.Accepted) != 1 {
		t.Errorf("report the store cannot keep: %+v %v; want it acknowledged", ack, err)
	}
	// Any other failure fails the batch: the agent delivers it again.
	p.fail = fmt.Errorf("store: %w", errors.New("connection reset"))
	if ack, err := reg.ApplyReports(ctx, vm, batch[:1], t0); err == nil || len(ack.Accepted) != 0 {
		t.Errorf("store failure: %+v %v; want the batch failed", ack, err)
	}
	// So does a refusal that is not about the report's form.
	p.fail = refusal.NotFound("machine gone")
	if _, err := reg.ApplyReports(ctx, vm, batch[:1], t0); !errors.Is(err, refusal.ErrNotFound) {
		t.Errorf("not found: %v; want the batch failed", err)
	}
}

func TestApplyReportsRefusesMalformedBatchesWhole(t *testing.T) {
	t.Parallel()
	p := &patching{}
	reg := capability.NewRegistry(quiet(), nil)
	reg.Register(p)
	tooMany := make([]wire.Report, capability.MaxReportsPerBatch+1)
	for i := range tooMany {
		tooMany[i] = report(fmt.Sprint("r", i), "patchResult", `{}`)
	}
	noID := []wire.Report{report("r1", "patchResult", `{}`), report("", "patchResult", `{}`)}
	for name, batch := range map[string][]wire.Report{"too many": tooMany, "no id": noID} {
		if _, err := reg.ApplyReports(t.Context(), vm, batch, t0); !errors.Is(err, refusal.ErrInvalid) {
			t.Errorf("%s: got %v, want a refusal", name, err)
		}
	}
	if len(p.applied) != 0 {
		t.Errorf("a refused batch applied %v", p.applied)
	}
}

func TestDecodeReport(t *testing.T) {
	t.Parallel()
	var v patchReport
	for _, bad := range []string{``, `{`, `{"installed":1}{}`, `{"installed":1,"x":2}`, `[]`} {
		if err := capability.DecodeReport(report("r", "k", bad), &v); !errors.Is(err, refusal.ErrInvalid) {
			t.Errorf("DecodeReport(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := capability.DecodeReport(report("r", "k", `{"installed":2}`), &v); err != nil || v.Installed != 2 {
		t.Errorf("got %+v %v", v, err)
	}
}

// TestSyncerBumpsAndPushes runs on a real store and hub.
func TestSyncerBumpsAndPushes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "corral.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateSubscription(ctx, store.Subscription{Name: "default", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "default", Name: "rg", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m-1", "m-2"} {
		if err := st.CreateMachine(ctx, store.Machine{ID: id, Subscription: "default", ResourceGroup: "rg", Name: id, Generation: 1}, false); err != nil {
			t.Fatal(err)
		}
	}
	hub := push.NewHub()
	s1, s2 := hub.Register("m-1"), hub.Register("m-2")
	gens, err := capability.NewSyncer(st, hub).DesiredChanged(ctx, []string{"m-1", "m-2", "gone"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]int64{"m-1": 2, "m-2": 2}, gens); d != "" {
		t.Errorf("generations (-want +got):\n%s", d)
	}
	for _, s := range []*push.Stream{s1, s2} {
		select {
		case msg := <-s.Out:
			if msg.Type != wire.MsgSync || msg.Generation != 2 {
				t.Errorf("%s got %+v", s.MachineID, msg)
			}
		default:
			t.Errorf("%s got no sync", s.MachineID)
		}
	}
}
