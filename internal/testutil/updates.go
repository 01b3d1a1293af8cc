package testutil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// Fixtures for update management at the API level: a machine that answers
// its updates slice the way the agent feature does (the end-to-end tests
// run the real agent on an apt tree).

// UpdatesSlice fetches m's desired state and returns its updates slice
// (ok false when the machine is not enrolled).
func (s *API) UpdatesSlice(t testing.TB, m *Machine) (wire.UpdatesDesired, bool) {
	t.Helper()
	status, b := s.DoMachine(t, m, http.MethodGet, wire.PathDesiredState, nil)
	if status != http.StatusOK {
		t.Fatalf("desired state: %d %s", status, b)
	}
	var ds wire.DesiredState
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	raw, ok := ds.Features[wire.FeatureUpdates]
	if !ok {
		return wire.UpdatesDesired{}, false
	}
	var slice wire.UpdatesDesired
	if err := json.Unmarshal(raw, &slice); err != nil {
		t.Fatalf("updates slice %s: %v", raw, err)
	}
	return slice, true
}

// Report posts one agent report of m and fails unless it was accepted.
func (s *API) Report(t testing.TB, m *Machine, kind string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("test-%s-%d", kind, time.Now().UnixNano())
	status, resp := s.DoMachine(t, m, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: []wire.Report{
		{ID: id, Kind: kind, TakenAt: time.Now().UTC(), Body: b}}})
	var ack wire.ReportAck
	if status != http.StatusOK || json.Unmarshal(resp, &ack) != nil || len(ack.Accepted) != 1 {
		t.Fatalf("report %s: %d %s", kind, status, resp)
	}
}

// AnswerUpdates answers every request of m's updates slice like the agent
// feature: each assessment with ups, each deployment with deploy's report
// (nil: every selected update of ups installed). It returns how many
// requests it answered.
func (s *API) AnswerUpdates(t testing.TB, m *Machine, ups []wire.PendingUpdate,
	deploy func(wire.DesiredUpdateDeployment) wire.UpdateDeploymentReport) int {
	t.Helper()
	slice, ok := s.UpdatesSlice(t, m)
	if !ok {
		return 0
	}
	now := time.Now().UTC()
	for _, a := range slice.Assessments {
		s.Report(t, m, wire.ReportUpdateAssessment, wire.UpdateAssessmentResult{ID: a.ID, Trigger: wire.TriggerOnDemand,
			State: wire.AssessmentSucceeded, Manager: "apt", Refreshed: true, Updates: ups, StartedAt: now, FinishedAt: now})
	}
	for _, d := range slice.Deployments {
		var rep wire.UpdateDeploymentReport
		if deploy != nil {
			rep = deploy(d)
		} else {
			rep = InstallAll(d, ups)
		}
		rep.ID = d.ID
		s.Report(t, m, wire.ReportUpdateDeployment, rep)
	}
	return len(slice.Assessments) + len(slice.Deployments)
}

// InstallAll is the report of a deployment that installed every update of
// ups its classifications select.
func InstallAll(d wire.DesiredUpdateDeployment, ups []wire.PendingUpdate) wire.UpdateDeploymentReport {
	now := time.Now().UTC()
	rep := wire.UpdateDeploymentReport{ID: d.ID, State: wire.UpdateSucceeded, Manager: "apt", Reboot: wire.RebootNotNeeded,
		Packages: []wire.UpdatePackageResult{}, StartedAt: now, FinishedAt: now}
	for _, u := range ups {
		p := wire.UpdatePackageResult{Name: u.Name, Classification: u.Classification, Status: wire.PackageNotSelected,
			BeforeVersion: u.InstalledVersion, AfterVersion: u.InstalledVersion}
		for _, c := range d.Classifications {
			if c == u.Classification {
				p.Status, p.AfterVersion, p.StartedAt, p.FinishedAt = wire.PackageInstalled, u.CandidateVersion, now, now
			}
		}
		rep.Packages = append(rep.Packages, p)
	}
	return rep
}

// SamplePendingUpdates is a realistic pending list: four perl packages
// (Security) among others.
func SamplePendingUpdates() []wire.PendingUpdate {
	mk := func(name, from, to, class string) wire.PendingUpdate {
		src := "bookworm"
		if class == wire.UpdateSecurity {
			src = "bookworm-security"
		}
		return wire.PendingUpdate{Name: name, Arch: "amd64", InstalledVersion: from, CandidateVersion: to, Source: src, Classification: class}
	}
	return []wire.PendingUpdate{
		mk("perl", "5.36.0-7+deb12u1", "5.36.0-7+deb12u2", wire.UpdateSecurity),
		mk("perl-base", "5.36.0-7+deb12u1", "5.36.0-7+deb12u2", wire.UpdateSecurity),
		mk("perl-modules-5.36", "5.36.0-7+deb12u1", "5.36.0-7+deb12u2", wire.UpdateSecurity),
		mk("libperl5.36", "5.36.0-7+deb12u1", "5.36.0-7+deb12u2", wire.UpdateSecurity),
		mk("curl", "7.88.1-10+deb12u7", "7.88.1-10+deb12u8", wire.UpdateOther),
		mk("tzdata", "2024a-0+deb12u1", "2025a-0+deb12u1", wire.UpdateOther),
	}
}
