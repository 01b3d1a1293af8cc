package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/inventory"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

type env struct {
	st  store.Store
	hub *push.Hub
	svc *inventory.Service
	reg *capability.Registry
	ref resource.MachineRef
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := testutil.Store(t, "default/web")
	hub := push.NewHub()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := inventory.New(st, hub, func() time.Time { return t0 }, log, 365*24*time.Hour)
	reg := capability.NewRegistry(log, nil)
	reg.Register(svc)
	m := store.Machine{ID: "m-1", Subscription: "default", ResourceGroup: "web", Name: "vm1", Status: wire.StatusConnected,
		Generation: 1, AgentVersion: "2026.11.0", Tags: map[string]string{"env": "prod"}, CreatedAt: t0, UpdatedAt: t0}
	if err := st.CreateMachine(t.Context(), m, false); err != nil {
		t.Fatal(err)
	}
	return &env{st: st, hub: hub, svc: svc, reg: reg, ref: resource.MachineRef{Subscription: "default", ResourceGroup: "web", Name: "vm1"}}
}

func (e *env) machine(t *testing.T) store.Machine {
	t.Helper()
	m, err := e.st.GetMachineByID(t.Context(), "m-1")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func report(kind string, body any) wire.Report {
	b, _ := json.Marshal(body)
	if s, ok := body.(string); ok {
		b = []byte(s)
	}
	return wire.Report{ID: fmt.Sprint(kind, "-", time.Now().UnixNano()), Kind: kind, AgentVersion: "2026.12.1", Body: b}
}

func TestCoreReports(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	at := t0.Add(time.Minute)
	props := wire.MachineProperties{OSName: "Debian", OSVersion: "12", Environment: wire.EnvAWS, Hostname: "vm1"}
	batch := []wire.Report{
		report(wire.ReportProperties, props),
		report(wire.ReportAgentConfig, wire.AgentConfig{Mode: "full", ExtensionsEnabled: true}),
		report(wire.ReportApplied, wire.AppliedState{Generation: 1}),
	}
	ack, err := e.reg.ApplyReports(ctx, e.machine(t), batch, at)
	if err != nil || len(ack.Accepted) != 3 {
		t.Fatalf("ack %+v, %v", ack, err)
	}
	m := e.machine(t)
	if m.OSName != "debian" || m.Environment != wire.EnvAWS || m.AppliedGeneration != 1 || m.AgentVersion != "2026.12.1" || !m.UpdatedAt.Equal(at) {
		t.Errorf("after the reports: %+v", m)
	}
	got := e.svc.ToWireMachine(m)
	if got.Properties.Hostname != "vm1" || got.AgentConfig == nil || got.AgentConfig.Mode != "full" || !got.AgentSupported {
		t.Errorf("API view: %+v", got)
	}

	// Malformed reports are acknowledged and dropped, and change nothing.
	bad := []wire.Report{
		report(wire.ReportProperties, wire.MachineProperties{Environment: "Mars"}),
		report(wire.ReportProperties, `{"osName":"x","unknown":1}`),
		report(wire.ReportAgentConfig, `not json`),
		report(wire.ReportApplied, wire.AppliedState{Generation: -4}),
	}
	ack, err = e.reg.ApplyReports(ctx, e.machine(t), bad, at.Add(time.Hour))
	if err != nil || len(ack.Accepted) != len(bad) {
		t.Fatalf("malformed: ack %+v, %v", ack, err)
	}
	if d := cmp.Diff(m, e.machine(t)); d != "" {
		t.Errorf("a malformed report changed the machine (-before +after):\n%s", d)
	}
}

func TestDesiredStateCore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ds, err := e.reg.DesiredState(t.Context(), e.machine(t))
	want := wire.DesiredState{Generation: 1, ResourceID: "/subscriptions/default/resourceGroups/web/machines/vm1", Tags: map[string]string{"env": "prod"}}
	if d := cmp.Diff(want, ds); err != nil || d != "" {
		t.Errorf("desired state (-want +got):\n%s %v", d, err)
	}
}

func TestSetMachineTagsPushesTheNewGeneration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	stream := e.hub.Register("m-1")
	if _, err := e.svc.SetMachineTags(ctx, e.ref, nil); !errors.Is(err, refusal.ErrInvalid) {
		t.Errorf("nil tags: %v, want refused", err)
	}
	if _, err := e.svc.SetMachineTags(ctx, e.ref, map[string]string{"bad key": "v"}); !errors.Is(err, refusal.ErrInvalid) {
		t.Errorf("bad key: %v, want refused", err)
	}
	m, err := e.svc.SetMachineTags(ctx, e.ref, map[string]string{"tier": "web"})
	if err != nil || m.Tags["tier"] != "web" {
		t.Fatalf("%+v %v", m, err)
	}
	select {
	case msg := <-stream.Out:
		if msg.Type != wire.MsgSync || msg.Generation != 2 || e.machine(t).Generation != 2 {
			t.Errorf("got %+v, stored generation %d; want a sync of 2", msg, e.machine(t).Generation)
		}
	default:
		t.Error("no sync pushed")
	}
	if _, err := e.svc.SetMachineTags(ctx, resource.MachineRef{Subscription: "default", ResourceGroup: "web", Name: "gone"}, map[string]string{}); !errors.Is(err, refusal.ErrNotFound) {
		t.Errorf("missing machine: %v", err)
	}
}

func TestDeleteMachineSaysGoodbye(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stream := e.hub.Register("m-1")
	if err := e.svc.DeleteMachine(t.Context(), e.ref); err != nil {
		t.Fatal(err)
	}
	if msg := <-stream.Out; msg.Type != wire.MsgGoodbye {
		t.Errorf("got %+v, want goodbye", msg)
	}
	if _, err := e.svc.GetMachine(t.Context(), e.ref); !errors.Is(err, refusal.ErrNotFound) {
		t.Errorf("deleted machine: %v", err)
	}
}

func TestListMachines(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for i := range 5 {
		m := store.Machine{ID: fmt.Sprint("x-", i), Subscription: "default", ResourceGroup: "web", Name: fmt.Sprint("vm-x", i),
			Status: wire.StatusDisconnected, Generation: 1, CreatedAt: t0, UpdatedAt: t0}
		if err := e.st.CreateMachine(ctx, m, false); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	q := inventory.MachineQuery{Subscription: "default", Status: "disconnected", Page: store.Page{Limit: 2}}
	for {
		page, err := e.svc.ListMachines(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Items {
			names = append(names, m.Name)
		}
		if page.After == "" {
			break
		}
		q.Page.After = page.After
	}
	if d := cmp.Diff([]string{"vm-x0", "vm-x1", "vm-x2", "vm-x3", "vm-x4"}, names); d != "" {
		t.Errorf("pages (-want +got):\n%s", d)
	}
	for _, bad := range []inventory.MachineQuery{
		{Subscription: "default", Environment: "Mars"}, {Subscription: "default", Status: "Asleep"}, {Subscription: "default", Tag: "=v"},
	} {
		if _, err := e.svc.ListMachines(ctx, bad); !errors.Is(err, refusal.ErrInvalid) {
			t.Errorf("%+v: %v, want refused", bad, err)
		}
	}
	if _, err := e.svc.ListMachines(ctx, inventory.MachineQuery{Subscription: "default", ResourceGroup: "nope"}); !errors.Is(err, refusal.ErrNotFound) {
		t.Errorf("missing group: %v", err)
	}
}

// Agents asking at the same time each get their own machine (read
// together), a deleted machine's agent gets ErrNotFound, and a read made
// after a change sees it.
func TestMachineForAgentReadsTogether(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 40
	for i := range n {
		m := store.Machine{ID: fmt.Sprint("a-", i), Subscription: "default", ResourceGroup: "web", Name: fmt.Sprint("agent", i),
			Status: wire.StatusConnected, Generation: int64(10 + i), Properties: []byte(`{"cpus":2}`), CreatedAt: t0, UpdatedAt: t0}
		if err := e.st.CreateMachine(t.Context(), m, false); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for round := range 3 {
		for i := range n + 1 {
			wg.Go(func() {
				id := fmt.Sprint("a-", i)
				m, err := e.svc.MachineForAgent(t.Context(), id)
				switch {
				case i == n:
					if !errors.Is(err, store.ErrNotFound) {
						t.Errorf("round %d, a machine that does not exist: %v, want ErrNotFound", round, err)
					}
				case err != nil:
					t.Errorf("round %d, machine %s: %v", round, id, err)
				case m.ID != id || m.Name != fmt.Sprint("agent", i) || m.Generation != int64(10+i) || m.Properties != nil:
					t.Errorf("round %d, machine %s: got %s (%s, generation %d, properties %q)", round, id, m.ID, m.Name, m.Generation, m.Properties)
				}
			})
		}
	}
	wg.Wait()
	if err := e.st.DeleteMachine(t.Context(), "a-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.MachineForAgent(t.Context(), "a-3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted machine: %v, want ErrNotFound", err)
	}
}

// gatedApplied is a store whose applied-generation calls wait at gate.
type gatedApplied struct {
	store.Store
	gate *testutil.Gate
}

func (g gatedApplied) RecordAppliedGenerations(ctx context.Context, rs []store.AppliedGeneration) ([]bool, error) {
	g.gate.Enter(len(rs))
	return g.Store.RecordAppliedGenerations(ctx, rs)
}

// Every agent reports its desired state applied after every sync: those
// reporting at the same time are recorded together (a few store calls),
// each machine gets its own generation, and the report of a machine
// deleted meanwhile fails (the agent's certificate is refused next).
func TestAppliedReportsRecordTogether(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 30
	ms := make([]store.Machine, n)
	for i := range ms {
		ms[i] = store.Machine{ID: fmt.Sprint("a-", i), Subscription: "default", ResourceGroup: "web", Name: fmt.Sprint("agent", i),
			Status: wire.StatusConnected, Generation: 9, CreatedAt: t0, UpdatedAt: t0}
		if i == n-1 {
			continue // authenticated, then deleted: never stored here
		}
		if err := e.st.CreateMachine(t.Context(), ms[i], false); err != nil {
			t.Fatal(err)
		}
	}
	gate := testutil.NewGate(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := inventory.New(gatedApplied{e.st, gate}, e.hub, func() time.Time { return t0 }, log, 365*24*time.Hour)
	reg := capability.NewRegistry(log, nil)
	reg.Register(svc)
	acks := make([]wire.ReportAck, n)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			var err error
			acks[i], err = reg.ApplyReports(t.Context(), m, []wire.Report{report(wire.ReportApplied, wire.AppliedState{Generation: int64(i + 1)})}, t0)
			if gone := i == n-1; gone != errors.Is(err, store.ErrNotFound) || !gone && err != nil {
				t.Errorf("machine %s (gone %v): %v", m.ID, gone, err)
			}
		})
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		if _, reports := gate.Counts(); reports+svc.AppliedWaiting() != n {
			return fmt.Sprintf("%d reports at the store, %d waiting, of %d", reports, svc.AppliedWaiting(), n)
		}
		return ""
	})
	gate.Release()
	wg.Wait()
	if calls, reports := gate.Counts(); reports != n || calls >= n/2 {
		t.Errorf("%d reports in %d store calls, want them recorded together", reports, calls)
	}
	for i, m := range ms {
		if i == n-1 {
			if len(acks[i].Accepted) != 0 {
				t.Errorf("the report of a machine that is gone was acknowledged: %+v", acks[i])
			}
			continue
		}
		got, err := e.st.GetMachineByID(t.Context(), m.ID)
		if err != nil || got.AppliedGeneration != int64(i+1) || got.AgentVersion != "2026.12.1" || len(acks[i].Accepted) != 1 {
			t.Errorf("machine %s: applied generation %d, agent version %q, ack %+v (%v)", m.ID, got.AppliedGeneration, got.AgentVersion, acks[i], err)
		}
	}
}
