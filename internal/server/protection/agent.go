package protection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Register adds the protection slice of the desired state and the handlers
// of the protection reports, and installs protection on machines of
// protected scopes when their agent reports its properties.
func (s *Service) Register(r *capability.Registry) {
	r.AddContributor("protection", s)
	r.AddReportHandler(wire.ReportProtectionStatus, capability.ReportHandlerFunc(s.handleStatus))
	r.AddReportHandler(wire.ReportProtectionDetection, capability.ReportHandlerFunc(s.handleDetection))
	r.AddReportHandler(wire.ReportProtectionScan, capability.ReportHandlerFunc(s.handleScan))
	r.AddReportHandler(wire.ReportProtectionQuarantine, capability.ReportHandlerFunc(s.handleQuarantine))
	r.AddReportHandler(wire.ReportProtectionRestore, capability.ReportHandlerFunc(s.handleRestore))
	r.AddReportHandler(wire.ReportProperties, capability.ReportHandlerFunc(s.handleProperties))
}

var (
	_ capability.Registrant         = (*Service)(nil)
	_ capability.DesiredContributor = (*Service)(nil)
)

// ContributeDesired writes each machine's protection slice: the signature
// key and newest set, its unfinished scans and restores (oldest first) and
// its scope's schedule. A machine nothing concerns gets no slice.
func (s *Service) ContributeDesired(ctx context.Context, batch []capability.Desired) error {
	var sigs *wire.ProtectionSignatureRef
	latest, err := s.store.LatestSignatureSet(ctx)
	switch {
	case err == nil:
		sigs = &wire.ProtectionSignatureRef{Version: uint64(latest.Version), SHA256: latest.SHA256, Size: latest.Size}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	scopes, err := s.store.ListProtectionScopes(ctx)
	if err != nil {
		return err
	}
	ids := capability.MachineIDs(batch)
	scans, err := s.store.ListUnfinishedScansOf(ctx, ids, 100)
	if err != nil {
		return err
	}
	restores, err := s.store.ListUnfinishedRestoresOf(ctx, ids, 100)
	if err != nil {
		return err
	}
	scansOf := capability.ByMachine(scans, func(sc store.ProtectionScan) string { return sc.MachineID })
	restoresOf := capability.ByMachine(restores, func(r store.ProtectionRestore) string { return r.MachineID })
	for _, b := range batch {
		d := wire.ProtectionDesired{Signatures: sigs}
		eff, protected := effective(scopes, b.Machine)
		if protected && len(eff.Schedule) > 0 {
			var sc wire.ProtectionSchedule
			if json.Unmarshal(eff.Schedule, &sc) == nil {
				d.Schedule = &sc
			}
		}
		for _, sc := range slices.Backward(scansOf[b.Machine.ID]) {
			d.Scans = append(d.Scans, wire.ProtectionScanRequest{ID: sc.ID, Type: sc.Type, Paths: sc.Paths, RequestedAt: sc.CreatedAt})
		}
		for _, r := range slices.Backward(restoresOf[b.Machine.ID]) {
			d.Restores = append(d.Restores, wire.ProtectionRestoreRequest{ID: r.ID, QuarantineID: r.QuarantineID, NoExclusion: r.NoExclusion,
				Force: r.Force, RequestedAt: r.CreatedAt})
		}
		if d.Signatures == nil && !protected && len(d.Scans) == 0 && len(d.Restores) == 0 {
			continue
		}
		d.SignatureKey = s.PublicKey()
		if err := capability.SetFeature(b.State, wire.FeatureProtection, d); err != nil {
			return err
		}
	}
	return nil
}

// Limits on what a machine may report.
const (
	maxPathBytes      = 4096
	maxTextBytes      = 1024
	maxQuarantineRows = 10000
)

var (
	reportIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	sha256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func clean(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return false
		}
	}
	return true
}

func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func invalid(what string) error { return refusal.Invalid("reports.body", "malformed %s report", what) }

func (s *Service) handleStatus(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var st wire.ProtectionStatus
	if err := capability.DecodeReport(r, &st); err != nil {
		return err
	}
	if st.State == "" || len(st.Message) > 4*maxTextBytes || !clean(st.State, st.Message, st.EngineVersion, st.SignatureError, st.RealtimeMode,
		st.RealtimeReason, st.Action, st.ReportOnly, st.Limits) {
		return invalid("protection status")
	}
	b, _ := json.Marshal(st)
	err := s.store.PutMachineProtection(ctx, store.MachineProtection{MachineID: m.ID, Status: b, StatusAt: at})
	if errors.Is(err, store.ErrNotFound) {
		return nil // the machine was deleted meanwhile
	}
	return err
}

var detectionActions = []string{wire.DetectionQuarantined, wire.DetectionDeleted, wire.DetectionReported, wire.DetectionDenied, wire.DetectionNotRemoved}

// handleDetection makes an alert of a detection; one delivered twice is one
// alert.
func (s *Service) handleDetection(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var d wire.ProtectionDetection
	if err := capability.DecodeReport(r, &d); err != nil {
		return err
	}
	if !reportIDRE.MatchString(d.ID) || d.Path == "" || len(d.Path) > maxPathBytes || d.Signature == "" || len(d.Signature) > 256 ||
		d.SHA256 != "" && !sha256RE.MatchString(d.SHA256) || !slices.Contains(detectionActions, d.Action) || len(d.Member) > maxPathBytes ||
		len(d.Process) > maxPathBytes || len(d.ScanID) > 64 || len(d.QuarantineID) > 64 || len(d.Source) > 32 ||
		!clean(d.Path, d.Member, d.Signature, d.Source, d.ScanID, d.Event, d.QuarantineID, d.Error, d.Process) {
		return invalid("detection")
	}
	if d.Time.IsZero() {
		d.Time = at
	}
	a := store.Alert{ID: s.newID(), MachineID: m.ID, MachineResource: m.ResourceID().String(), MachineName: m.Name, DetectionID: d.ID,
		Path: d.Path, Member: d.Member, SHA256: d.SHA256, Signature: d.Signature, Action: d.Action, Error: capText(d.Error, maxTextBytes),
		Source: d.Source, ScanID: d.ScanID, Process: d.Process, PID: d.PID, QuarantineID: d.QuarantineID, Time: d.Time.UTC(),
		State: wire.AlertActive, ReceivedAt: at}
	created, err := s.store.CreateAlert(ctx, a)
	if err != nil {
		return err
	}
	if created {
		s.log.WarnContext(ctx, "malware detected", "machine", m.ID, "name", m.Name, "path", d.Path, "signature", d.Signature,
			"action", d.Action, "alert", a.ID)
	}
	return nil
}

var scanStates = []string{wire.ScanRunning, wire.ScanSucceeded, wire.ScanFailed}

// handleScan records a scan's progress; the final state is logged as the
// outcome in the requester's name. A scheduled scan the server did not ask
// for is recorded when it is first reported.
func (s *Service) handleScan(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var res wire.ProtectionScanResult
	if err := capability.DecodeReport(r, &res); err != nil {
		return err
	}
	if !reportIDRE.MatchString(res.ID) || !slices.Contains(scanStates, res.State) || len(res.Type) > 16 || len(res.Paths) > maxScanPaths ||
		!clean(append([]string{res.Type, res.Message}, res.Paths...)...) {
		return invalid("scan")
	}
	u := store.ScanUpdate{State: res.State, Message: capText(res.Message, maxTextBytes), Files: res.Files, Bytes: res.Bytes,
		Infected: res.Infected, Errors: res.Errors, StartedAt: res.StartedAt, FinishedAt: res.FinishedAt, At: at}
	if res.State != wire.ScanRunning && u.FinishedAt.IsZero() {
		u.FinishedAt = at
	}
	applied, err := s.store.UpdateScan(ctx, m.ID, res.ID, u)
	if errors.Is(err, store.ErrNotFound) {
		if !res.Scheduled {
			return nil // a scan the server no longer knows
		}
		err = s.store.RecordScan(ctx, store.ProtectionScan{ID: res.ID, MachineID: m.ID, Type: res.Type, Paths: res.Paths, State: res.State,
			Message: u.Message, Scheduled: true, Files: res.Files, Bytes: res.Bytes, Infected: res.Infected, Errors: res.Errors,
			CreatedAt: at, CreatedBy: "schedule", StartedAt: res.StartedAt, FinishedAt: u.FinishedAt, UpdatedAt: at})
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return nil
		}
		applied = err == nil
	}
	if err != nil {
		return err
	}
	if res.State != wire.ScanRunning {
		// A final state that changes nothing is a report delivered again:
		// its outcome is logged only if the server that stored it did not
		// live to log it.
		sc, err := s.store.GetScan(ctx, m.ID, res.ID)
		if err == nil && (applied || sc.State == res.State) {
			s.scanOutcome(ctx, m, sc, at, !applied)
		}
	}
	return nil
}

// scanOutcome logs how a scan ended, in the name of whoever asked; once:
// unless that is logged already.
func (s *Service) scanOutcome(ctx context.Context, m store.Machine, sc store.ProtectionScan, at time.Time, once bool) {
	what := sc.Type + " scan"
	if sc.Scheduled {
		what = "scheduled " + what
	}
	msg := fmt.Sprintf("%s %s of %s: %s: %d files, %d infected, %d unreadable", what, sc.ID, m.Name, sc.State, sc.Files, sc.Infected, sc.Errors)
	if sc.Message != "" {
		msg += ": " + sc.Message
	}
	result := wire.ResultSucceeded
	if sc.State != wire.ScanSucceeded {
		result = wire.ResultFailed
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(sc.Origin), Action: authz.ActScansWrite,
		Scope: m.ResourceID().String() + "/scans/" + sc.ID, Result: result, Message: msg, At: at, Once: once})
}

func (s *Service) handleQuarantine(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var q wire.ProtectionQuarantineReport
	if err := capability.DecodeReport(r, &q); err != nil {
		return err
	}
	if len(q.Entries) > maxQuarantineRows {
		return invalid("quarantine")
	}
	for _, e := range q.Entries {
		if !quarantineIDRE.MatchString(e.ID) || len(e.Path) > maxPathBytes || len(e.Signature) > 256 || e.SHA256 != "" && !sha256RE.MatchString(e.SHA256) ||
			!clean(e.Path, e.Signature) {
			return invalid("quarantine")
		}
	}
	if q.Entries == nil {
		q.Entries = []wire.QuarantineEntry{}
	}
	b, _ := json.Marshal(q.Entries)
	err := s.store.PutMachineProtection(ctx, store.MachineProtection{MachineID: m.ID, Quarantine: b, QuarantineAt: at})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func (s *Service) handleRestore(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var res wire.ProtectionRestoreResult
	if err := capability.DecodeReport(r, &res); err != nil {
		return err
	}
	if !reportIDRE.MatchString(res.ID) || res.State != wire.ScanSucceeded && res.State != wire.ScanFailed || len(res.Path) > maxPathBytes ||
		!clean(res.Message, res.Path, res.QuarantineID) {
		return invalid("restore")
	}
	applied, err := s.store.FinishRestore(ctx, m.ID, res.ID, res.State, capText(res.Message, maxTextBytes), res.Path, at)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	rs, err := s.store.GetRestore(ctx, m.ID, res.ID)
	// A final state that changes nothing is a report delivered again: its
	// outcome is logged only if the server that stored it did not live to
	// log it.
	if err != nil || !applied && rs.State != res.State {
		return nil
	}
	msg := fmt.Sprintf("restore quarantine entry %s on %s: %s", rs.QuarantineID, m.Name, rs.State)
	if rs.Path != "" {
		msg += " (" + rs.Path + ")"
	}
	if rs.Message != "" {
		msg += ": " + rs.Message
	}
	result := wire.ResultSucceeded
	if rs.State != wire.ScanSucceeded {
		result = wire.ResultFailed
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(rs.Origin), Action: authz.ActQuarantineRestore,
		Scope: m.ResourceID().String() + "/quarantine/" + rs.QuarantineID, Result: result, Message: msg, At: at, Once: !applied})
	return nil
}

// handleProperties installs protection on a machine of a protected scope
// when its agent starts (machines that join later). A failure is logged and
// retried at the agent's next start, never blocking its reports.
func (s *Service) handleProperties(ctx context.Context, m store.Machine, _ wire.Report, _ time.Time) error {
	if err := s.EnsureMachine(ctx, m); err != nil {
		if _, ok := refusal.As(err); ok {
			s.log.WarnContext(ctx, "endpoint protection not installed on a machine of a protected scope", "machine", m.ID, "err", err)
			return nil
		}
		return err
	}
	return nil
}
