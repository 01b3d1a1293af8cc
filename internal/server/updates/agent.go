package updates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Bounds on what an agent report may carry (text is cut to them, lists
// beyond them refused as malformed).
const (
	maxReportIDLength   = 128
	maxMessageBytes     = 4 << 10
	maxFieldBytes       = 512
	maxPackagesReported = wire.MaxUpdatesPerAssessment
	maxScriptOutput     = 16 << 10
)

// Register adds the updates slice of the desired state and the handlers of
// the updates feature's reports.
func (s *Service) Register(r *capability.Registry) {
	r.AddContributor("updates", s)
	r.AddReportHandler(wire.ReportUpdateAssessment, capability.ReportHandlerFunc(s.handleAssessment))
	r.AddReportHandler(wire.ReportUpdateDeployment, capability.ReportHandlerFunc(s.handleDeployment))
	r.AddReportHandler(wire.ReportUpdateReboot, capability.ReportHandlerFunc(s.handleReboot))
}

var (
	_ capability.Registrant         = (*Service)(nil)
	_ capability.DesiredContributor = (*Service)(nil)
)

// ContributeDesired writes the updates slice of each enrolled machine: the
// periodic interval, the assessment requests not yet answered and the
// deployments sent to it and not finished. Machines never targeted get no
// slice (their agent does nothing for updates).
func (s *Service) ContributeDesired(ctx context.Context, batch []capability.Desired) error {
	enrolled, err := s.store.MachinesEnrolledForUpdates(ctx, capability.MachineIDs(batch))
	if err != nil || len(enrolled) == 0 {
		return err
	}
	for _, d := range batch {
		if !slices.Contains(enrolled, d.Machine.ID) {
			continue
		}
		if err := s.contributeMachine(ctx, d.Machine, d.State); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) contributeMachine(ctx context.Context, m store.Machine, ds *wire.DesiredState) error {
	slice := wire.UpdatesDesired{AssessmentInterval: wire.Duration(s.settings.AssessmentInterval)}
	as, err := s.store.ListPendingUpdateAssessments(ctx, m.ID, 100)
	if err != nil {
		return err
	}
	for _, a := range as {
		slice.Assessments = append(slice.Assessments, wire.DesiredUpdateAssessment{ID: a.ID})
	}
	dis, err := s.store.ListUpdateDispatches(ctx, m.ID)
	if err != nil {
		return err
	}
	for _, d := range dis {
		dd := wire.DesiredUpdateDeployment{ID: d.Run.ID, Deadline: d.Run.Deadline}
		if err := json.Unmarshal(d.Run.Settings, &dd.UpdateDeploymentSettings); err != nil {
			return fmt.Errorf("settings of update run %s: %w", d.Run.ID, err)
		}
		slice.Deployments = append(slice.Deployments, dd)
	}
	return capability.SetFeature(ds, wire.FeatureUpdates, slice)
}

// clip makes agent text safe to store: valid UTF-8 without NUL, at most n
// bytes cut on a rune boundary.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func malformed(what string, args ...any) error {
	return refusal.Invalid("reports.body", "malformed %s", fmt.Sprintf(what, args...))
}

func validID(id string) bool {
	return id != "" && len(id) <= maxReportIDLength && utf8.ValidString(id) && !strings.ContainsAny(id, "\x00\n\r")
}

func (s *Service) handleAssessment(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var res wire.UpdateAssessmentResult
	if err := capability.DecodeReport(r, &res); err != nil {
		return err
	}
	switch {
	case !validID(res.ID):
		return malformed("update assessment report: bad id")
	case res.Trigger != wire.TriggerOnDemand && res.Trigger != wire.TriggerPeriodic:
		return malformed("update assessment report: trigger %q", clip(res.Trigger, 32))
	case res.State != wire.AssessmentSucceeded && res.State != wire.AssessmentFailed:
		return malformed("update assessment report: state %q", clip(res.State, 32))
	case len(res.Updates) > maxPackagesReported:
		return malformed("update assessment report: %d updates, at most %d", len(res.Updates), maxPackagesReported)
	}
	a := store.UpdateAssessment{ID: res.ID, MachineID: m.ID, Trigger: res.Trigger, State: res.State, Reason: clip(res.Reason, 64),
		Message: clip(res.Message, maxMessageBytes), Manager: clip(res.Manager, 32), Refreshed: res.Refreshed,
		RebootPending: res.RebootPending, StartedAt: res.StartedAt.UTC(), FinishedAt: res.FinishedAt.UTC()}
	if a.FinishedAt.IsZero() || a.FinishedAt.After(at.Add(time.Minute)) {
		a.FinishedAt = at // never trust a clock ahead of the server's for ordering
	}
	var req store.UpdateAssessment
	if res.Trigger == wire.TriggerPeriodic {
		a.ID = m.ID + ":" + res.ID
		a.RequestedAt = a.StartedAt
	} else {
		var err error
		req, err = s.store.GetUpdateAssessment(ctx, res.ID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && req.MachineID != m.ID) {
			return nil // expired and gone, or not this machine's: nothing to record
		}
		if err != nil {
			return err
		}
		a.BatchID, a.Trigger, a.Origin, a.RequestedAt, a.RequestedBy = req.BatchID, req.Trigger, req.Origin, req.RequestedAt, req.RequestedBy
	}
	var updates []byte
	if res.State == wire.AssessmentSucceeded {
		ups := make([]wire.PendingUpdate, 0, len(res.Updates))
		for _, u := range res.Updates {
			cls, ok := canonical(u.Classification, wire.UpdateClassifications)
			if !ok || u.Name == "" {
				return malformed("update assessment report: update %q classification %q", clip(u.Name, 64), clip(u.Classification, 32))
			}
			u.Classification = cls
			u.Name, u.Arch, u.Source = clip(u.Name, maxFieldBytes), clip(u.Arch, 32), clip(u.Source, maxFieldBytes)
			u.InstalledVersion, u.CandidateVersion = clip(u.InstalledVersion, maxFieldBytes), clip(u.CandidateVersion, maxFieldBytes)
			if len(u.Advisories) > 64 {
				u.Advisories = u.Advisories[:64]
			}
			for i := range u.Advisories {
				u.Advisories[i] = clip(u.Advisories[i], 128)
			}
			switch cls {
			case wire.UpdateCritical:
				a.Critical++
			case wire.UpdateSecurity:
				a.Security++
			default:
				a.Other++
			}
			ups = append(ups, u)
		}
		updates, _ = json.Marshal(ups)
	}
	if a.Trigger != wire.TriggerPeriodic && req.State != wire.AssessmentPending {
		if req.State == a.State {
			// The final state delivered again: its outcome is logged
			// only if the server that stored it did not live to log it.
			s.assessmentOutcome(ctx, m, req, at, true)
		}
		return nil
	}
	applied, err := s.store.RecordUpdateAssessment(ctx, a, updates, at)
	if err != nil || !applied || a.Trigger == wire.TriggerPeriodic {
		return err
	}
	s.assessmentOutcome(ctx, m, a, at, false)
	return nil
}

// assessmentOutcome logs how an on-demand assessment ended, in the name of
// whoever asked; once: unless that is logged already.
func (s *Service) assessmentOutcome(ctx context.Context, m store.Machine, a store.UpdateAssessment, at time.Time, once bool) {
	msg := fmt.Sprintf("update assessment of %s: %s", m.Name, a.State)
	if a.State == wire.AssessmentSucceeded {
		msg += fmt.Sprintf(": %d critical, %d security, %d other pending", a.Critical, a.Security, a.Other)
		if !a.Refreshed {
			msg += " (package lists not refreshed)"
		}
	} else if a.Message != "" {
		msg += ": " + a.Message
	}
	result := wire.ResultSucceeded
	if a.State != wire.AssessmentSucceeded {
		result = wire.ResultFailed
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(a.Origin), Action: actionAssess, Scope: m.ResourceID().String(),
		Result: result, Message: msg, At: at, Once: once})
}

// Actions outcomes are logged under (the RBAC actions of the requests).
const (
	actionAssess = "Corral.Updates/assessments/action"
	actionDeploy = "Corral.Updates/updateRuns/write"
)

var agentRunStates = []string{wire.UpdateInProgress, wire.UpdateSucceeded, wire.UpdateCompletedWithWarnings, wire.UpdateFailed}

var rebootStates = []string{"", wire.RebootNotNeeded, wire.RebootRequiredNotAllowed, wire.RebootStarted, wire.RebootFailedState}

var packageStates = []string{wire.PackageInstalled, wire.PackageFailed, wire.PackageNotStarted, wire.PackageNotSelected, wire.PackageExcluded}

func clipScript(r *wire.UpdateScriptResult) *wire.UpdateScriptResult {
	if r == nil {
		return nil
	}
	return &wire.UpdateScriptResult{ExitCode: r.ExitCode, Output: clip(r.Output, maxScriptOutput), Message: clip(r.Message, maxMessageBytes)}
}

func (s *Service) handleDeployment(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var rep wire.UpdateDeploymentReport
	if err := capability.DecodeReport(r, &rep); err != nil {
		return err
	}
	switch {
	case !validID(rep.ID):
		return malformed("update deployment report: bad id")
	case !slices.Contains(agentRunStates, rep.State):
		return malformed("update deployment report: state %q", clip(rep.State, 32))
	case !slices.Contains(rebootStates, rep.Reboot):
		return malformed("update deployment report: reboot %q", clip(rep.Reboot, 32))
	case len(rep.Packages) > maxPackagesReported:
		return malformed("update deployment report: %d packages, at most %d", len(rep.Packages), maxPackagesReported)
	}
	for i := range rep.Packages {
		p := &rep.Packages[i]
		if p.Name == "" || !slices.Contains(packageStates, p.Status) {
			return malformed("update deployment report: package %q status %q", clip(p.Name, 64), clip(p.Status, 32))
		}
		p.Name, p.Arch, p.Classification = clip(p.Name, maxFieldBytes), clip(p.Arch, 32), clip(p.Classification, 32)
		p.BeforeVersion, p.AfterVersion, p.Message = clip(p.BeforeVersion, maxFieldBytes), clip(p.AfterVersion, maxFieldBytes), clip(p.Message, maxMessageBytes)
	}
	cur, err := s.store.GetUpdateRunMachine(ctx, rep.ID, m.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // not a run of this machine, or the run is gone
	}
	if err != nil {
		return err
	}
	row := store.UpdateRunMachine{RunID: rep.ID, MachineID: m.ID, Status: rep.State, Reason: clip(rep.Reason, 64),
		Message: clip(rep.Message, maxMessageBytes), Current: clip(rep.Current, maxFieldBytes), RebootRequired: rep.RebootRequired,
		Reboot: rep.Reboot, Recovery: clip(rep.Recovery, maxMessageBytes), StartedAt: rep.StartedAt.UTC(), UpdatedAt: at}
	if row.StartedAt.IsZero() || row.StartedAt.After(at.Add(time.Minute)) {
		row.StartedAt = at
	}
	if finalMachine(rep.State) {
		row.FinishedAt, row.Current = rep.FinishedAt.UTC(), ""
		if row.FinishedAt.IsZero() || row.FinishedAt.After(at.Add(time.Minute)) {
			row.FinishedAt = at
		}
	}
	if rep.PreScript != nil || rep.PostScript != nil {
		row.Scripts, _ = json.Marshal(scriptsDoc{PreScript: clipScript(rep.PreScript), PostScript: clipScript(rep.PostScript)})
	}
	if rep.Packages != nil {
		row.Packages, _ = json.Marshal(rep.Packages)
	} else {
		row.Packages = cur.Packages
	}
	applied, err := s.store.ReportUpdateRunMachine(ctx, row)
	if err != nil || !finalMachine(rep.State) {
		return err
	}
	if !applied && cur.Status != rep.State {
		return nil
	}
	run, err := s.store.GetUpdateRun(ctx, rep.ID)
	if err != nil {
		return nil
	}
	if !applied {
		// The final state delivered again: its outcome is logged only if
		// the server that stored it did not live to log it.
		s.machineOutcome(ctx, run, m, cur, at, true)
		return nil
	}
	s.machineOutcome(ctx, run, m, row, at, false)
	s.kickRun(rep.ID)
	return nil
}

// machineOutcome logs how one machine's deployment ended; once: unless that
// is logged already.
func (s *Service) machineOutcome(ctx context.Context, run store.UpdateRun, m store.Machine, row store.UpdateRunMachine, at time.Time, once bool) {
	installed, failed := 0, 0
	var ps []wire.UpdatePackageResult
	_ = json.Unmarshal(row.Packages, &ps)
	for _, p := range ps {
		switch p.Status {
		case wire.PackageInstalled:
			installed++
		case wire.PackageFailed:
			failed++
		}
	}
	msg := fmt.Sprintf("update run %s on %s: %s", run.ID, m.Name, row.Status)
	if row.Reason != "" {
		msg += " (" + row.Reason + ")"
	}
	msg += fmt.Sprintf(": %d installed, %d failed", installed, failed)
	if row.Message != "" {
		msg += ": " + row.Message
	}
	result := wire.ResultSucceeded
	if row.Status == wire.UpdateFailed || row.Status == wire.UpdateNotStarted {
		result = wire.ResultFailed
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(run.Origin), Action: actionDeploy, Scope: m.ResourceID().String(),
		Result: result, Message: clip(msg, maxMessageBytes), At: at, Once: once})
}

func (s *Service) handleReboot(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var rep wire.UpdateRebootReport
	if err := capability.DecodeReport(r, &rep); err != nil {
		return err
	}
	if !validID(rep.ID) || (rep.State != wire.RebootPerformed && rep.State != wire.RebootFailedState) {
		return malformed("update reboot report")
	}
	msg := clip(rep.Message, maxMessageBytes)
	if msg == "" {
		msg = "reboot " + strings.ToLower(rep.State)
	}
	applied, err := s.store.SetUpdateRunMachineReboot(ctx, rep.ID, m.ID, rep.State, msg, at)
	if err != nil || !applied {
		return err
	}
	if run, err := s.store.GetUpdateRun(ctx, rep.ID); err == nil {
		result := wire.ResultSucceeded
		if rep.State != wire.RebootPerformed {
			result = wire.ResultFailed
		}
		s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(run.Origin), Action: actionDeploy, Scope: m.ResourceID().String(),
			Result: result, Message: fmt.Sprintf("reboot after update run %s on %s: %s: %s", run.ID, m.Name, rep.State, msg), At: at})
	}
	return nil
}

// kickRun asks this replica's scheduler loop to advance run id soon.
func (s *Service) kickRun(id string) {
	select {
	case s.kick <- id:
	default:
	}
}
