package sqlite_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

const benchMachines = 10_000

// seedBench creates benchMachines machines over 10 resource groups; every
// tenth machine is on GCP, every seventh has tag tier=db.
func seedBench(b *testing.B) store.Store {
	b.Helper()
	st := openTemp(b)
	ctx := b.Context()
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	if err := st.CreateSubscription(ctx, store.Subscription{Name: "bench", CreatedAt: t0}); err != nil {
		b.Fatal(err)
	}
	for g := range 10 {
		if err := st.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "bench", Name: fmt.Sprintf("rg-%d", g), CreatedAt: t0}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range benchMachines {
		env, tags := wire.EnvAWS, map[string]string{"env": "prod"}
		if i%10 == 0 {
			env = wire.EnvGCP
		}
		if i%7 == 0 {
			tags["tier"] = "db"
		}
		m := store.Machine{ID: benchID(i), Subscription: "bench", ResourceGroup: fmt.Sprintf("rg-%d", i%10),
			Name: fmt.Sprintf("vm-%05d", i), Tags: tags, Status: wire.StatusConnected, LastHeartbeat: t0,
			AgentVersion: "1.0.0", Environment: env, OSName: "ubuntu", Properties: []byte(`{"cpus":4}`),
			Generation: 1, CreatedAt: t0, UpdatedAt: t0}
		if err := st.CreateMachine(ctx, m, false); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

func benchID(i int) string { return fmt.Sprintf("0b6c4b44-0000-4000-8000-%012d", i) }

// BenchmarkRecordHeartbeats: one op is one batch of 1000 heartbeats, the
// batcher's flush size, spread over 10k machines.
func BenchmarkRecordHeartbeats(b *testing.B) {
	st := seedBench(b)
	ctx := b.Context()
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	batch := make([]store.Heartbeat, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = store.Heartbeat{MachineID: benchID((n*1000 + i*7) % benchMachines), At: t0.Add(time.Duration(n) * time.Second)}
		}
		if err := st.RecordHeartbeats(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/heartbeat")
}

// BenchmarkListMachines: one op is one filtered page of 100 machines
// (environment + tag) over 10k machines.
func BenchmarkListMachines(b *testing.B) {
	st := seedBench(b)
	ctx := b.Context()
	for _, tc := range []struct {
		name string
		f    store.MachineFilter
	}{
		{"Page", store.MachineFilter{Subscription: "bench"}},
		{"EnvironmentAndTag", store.MachineFilter{Subscription: "bench", Environment: wire.EnvAWS, TagKey: "tier", TagValue: "db"}},
		{"NameContains", store.MachineFilter{Subscription: "bench", ResourceGroup: "rg-3", NameContains: "vm-09"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ms, err := st.ListMachines(ctx, tc.f)
				if err != nil {
					b.Fatal(err)
				}
				if len(ms) == 0 {
					b.Fatal("no machines matched")
				}
			}
		})
	}
}

// BenchmarkMachinesForAgent: the machine lookups of agents' requests over
// 10k machines, one per query (an agent asking alone) and 64 per query (the
// most inventory reads together when agents ask at once); ns/machine is
// what one request's authentication costs the store.
func BenchmarkMachinesForAgent(b *testing.B) {
	st := seedBench(b)
	ctx := b.Context()
	for _, per := range []int{1, 64} {
		b.Run(fmt.Sprint(per, "PerQuery"), func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			ids := make([]string, per)
			for b.Loop() {
				for i := range ids {
					ids[i] = benchID(n * 7919 % benchMachines)
					n++
				}
				ms, err := st.GetMachinesForAgent(ctx, ids)
				if err != nil || len(ms) != per {
					b.Fatalf("%d machines, %v", len(ms), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/machine")
		})
	}
}

// BenchmarkExtensionReports: agents' Succeeded reports on an extension of
// each of 10k machines, each with its outcome entry, applied one per call
// (an agent reporting alone) and 64 per call (the most the server applies
// together when agents report at once); ns/report is what one report costs
// the store's one writer.
func BenchmarkExtensionReports(b *testing.B) {
	st := seedBench(b)
	ctx := b.Context()
	es := make([]store.MachineExtension, benchMachines)
	for i := range es {
		es[i] = store.MachineExtension{MachineID: benchID(i), Name: "runcommand", Publisher: "Corral", Type: "RunCommand",
			Version: "1.0.0", State: wire.ExtCreating, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	}
	gens, err := st.AddMachineExtensions(ctx, es)
	if err != nil || len(gens) != benchMachines {
		b.Fatalf("%d extensions added, %v", len(gens), err)
	}
	var entries atomic.Int64
	outcome := func(before store.MachineExtension) (store.ActivityEntry, bool) {
		return store.ActivityEntry{ID: fmt.Sprintf("01KBENCH%018d", entries.Add(1)), Time: time.Now(), CallerID: "usr-1", Caller: "Alice",
			CallerType: "User", Action: "Corral.HybridCompute/machines/extensions/write",
			Scope: "/subscriptions/bench/resourceGroups/rg-1/machines/vm-1/extensions/" + before.Name, Result: wire.ResultSucceeded,
			Message: "install Corral/RunCommand on vm-1: Succeeded"}, true
	}
	// 64 agents reporting at once, each on its own: their transactions
	// share commits (group commit), not statements.
	b.Run("64CallsAtOnce", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			var wg sync.WaitGroup
			for range 64 {
				id := benchID(n * 7919 % benchMachines)
				n++
				wg.Go(func() {
					_, err := st.ReportMachineExtensions(ctx, []store.ExtensionReportOn{{MachineID: id, Name: "runcommand", SeqNo: gens[id],
						ExtensionReport: store.ExtensionReport{Version: "1.0.0", State: wire.ExtSucceeded, Message: "ok", At: time.Now(), Outcome: outcome}}})
					if err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/report")
	})
	for _, per := range []int{1, 64} {
		b.Run(fmt.Sprint(per, "PerCall"), func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			reports := make([]store.ExtensionReportOn, per)
			for b.Loop() {
				for i := range reports {
					id := benchID(n * 7919 % benchMachines)
					reports[i] = store.ExtensionReportOn{MachineID: id, Name: "runcommand", SeqNo: gens[id],
						ExtensionReport: store.ExtensionReport{Version: "1.0.0", State: wire.ExtSucceeded, Message: "ok", At: time.Now(), Outcome: outcome}}
					n++
				}
				applied, err := st.ReportMachineExtensions(ctx, reports)
				if err != nil || len(applied) != per || !applied[0] {
					b.Fatalf("%v, %v", applied, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/report")
		})
	}
}

// BenchmarkSealActivity: one op seals 2,000 new entries into the chain
// (the activity service's sealing batch), as after a fleet-wide change;
// ns/entry is what sealing one costs the store's one writer.
func BenchmarkSealActivity(b *testing.B) {
	st := openTemp(b)
	ctx := b.Context()
	const batch = 2000
	hash := func(prev string, seq int64, e store.ActivityEntry) string {
		return fmt.Sprintf("%s-%d-%s", prev[:min(len(prev), 8)], seq, e.ID)
	}
	n := 0
	entries := make([]store.ActivityEntry, batch)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i := range entries {
			n++
			entries[i] = store.ActivityEntry{ID: fmt.Sprintf("01KSEAL%019d", n), Time: time.Now(), CallerID: "usr-1", Caller: "Alice",
				CallerType: "User", Action: "Corral.HybridCompute/machines/extensions/write", Scope: "/subscriptions/bench/resourceGroups/rg-1/machines/vm-1",
				Result: wire.ResultSucceeded, Message: "install Corral/RunCommand on vm-1: Succeeded"}
		}
		if err := st.AppendActivity(ctx, entries...); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		sealed, err := st.SealActivity(ctx, batch, hash)
		if err != nil || sealed != batch {
			b.Fatalf("sealed %d, %v", sealed, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/entry")
}
