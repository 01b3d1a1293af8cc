package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func assessmentRequest(id, machineID, batch string) store.UpdateAssessment {
	return store.UpdateAssessment{ID: id, MachineID: machineID, BatchID: batch, Trigger: wire.TriggerOnDemand,
		State: wire.AssessmentPending, Origin: []byte(`{"caller":"alice"}`), RequestedAt: t0, RequestedBy: "alice"}
}

func updateStatus(t *testing.T, s store.Store, machineID string) store.MachineUpdateStatus {
	t.Helper()
	st, err := s.GetMachineUpdateStatus(t.Context(), machineID)
	ok(t, err, "update status of %s", machineID)
	return st
}

func testUpdateAssessments(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"), machine("m3", "s1/rg/vm3"))

	_, err := s.GetMachineUpdateStatus(ctx, "m1")
	isErr(t, err, store.ErrNotFound, "status of a machine never enrolled")

	gens, err := s.CreateUpdateAssessments(ctx, []store.UpdateAssessment{
		assessmentRequest("a01", "m1", "b1"), assessmentRequest("a02", "m2", "b1"), assessmentRequest("a03", "gone", "b1"),
	}, t0)
	ok(t, err, "create assessments")
	diff(t, gens, map[string]int64{"m1": 2, "m2": 2}, "generations (the missing machine skipped)")
	_, err = s.GetUpdateAssessment(ctx, "a03")
	isErr(t, err, store.ErrNotFound, "request of a missing machine")
	if st := updateStatus(t, s, "m1"); st.State != wire.AssessmentPending || st.Name != "vm1" || st.ResourceGroup != "rg" || !st.EnrolledAt.Equal(t0) {
		t.Errorf("enrolled status = %+v", st)
	}
	pending, err := s.ListPendingUpdateAssessments(ctx, "m1", 10)
	ok(t, err, "pending of m1")
	diff(t, pending, []store.UpdateAssessment{assessmentRequest("a01", "m1", "b1")}, "pending requests")

	// The result of a request.
	res := assessmentRequest("a01", "m1", "b1")
	res.State, res.Manager, res.Refreshed, res.Critical, res.Security, res.Other = wire.AssessmentSucceeded, "apt", true, 0, 4, 76
	res.StartedAt, res.FinishedAt = t0.Add(time.Second), t0.Add(3*time.Second)
	applied, err := s.RecordUpdateAssessment(ctx, res, []byte(`[{"name":"perl"}]`), t0.Add(4*time.Second))
	ok(t, err, "record a01")
	if !applied {
		t.Error("a01 not applied")
	}
	applied, err = s.RecordUpdateAssessment(ctx, res, []byte(`[{"name":"perl"}]`), t0.Add(5*time.Second))
	ok(t, err, "record a01 again")
	if applied {
		t.Error("a01 applied twice")
	}
	got, err := s.GetUpdateAssessment(ctx, "a01")
	ok(t, err, "get a01")
	diff(t, got, res, "a01 after its result")
	st := updateStatus(t, s, "m1")
	if st.State != wire.AssessmentSucceeded || st.Security != 4 || st.Other != 76 || string(st.Updates) != `[{"name":"perl"}]` ||
		!st.AssessedAt.Equal(res.FinishedAt) || st.AssessmentID != "a01" || !st.Refreshed || st.Manager != "apt" {
		t.Errorf("status after a01 = %+v", st)
	}

	// An older periodic result does not replace a newer one; a newer does.
	old := store.UpdateAssessment{ID: "m1-periodic-1", MachineID: "m1", Trigger: wire.TriggerPeriodic, State: wire.AssessmentSucceeded,
		Other: 1, StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	applied, err = s.RecordUpdateAssessment(ctx, old, []byte(`[]`), t0.Add(6*time.Second))
	ok(t, err, "record an older periodic result")
	if !applied || updateStatus(t, s, "m1").Other != 76 {
		t.Errorf("older periodic result: applied %v, status replaced", applied)
	}
	applied, err = s.RecordUpdateAssessment(ctx, old, []byte(`[]`), t0.Add(6*time.Second))
	ok(t, err, "record the periodic result again")
	if applied {
		t.Error("a periodic result delivered twice was applied twice")
	}
	newer := old
	newer.ID, newer.Other, newer.FinishedAt = "m1-periodic-2", 2, t0.Add(time.Hour)
	_, err = s.RecordUpdateAssessment(ctx, newer, []byte(`[{"name":"a"},{"name":"b"}]`), t0.Add(time.Hour))
	ok(t, err, "record a newer periodic result")
	if st := updateStatus(t, s, "m1"); st.Other != 2 || st.Security != 0 || st.AssessmentID != "m1-periodic-2" {
		t.Errorf("status after the newer periodic result = %+v", st)
	}

	// A failure keeps the last counts and updates, with why.
	fail := assessmentRequest("a02", "m2", "b1")
	fail.State, fail.Reason, fail.Message, fail.FinishedAt = wire.AssessmentFailed, wire.ReasonBlocked, "blocked by the local agent configuration", t0.Add(time.Minute)
	_, err = s.RecordUpdateAssessment(ctx, fail, nil, t0.Add(time.Minute))
	ok(t, err, "record a failure")
	if st := updateStatus(t, s, "m2"); st.State != wire.AssessmentFailed || st.Reason != wire.ReasonBlocked || st.Message == "" {
		t.Errorf("status after a failure = %+v", st)
	}
	// A result for a request that does not exist is not applied.
	stray := assessmentRequest("zz", "m1", "b1")
	stray.State = wire.AssessmentSucceeded
	applied, err = s.RecordUpdateAssessment(ctx, stray, nil, t0)
	ok(t, err, "stray result")
	if applied {
		t.Error("a result for an unknown request was applied")
	}

	counts, err := s.CountUpdateAssessments(ctx, "b1")
	ok(t, err, "count b1")
	diff(t, counts, map[string]int{wire.AssessmentSucceeded: 1, wire.AssessmentFailed: 1}, "batch counts")

	list := func(f store.UpdateAssessmentFilter) []string {
		t.Helper()
		as, err := s.ListUpdateAssessments(ctx, f)
		ok(t, err, "list %+v", f)
		out := []string{}
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	diff(t, list(store.UpdateAssessmentFilter{MachineID: "m1"}), []string{"m1-periodic-2", "m1-periodic-1", "a01"}, "history of m1, newest first")
	diff(t, list(store.UpdateAssessmentFilter{MachineID: "m1", Page: store.Page{Limit: 1, After: "m1-periodic-2"}}), []string{"m1-periodic-1"}, "page 2")
	diff(t, list(store.UpdateAssessmentFilter{BatchID: "b1", State: wire.AssessmentFailed}), []string{"a02"}, "failed of b1")

	// Requests nobody answered expire.
	_, err = s.CreateUpdateAssessments(ctx, []store.UpdateAssessment{assessmentRequest("a10", "m3", "b2")}, t0)
	ok(t, err, "request for m3")
	n, err := s.ExpireUpdateAssessments(ctx, t0.Add(time.Second), "the machine did not answer", t0.Add(time.Hour))
	ok(t, err, "expire")
	if n != 1 {
		t.Errorf("expired %d, want 1", n)
	}
	if st := updateStatus(t, s, "m3"); st.State != wire.AssessmentFailed || st.Reason != wire.ReasonNoResult {
		t.Errorf("status of m3 after expiry = %+v", st)
	}

	sts, err := s.ListMachineUpdateStatuses(ctx, store.UpdateStatusFilter{Subscription: "S1"})
	ok(t, err, "list statuses")
	if len(sts) != 3 || sts[0].Name != "vm1" || sts[2].Name != "vm3" || sts[0].Updates != nil {
		t.Errorf("statuses = %+v", sts)
	}
	sts, err = s.ListMachineUpdateStatuses(ctx, store.UpdateStatusFilter{Subscription: "s1", MachineIDs: []string{"m2", "nope"}})
	ok(t, err, "list statuses by id")
	if len(sts) != 1 || sts[0].MachineID != "m2" {
		t.Errorf("statuses by id = %+v", sts)
	}
	sts, err = s.ListMachineUpdateStatuses(ctx, store.UpdateStatusFilter{Subscription: "s1", Page: store.Page{After: "rg/vm1", Limit: 1}})
	ok(t, err, "list statuses page 2")
	if len(sts) != 1 || sts[0].Name != "vm2" {
		t.Errorf("statuses page 2 = %+v", sts)
	}

	// Everything goes with the machine.
	ok(t, s.DeleteMachine(ctx, "m1"), "delete m1")
	_, err = s.GetMachineUpdateStatus(ctx, "m1")
	isErr(t, err, store.ErrNotFound, "status of a deleted machine")
	_, err = s.GetUpdateAssessment(ctx, "a01")
	isErr(t, err, store.ErrNotFound, "assessment of a deleted machine")
}

func updateRun(id string) store.UpdateRun {
	return store.UpdateRun{ID: id, Subscription: "s1", Scope: "/subscriptions/s1", Targets: []byte(`{"scope":"/subscriptions/s1"}`),
		Settings: []byte(`{"classifications":["Security"]}`), Rollout: []byte(`{"waves":[{"percent":50}]}`), Waves: 2,
		Status: wire.UpdateInProgress, Trigger: wire.TriggerOnDemand, Origin: []byte(`{"caller":"alice"}`),
		CreatedAt: t0, CreatedBy: "alice", StartedAt: t0, Deadline: t0.Add(2 * time.Hour), UpdatedAt: t0}
}

func runMachine(machineID string, wave int) store.UpdateRunMachine {
	return store.UpdateRunMachine{MachineID: machineID, Wave: wave, Dispatched: wave == 0, Status: wire.UpdatePending, UpdatedAt: t0}
}

func testUpdateRuns(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg", "s2/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"), machine("m3", "s1/rg/vm3"), machine("m4", "s1/rg/vm4"),
		machine("x1", "s2/rg/vm1"))

	_, err := s.CreateUpdateRun(ctx, updateRun("r0"), []store.UpdateRunMachine{runMachine("m1", 0), runMachine("gone", 0)})
	isErr(t, err, store.ErrNotFound, "run with a missing machine")
	_, err = s.GetUpdateRun(ctx, "r0")
	isErr(t, err, store.ErrNotFound, "nothing of the refused run stored")

	r := updateRun("r1")
	gens, err := s.CreateUpdateRun(ctx, r, []store.UpdateRunMachine{runMachine("m1", 0), runMachine("m2", 0), runMachine("m3", 1), runMachine("m4", 1)})
	ok(t, err, "create run")
	diff(t, gens, map[string]int64{"m1": 2, "m2": 2}, "dispatched machines bumped")
	_, err = s.CreateUpdateRun(ctx, r, nil)
	isErr(t, err, store.ErrConflict, "run id taken")
	got, err := s.GetUpdateRun(ctx, "r1")
	ok(t, err, "get run")
	diff(t, got, r, "run")
	if st := updateStatus(t, s, "m3"); st.State != wire.AssessmentNotAssessed {
		t.Errorf("a run's machine is enrolled NotAssessed, got %+v", st)
	}

	ds, err := s.ListUpdateDispatches(ctx, "m1")
	ok(t, err, "dispatches of m1")
	if len(ds) != 1 || ds[0].Run.ID != "r1" || string(ds[0].Run.Settings) != `{"classifications":["Security"]}` || ds[0].Machine.Name != "vm1" {
		t.Errorf("dispatches of m1 = %+v", ds)
	}
	ds, err = s.ListUpdateDispatches(ctx, "m3")
	ok(t, err, "dispatches of m3")
	if len(ds) != 0 {
		t.Errorf("m3 of wave 1 dispatched early: %+v", ds)
	}

	// Progress, then a final result that nothing changes afterwards.
	prog := runMachine("m1", 0)
	prog.RunID, prog.Status, prog.Current, prog.StartedAt, prog.UpdatedAt = "r1", wire.UpdateInProgress, "openssl", t0.Add(time.Minute), t0.Add(time.Minute)
	applied, err := s.ReportUpdateRunMachine(ctx, prog)
	ok(t, err, "progress")
	if !applied {
		t.Error("progress not applied")
	}
	final := prog
	final.Status, final.Current, final.Reboot, final.RebootRequired = wire.UpdateSucceeded, "", wire.RebootStarted, true
	final.Packages, final.Scripts = []byte(`[{"name":"openssl","status":"Installed"}]`), []byte(`{"preScript":{"exitCode":0}}`)
	final.StartedAt, final.FinishedAt = t0.Add(2*time.Minute), t0.Add(5*time.Minute)
	applied, err = s.ReportUpdateRunMachine(ctx, final)
	ok(t, err, "final")
	if !applied {
		t.Error("final not applied")
	}
	late := prog
	applied, err = s.ReportUpdateRunMachine(ctx, late)
	ok(t, err, "late progress")
	if applied {
		t.Error("a late progress report undid a final result")
	}
	gm, err := s.GetUpdateRunMachine(ctx, "r1", "m1")
	ok(t, err, "get m1 of r1")
	want := final
	want.Subscription, want.ResourceGroup, want.Name, want.Dispatched, want.StartedAt = "s1", "rg", "vm1", true, prog.StartedAt
	diff(t, gm, want, "m1 of r1 (start kept from the first report)")
	_, err = s.ReportUpdateRunMachine(ctx, store.UpdateRunMachine{RunID: "r1", MachineID: "x1", Status: wire.UpdateFailed})
	isErr(t, err, store.ErrNotFound, "report for a machine not in the run")

	ok2, err := s.SetUpdateRunMachineReboot(ctx, "r1", "m1", wire.RebootPerformed, "the machine restarted", t0.Add(10*time.Minute))
	ok(t, err, "reboot performed")
	if !ok2 {
		t.Error("reboot not recorded")
	}
	ok2, err = s.SetUpdateRunMachineReboot(ctx, "r1", "m1", wire.RebootFailedState, "again", t0.Add(11*time.Minute))
	ok(t, err, "reboot again")
	if ok2 {
		t.Error("reboot recorded twice")
	}

	counts, err := s.CountUpdateRunMachines(ctx, "r1")
	ok(t, err, "counts")
	diff(t, counts, map[int]map[string]int{0: {wire.UpdateSucceeded: 1, wire.UpdatePending: 1}, 1: {wire.UpdatePending: 2}}, "counts")

	gens, err = s.DispatchUpdateWave(ctx, "r1", 1, t0.Add(time.Hour))
	ok(t, err, "dispatch wave 1")
	diff(t, gens, map[string]int64{"m3": 2, "m4": 2}, "wave 1 bumped")
	gens, err = s.DispatchUpdateWave(ctx, "r1", 1, t0.Add(time.Hour))
	ok(t, err, "dispatch wave 1 again")
	diff(t, gens, map[string]int64{}, "a wave is dispatched once")

	// Close: m2 (dispatched, Pending) fails; m4 is closed not started.
	notDispatched := false
	gens, err = s.CloseUpdateRunMachines(ctx, "r1", store.UpdateRunMachineClose{Statuses: []string{wire.UpdatePending}, FromWave: 0,
		Status: wire.UpdateFailed, Reason: wire.ReasonMaintenanceWindowExceeded, Message: "closed", At: t0.Add(3 * time.Hour),
		Dispatched: &notDispatched})
	ok(t, err, "close undispatched")
	diff(t, gens, map[string]int64{}, "no undispatched machine left")
	gens, err = s.CloseUpdateRunMachines(ctx, "r1", store.UpdateRunMachineClose{Statuses: []string{wire.UpdatePending}, FromWave: 1,
		Status: wire.UpdateNotStarted, Reason: wire.ReasonDisruptionBudgetExceeded, Message: "halted", At: t0.Add(3 * time.Hour)})
	ok(t, err, "close wave 1")
	diff(t, gens, map[string]int64{"m3": 3, "m4": 3}, "closed dispatched machines bumped")
	if m, _ := s.GetUpdateRunMachine(ctx, "r1", "m2"); m.Status != wire.UpdatePending {
		t.Errorf("m2 of wave 0 closed by a FromWave 1 close: %+v", m)
	}
	ds, err = s.ListUpdateDispatches(ctx, "m3")
	ok(t, err, "dispatches of closed m3")
	if len(ds) != 0 {
		t.Errorf("closed machine still dispatched: %+v", ds)
	}
	// Started machines that went quiet.
	prog2 := runMachine("m2", 0)
	prog2.RunID, prog2.Status, prog2.StartedAt = "r1", wire.UpdateInProgress, t0.Add(time.Minute)
	_, err = s.ReportUpdateRunMachine(ctx, prog2)
	ok(t, err, "m2 progress")
	gens, err = s.CloseUpdateRunMachines(ctx, "r1", store.UpdateRunMachineClose{Statuses: []string{wire.UpdateInProgress},
		StartedBefore: t0, Status: wire.UpdateFailed, Reason: wire.ReasonNoResult, At: t0.Add(4 * time.Hour)})
	ok(t, err, "close started before t0")
	diff(t, gens, map[string]int64{}, "m2 started after t0")
	gens, err = s.CloseUpdateRunMachines(ctx, "r1", store.UpdateRunMachineClose{Statuses: []string{wire.UpdateInProgress},
		StartedBefore: t0.Add(time.Hour), Status: wire.UpdateFailed, Reason: wire.ReasonNoResult, At: t0.Add(4 * time.Hour)})
	ok(t, err, "close quiet machines")
	diff(t, gens, map[string]int64{"m2": 3}, "m2 closed")

	changed, err := s.ChangeUpdateRun(ctx, "r1", store.UpdateRunChange{From: []string{wire.UpdateInProgress}, Status: wire.UpdateHalted,
		Reason: wire.ReasonDisruptionBudgetExceeded, Message: "wave 1", CurrentWave: 1, FinishedAt: t0.Add(4 * time.Hour), At: t0.Add(4 * time.Hour)})
	ok(t, err, "halt")
	if !changed {
		t.Error("halt not applied")
	}
	changed, err = s.ChangeUpdateRun(ctx, "r1", store.UpdateRunChange{From: []string{wire.UpdateInProgress}, Status: wire.UpdateSucceeded})
	ok(t, err, "change a halted run")
	if changed {
		t.Error("a halted run changed again")
	}
	got, err = s.GetUpdateRun(ctx, "r1")
	ok(t, err, "get halted run")
	if got.Status != wire.UpdateHalted || got.CurrentWave != 1 || !got.FinishedAt.Equal(t0.Add(4*time.Hour)) {
		t.Errorf("halted run = %+v", got)
	}

	ms, err := s.ListUpdateRunMachines(ctx, "r1", store.Page{})
	ok(t, err, "list run machines")
	if len(ms) != 4 || ms[0].Name != "vm1" || ms[3].Name != "vm4" {
		t.Errorf("run machines = %+v", ms)
	}
	ms, err = s.ListUpdateRunMachines(ctx, "r1", store.Page{After: "rg/vm2", Limit: 1})
	ok(t, err, "list run machines page 2")
	if len(ms) != 1 || ms[0].Name != "vm3" {
		t.Errorf("run machines page 2 = %+v", ms)
	}

	r2 := updateRun("r2")
	r2.Subscription, r2.Schedule, r2.Trigger = "s2", "sunday", wire.TriggerSchedule
	_, err = s.CreateUpdateRun(ctx, r2, []store.UpdateRunMachine{runMachine("x1", 0)})
	ok(t, err, "run in s2")
	runs := func(f store.UpdateRunFilter) []string {
		t.Helper()
		rs, err := s.ListUpdateRuns(ctx, f)
		ok(t, err, "list runs %+v", f)
		out := []string{}
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	diff(t, runs(store.UpdateRunFilter{}), []string{"r2", "r1"}, "all runs newest first")
	diff(t, runs(store.UpdateRunFilter{Subscription: "S1"}), []string{"r1"}, "runs of s1")
	diff(t, runs(store.UpdateRunFilter{MachineID: "x1"}), []string{"r2"}, "runs of x1")
	diff(t, runs(store.UpdateRunFilter{Schedule: "SUNDAY"}), []string{"r2"}, "runs of a schedule")
	diff(t, runs(store.UpdateRunFilter{Unfinished: true}), []string{"r2"}, "unfinished runs")
	diff(t, runs(store.UpdateRunFilter{Page: store.Page{After: "r2"}}), []string{"r1"}, "page 2")

	ok(t, s.DeleteMachine(ctx, "x1"), "delete x1")
	ms, err = s.ListUpdateRunMachines(ctx, "r2", store.Page{})
	ok(t, err, "machines of r2")
	if len(ms) != 0 {
		t.Errorf("a deleted machine stays in its run: %+v", ms)
	}
}

func updateSchedule(id, name string) store.UpdateSchedule {
	return store.UpdateSchedule{ID: id, Subscription: "s1", Name: name, Kind: wire.ScheduleDeployment, Scope: "/subscriptions/s1",
		Targets: []byte(`{"scope":"/subscriptions/s1"}`), Cron: "0 3 * * SUN", TimeZone: "Europe/Paris", Window: 2 * time.Hour,
		Settings: []byte(`{"classifications":["Security","Critical"]}`), Origin: []byte(`{"caller":"alice"}`), CreatedAt: t0, CreatedBy: "alice"}
}

func testUpdateSchedules(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"))

	sc := updateSchedule("sc1", "Sunday")
	ok(t, s.CreateUpdateSchedule(ctx, sc), "create schedule")
	isErr(t, s.CreateUpdateSchedule(ctx, updateSchedule("sc2", "SUNDAY")), store.ErrConflict, "same name in other casing")
	one := updateSchedule("sc3", "once")
	one.Cron, one.TimeZone, one.At, one.Kind = "", "", t0.Add(time.Hour), wire.ScheduleAssessment
	ok(t, s.CreateUpdateSchedule(ctx, one), "create one-time schedule")
	got, err := s.GetUpdateSchedule(ctx, "S1", "sunday")
	ok(t, err, "get schedule")
	diff(t, got, sc, "schedule")
	list, err := s.ListUpdateSchedules(ctx, store.UpdateScheduleFilter{Subscription: "s1"})
	ok(t, err, "list")
	if len(list) != 2 || list[0].Name != "once" || list[1].Name != "Sunday" {
		t.Errorf("schedules = %+v", list)
	}
	list, err = s.ListUpdateSchedules(ctx, store.UpdateScheduleFilter{Page: store.Page{After: "once"}})
	ok(t, err, "list all, page 2")
	if len(list) != 1 || list[0].Name != "Sunday" {
		t.Errorf("schedules page 2 = %+v", list)
	}

	// A fire creates its run once; a second fire from the same previous
	// time loses.
	fire := store.UpdateFire{ScheduleID: "sc1", Previous: time.Time{}.UTC(), Fired: t0.Add(time.Hour), RunID: "r1", At: t0.Add(time.Hour)}
	run := updateRun("r1")
	run.Trigger, run.Schedule = wire.TriggerSchedule, "Sunday"
	fire.Run, fire.Machines = &run, []store.UpdateRunMachine{runMachine("m1", 0)}
	fire.Previous = got.LastFiredAt
	gens, err := s.FireUpdateSchedule(ctx, fire)
	ok(t, err, "fire")
	diff(t, gens, map[string]int64{"m1": 2}, "fire bumped m1")
	again := fire
	run2 := updateRun("r2")
	again.Run, again.RunID = &run2, "r2"
	_, err = s.FireUpdateSchedule(ctx, again)
	isErr(t, err, store.ErrConflict, "second fire from the same previous time")
	_, err = s.GetUpdateRun(ctx, "r2")
	isErr(t, err, store.ErrNotFound, "the losing fire stored nothing")
	got, err = s.GetUpdateSchedule(ctx, "s1", "Sunday")
	ok(t, err, "get fired schedule")
	if !got.LastFiredAt.Equal(t0.Add(time.Hour)) || got.LastRunID != "r1" {
		t.Errorf("fired schedule = %+v", got)
	}

	// An assessment schedule fires requests.
	as := assessmentRequest("a1", "m1", "sc3-1")
	as.Trigger = wire.TriggerSchedule
	gens, err = s.FireUpdateSchedule(ctx, store.UpdateFire{ScheduleID: "sc3", Fired: t0.Add(time.Hour), RunID: "sc3-1",
		Assessments: []store.UpdateAssessment{as}, At: t0.Add(time.Hour)})
	ok(t, err, "fire assessment schedule")
	diff(t, gens, map[string]int64{"m1": 3}, "assessment fire bumped m1")
	pending, err := s.ListPendingUpdateAssessments(ctx, "m1", 10)
	ok(t, err, "pending")
	if len(pending) != 1 || pending[0].Trigger != wire.TriggerSchedule {
		t.Errorf("pending after the assessment fire = %+v", pending)
	}

	// Racing fires: exactly one wins.
	ok(t, s.CreateUpdateSchedule(ctx, updateSchedule("sc4", "race")), "create race schedule")
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := range 8 {
		wg.Go(func() {
			r := updateRun(fmt.Sprintf("race-%d", i))
			_, err := s.FireUpdateSchedule(ctx, store.UpdateFire{ScheduleID: "sc4", Fired: t0.Add(time.Hour), RunID: r.ID, Run: &r,
				Machines: []store.UpdateRunMachine{runMachine("m1", 0)}, At: t0})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("racing fire %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != 7 {
		t.Errorf("racing fires: %d won, %d conflicted; want 1 and 7", wins, conflicts)
	}

	ok(t, s.DeleteUpdateSchedule(ctx, "s1", "SUNDAY"), "delete")
	isErr(t, s.DeleteUpdateSchedule(ctx, "s1", "sunday"), store.ErrNotFound, "delete again")
	_, err = s.FireUpdateSchedule(ctx, store.UpdateFire{ScheduleID: "sc1", Previous: t0.Add(time.Hour), Fired: t0.Add(2 * time.Hour), At: t0})
	isErr(t, err, store.ErrNotFound, "fire a deleted schedule")
}
