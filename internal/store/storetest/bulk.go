package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func bulkOp(id, kind, name string) store.BulkOperation {
	return store.BulkOperation{ID: id, Subscription: "s1", Scope: "/subscriptions/s1", Tag: "env=prod", Kind: kind, Name: name,
		Publisher: "Contoso", Type: "Agent", Version: "1.0.0", Machines: 3, CreatedAt: t0, CreatedBy: "alice"}
}

func scanBulk(t *testing.T, s store.Store, opID string) map[string]store.BulkMachineResult {
	t.Helper()
	out := map[string]store.BulkMachineResult{}
	last := ""
	err := s.ScanBulkMachines(t.Context(), opID, "", func(r store.BulkMachineResult) bool {
		if r.MachineID <= last {
			t.Errorf("machines out of order: %s after %s", r.MachineID, last)
		}
		last = r.MachineID
		out[r.MachineID] = r
		return true
	})
	ok(t, err, "scan %s", opID)
	return out
}

func testBulkOperations(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg", "s2/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"), machine("m3", "s1/rg/vm3"))

	op := bulkOp("op1", wire.BulkExtensionSet, "agent")
	ok(t, s.CreateBulkOperation(ctx, op), "create")
	isErr(t, s.CreateBulkOperation(ctx, op), store.ErrConflict, "same id again")
	got, err := s.GetBulkOperation(ctx, "S1", "op1")
	ok(t, err, "get")
	diff(t, got, op, "operation")
	_, err = s.GetBulkOperation(ctx, "s2", "op1")
	isErr(t, err, store.ErrNotFound, "another subscription's")
	ok(t, s.CreateBulkOperation(ctx, bulkOp("op2", wire.BulkExtensionDelete, "agent")), "create op2")
	ops, err := s.ListBulkOperations(ctx, "s1", store.Page{Limit: 1})
	ok(t, err, "list")
	if len(ops) != 1 || ops[0].ID != "op2" {
		t.Errorf("first page %+v, want op2 (newest first)", ops)
	}
	ops, err = s.ListBulkOperations(ctx, "s1", store.Page{After: "op2"})
	ok(t, err, "list after")
	if len(ops) != 1 || ops[0].ID != "op1" {
		t.Errorf("second page %+v, want op1", ops)
	}

	// m1 has the extension (reported on), m2 has another under the name.
	cur := extension("m1", "Agent")
	_, err = s.PutMachineExtension(ctx, cur, 0)
	ok(t, err, "m1's")
	_, err = reportExtension(ctx, s, "m1", "agent", 1, false, store.ExtensionReport{Version: "1.0.0", State: wire.ExtSucceeded, At: t0})
	ok(t, err, "m1 reports")
	other := extension("m2", "agent")
	other.Publisher = "Fabrikam"
	_, err = s.PutMachineExtension(ctx, other, 0)
	ok(t, err, "m2's")

	targets, err := s.BulkTargets(ctx, []string{"m1", "m2", "m3", "gone"}, "AGENT")
	ok(t, err, "targets")
	if len(targets) != 3 || !targets["m1"].HasExtension || targets["m1"].Extension.SeqNo != 1 || targets["m3"].HasExtension ||
		targets["m2"].Extensions != 1 || targets["m3"].Extensions != 0 {
		t.Fatalf("targets %+v", targets)
	}
	gen1, gen3 := getByID(t, s, "m1").Generation, getByID(t, s, "m3").Generation
	upd := extension("m1", "agent")
	upd.Version, upd.SeqNo, upd.State, upd.Origin = "1.1.0", 2, wire.ExtUpdating, []byte(`{"caller":"bob"}`)
	ins := extension("m3", "agent")
	ins.SeqNo = 0
	stale := extension("gone", "agent")
	res, err := s.BulkSetExtensions(ctx, "op1", []store.BulkExtensionPut{{Extension: upd, ExpectSeqNo: 1}, {Extension: ins},
		{Extension: stale}}, []store.BulkMachine{{MachineID: "m2", State: wire.BulkFailed, Message: "taken"}}, t0)
	ok(t, err, "bulk set")
	diff(t, res.Generations, map[string]int64{"m1": gen1 + 1, "m3": gen3 + 1}, "generations")
	if len(res.Conflicts) != 0 {
		t.Errorf("conflicts %v", res.Conflicts)
	}
	if e := getExtension(t, s, "m1", "agent"); e.Version != "1.1.0" || e.SeqNo != 2 || !e.AgentReported || e.ReportedVersion != "1.0.0" ||
		string(e.Origin) != `{"caller":"bob"}` {
		t.Errorf("m1's extension after the bulk set: %+v", e)
	}
	if e := getExtension(t, s, "m3", "agent"); e.SeqNo != gen3+1 || e.State != wire.ExtCreating {
		t.Errorf("m3's new extension: seqNo %d (generation %d), %+v", e.SeqNo, gen3+1, e)
	}
	// A replace at a stale seqNo and an insert of a taken name conflict.
	ok(t, s.CreateBulkOperation(ctx, bulkOp("op3", wire.BulkExtensionSet, "agent")), "create op3")
	res, err = s.BulkSetExtensions(ctx, "op3", []store.BulkExtensionPut{{Extension: upd, ExpectSeqNo: 1}, {Extension: ins}}, nil, t0)
	ok(t, err, "stale bulk set")
	diff(t, res.Conflicts, []string{"m1", "m3"}, "conflicts")
	diff(t, res.Generations, map[string]int64{}, "nothing changed")
	if got := scanBulk(t, s, "op3"); len(got) != 0 {
		t.Errorf("machines recorded for conflicts: %+v", got)
	}

	_, err = reportExtension(ctx, s, "m3", "agent", gen3+1, false, store.ExtensionReport{State: wire.ExtFailed, Message: "refused", At: t0})
	ok(t, err, "m3 reports")
	rs := scanBulk(t, s, "op1")
	if len(rs) != 3 {
		t.Fatalf("op1 machines %+v", rs)
	}
	if r := rs["m1"]; !r.MachineFound || r.MachineName != "vm1" || r.ResourceGroup != "rg" || r.Subscription != "s1" || r.SeqNo != 2 ||
		!r.ExtensionFound || r.ExtSeqNo != 2 || r.ExtState != wire.ExtUpdating || r.State != "" {
		t.Errorf("m1's result %+v", r)
	}
	if r := rs["m2"]; r.State != wire.BulkFailed || r.Message != "taken" {
		t.Errorf("m2's fixed result %+v", r)
	}
	if r := rs["m3"]; r.ExtState != wire.ExtFailed || r.ExtMessage != "refused" || r.SeqNo != gen3+1 {
		t.Errorf("m3's result %+v", r)
	}
	n := 0
	ok(t, s.ScanBulkMachines(ctx, "op1", "m1", func(store.BulkMachineResult) bool { n++; return false }), "scan after m1, stop")
	if n != 1 {
		t.Errorf("scan went on after fn returned false: %d calls", n)
	}

	// Delete: m1 reported (marked Deleting), m3 reported too, m2 has
	// another extension under the name (marked as well: a delete goes by
	// name), a machine without it is Succeeded at once.
	createMachines(t, s, machine("m4", "s1/rg/vm4"))
	fresh := extension("m4", "other")
	_, err = s.PutMachineExtension(ctx, fresh, 0)
	ok(t, err, "m4's other")
	ok(t, s.CreateBulkOperation(ctx, bulkOp("op4", wire.BulkExtensionDelete, "agent")), "create op4")
	_, err = s.PutMachineExtension(ctx, extension("m2", "never"), 0)
	ok(t, err, "m2's never-reported")
	res, err = s.BulkDeleteExtensions(ctx, "op4", "agent", []string{"m1", "m4", "gone"}, nil, "bob", []byte(`{"caller":"bob"}`), t0)
	ok(t, err, "bulk delete")
	if len(res.Generations) != 2 {
		t.Errorf("delete generations %v", res.Generations)
	}
	rs = scanBulk(t, s, "op4")
	if r := rs["m1"]; r.State != "" || !r.ExtDeleting || r.ExtDeleteGen != res.Generations["m1"] || r.SeqNo != res.Generations["m1"] {
		t.Errorf("m1 after the delete %+v", r)
	}
	if r := rs["m4"]; r.State != wire.ExtSucceeded || r.Message != store.BulkNotPresentMessage {
		t.Errorf("m4 after the delete %+v", r)
	}
	ok(t, s.CreateBulkOperation(ctx, bulkOp("op5", wire.BulkExtensionDelete, "never")), "create op5")
	_, err = s.BulkDeleteExtensions(ctx, "op5", "NEVER", []string{"m2"}, nil, "bob", nil, t0)
	ok(t, err, "bulk delete never-reported")
	if r := scanBulk(t, s, "op5")["m2"]; r.State != wire.ExtSucceeded || r.Message != store.BulkDroppedMessage || r.ExtensionFound {
		t.Errorf("m2 after the delete of an unreported extension %+v", r)
	}
	if _, err := s.GetMachineExtension(ctx, "m2", "never"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the unreported extension is still there: %v", err)
	}

	// Runs: a taken name conflicts; too many machines refused.
	ok(t, s.CreateBulkOperation(ctx, bulkOp("op6", wire.BulkRunCommand, "hello")), "create op6")
	_, err = s.CreateRunCommand(ctx, runCommand("m2", "Hello", "r0"))
	ok(t, err, "m2's own run")
	targets, err = s.BulkTargets(ctx, []string{"m1", "m2"}, "hello")
	ok(t, err, "run targets")
	if targets["m1"].HasRun || !targets["m2"].HasRun || targets["m2"].UnfinishedRuns != 1 {
		t.Errorf("run targets %+v", targets)
	}
	res, err = s.BulkCreateRunCommands(ctx, "op6", []store.RunCommand{runCommand("m1", "hello", "r1"), runCommand("m2", "hello", "r2")},
		[]store.BulkMachine{{MachineID: "m3", State: wire.BulkFailed, Message: "busy"}}, t0)
	ok(t, err, "bulk runs")
	diff(t, res.Conflicts, []string{"m2"}, "run conflicts")
	if _, ok := res.Generations["m1"]; !ok || len(res.Generations) != 1 {
		t.Errorf("run generations %v", res.Generations)
	}
	code := 3
	_, err = s.UpdateRunCommand(ctx, "m1", "hello", store.RunCommandUpdate{State: wire.RunFailed, ExitCode: &code, Message: "exit 3", At: t0})
	ok(t, err, "m1 reports the run")
	rs = scanBulk(t, s, "op6")
	if r := rs["m1"]; !r.RunFound || r.RunState != wire.RunFailed || r.RunExitCode == nil || *r.RunExitCode != 3 || r.ExtensionFound {
		t.Errorf("m1's run result %+v", r)
	}
	if r := rs["m3"]; r.State != wire.BulkFailed || r.RunFound {
		t.Errorf("m3's run result %+v", r)
	}

	// The history outlives a deleted machine.
	ok(t, s.DeleteMachine(ctx, "m1"), "delete vm1")
	if r := scanBulk(t, s, "op6")["m1"]; r.MachineFound || r.RunFound {
		t.Errorf("a deleted machine's result %+v", r)
	}
}

// testBulkLargeChunk writes a full chunk in one call on both backends (the
// statement and parameter counts of the largest transaction).
func testBulkLargeChunk(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	var ms []store.Machine
	var puts []store.BulkExtensionPut
	ids := make([]string, 0, store.BulkChunk)
	for i := range store.BulkChunk {
		id := fmt.Sprintf("m%04d", i)
		m := machine(id, fmt.Sprintf("s1/rg/vm%04d", i))
		ms = append(ms, m)
		ids = append(ids, id)
		e := extension(id, "agent")
		e.SeqNo = 0
		puts = append(puts, store.BulkExtensionPut{Extension: e})
	}
	createMachines(t, s, ms...)
	ok(t, s.CreateBulkOperation(ctx, bulkOp("big", wire.BulkExtensionSet, "agent")), "create")
	targets, err := s.BulkTargets(ctx, ids, "agent")
	ok(t, err, "targets")
	if len(targets) != store.BulkChunk {
		t.Fatalf("%d targets", len(targets))
	}
	res, err := s.BulkSetExtensions(ctx, "big", puts, nil, t0)
	ok(t, err, "bulk set")
	if len(res.Generations) != store.BulkChunk {
		t.Errorf("%d machines changed, want %d", len(res.Generations), store.BulkChunk)
	}
	if n := len(scanBulk(t, s, "big")); n != store.BulkChunk {
		t.Errorf("%d machines recorded", n)
	}
	_, err = s.BulkSetExtensions(ctx, "big", append(puts, puts[0]), nil, t0)
	if err == nil {
		t.Error("a chunk larger than BulkChunk was taken")
	}
}
