package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// byMachine groups rows by their machine, keeping their order.
func byMachine[T any](rows []T, machineID func(T) string) map[string][]T {
	out := map[string][]T{}
	for _, r := range rows {
		out[machineID(r)] = append(out[machineID(r)], r)
	}
	return out
}

// The reads of several machines at once (desired states assembled in
// batches) answer what the reads of one machine answer, each machine's
// rows together and in the same order, at most perMachine of each.
func testReadsOfMachines(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"), machine("m3", "s1/rg/vm3"))
	// Far more ids than one statement takes (chunks), most of them no
	// machine's.
	many := []string{"m3"}
	for i := range 1200 {
		many = append(many, fmt.Sprintf("gone-%04d", i))
	}
	many = append(many, "m1", "m2")

	_, err := s.AddMachineExtensions(ctx, []store.MachineExtension{extension("m1", "b"), extension("m3", "c")})
	ok(t, err, "add extensions")
	second := extension("m1", "A")
	second.Type = "Other"
	_, err = s.AddMachineExtensions(ctx, []store.MachineExtension{second})
	ok(t, err, "add a second extension to m1")
	es, err := s.ListMachineExtensionsOf(ctx, many)
	ok(t, err, "extensions of the machines")
	want := map[string][]store.MachineExtension{}
	for _, id := range []string{"m1", "m3"} {
		want[id], err = s.ListMachineExtensions(ctx, id)
		ok(t, err, "extensions of %s", id)
	}
	if len(es) != 3 || len(want["m1"]) != 2 {
		t.Fatalf("listed %d extensions, want 3 (2 of m1)", len(es))
	}
	diff(t, byMachine(es, func(e store.MachineExtension) string { return e.MachineID }), want, "extensions of several machines (by name)")

	for i, id := range []string{"01", "02", "03"} {
		_, err := s.CreateRunCommand(ctx, runCommand("m1", fmt.Sprint("r", i), id))
		ok(t, err, "run %s", id)
	}
	_, err = s.CreateRunCommand(ctx, runCommand("m2", "other", "04"))
	ok(t, err, "run of m2")
	exit := 0
	_, err = s.UpdateRunCommand(ctx, "m1", "r1", store.RunCommandUpdate{State: wire.RunSucceeded, ExitCode: &exit, At: t0})
	ok(t, err, "finish r1")
	ids := func(n int) map[string][]string {
		rcs, err := s.ListUnfinishedRunCommandsOf(ctx, many, n)
		ok(t, err, "unfinished runs, %d per machine", n)
		out := map[string][]string{}
		for _, rc := range rcs {
			out[rc.MachineID] = append(out[rc.MachineID], rc.ID)
		}
		return out
	}
	diff(t, ids(10), map[string][]string{"m1": {"03", "01"}, "m2": {"04"}}, "unfinished runs (the finished one left out, newest first)")
	diff(t, ids(1), map[string][]string{"m1": {"03"}, "m2": {"04"}}, "unfinished runs, one per machine")
	one, err := s.ListRunCommands(ctx, store.RunCommandFilter{MachineID: "m1", Unfinished: true})
	ok(t, err, "unfinished runs of m1")
	all, err := s.ListUnfinishedRunCommandsOf(ctx, []string{"m1"}, 10)
	ok(t, err, "unfinished runs of m1 alone")
	diff(t, all, one, "the same runs as the list of one machine")

	for _, id := range []string{"01", "02", "03"} {
		_, err := s.CreateScan(ctx, protectionScan("m1", id))
		ok(t, err, "scan %s", id)
	}
	_, err = s.UpdateScan(ctx, "m1", "03", store.ScanUpdate{State: wire.ScanSucceeded, FinishedAt: t0.Add(time.Minute), At: t0.Add(time.Minute)})
	ok(t, err, "finish scan 03")
	scans, err := s.ListUnfinishedScansOf(ctx, many, 1)
	ok(t, err, "unfinished scans")
	if len(scans) != 1 || scans[0].ID != "02" || scans[0].MachineID != "m1" {
		t.Errorf("unfinished scans, one per machine: %+v, want m1's 02", scans)
	}
	oneScans, err := s.ListScans(ctx, store.ScanFilter{MachineID: "m1", Unfinished: true})
	ok(t, err, "unfinished scans of m1")
	allScans, err := s.ListUnfinishedScansOf(ctx, many, 100)
	ok(t, err, "unfinished scans, 100 per machine")
	diff(t, allScans, oneScans, "the same scans as the list of one machine")

	for _, id := range []string{"01", "02"} {
		_, err := s.CreateRestore(ctx, store.ProtectionRestore{ID: id, MachineID: "m2", QuarantineID: "q" + id, State: wire.ScanPending, CreatedAt: t0})
		ok(t, err, "restore %s", id)
	}
	rs, err := s.ListUnfinishedRestoresOf(ctx, many, 1)
	ok(t, err, "unfinished restores")
	oneRestores, err := s.ListRestores(ctx, "m2", true, store.Page{Limit: 1})
	ok(t, err, "newest unfinished restore of m2")
	diff(t, rs, oneRestores, "unfinished restores, one per machine")

	enrolled, err := s.MachinesEnrolledForUpdates(ctx, many)
	ok(t, err, "enrolled before any assessment")
	diff(t, enrolled, []string{}, "machines enrolled before any assessment")
	_, err = s.CreateUpdateAssessments(ctx, []store.UpdateAssessment{assessmentRequest("a01", "m2", "b1")}, t0)
	ok(t, err, "assess m2")
	enrolled, err = s.MachinesEnrolledForUpdates(ctx, many)
	ok(t, err, "enrolled")
	diff(t, enrolled, []string{"m2"}, "machines enrolled for updates")
}
