package updates_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/server/updates"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func fastTick(d time.Duration) testutil.Option {
	return func(c *server.Config) { c.UpdateTick = d }
}

// fleet onboards n machines named vm-00.. into resource group rg.
func fleet(t *testing.T, s *testutil.Server, rg string, n int) []*testutil.Machine {
	t.Helper()
	admin := s.AdminToken(t)
	id, secret := s.OnboardingPrincipal(t, rg)
	tok := s.ClientToken(t, id, secret)
	var ms []*testutil.Machine
	for i := range n {
		name := fmt.Sprintf("vm-%02d", i)
		m := s.OnboardMachine(t, tok, rg, name, wire.MachineProperties{OSName: "debian", OSVersion: "12", OSType: "linux"})
		tags := map[string]string{"ring": "late"}
		if i%2 == 0 {
			tags["ring"] = "early"
		}
		s.MustDo(t, http.StatusOK, "PATCH", "/api/v1/subscriptions/default/resourceGroups/"+rg+"/machines/"+name, admin, wire.MachineUpdate{Tags: tags}, nil)
		ms = append(ms, m)
	}
	return ms
}

const sub = "/api/v1/subscriptions/default"

func machineID(rg, name string) string {
	return "/subscriptions/default/resourceGroups/" + rg + "/machines/" + name
}

func getRun(t *testing.T, s *testutil.Server, id string) wire.UpdateRun {
	t.Helper()
	var r wire.UpdateRun
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateRuns/"+id, s.AdminToken(t), nil, &r)
	return r
}

func runMachines(t *testing.T, s *testutil.Server, id string) map[string]wire.UpdateRunMachine {
	t.Helper()
	var l wire.List[wire.UpdateRunMachine]
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateRuns/"+id+"/machines", s.AdminToken(t), nil, &l)
	out := map[string]wire.UpdateRunMachine{}
	for _, m := range l.Value {
		out[m.Name] = m
	}
	return out
}

// TestAssessmentThroughTheProtocol: a scope-wide request enrolls the
// machines (Corral/PatchManagement switched on), reaches each agent's
// desired state, and the answers become the inventory's counts, the
// machine's pending list (searchable by name), the request's progress and
// outcome entries in the requester's name; malformed and stray reports are
// dropped without effect.
func TestAssessmentThroughTheProtocol(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	ms := fleet(t, s, "web", 3)
	if _, ok := s.UpdatesSlice(t, ms[0]); ok {
		t.Fatal("a machine never targeted has an updates slice")
	}
	var b wire.UpdateAssessmentBatch
	s.MustDo(t, http.StatusAccepted, "POST", sub+"/updateAssessments", admin,
		wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/default/resourceGroups/web"}}, &b)
	if b.Machines != 3 || b.Pending != 3 || b.ID == "" {
		t.Fatalf("batch = %+v", b)
	}
	var exts wire.List[wire.MachineExtension]
	s.MustDo(t, http.StatusOK, "GET", sub+"/resourceGroups/web/machines/vm-00/extensions", admin, nil, &exts)
	if len(exts.Value) != 1 || exts.Value[0].Publisher != "Corral" || exts.Value[0].Type != "PatchManagement" || exts.Value[0].CreatedBy != "admin" {
		t.Errorf("extensions after the first assessment: %+v", exts.Value)
	}
	slice, ok := s.UpdatesSlice(t, ms[0])
	if !ok || len(slice.Assessments) != 1 || time.Duration(slice.AssessmentInterval) != wire.DefaultAssessmentInterval {
		t.Fatalf("slice = %+v", slice)
	}

	// Malformed reports are acknowledged and dropped.
	for _, bad := range []wire.UpdateAssessmentResult{
		{ID: slice.Assessments[0].ID, Trigger: "Whenever", State: wire.AssessmentSucceeded},
		{ID: slice.Assessments[0].ID, Trigger: wire.TriggerOnDemand, State: "Maybe"},
		{ID: slice.Assessments[0].ID, Trigger: wire.TriggerOnDemand, State: wire.AssessmentSucceeded,
			Updates: []wire.PendingUpdate{{Name: "x", Classification: "Urgent"}}},
		{ID: "", Trigger: wire.TriggerOnDemand, State: wire.AssessmentSucceeded},
	} {
		s.Report(t, ms[0], wire.ReportUpdateAssessment, bad)
	}
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateAssessments/"+b.ID, admin, nil, &b)
	if b.Pending != 3 {
		t.Fatalf("malformed reports changed the request: %+v", b)
	}

	ups := testutil.SamplePendingUpdates()
	for _, m := range ms[:2] {
		if n := s.AnswerUpdates(t, m, ups, nil); n != 1 {
			t.Fatalf("answered %d requests", n)
		}
	}
	s.Report(t, ms[2], wire.ReportUpdateAssessment, wire.UpdateAssessmentResult{ID: slice.Assessments[0].ID, Trigger: wire.TriggerOnDemand,
		State: wire.AssessmentSucceeded, Updates: []wire.PendingUpdate{}}) // vm-00's request id from vm-02: ignored
	s.Report(t, ms[2], wire.ReportUpdateAssessment, wire.UpdateAssessmentResult{ID: mustSlice(t, s, ms[2]).Assessments[0].ID,
		Trigger: wire.TriggerOnDemand, State: wire.AssessmentFailed, Reason: wire.ReasonBlocked,
		Message: "blocked by the local agent configuration: Corral/PatchManagement is in extensions.blocklist", Updates: []wire.PendingUpdate{}})

	s.MustDo(t, http.StatusOK, "GET", sub+"/updateAssessments/"+b.ID, admin, nil, &b)
	if b.Pending != 0 || b.Succeeded != 2 || b.Failed != 1 || len(b.Failures) != 1 || !strings.Contains(b.Failures[0].Message, "blocklist") {
		t.Errorf("batch after the answers = %+v", b)
	}
	var sums wire.List[wire.UpdateSummary]
	s.MustDo(t, http.StatusOK, "GET", sub+"/resourceGroups/web/updateSummaries", admin, nil, &sums)
	if len(sums.Value) != 3 || sums.Value[0].Security != 4 || sums.Value[0].Other != 2 || sums.Value[0].AssessedAt.IsZero() ||
		sums.Value[2].State != wire.AssessmentFailed || sums.Value[2].Reason != wire.ReasonBlocked {
		t.Errorf("summaries = %+v", sums.Value)
	}
	var mu wire.MachineUpdates
	s.MustDo(t, http.StatusOK, "GET", sub+"/resourceGroups/web/machines/vm-01/updates?name=PERL", admin, nil, &mu)
	if len(mu.Updates) != 4 || mu.Security != 4 || mu.Name != "vm-01" {
		t.Errorf("perl updates of vm-01 = %+v", mu)
	}
	// The stray answer did not touch vm-00's request (answered by vm-00 itself).
	var hist wire.List[wire.UpdateAssessment]
	s.MustDo(t, http.StatusOK, "GET", sub+"/resourceGroups/web/machines/vm-00/updateAssessments", admin, nil, &hist)
	if len(hist.Value) != 1 || hist.Value[0].State != wire.AssessmentSucceeded || hist.Value[0].Security != 4 {
		t.Errorf("history of vm-00 = %+v", hist.Value)
	}

	// A periodic assessment (the agent's own) updates the status too.
	s.Report(t, ms[1], wire.ReportUpdateAssessment, wire.UpdateAssessmentResult{ID: "periodic-1", Trigger: wire.TriggerPeriodic,
		State: wire.AssessmentSucceeded, Updates: []wire.PendingUpdate{}, StartedAt: time.Now().UTC(), FinishedAt: time.Now().UTC()})
	s.MustDo(t, http.StatusOK, "GET", sub+"/resourceGroups/web/machines/vm-01/updates", admin, nil, &mu)
	if len(mu.Updates) != 0 || mu.Security+mu.Other != 0 {
		t.Errorf("after a periodic assessment with nothing pending: %+v", mu)
	}

	// Outcomes in the requester's name.
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?"+url.Values{"scope": {machineID("web", "vm-02")}}.Encode(), admin, nil, &acts)
	found := false
	for _, e := range acts.Value {
		if e.Action == "Corral.Updates/assessments/action" && e.Caller == "admin" && e.Result == wire.ResultFailed && strings.Contains(e.Message, "blocklist") {
			found = true
		}
	}
	if !found {
		t.Errorf("no failed assessment outcome for vm-02: %+v", acts.Value)
	}
}

func mustSlice(t *testing.T, s *testutil.Server, m *testutil.Machine) wire.UpdatesDesired {
	t.Helper()
	slice, ok := s.UpdatesSlice(t, m)
	if !ok {
		t.Fatal("no updates slice")
	}
	return slice
}

// TestBadInputIsRefusedAndNothingStored: every kind of bad request gets a
// 400-class error naming the problem, and no run, schedule or request is
// stored.
func TestBadInputIsRefusedAndNothingStored(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	fleet(t, s, "web", 1)
	s.MustDo(t, http.StatusCreated, "PUT", sub+"/resourceGroups/empty", admin, wire.ResourceGroupCreate{}, nil)
	good := wire.UpdateDeploymentSettings{Classifications: []string{"Security"}, Reboot: wire.RebootNever}
	withSet := func(f func(*wire.UpdateDeploymentSettings)) wire.UpdateDeploymentSettings {
		g := good
		f(&g)
		return g
	}
	web := wire.UpdateTargets{Machines: []string{machineID("web", "vm-00")}}
	for _, tc := range []struct {
		name   string
		path   string
		method string
		body   any
		status int
		want   string
	}{
		{"unknown classification", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web,
			UpdateDeploymentSettings: withSet(func(s *wire.UpdateDeploymentSettings) { s.Classifications = []string{"Security", "Urgent"} })}, 400, `unknown classification \"Urgent\"`},
		{"no classification", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web,
			UpdateDeploymentSettings: withSet(func(s *wire.UpdateDeploymentSettings) { s.Classifications = nil })}, 400, "at least one classification"},
		{"window too short", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web,
			UpdateDeploymentSettings: withSet(func(s *wire.UpdateDeploymentSettings) { s.Window = wire.Duration(59 * time.Minute) })}, 400, "outside 60–235 minutes"},
		{"window too long", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web,
			UpdateDeploymentSettings: withSet(func(s *wire.UpdateDeploymentSettings) { s.Window = wire.Duration(4 * time.Hour) })}, 400, "outside 60–235 minutes"},
		{"bad reboot", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web,
			UpdateDeploymentSettings: withSet(func(s *wire.UpdateDeploymentSettings) { s.Reboot = "Later" })}, 400, "unknown reboot setting"},
		{"bad pattern", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web,
			UpdateDeploymentSettings: withSet(func(s *wire.UpdateDeploymentSettings) { s.Include = []string{"lib[a-"} })}, 400, "malformed"},
		{"NUL in a script", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web,
			UpdateDeploymentSettings: withSet(func(s *wire.UpdateDeploymentSettings) { s.PreScript = "echo \x00" })}, 400, "NUL"},
		{"scope without machines", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/default/resourceGroups/empty"},
			UpdateDeploymentSettings: good}, 400, "has no machines"},
		{"tag without machines", "/updateAssessments", "POST", wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Tag: "ring=none"}}, 400, "has no machines"},
		{"machines and scope", "/updateAssessments", "POST", wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Machines: web.Machines,
			Scope: "/subscriptions/default"}}, 400, "not both"},
		{"not a machine id", "/updateAssessments", "POST", wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Machines: []string{"vm-00"}}}, 400, "not a machine resource id"},
		{"unknown machine", "/updateAssessments", "POST", wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Machines: []string{machineID("web", "nope")}}}, 404, "was not found"},
		{"other subscription", "/updateAssessments", "POST", wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/other"}}, 400, "not in subscription"},
		{"bad wave", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web, UpdateDeploymentSettings: good,
			Rollout: &wire.UpdateRollout{Waves: []wire.UpdateWave{{Percent: 70}, {Percent: 50}}}}, 400, "add up to 120%"},
		{"bad budget", "/updateRuns", "POST", wire.UpdateRunCreate{UpdateTargets: web, UpdateDeploymentSettings: good,
			Rollout: &wire.UpdateRollout{Waves: []wire.UpdateWave{{Percent: 10}}, MaxFailedPercent: 101}}, 400, "outside 0–100"},
		{"bad cron", "/updateSchedules/nightly", "PUT", wire.UpdateScheduleCreate{UpdateTargets: web, Cron: "0 25 * * *", UpdateDeploymentSettings: good}, 400, "bad cron expression"},
		{"seconds in cron", "/updateSchedules/nightly", "PUT", wire.UpdateScheduleCreate{UpdateTargets: web, Cron: "0 0 3 * * SUN", UpdateDeploymentSettings: good}, 400, "bad cron expression"},
		{"bad time zone", "/updateSchedules/nightly", "PUT", wire.UpdateScheduleCreate{UpdateTargets: web, Cron: "0 3 * * SUN", TimeZone: "Europe/Atlantis", UpdateDeploymentSettings: good}, 400, "bad time zone"},
		{"cron and at", "/updateSchedules/nightly", "PUT", wire.UpdateScheduleCreate{UpdateTargets: web, Cron: "0 3 * * SUN", At: time.Now().Add(time.Hour), UpdateDeploymentSettings: good}, 400, "not both"},
		{"at in the past", "/updateSchedules/nightly", "PUT", wire.UpdateScheduleCreate{UpdateTargets: web, At: time.Now().Add(-time.Hour), UpdateDeploymentSettings: good}, 400, "in the past"},
		{"assessment schedule with settings", "/updateSchedules/nightly", "PUT", wire.UpdateScheduleCreate{Kind: "Assessment", UpdateTargets: web, Cron: "0 3 * * *",
			UpdateDeploymentSettings: good}, 400, "takes no deployment settings"},
		{"bad schedule name", "/updateSchedules/no%20spaces", "PUT", wire.UpdateScheduleCreate{UpdateTargets: web, Cron: "0 3 * * SUN", UpdateDeploymentSettings: good}, 400, "name"},
		{"unknown field", "/updateRuns", "POST", map[string]any{"machines": web.Machines, "classifications": []string{"Security"}, "rebot": "Never"}, 400, "rebot"},
	} {
		status, body := s.Do(t, tc.method, sub+tc.path, admin, tc.body)
		if status != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, status, body, tc.status, tc.want)
		}
	}
	var runs wire.List[wire.UpdateRun]
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateRuns", admin, nil, &runs)
	var scheds wire.List[wire.UpdateSchedule]
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateSchedules", admin, nil, &scheds)
	var sums wire.List[wire.UpdateSummary]
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateSummaries", admin, nil, &sums)
	if len(runs.Value)+len(scheds.Value)+len(sums.Value) != 0 {
		t.Errorf("refused requests stored something: runs %+v schedules %+v enrolled %+v", runs.Value, scheds.Value, sums.Value)
	}
}

// TestRolloutHaltsWhenAWaveBreaksTheBudget: the first wave's failures over
// the budget halt the run; the later wave never reaches its machines.
func TestRolloutHaltsWhenAWaveBreaksTheBudget(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, fastTick(50*time.Millisecond))
	admin := s.AdminToken(t)
	ms := fleet(t, s, "web", 6)
	var run wire.UpdateRun
	s.MustDo(t, http.StatusCreated, "POST", sub+"/updateRuns", admin, wire.UpdateRunCreate{
		UpdateTargets:            wire.UpdateTargets{Scope: "/subscriptions/default/resourceGroups/web"},
		UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{"Security"}, Reboot: wire.RebootNever},
		Rollout:                  &wire.UpdateRollout{Waves: []wire.UpdateWave{{Percent: 50}}, MaxFailedPercent: 40}}, &run)
	if len(run.Waves) != 2 || run.Waves[0].Machines != 3 || run.Waves[1].Machines != 3 || run.Status != wire.UpdateInProgress {
		t.Fatalf("run = %+v", run)
	}
	var first, second []*testutil.Machine
	for _, m := range ms {
		if slice, _ := s.UpdatesSlice(t, m); len(slice.Deployments) == 1 {
			first = append(first, m)
		} else {
			second = append(second, m)
		}
	}
	if len(first) != 3 {
		t.Fatalf("%d machines got the first wave", len(first))
	}
	fail := func(d wire.DesiredUpdateDeployment) wire.UpdateDeploymentReport {
		return wire.UpdateDeploymentReport{State: wire.UpdateFailed, Reason: wire.ReasonInstallFailed, Message: "E: Sub-process /usr/bin/dpkg returned an error code (1)",
			Packages: []wire.UpdatePackageResult{{Name: "openssl", Status: wire.PackageFailed, Message: "dpkg: error processing package openssl"}}}
	}
	s.AnswerUpdates(t, first[0], testutil.SamplePendingUpdates(), fail)
	s.AnswerUpdates(t, first[1], testutil.SamplePendingUpdates(), fail)
	testutil.Eventually(t, 10*time.Second, func() string {
		if r := getRun(t, s, run.ID); r.Status != wire.UpdateHalted {
			return "status " + r.Status
		}
		return ""
	})
	r := getRun(t, s, run.ID)
	if r.Reason != wire.ReasonDisruptionBudgetExceeded || !strings.Contains(r.Message, "2 of 3 machines failed") || r.Waves[0].Status != wire.UpdateHalted ||
		r.Counts.NotStarted != 3 {
		t.Errorf("halted run = %+v", r)
	}
	for _, m := range second {
		if slice, _ := s.UpdatesSlice(t, m); len(slice.Deployments) != 0 {
			t.Errorf("a machine of the halted wave got the deployment: %+v", slice)
		}
	}
	// The third machine of the first wave still reports; the run stays Halted.
	s.AnswerUpdates(t, first[2], testutil.SamplePendingUpdates(), nil)
	rm := runMachines(t, s, run.ID)
	succeeded := 0
	for _, m := range rm {
		if m.Status == wire.UpdateSucceeded {
			succeeded++
		}
		if m.Wave == 1 && (m.Status != wire.UpdateNotStarted || m.Reason != wire.ReasonDisruptionBudgetExceeded) {
			t.Errorf("machine of the second wave: %+v", m)
		}
	}
	if succeeded != 1 || getRun(t, s, run.ID).Status != wire.UpdateHalted {
		t.Errorf("after the last report of wave 1: %d succeeded, run %s", succeeded, getRun(t, s, run.ID).Status)
	}
}

// TestRolloutWavesRunInOrder: each wave is sent only when the one before
// it is done; all succeeding, the run Succeeded; a reboot that was needed
// but not allowed makes it CompletedWithWarnings.
func TestRolloutWavesRunInOrder(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, fastTick(50*time.Millisecond))
	admin := s.AdminToken(t)
	ms := fleet(t, s, "web", 4)
	var run wire.UpdateRun
	s.MustDo(t, http.StatusCreated, "POST", sub+"/updateRuns", admin, wire.UpdateRunCreate{
		UpdateTargets:            wire.UpdateTargets{Scope: "/subscriptions/default"},
		UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{"Security", "Other"}, Reboot: wire.RebootNever},
		Rollout:                  &wire.UpdateRollout{Waves: []wire.UpdateWave{{Percent: 25}}, MaxFailedPercent: 0}}, &run)
	var waves []int // machines given the deployment, per wave seen
	warned := false
	for range 10 {
		// The machines that have the deployment now are answered; a wave
		// sent meanwhile (the scheduler ticks every 50 ms) is the next
		// pass's, whatever the time the answers take.
		var due []*testutil.Machine
		for _, m := range ms {
			if slice, ok := s.UpdatesSlice(t, m); ok && len(slice.Deployments) > 0 {
				due = append(due, m)
			}
		}
		for _, m := range due {
			s.AnswerUpdates(t, m, testutil.SamplePendingUpdates(), func(d wire.DesiredUpdateDeployment) wire.UpdateDeploymentReport {
				rep := testutil.InstallAll(d, testutil.SamplePendingUpdates())
				if !warned {
					warned = true
					rep.State, rep.RebootRequired, rep.Reboot = wire.UpdateCompletedWithWarnings, true, wire.RebootRequiredNotAllowed
				}
				return rep
			})
		}
		if len(due) > 0 {
			waves = append(waves, len(due))
		}
		if r := getRun(t, s, run.ID); r.Status != wire.UpdateInProgress {
			break
		}
		time.Sleep(150 * time.Millisecond)
	}
	r := getRun(t, s, run.ID)
	if r.Status != wire.UpdateCompletedWithWarnings || !slices.Equal(waves, []int{1, 3}) || r.Counts.Succeeded != 3 || r.Counts.CompletedWithWarnings != 1 {
		t.Errorf("run after waves of %v machines: %+v", waves, r)
	}
	for _, m := range runMachines(t, s, run.ID) {
		if n := len(m.Packages); n != 6 {
			t.Errorf("%s has %d package results", m.Name, n)
		}
	}
}

// TestWindowClosesOnMachinesThatNeverStarted: a machine that does not
// start before the window closes fails MaintenanceWindowExceeded; one
// that started and went quiet fails NoResult after the grace.
func TestWindowClosesOnMachinesThatNeverStarted(t *testing.T) {
	t.Parallel()
	var clock testutil.Clock
	s := testutil.StartServer(t, testutil.WithClock(&clock), fastTick(50*time.Millisecond))
	admin := s.AdminToken(t)
	ms := fleet(t, s, "web", 2)
	var run wire.UpdateRun
	s.MustDo(t, http.StatusCreated, "POST", sub+"/updateRuns", admin, wire.UpdateRunCreate{
		UpdateTargets:            wire.UpdateTargets{Scope: "/subscriptions/default/resourceGroups/web"},
		UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{"Security"}, Reboot: wire.RebootNever, Window: wire.Duration(time.Hour)}}, &run)
	// vm-01 starts, then goes quiet.
	s.AnswerUpdates(t, ms[1], nil, func(d wire.DesiredUpdateDeployment) wire.UpdateDeploymentReport {
		return wire.UpdateDeploymentReport{State: wire.UpdateInProgress, Current: "openssl", Packages: []wire.UpdatePackageResult{}}
	})
	clock.Advance(61 * time.Minute)
	testutil.Eventually(t, 5*time.Second, func() string {
		if m := runMachines(t, s, run.ID)["vm-00"]; m.Status != wire.UpdateFailed {
			return "vm-00 " + m.Status
		}
		return ""
	})
	if m := runMachines(t, s, run.ID)["vm-00"]; m.Reason != wire.ReasonMaintenanceWindowExceeded {
		t.Errorf("vm-00 = %+v", m)
	}
	if slice, _ := s.UpdatesSlice(t, ms[0]); len(slice.Deployments) != 0 {
		t.Errorf("a closed deployment is still in vm-00's desired state: %+v", slice)
	}
	if m := runMachines(t, s, run.ID)["vm-01"]; m.Status != wire.UpdateInProgress {
		t.Errorf("vm-01 closed before the grace: %+v", m)
	}
	clock.Advance(31 * time.Minute)
	testutil.Eventually(t, 5*time.Second, func() string {
		if r := getRun(t, s, run.ID); r.Status != wire.UpdateFailed {
			return "run " + r.Status
		}
		return ""
	})
	r := getRun(t, s, run.ID)
	if m := runMachines(t, s, run.ID)["vm-01"]; m.Reason != wire.ReasonNoResult || r.Reason != wire.ReasonMaintenanceWindowExceeded {
		t.Errorf("run %+v, vm-01 %+v", r, m)
	}
}

// TestSchedulesFireOnceAndCatchUp: a cron schedule fires once per fire
// time; a server that was down at the fire catches up while the window is
// open and not after; a one-time schedule fires once.
func TestSchedulesFireOnceAndCatchUp(t *testing.T) {
	t.Parallel()
	// The clock starts hours behind, so that the certificates the server
	// makes stay valid by the real clock as the test moves it forward.
	var clock testutil.Clock
	clock.Advance(-6 * time.Hour)
	s := testutil.StartServer(t, testutil.WithClock(&clock), fastTick(30*time.Millisecond))
	admin := s.AdminToken(t)
	fleet(t, s, "web", 2)
	// Fires at the next hour, Paris time.
	var sc wire.UpdateSchedule
	s.MustDo(t, http.StatusCreated, "PUT", sub+"/updateSchedules/hourly", admin, wire.UpdateScheduleCreate{
		UpdateTargets: wire.UpdateTargets{Tag: "ring=early"}, Cron: "0 * * * *", TimeZone: "Europe/Paris",
		UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{"security", "CRITICAL"}, Reboot: "ifrequired", Window: wire.Duration(90 * time.Minute)}}, &sc)
	if sc.NextFireAt.IsZero() || sc.NextFireAt.Minute() != 0 || !slices.Equal(sc.Classifications, []string{"Critical", "Security"}) || sc.Reboot != wire.RebootIfRequired {
		t.Fatalf("schedule = %+v", sc)
	}
	runsOf := func(name string) []wire.UpdateRun {
		var l wire.List[wire.UpdateRun]
		s.MustDo(t, http.StatusOK, "GET", sub+"/updateRuns?schedule="+name, admin, nil, &l)
		return l.Value
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(runsOf("hourly")); n != 0 {
		t.Fatalf("fired before its time: %d runs", n)
	}
	clock.Advance(sc.NextFireAt.Sub(clock.Now()) + 10*time.Minute) // 10 minutes into the window
	testutil.Eventually(t, 5*time.Second, func() string {
		if n := len(runsOf("hourly")); n != 1 {
			return fmt.Sprintf("%d runs", n)
		}
		return ""
	})
	time.Sleep(300 * time.Millisecond) // many ticks later: still one
	rs := runsOf("hourly")
	if len(rs) != 1 || rs[0].Trigger != wire.TriggerSchedule || !rs[0].StartedAt.Equal(sc.NextFireAt) || !rs[0].Deadline.Equal(sc.NextFireAt.Add(90*time.Minute)) ||
		machinesOfRun(rs[0]) != 1 {
		t.Fatalf("runs of the schedule = %+v", rs)
	}

	// The server is down across the next fire and back 20 minutes after
	// it: inside the 90-minute window it catches up, once.
	dataDir := s.DataDir
	restart := func() {
		s = testutil.StartServer(t, testutil.WithClock(&clock), fastTick(30*time.Millisecond), func(c *server.Config) { c.DataDir = dataDir })
		admin = s.AdminToken(t)
	}
	s.Stop(t)
	clock.Advance(70 * time.Minute)
	restart()
	testutil.Eventually(t, 5*time.Second, func() string {
		if n := len(runsOf("hourly")); n != 2 {
			return fmt.Sprintf("%d runs after the restart", n)
		}
		return ""
	})
	time.Sleep(200 * time.Millisecond)
	if rs := runsOf("hourly"); len(rs) != 2 || !rs[0].StartedAt.Equal(sc.NextFireAt.Add(time.Hour)) {
		t.Errorf("after the catch-up: %+v", rs)
	}

	// A one-time schedule whose whole window passed while the server was
	// down never fires.
	s.MustDo(t, http.StatusCreated, "PUT", sub+"/updateSchedules/once", admin, wire.UpdateScheduleCreate{
		UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/default"}, At: clock.Now().Add(5 * time.Minute),
		UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{"Security"}, Window: wire.Duration(time.Hour)}}, nil)
	s.Stop(t)
	clock.Advance(70 * time.Minute)
	restart()
	time.Sleep(300 * time.Millisecond)
	if n := len(runsOf("once")); n != 0 {
		t.Errorf("a fire whose window closed while the server was down started %d runs", n)
	}
	var got wire.UpdateSchedule
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateSchedules/once", admin, nil, &got)
	if !got.LastFiredAt.IsZero() || !got.NextFireAt.IsZero() {
		t.Errorf("the missed one-time schedule: %+v", got)
	}
}

func machinesOfRun(r wire.UpdateRun) int {
	c := r.Counts
	return c.Pending + c.InProgress + c.Succeeded + c.CompletedWithWarnings + c.Failed + c.NotStarted
}

// TestSchedulesFireOnceAcrossReplicas: two replicas on one PostgreSQL
// database, both running the scheduler every 20 ms: each fire of a schedule
// starts exactly one run.
func TestSchedulesFireOnceAcrossReplicas(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	a := testutil.StartServer(t, testutil.WithStore(dsn), fastTick(20*time.Millisecond))
	b := testutil.StartServer(t, testutil.WithStore(dsn), testutil.WithCAFrom(a), fastTick(20*time.Millisecond))
	fleet(t, a, "web", 2)
	admin := a.AdminToken(t)
	at := time.Now().Add(1500 * time.Millisecond).UTC()
	for i := range 5 {
		s := a
		if i%2 == 1 {
			s = b
		}
		s.MustDo(t, http.StatusCreated, "PUT", fmt.Sprintf("%s/updateSchedules/once-%d", sub, i), admin, wire.UpdateScheduleCreate{
			UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/default/resourceGroups/web"}, At: at,
			UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{"Security"}}}, nil)
	}
	s := b
	s.MustDo(t, http.StatusCreated, "PUT", sub+"/updateSchedules/assess-once", admin, wire.UpdateScheduleCreate{Kind: wire.ScheduleAssessment,
		UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/default"}, At: at}, nil)
	time.Sleep(time.Until(at) + 2*time.Second)
	var runs wire.List[wire.UpdateRun]
	b.MustDo(t, http.StatusOK, "GET", sub+"/updateRuns", admin, nil, &runs)
	per := map[string]int{}
	for _, r := range runs.Value {
		per[r.Schedule]++
	}
	for i := range 5 {
		if n := per[fmt.Sprintf("once-%d", i)]; n != 1 {
			t.Errorf("schedule once-%d started %d runs across two replicas, want 1", i, n)
		}
	}
	var hist wire.List[wire.UpdateAssessment]
	a.MustDo(t, http.StatusOK, "GET", sub+"/resourceGroups/web/machines/vm-00/updateAssessments", admin, nil, &hist)
	scheduled := 0
	for _, h := range hist.Value {
		if h.Trigger == wire.TriggerSchedule {
			scheduled++
		}
	}
	if scheduled != 1 {
		t.Errorf("the assessment schedule asked vm-00 %d times, want once", scheduled)
	}
}

// TestUpdateManagerRoleAtAResourceGroup: the built-in Update Manager role
// held at one resource group may assess, deploy and schedule there and
// nowhere else; Reader sees results and changes nothing.
func TestUpdateManagerRoleAtAResourceGroup(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	fleet(t, s, "web", 1)
	fleet(t, s, "db", 1)
	tokenWith := func(role, scope string) string {
		var sp wire.ServicePrincipalCreated
		s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: role + scope}, &sp)
		s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: role, Scope: scope}, nil)
		return s.ClientToken(t, sp.ClientID, sp.ClientSecret)
	}
	um := tokenWith("Update Manager", "/subscriptions/default/resourceGroups/web")
	reader := tokenWith("Reader", "/")
	set := wire.UpdateDeploymentSettings{Classifications: []string{"Security"}}
	webRun := wire.UpdateRunCreate{UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/default/resourceGroups/web"}, UpdateDeploymentSettings: set}
	dbRun := wire.UpdateRunCreate{UpdateTargets: wire.UpdateTargets{Machines: []string{machineID("db", "vm-00")}}, UpdateDeploymentSettings: set}
	var run wire.UpdateRun
	s.MustDo(t, http.StatusCreated, "POST", sub+"/updateRuns", um, webRun, &run)
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateRuns/"+run.ID, um, nil, nil)
	s.MustDo(t, http.StatusAccepted, "POST", sub+"/updateAssessments", um, wire.UpdateAssessmentCreate{UpdateTargets: webRun.UpdateTargets}, nil)
	s.MustDo(t, http.StatusCreated, "PUT", sub+"/updateSchedules/web-nightly", um, wire.UpdateScheduleCreate{UpdateTargets: webRun.UpdateTargets,
		Cron: "0 3 * * *", UpdateDeploymentSettings: set}, nil)
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"POST", sub + "/updateRuns", dbRun},
		{"POST", sub + "/updateRuns", wire.UpdateRunCreate{UpdateTargets: wire.UpdateTargets{Tag: "ring=early"}, UpdateDeploymentSettings: set}},
		{"POST", sub + "/updateAssessments", wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/default"}}},
		{"PUT", sub + "/updateSchedules/db-nightly", wire.UpdateScheduleCreate{UpdateTargets: dbRun.UpdateTargets, Cron: "0 3 * * *", UpdateDeploymentSettings: set}},
		{"GET", sub + "/resourceGroups/db/machines/vm-00/updates", nil},
	} {
		if status, b := s.Do(t, tc.method, tc.path, um, tc.body); status != http.StatusForbidden {
			t.Errorf("Update Manager at rg web: %s %s: %d %s, want 403", tc.method, tc.path, status, b)
		}
	}
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateRuns/"+run.ID, reader, nil, nil)
	s.MustDo(t, http.StatusOK, "GET", sub+"/resourceGroups/web/machines/vm-00/updates", reader, nil, nil)
	if status, _ := s.Do(t, "POST", sub+"/updateRuns", reader, webRun); status != http.StatusForbidden {
		t.Errorf("Reader deployed: %d", status)
	}
	if status, _ := s.Do(t, "DELETE", sub+"/updateSchedules/web-nightly", reader, nil); status != http.StatusForbidden {
		t.Errorf("Reader deleted a schedule: %d", status)
	}
	s.MustDo(t, http.StatusNoContent, "DELETE", sub+"/updateSchedules/web-nightly", um, nil, nil)
}

// TestConcurrentTicksFireOnce: without any lock (SQLite, or a lock lost),
// the compare-and-set of the last fire alone keeps a fire to one run.
func TestConcurrentTicksFireOnce(t *testing.T) {
	t.Parallel()
	var clock testutil.Clock
	s := testutil.StartServer(t, testutil.WithClock(&clock), fastTick(time.Hour))
	admin := s.AdminToken(t)
	fleet(t, s, "web", 1)
	at := clock.Now().Add(time.Minute)
	s.MustDo(t, http.StatusCreated, "PUT", sub+"/updateSchedules/once", admin, wire.UpdateScheduleCreate{
		UpdateTargets: wire.UpdateTargets{Scope: "/subscriptions/default"}, At: at,
		UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{"Other"}}}, nil)
	clock.Advance(2 * time.Minute)
	// Eight schedulers on the server's store, as eight replicas would be,
	// ticking at once without a lock.
	var wg sync.WaitGroup
	for range 8 {
		svc := updates.New(s.Srv.Store, nil, nil, clock.Now, slog.New(slog.DiscardHandler), updates.Settings{})
		wg.Go(func() {
			if err := svc.Tick(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var runs wire.List[wire.UpdateRun]
	s.MustDo(t, http.StatusOK, "GET", sub+"/updateRuns", admin, nil, &runs)
	if len(runs.Value) != 1 {
		t.Errorf("8 concurrent ticks started %d runs", len(runs.Value))
	}
}

// A final state delivered again logs no second outcome; one stored by a
// server that died before logging its outcome (simulated by writing the
// state straight to the store) gets its outcome when the agent, which saw
// no acknowledgement, sends the report again. Assessments and deployments.
func TestFinalReportDeliveredAgainLogsItsOutcomeOnce(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	ms := fleet(t, s, "web", 2)
	ctx, now := t.Context(), time.Now().UTC()
	scope := wire.UpdateTargets{Scope: "/subscriptions/default/resourceGroups/web"}
	s.MustDo(t, http.StatusAccepted, "POST", sub+"/updateAssessments", admin, wire.UpdateAssessmentCreate{UpdateTargets: scope}, nil)
	// vm-00 answers (twice); vm-01's answer was stored, its outcome lost.
	answered := mustSlice(t, s, ms[0]).Assessments[0].ID
	for range 2 {
		s.Report(t, ms[0], wire.ReportUpdateAssessment, wire.UpdateAssessmentResult{ID: answered,
			Trigger: wire.TriggerOnDemand, State: wire.AssessmentSucceeded, Updates: []wire.PendingUpdate{}})
	}
	lost := mustSlice(t, s, ms[1]).Assessments[0].ID
	if ok, err := s.Srv.Store.RecordUpdateAssessment(ctx, store.UpdateAssessment{ID: lost, MachineID: ms[1].MachineID, Trigger: wire.TriggerOnDemand,
		State: wire.AssessmentFailed, Message: "apt is locked", StartedAt: now, FinishedAt: now}, nil, now); !ok || err != nil {
		t.Fatalf("store the lost answer: %v %v", ok, err)
	}
	for range 2 {
		s.Report(t, ms[1], wire.ReportUpdateAssessment, wire.UpdateAssessmentResult{ID: lost, Trigger: wire.TriggerOnDemand,
			State: wire.AssessmentFailed, Message: "apt is locked", Updates: []wire.PendingUpdate{}})
	}
	// A different final state for it is not an outcome.
	s.Report(t, ms[1], wire.ReportUpdateAssessment, wire.UpdateAssessmentResult{ID: lost, Trigger: wire.TriggerOnDemand,
		State: wire.AssessmentSucceeded, Updates: []wire.PendingUpdate{}})

	var run wire.UpdateRun
	s.MustDo(t, http.StatusCreated, "POST", sub+"/updateRuns", admin, wire.UpdateRunCreate{UpdateTargets: scope,
		UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{"Security"}, Reboot: wire.RebootNever, Window: wire.Duration(time.Hour)}}, &run)
	testutil.Eventually(t, 10*time.Second, func() string {
		for _, m := range ms {
			if sl, _ := s.UpdatesSlice(t, m); len(sl.Deployments) != 1 {
				return "no deployment in a desired state yet"
			}
		}
		return ""
	})
	done := wire.UpdateDeploymentReport{ID: run.ID, State: wire.UpdateSucceeded, Manager: "apt", Reboot: wire.RebootNotNeeded,
		Packages: []wire.UpdatePackageResult{}, StartedAt: now, FinishedAt: now}
	for range 2 {
		s.Report(t, ms[0], wire.ReportUpdateDeployment, done)
	}
	if ok, err := s.Srv.Store.ReportUpdateRunMachine(ctx, store.UpdateRunMachine{RunID: run.ID, MachineID: ms[1].MachineID, Status: wire.UpdateSucceeded,
		Reboot: wire.RebootNotNeeded, Packages: []byte(`[]`), StartedAt: now, FinishedAt: now, UpdatedAt: now}); !ok || err != nil {
		t.Fatalf("store the lost deployment report: %v %v", ok, err)
	}
	for range 2 {
		s.Report(t, ms[1], wire.ReportUpdateDeployment, done)
	}

	for _, m := range []string{"vm-00", "vm-01"} {
		var acts wire.List[wire.ActivityEntry]
		s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?"+url.Values{"scope": {machineID("web", m)}}.Encode(), admin, nil, &acts)
		got := map[string]int{}
		for _, e := range acts.Value {
			if e.Method == "AGENT" && e.Caller == "admin" {
				got[e.Action+" "+e.Result]++
			}
		}
		want := map[string]int{"Corral.Updates/assessments/action Succeeded": 1, "Corral.Updates/updateRuns/write Succeeded": 1}
		if m == "vm-01" {
			want = map[string]int{"Corral.Updates/assessments/action Failed": 1, "Corral.Updates/updateRuns/write Succeeded": 1}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: outcomes %v, want %v", m, got, want)
		}
	}
}
