package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func testMachines(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg1", "s1/rg2")

	isErr(t, s.CreateMachine(ctx, machine("x1", "s1/missing/vm"), false), store.ErrNotFound, "create machine in a missing group")
	isErr(t, s.CreateMachine(ctx, machine("x2", "missing/rg1/vm"), true), store.ErrNotFound, "create machine in a missing subscription")

	m := machine("m1", "S1/RG1/Web-01")
	m.Tags = map[string]string{"env": "prod", "team.name": "web"}
	ok(t, s.CreateMachine(ctx, m, false), "create machine")
	want := m
	want.Subscription, want.ResourceGroup = "s1", "rg1" // the parents' stored names

	got, err := s.GetMachine(ctx, "s1", "Rg1", "WEB-01")
	ok(t, err, "get machine by other casing")
	diff(t, got, want, "machine by name")
	diff(t, getByID(t, s, "m1"), want, "machine by id")

	for _, k := range [][3]string{{"s1", "rg1", "web-02"}, {"s1", "rg2", "web-01"}, {"s2", "rg1", "web-01"}} {
		_, err = s.GetMachine(ctx, k[0], k[1], k[2])
		isErr(t, err, store.ErrNotFound, "get machine %v", k)
	}
	_, err = s.GetMachineByID(ctx, "missing")
	isErr(t, err, store.ErrNotFound, "get machine by missing id")

	isErr(t, s.CreateMachine(ctx, machine("m2", "s1/rg1/WEB-01"), false), store.ErrConflict, "create machine differing only in case")
	isErr(t, s.CreateMachine(ctx, machine("m2", "s1/rg1/web-01"), true), store.ErrConflict, "replaceExpired does not replace a Connected machine")
	isErr(t, s.CreateMachine(ctx, machine("m1", "s1/rg1/other"), false), store.ErrConflict, "create machine with a taken id")
	ok(t, s.CreateMachine(ctx, machine("m3", "s1/rg2/web-01"), false), "same name in another group")

	bare := machine("m4", "s1/rg1/bare")
	bare.Tags, bare.Properties, bare.AgentConfig, bare.SealingKey = nil, nil, nil, nil
	createMachines(t, s, bare)
	got = getByID(t, s, "m4")
	if got.Properties != nil || got.AgentConfig != nil || got.SealingKey != nil {
		t.Errorf("nil documents came back as %q, %q, %q", got.Properties, got.AgentConfig, got.SealingKey)
	}
	if len(got.Tags) != 0 {
		t.Errorf("nil tags came back as %v", got.Tags)
	}

	ok(t, s.DeleteMachine(ctx, "m1"), "delete machine")
	_, err = s.GetMachineByID(ctx, "m1")
	isErr(t, err, store.ErrNotFound, "get deleted machine")
	isErr(t, s.DeleteMachine(ctx, "m1"), store.ErrNotFound, "delete machine twice")
	ok(t, s.CreateMachine(ctx, machine("m5", "s1/rg1/web-01"), false), "the name is free again")
}

func testCreateMachineReplaceExpired(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	old := machine("old", "s1/rg/vm")
	old.Status = wire.StatusExpired
	createMachines(t, s, old)

	isErr(t, s.CreateMachine(ctx, machine("new", "s1/rg/VM"), false), store.ErrConflict, "expired machine without replaceExpired")
	getByID(t, s, "old")

	ok(t, s.CreateMachine(ctx, machine("new", "s1/rg/VM"), true), "replace the expired machine")
	_, err := s.GetMachineByID(ctx, "old")
	isErr(t, err, store.ErrNotFound, "the replaced machine is gone")
	got, err := s.GetMachine(ctx, "s1", "rg", "vm")
	ok(t, err, "get by name")
	if got.ID != "new" || got.Name != "VM" {
		t.Errorf("got machine %s named %q, want new named VM", got.ID, got.Name)
	}
}

func testListMachinesFilters(t *testing.T, s store.Store) {
	seedGroups(t, s, "s1/rg-a", "s1/rg-b", "s2/rg-a")
	mk := func(id, path, status, env, os string, tags map[string]string) store.Machine {
		m := machine(id, path)
		m.Status, m.Environment, m.OSName, m.Tags = status, env, os, tags
		return m
	}
	createMachines(t, s,
		mk("1", "s1/rg-a/web-01", wire.StatusConnected, wire.EnvAWS, "ubuntu", map[string]string{"env": "prod", "tier": "web"}),
		mk("2", "s1/rg-a/web-02", wire.StatusDisconnected, wire.EnvAzure, "Ubuntu", map[string]string{"env": "dev"}),
		mk("3", "s1/rg-a/db-01", wire.StatusConnected, wire.EnvOnPrem, "rhel", map[string]string{"env": "prod", "team.name": "data"}),
		mk("4", "s1/rg-b/Web-03", wire.StatusExpired, wire.EnvAWS, "debian", nil),
		mk("5", "s1/rg-b/cache_1", wire.StatusConnected, wire.EnvGCP, "debian", map[string]string{"env": "prod%", `q"k`: "v"}),
		mk("6", "s2/rg-a/web-09", wire.StatusConnected, wire.EnvAWS, "ubuntu", map[string]string{"env": "prod", "tier": "web"}),
	)
	for _, tc := range []struct {
		name string
		f    store.MachineFilter
		want []string
	}{
		{"subscription", store.MachineFilter{Subscription: "s1"},
			[]string{"rg-a/db-01", "rg-a/web-01", "rg-a/web-02", "rg-b/cache_1", "rg-b/Web-03"}},
		{"subscription other casing", store.MachineFilter{Subscription: "S1"},
			[]string{"rg-a/db-01", "rg-a/web-01", "rg-a/web-02", "rg-b/cache_1", "rg-b/Web-03"}},
		{"unknown subscription", store.MachineFilter{Subscription: "s3"}, []string{}},
		{"resource group", store.MachineFilter{Subscription: "s1", ResourceGroup: "RG-B"}, []string{"rg-b/cache_1", "rg-b/Web-03"}},
		{"environment", store.MachineFilter{Subscription: "s1", Environment: wire.EnvAWS}, []string{"rg-a/web-01", "rg-b/Web-03"}},
		{"status", store.MachineFilter{Subscription: "s1", Status: wire.StatusConnected},
			[]string{"rg-a/db-01", "rg-a/web-01", "rg-b/cache_1"}},
		{"os case-insensitive", store.MachineFilter{Subscription: "s1", OSName: "UBUNTU"}, []string{"rg-a/web-01", "rg-a/web-02"}},
		{"os exact, not substring", store.MachineFilter{Subscription: "s1", OSName: "ubunt"}, []string{}},
		{"name substring", store.MachineFilter{Subscription: "s1", NameContains: "WEB"},
			[]string{"rg-a/web-01", "rg-a/web-02", "rg-b/Web-03"}},
		{"name underscore is literal", store.MachineFilter{Subscription: "s1", NameContains: "_"}, []string{"rg-b/cache_1"}},
		{"name percent is literal", store.MachineFilter{Subscription: "s1", NameContains: "%"}, []string{}},
		{"tag key", store.MachineFilter{Subscription: "s1", TagKey: "env"},
			[]string{"rg-a/db-01", "rg-a/web-01", "rg-a/web-02", "rg-b/cache_1"}},
		{"tag key=value", store.MachineFilter{Subscription: "s1", TagKey: "env", TagValue: "prod"}, []string{"rg-a/db-01", "rg-a/web-01"}},
		{"tag value is exact", store.MachineFilter{Subscription: "s1", TagKey: "env", TagValue: "prod%"}, []string{"rg-b/cache_1"}},
		{"tag key with a dot", store.MachineFilter{Subscription: "s1", TagKey: "team.name", TagValue: "data"}, []string{"rg-a/db-01"}},
		{"tag key with a quote", store.MachineFilter{Subscription: "s1", TagKey: `q"k`}, []string{"rg-b/cache_1"}},
		{"tag key only", store.MachineFilter{Subscription: "s1", TagKey: "tier"}, []string{"rg-a/web-01"}},
		{"missing tag key", store.MachineFilter{Subscription: "s1", TagKey: "nope"}, []string{}},
		{"environment and status", store.MachineFilter{Subscription: "s1", Environment: wire.EnvAWS, Status: wire.StatusConnected},
			[]string{"rg-a/web-01"}},
		{"group, tag and name", store.MachineFilter{Subscription: "s1", ResourceGroup: "rg-a", TagKey: "env", TagValue: "prod", NameContains: "web"},
			[]string{"rg-a/web-01"}},
	} {
		ms, err := s.ListMachines(t.Context(), tc.f)
		ok(t, err, "%s: list machines", tc.name)
		diff(t, paths(ms), tc.want, "%s", tc.name)
	}
}

func testListMachinesPages(t *testing.T, s store.Store) {
	seedGroups(t, s, "s1/A-rg", "s1/b-rg", "s2/a-rg")
	createMachines(t, s,
		machine("1", "s1/A-rg/m1"), machine("2", "s1/A-rg/M2"), machine("3", "s1/A-rg/m3"),
		machine("4", "s1/b-rg/m1"), machine("5", "s1/b-rg/m2"), machine("6", "s2/a-rg/m0"),
	)
	all := []string{"A-rg/m1", "A-rg/M2", "A-rg/m3", "b-rg/m1", "b-rg/m2"}
	list := func(f store.MachineFilter) []string {
		t.Helper()
		ms, err := s.ListMachines(t.Context(), f)
		ok(t, err, "list machines %+v", f)
		return paths(ms)
	}
	diff(t, list(store.MachineFilter{Subscription: "s1"}), all, "ordered by group then name, case-insensitively")

	var walked []string
	after := ""
	for range 10 {
		page := list(store.MachineFilter{Subscription: "s1", Page: store.Page{After: after, Limit: 2}})
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("page of %d, want at most 2", len(page))
		}
		walked = append(walked, page...)
		after = page[len(page)-1]
	}
	diff(t, walked, all, "walking pages of 2")

	diff(t, list(store.MachineFilter{Subscription: "s1", Page: store.Page{After: "a-RG/m2", Limit: 2}}),
		[]string{"A-rg/m3", "b-rg/m1"}, "After compares case-insensitively")
	diff(t, list(store.MachineFilter{Subscription: "s1", Page: store.Page{After: "A-rg/m9"}}),
		[]string{"b-rg/m1", "b-rg/m2"}, "After need not exist")
	diff(t, list(store.MachineFilter{Subscription: "s1", ResourceGroup: "b-rg", Page: store.Page{After: "b-rg/m1"}}),
		[]string{"b-rg/m2"}, "pages within one group")
	diff(t, list(store.MachineFilter{Subscription: "s1", NameContains: "m1", Page: store.Page{After: "A-rg/m1"}}),
		[]string{"b-rg/m1"}, "pages with a filter")
}

func testListMachinesPageLimits(t *testing.T, s store.Store) {
	seedGroups(t, s, "s1/rg")
	for i := range 1001 {
		id := fmt.Sprintf("m%04d", i)
		ok(t, s.CreateMachine(t.Context(), machine(id, "s1/rg/"+id), false), "create machine %d", i)
	}
	for _, tc := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {7, 7}, {1000, 1000}, {1001, 1001}, {5000, 1001}} {
		ms, err := s.ListMachines(t.Context(), store.MachineFilter{Subscription: "s1", Page: store.Page{Limit: tc.limit}})
		ok(t, err, "list machines")
		if len(ms) != tc.want {
			t.Errorf("Limit %d: got %d machines, want %d", tc.limit, len(ms), tc.want)
		}
	}
}

func testCountMachinesByStatus(t *testing.T, s store.Store) {
	counts, err := s.CountMachinesByStatus(t.Context())
	ok(t, err, "count machines in an empty store")
	diff(t, counts, map[string]int{}, "empty store")

	seedGroups(t, s, "s1/rg", "s2/rg")
	mk := func(id, path, status string) store.Machine {
		m := machine(id, path)
		m.Status = status
		return m
	}
	createMachines(t, s, mk("1", "s1/rg/a", wire.StatusConnected), mk("2", "s1/rg/b", wire.StatusDisconnected),
		mk("3", "s2/rg/c", wire.StatusConnected), mk("4", "s2/rg/d", wire.StatusExpired))
	counts, err = s.CountMachinesByStatus(t.Context())
	ok(t, err, "count machines")
	diff(t, counts, map[string]int{wire.StatusConnected: 2, wire.StatusDisconnected: 1, wire.StatusExpired: 1}, "counts across subscriptions")
}

func testUpdateMachineTags(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm"))
	want := getByID(t, s, "m1")

	at := t0.Add(time.Hour)
	gen, err := s.UpdateMachineTags(ctx, "m1", map[string]string{"tier": "web", "owner": "ops"}, at)
	ok(t, err, "update tags")
	if gen != 2 {
		t.Errorf("generation = %d, want 2", gen)
	}
	want.Tags, want.Generation, want.UpdatedAt = map[string]string{"tier": "web", "owner": "ops"}, 2, at
	diff(t, getByID(t, s, "m1"), want, "after updating tags")

	gen, err = s.UpdateMachineTags(ctx, "m1", nil, at.Add(time.Minute))
	ok(t, err, "clear tags")
	if gen != 3 {
		t.Errorf("generation = %d, want 3", gen)
	}
	want.Tags, want.Generation, want.UpdatedAt = nil, 3, at.Add(time.Minute)
	diff(t, getByID(t, s, "m1"), want, "after clearing tags")

	ms, err := s.ListMachines(ctx, store.MachineFilter{Subscription: "s1", TagKey: "env"})
	ok(t, err, "list by a removed tag")
	diff(t, paths(ms), []string{}, "the old tags no longer match")

	_, err = s.UpdateMachineTags(ctx, "missing", nil, at)
	isErr(t, err, store.ErrNotFound, "update tags of a missing machine")
}

func testBumpGenerations(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/a"), machine("m2", "s1/rg/b"), machine("m3", "s1/rg/c"))
	_, err := s.UpdateMachineTags(ctx, "m2", map[string]string{"x": "y"}, t0)
	ok(t, err, "update tags")
	want1, want3 := getByID(t, s, "m1"), getByID(t, s, "m3")

	at := t0.Add(time.Hour)
	gens, err := s.BumpGenerations(ctx, []string{"m2", "m1", "missing", "m2"}, at)
	ok(t, err, "bump generations")
	diff(t, gens, map[string]int64{"m1": 2, "m2": 3}, "new generations (unknown ids left out, duplicates bumped once)")
	want1.Generation, want1.UpdatedAt = 2, at
	diff(t, getByID(t, s, "m1"), want1, "a bumped machine changes only generation and UpdatedAt")
	diff(t, getByID(t, s, "m3"), want3, "a machine not named is untouched")

	gens, err = s.BumpGenerations(ctx, nil, at)
	ok(t, err, "bump no machines")
	diff(t, gens, map[string]int64{}, "nothing bumped")
	gens, err = s.BumpGenerations(ctx, []string{"missing"}, at)
	ok(t, err, "bump only unknown machines")
	diff(t, gens, map[string]int64{}, "nothing bumped")
}

// testBumpGenerationsLargeBatch crosses the statement chunking of the
// backends.
func testBumpGenerationsLargeBatch(t *testing.T, s store.Store) {
	seedGroups(t, s, "s1/rg")
	ids := []string{}
	for i := range 1201 {
		m := machine(fmt.Sprintf("m-%05d", i), fmt.Sprintf("s1/rg/vm-%05d", i))
		createMachines(t, s, m)
		ids = append(ids, m.ID)
	}
	gens, err := s.BumpGenerations(t.Context(), ids, t0.Add(time.Hour))
	ok(t, err, "bump 1201 machines")
	if len(gens) != len(ids) {
		t.Fatalf("bumped %d machines, want %d", len(gens), len(ids))
	}
	for _, id := range []string{ids[0], ids[600], ids[1200]} {
		if gens[id] != 2 || getByID(t, s, id).Generation != 2 {
			t.Errorf("%s: generation %d (stored %d), want 2", id, gens[id], getByID(t, s, id).Generation)
		}
	}
}

func testUpdateMachineReport(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm"))
	want := getByID(t, s, "m1")

	at := t0.Add(time.Hour)
	ok(t, s.UpdateMachineReport(ctx, "m1", store.MachineReport{AgentVersion: "1.1.0", At: at}), "report agent version")
	want.AgentVersion, want.UpdatedAt = "1.1.0", at
	diff(t, getByID(t, s, "m1"), want, "after reporting only the version")

	at = at.Add(time.Minute)
	r := store.MachineReport{Environment: wire.EnvGCP, OSName: "debian", Properties: []byte(`{"hostname":"new"}`), AppliedGeneration: 1, At: at}
	ok(t, s.UpdateMachineReport(ctx, "m1", r), "report inventory")
	want.Environment, want.OSName, want.Properties, want.AppliedGeneration, want.UpdatedAt = wire.EnvGCP, "debian", r.Properties, 1, at
	diff(t, getByID(t, s, "m1"), want, "after reporting inventory (AgentConfig nil: unchanged)")

	at = at.Add(time.Minute)
	ok(t, s.UpdateMachineReport(ctx, "m1", store.MachineReport{AgentConfig: []byte(`{"locked":true}`), At: at}), "report config")
	want.AgentConfig, want.UpdatedAt = []byte(`{"locked":true}`), at
	diff(t, getByID(t, s, "m1"), want, "after reporting configuration")

	// Its agent's requests read it without the inventory, nothing else
	// left out.
	// Several at once, a missing one left out, an id twice read once.
	forAgent, err := s.GetMachinesForAgent(ctx, []string{"m1"})
	ok(t, err, "machine for its agent")
	want.Properties, want.AgentConfig = nil, nil
	diff(t, forAgent, []store.Machine{want}, "the machine for its agent")
	lean, err := s.ListMachines(ctx, store.MachineFilter{Subscription: "s1", WithoutInventory: true})
	ok(t, err, "list without inventory")
	diff(t, lean, []store.Machine{want}, "machines listed without inventory")
	forAgent, err = s.GetMachinesForAgent(ctx, []string{"missing", "m1", "m1"})
	ok(t, err, "machines for their agents")
	diff(t, forAgent, []store.Machine{want}, "a missing machine and one asked twice for their agents")

	isErr(t, s.UpdateMachineReport(ctx, "missing", store.MachineReport{AgentVersion: "1", At: at}), store.ErrNotFound, "report for a missing machine")
}

func testRecordAppliedGenerations(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"), machine("m3", "s1/rg/vm3"))
	m1, m2, m3 := getByID(t, s, "m1"), getByID(t, s, "m2"), getByID(t, s, "m3")
	at := t0.Add(time.Hour)
	found, err := s.RecordAppliedGenerations(ctx, []store.AppliedGeneration{
		{MachineID: "m2", Generation: 4, At: at},
		{MachineID: "missing", Generation: 2, At: at},
		{MachineID: "m1", Generation: 7, AgentVersion: "1.2.0", At: at},
		{MachineID: "m2", Generation: 5, At: at.Add(time.Second)}, // the later of two holds
	})
	ok(t, err, "record applied generations")
	diff(t, found, []bool{true, false, true, true}, "machines found")
	m1.AppliedGeneration, m1.AgentVersion, m1.UpdatedAt = 7, "1.2.0", at
	m2.AppliedGeneration, m2.UpdatedAt = 5, at.Add(time.Second)
	diff(t, getByID(t, s, "m1"), m1, "m1 after its report")
	diff(t, getByID(t, s, "m2"), m2, "m2 after its reports (agent version unchanged)")
	diff(t, getByID(t, s, "m3"), m3, "m3, which did not report")

	// Generation 0 leaves the applied generation as it was.
	_, err = s.RecordAppliedGenerations(ctx, []store.AppliedGeneration{{MachineID: "m1", AgentVersion: "1.3.0", At: at}})
	ok(t, err, "report without a generation")
	m1.AgentVersion = "1.3.0"
	diff(t, getByID(t, s, "m1"), m1, "m1 after a report without a generation")
	found, err = s.RecordAppliedGenerations(ctx, nil)
	if err != nil || len(found) != 0 {
		t.Errorf("no reports: %v %v", found, err)
	}
}

func testUpdateMachineCert(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm"))
	want := getByID(t, s, "m1")

	notAfter, at := t0.Add(180*24*time.Hour), t0.Add(time.Hour)
	ok(t, s.UpdateMachineCert(ctx, "m1", "98765432109876543210", notAfter, at), "renew certificate")
	want.CertSerial, want.CertNotAfter, want.UpdatedAt = "98765432109876543210", notAfter, at
	diff(t, getByID(t, s, "m1"), want, "after renewal")
	isErr(t, s.UpdateMachineCert(ctx, "missing", "1", notAfter, at), store.ErrNotFound, "renew a missing machine")
}

func testRecordHeartbeats(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	mk := func(id, status string) store.Machine {
		m := machine(id, "s1/rg/"+id)
		m.Status = status
		return m
	}
	createMachines(t, s, mk("a", wire.StatusConnected), mk("b", wire.StatusDisconnected), mk("c", wire.StatusExpired), mk("d", wire.StatusConnected))
	before := map[string]store.Machine{}
	for _, id := range []string{"a", "b", "c", "d"} {
		before[id] = getByID(t, s, id)
	}

	ok(t, s.RecordHeartbeats(ctx, nil), "empty batch")
	ok(t, s.RecordHeartbeats(ctx, []store.Heartbeat{{MachineID: "nope", At: t0}}), "batch of unknown ids")
	ok(t, s.RecordHeartbeats(ctx, []store.Heartbeat{
		{MachineID: "a", At: t0.Add(time.Minute), AgentVersion: "1.1.0"},
		{MachineID: "b", At: t0.Add(2 * time.Minute)},
		{MachineID: "c", At: t0.Add(3 * time.Minute), AgentVersion: "1.2.0"},
		{MachineID: "unknown", At: t0.Add(time.Minute)},
	}), "record heartbeats")

	want := before["a"]
	want.LastHeartbeat, want.AgentVersion = t0.Add(time.Minute), "1.1.0"
	diff(t, getByID(t, s, "a"), want, "connected machine: heartbeat and version, UpdatedAt untouched")

	want = before["b"]
	want.Status, want.LastHeartbeat = wire.StatusConnected, t0.Add(2*time.Minute)
	diff(t, getByID(t, s, "b"), want, "disconnected machine reconnects; empty version leaves it")

	if got := getByID(t, s, "c"); got.Status != wire.StatusExpired {
		t.Errorf("expired machine has status %s after a heartbeat, want Expired", got.Status)
	}
	diff(t, getByID(t, s, "d"), before["d"], "machine without a heartbeat is untouched")

	ok(t, s.RecordHeartbeats(ctx, []store.Heartbeat{
		{MachineID: "a", At: t0.Add(5 * time.Minute)},
		{MachineID: "a", At: t0.Add(4 * time.Minute), AgentVersion: "1.3.0"},
	}), "one machine twice in a batch")
	if got := getByID(t, s, "a"); !got.LastHeartbeat.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("LastHeartbeat = %v, want the batch's latest %v", got.LastHeartbeat, t0.Add(5*time.Minute))
	}
	ok(t, s.RecordHeartbeats(ctx, []store.Heartbeat{{MachineID: "a", At: t0}}), "late batch")
	if got := getByID(t, s, "a"); !got.LastHeartbeat.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("a late heartbeat moved LastHeartbeat back to %v", got.LastHeartbeat)
	}
}

// testRecordHeartbeatsLargeBatch spans several statements of one batch.
func testRecordHeartbeatsLargeBatch(t *testing.T, s store.Store) {
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("aaa-first", "s1/rg/first"), machine("zzz-last", "s1/rg/last"))
	var hs []store.Heartbeat
	hs = append(hs, store.Heartbeat{MachineID: "aaa-first", At: t0.Add(time.Hour)})
	for i := range 2500 {
		hs = append(hs, store.Heartbeat{MachineID: fmt.Sprintf("mmm-%05d", i), At: t0.Add(time.Hour)})
	}
	hs = append(hs, store.Heartbeat{MachineID: "zzz-last", At: t0.Add(time.Hour)})
	ok(t, s.RecordHeartbeats(t.Context(), hs), "record a large batch")
	for _, id := range []string{"aaa-first", "zzz-last"} {
		if got := getByID(t, s, id); !got.LastHeartbeat.Equal(t0.Add(time.Hour)) {
			t.Errorf("%s: LastHeartbeat = %v, want %v", id, got.LastHeartbeat, t0.Add(time.Hour))
		}
	}
}

func testMarkStale(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	now := t0.Add(50 * 24 * time.Hour)
	disconnectedBefore, expiredBefore := now.Add(-5*time.Minute), now.Add(-45*24*time.Hour)
	mk := func(id, status string, hb time.Time) store.Machine {
		m := machine(id, "s1/rg/"+id)
		m.Status, m.LastHeartbeat = status, hb
		return m
	}
	createMachines(t, s,
		mk("fresh", wire.StatusConnected, now.Add(-time.Minute)),
		mk("edge", wire.StatusConnected, disconnectedBefore),
		mk("late", wire.StatusConnected, now.Add(-10*time.Minute)),
		mk("disc", wire.StatusDisconnected, now.Add(-10*time.Minute)),
		mk("old", wire.StatusConnected, now.Add(-46*24*time.Hour)),
		mk("olddisc", wire.StatusDisconnected, now.Add(-46*24*time.Hour)),
		mk("expedge", wire.StatusDisconnected, expiredBefore),
		mk("exp", wire.StatusExpired, now.Add(-100*24*time.Hour)),
	)
	ids, err := s.MarkStale(ctx, disconnectedBefore, expiredBefore)
	ok(t, err, "mark stale")
	diff(t, sorted(ids), []string{"late", "old", "olddisc"}, "changed ids")
	for id, want := range map[string]string{
		"fresh": wire.StatusConnected, "edge": wire.StatusConnected, "late": wire.StatusDisconnected,
		"disc": wire.StatusDisconnected, "old": wire.StatusExpired, "olddisc": wire.StatusExpired,
		"expedge": wire.StatusDisconnected, "exp": wire.StatusExpired,
	} {
		if got := getByID(t, s, id).Status; got != want {
			t.Errorf("%s: status %s, want %s", id, got, want)
		}
	}
	ids, err = s.MarkStale(ctx, disconnectedBefore, expiredBefore)
	ok(t, err, "mark stale again")
	diff(t, ids, []string{}, "second sweep changes nothing")
}

// Reads inside a Snapshot see the store as it was at the snapshot's first
// read: a change committed meanwhile shows only after it ends; a Snapshot
// inside another reads the outer one; an error from fn is returned.
func testSnapshot(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"))
	var inside, nested, after store.Machine
	err := s.Snapshot(ctx, func(ctx context.Context) error {
		var err error
		if inside, err = s.GetMachineByID(ctx, "m1"); err != nil {
			return err
		}
		// Committed by another writer while the snapshot is open.
		if _, err := s.UpdateMachineTags(t.Context(), "m1", map[string]string{"env": "dev"}, t0.Add(time.Minute)); err != nil {
			return err
		}
		if after, err = s.GetMachineByID(ctx, "m1"); err != nil {
			return err
		}
		return s.Snapshot(ctx, func(ctx context.Context) error {
			nested, err = s.GetMachineByID(ctx, "m1")
			return err
		})
	})
	ok(t, err, "snapshot")
	for what, m := range map[string]store.Machine{"first read": inside, "read after the change": after, "nested snapshot": nested} {
		if m.Tags["env"] != "prod" {
			t.Errorf("%s inside the snapshot saw tags %v, want the snapshot's", what, m.Tags)
		}
	}
	if m := getByID(t, s, "m1"); m.Tags["env"] != "dev" {
		t.Errorf("after the snapshot: tags %v, want the change", m.Tags)
	}
	boom := errors.New("boom")
	if err := s.Snapshot(ctx, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("snapshot returned %v, want fn's error", err)
	}
}

// Transactions that change many machines at once (heartbeat batches,
// generation bumps of bulk operations, the status sweep) run side by side
// on overlapping machines without failing: on an engine with row locks they
// must take them in one order, or two wait on each other and one is
// aborted (a deadlock, seen on PostgreSQL as a bulk operation's 500).
func testConcurrentMachineWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	// Created in an order unlike the ids' so that the table's physical
	// order is not theirs.
	const n = 300
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("m-%04d", (i*7919)%n)
		createMachines(t, s, machine(ids[i], fmt.Sprintf("s1/rg/vm%d", i)))
	}
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for round := range 15 {
				pick := make([]string, 0, n/2)
				for _, id := range ids {
					if rng.IntN(2) == 0 {
						pick = append(pick, id)
					}
				}
				at := t0.Add(time.Duration(round) * time.Second)
				var err error
				switch (w + round) % 3 {
				case 0:
					hs := make([]store.Heartbeat, len(pick))
					for i, id := range pick {
						hs[i] = store.Heartbeat{MachineID: id, At: at}
					}
					err = s.RecordHeartbeats(ctx, hs)
				case 1:
					_, err = s.BumpGenerations(ctx, pick, at)
				default:
					// Marks Disconnected what the heartbeats have not touched lately.
					_, err = s.MarkStale(ctx, t0.Add(time.Duration(rng.IntN(15))*time.Second), t0.Add(-time.Hour))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
