package extensions

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Register adds the extension context's part of the desired state and its
// report handlers: extension and run-command reports, and applied
// generations (which let extensions being deleted go).
func (s *Service) Register(r *capability.Registry) {
	r.AddContributor("extensions", s)
	r.AddReportHandler(wire.ReportExtension, capability.ReportHandlerFunc(s.handleExtensionReport))
	r.AddReportHandler(wire.ReportRunCommand, capability.ReportHandlerFunc(s.handleRunCommandReport))
	r.AddReportHandler(wire.ReportApplied, capability.ReportHandlerFunc(s.handleApplied))
}

var (
	_ capability.Registrant         = (*Service)(nil)
	_ capability.DesiredContributor = (*Service)(nil)
)

// ContributeDesired writes what the agent of each machine should reconcile
// toward: every extension not being deleted (by name), the signing key of
// each of their publishers (by name), and every run not yet finished
// (oldest first).
func (s *Service) ContributeDesired(ctx context.Context, batch []capability.Desired) error {
	ids := capability.MachineIDs(batch)
	es, err := s.store.ListMachineExtensionsOf(ctx, ids)
	if err != nil {
		return err
	}
	// Well above MaxUnfinishedRuns: creations racing past the limit are
	// still sent.
	runs, err := s.store.ListUnfinishedRunCommandsOf(ctx, ids, 1000)
	if err != nil {
		return err
	}
	extsOf := capability.ByMachine(es, func(e store.MachineExtension) string { return e.MachineID })
	runsOf := capability.ByMachine(runs, func(rc store.RunCommand) string { return rc.MachineID })
	// Most machines of a batch name the same publishers.
	keys := map[string]wire.PublisherKey{}
	for _, d := range batch {
		ds := d.State
		named := map[string]bool{}
		for _, e := range extsOf[d.Machine.ID] {
			if e.Deleting {
				continue
			}
			ds.Extensions = append(ds.Extensions, wire.DesiredExtension{Name: e.Name, Publisher: e.Publisher, Type: e.Type,
				Version: e.Version, Digest: e.Digest, Settings: e.Settings, ProtectedSettings: e.ProtectedSettings, SeqNo: e.SeqNo})
			if named[e.Publisher] {
				continue
			}
			named[e.Publisher] = true
			k, ok := keys[e.Publisher]
			if !ok {
				p, err := s.store.GetPublisher(ctx, e.Publisher)
				if err != nil {
					return err
				}
				k = wire.PublisherKey{Name: p.Name, PublicKey: p.PublicKey}
				keys[e.Publisher] = k
			}
			ds.Publishers = append(ds.Publishers, k)
		}
		slices.SortFunc(ds.Publishers, func(a, b wire.PublisherKey) int { return strings.Compare(a.Name, b.Name) })
		for _, rc := range slices.Backward(runsOf[d.Machine.ID]) {
			ds.RunCommands = append(ds.RunCommands, wire.DesiredRunCommand{Name: rc.Name, Script: rc.Script, Command: rc.Command,
				Parameters: rc.Parameters, ProtectedParameters: rc.ProtectedParameters, RunAsUser: rc.RunAsUser, Timeout: wire.Duration(rc.Timeout)})
		}
	}
	return nil
}

func (s *Service) handleExtensionReport(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var st wire.ExtensionStatus
	if err := capability.DecodeReport(r, &st); err != nil {
		return err
	}
	_, err := s.ApplyExtensionReport(ctx, m, st, at)
	return err
}

func (s *Service) handleRunCommandReport(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var res wire.RunCommandResult
	if err := capability.DecodeReport(r, &res); err != nil {
		return err
	}
	_, err := s.ApplyRunCommandReport(ctx, m.ID, res, at)
	return err
}

func (s *Service) handleApplied(ctx context.Context, m store.Machine, r wire.Report, _ time.Time) error {
	var ap wire.AppliedState
	if err := capability.DecodeReport(r, &ap); err != nil {
		return err
	}
	if ap.Generation <= 0 {
		return nil
	}
	return s.AppliedGeneration(ctx, m.ID, ap.Generation)
}

var extensionStates = []string{wire.ExtCreating, wire.ExtUpdating, wire.ExtDeleting, wire.ExtSucceeded, wire.ExtFailed}

// ApplyExtensionReport records an agent's report on one of its extensions.
//
//   - Removed=true drops the resource if it is being deleted and the
//     report's SeqNo is not newer than the resource's.
//   - A report of Operation "remove" updates state, message and version
//     while the resource is being deleted (SeqNo not newer than its own).
//   - Any other report updates them only for the resource's current SeqNo
//     and while it is not being deleted.
//
// Everything else (stale SeqNo, an unknown name) is ignored: it returns
// applied = false and no error, so the agent's outbox moves on. Malformed
// reports are refusal.ErrInvalid. m is the reporting machine as its agent
// authenticated (its name and resource id go into the outcome entry).
func (s *Service) ApplyExtensionReport(ctx context.Context, m store.Machine, st wire.ExtensionStatus, at time.Time) (bool, error) {
	machineID := m.ID
	if st.Name == "" || len(st.Name) > maxReportedNameLength || !slices.Contains(extensionStates, st.State) || st.SeqNo < 0 ||
		len(st.Version) > 32 || !cleanText(st.Name, st.Version, st.Operation) {
		return false, refusal.Invalid("reports.body", "malformed extension report")
	}
	// The outcome is logged once, when the resource moves to a final state
	// (a report delivered twice is not), in the report's own transaction:
	// the state is never stored without its entry.
	final := st.State == wire.ExtSucceeded || st.State == wire.ExtFailed
	var outcome store.ExtensionOutcome
	if final && s.outcomes != nil {
		outcome = func(before store.MachineExtension) (store.ActivityEntry, bool) {
			wasFinal := before.State == wire.ExtSucceeded || before.State == wire.ExtFailed
			if wasFinal && !st.Removed {
				return store.ActivityEntry{}, false
			}
			return s.outcomes.OutcomeEntry(extensionOutcome(m, before, st, at)), true
		}
	}
	var applied bool
	var err error
	if st.Removed {
		applied, err = s.store.RemoveMachineExtension(ctx, machineID, st.Name, st.SeqNo, outcome)
	} else {
		applied, err = s.reports.Call(ctx, store.ExtensionReportOn{MachineID: machineID, Name: st.Name, SeqNo: st.SeqNo,
			Remove: st.Operation == OpRemove, ExtensionReport: store.ExtensionReport{
				Version: st.Version, State: st.State, Message: capText(st.Message, maxExtensionMsgBytes), At: at, Outcome: outcome}})
	}
	if err != nil {
		return false, err
	}
	s.log.DebugContext(ctx, "extension report", "machine", machineID, "extension", st.Name, "op", st.Operation, "state", st.State,
		"seq", st.SeqNo, "removed", st.Removed, "applied", applied)
	return applied, nil
}

// extensionOutcome is what the machine did with the operation requested on
// extension e: "install Acme/Monitor 1.1.0: blocked by the local agent
// configuration: ...".
func extensionOutcome(m store.Machine, e store.MachineExtension, st wire.ExtensionStatus, at time.Time) capability.Outcome {
	op := st.Operation
	if st.Removed {
		op = OpRemove
	}
	// The version the operation was about: the one asked for, except for a
	// removal (of what the machine had).
	version := e.Version
	if op == OpRemove && st.Version != "" {
		version = st.Version
	}
	msg := fmt.Sprintf("%s %s/%s %s on %s: %s", op, e.Publisher, e.Type, version, m.Name, st.State)
	if st.Message != "" {
		msg += ": " + st.Message
	}
	result := wire.ResultSucceeded
	if st.State == wire.ExtFailed {
		result = wire.ResultFailed
	}
	return capability.Outcome{Origin: capability.DecodeOrigin(e.Origin), Scope: m.ResourceID().Extension(e.Name).String(),
		Result: result, Message: msg, At: at}
}

// cleanText reports whether every string is valid UTF-8 without NUL bytes,
// which PostgreSQL's text columns refuse: a malformed report is a 400 the
// agent drops, never a 500 that blocks its queue.
func cleanText(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return false
		}
	}
	return true
}

var finalRunStates = []string{wire.RunSucceeded, wire.RunFailed, wire.RunTimedOut}

// ApplyRunCommandReport records an agent's report on a run: Running when it
// starts, then a final state with exit code and output (capped at
// wire.MaxHandlerOutputBytes each). A final state is never changed again;
// reports on unknown runs are ignored.
func (s *Service) ApplyRunCommandReport(ctx context.Context, machineID string, r wire.RunCommandResult, at time.Time) (bool, error) {
	if r.Name == "" || len(r.Name) > maxReportedNameLength || (r.State != wire.RunRunning && !slices.Contains(finalRunStates, r.State)) ||
		!cleanText(r.Name) || r.ExitCode != nil && (*r.ExitCode < math.MinInt32 || *r.ExitCode > math.MaxInt32) {
		return false, refusal.Invalid("reports.body", "malformed run command report")
	}
	u := store.RunCommandUpdate{State: r.State, ExitCode: r.ExitCode, Stdout: capText(r.Stdout, wire.MaxHandlerOutputBytes),
		Stderr: capText(r.Stderr, wire.MaxHandlerOutputBytes), Message: capText(r.Message, maxRunMessageBytes),
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, At: at}
	if r.State == wire.RunRunning {
		// Overdue runs are judged by the server's clock (ExpireRunCommands),
		// so the start is when the server heard of it, not the agent's
		// possibly skewed time.
		u.StartedAt = at
	}
	if u.FinishedAt.IsZero() && slices.Contains(finalRunStates, r.State) {
		u.FinishedAt = at
	}
	applied, err := s.store.UpdateRunCommand(ctx, machineID, r.Name, u)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.log.DebugContext(ctx, "run command report", "machine", machineID, "run", r.Name, "state", r.State, "applied", applied)
	if slices.Contains(finalRunStates, r.State) {
		// A final state that changes nothing is a report delivered again:
		// its outcome is logged only if the server that applied it the
		// first time did not live to log it.
		if rc, err := s.store.GetRunCommand(ctx, machineID, r.Name); err == nil && slices.Contains(finalRunStates, rc.State) {
			s.runOutcome(ctx, rc, at, !applied)
		}
	}
	return applied, nil
}

// ExpireRuns fails the runs their machine did not start or finish in time
// (store.ExpireRunCommands), logs each one's Failed outcome in the name of
// whoever started it, and returns machine id -> new generation.
func (s *Service) ExpireRuns(ctx context.Context, now time.Time, grace time.Duration) (map[string]int64, error) {
	exp, err := s.store.ExpireRunCommands(ctx, now, grace)
	if err != nil {
		return nil, err
	}
	for _, k := range exp.Runs {
		if rc, err := s.store.GetRunCommand(ctx, k[0], k[1]); err == nil {
			s.runOutcome(ctx, rc, now, false)
		}
	}
	return exp.Generations, nil
}

// runOutcome logs how a run ended, in the name of whoever started it; once:
// unless that is logged already.
func (s *Service) runOutcome(ctx context.Context, rc store.RunCommand, at time.Time, once bool) {
	m, err := s.store.GetMachineByID(ctx, rc.MachineID)
	if err != nil {
		return
	}
	msg := fmt.Sprintf("run command %s on %s: %s", rc.Name, m.Name, rc.State)
	if rc.ExitCode != nil {
		msg += fmt.Sprintf(" (exit code %d)", *rc.ExitCode)
	}
	if rc.Message != "" {
		msg += ": " + rc.Message
	}
	result := wire.ResultSucceeded
	if rc.State != wire.RunSucceeded {
		result = wire.ResultFailed
	}
	s.outcome(ctx, capability.Outcome{Origin: capability.DecodeOrigin(rc.Origin), Scope: m.ResourceID().RunCommand(rc.Name).String(),
		Result: result, Message: msg, At: at, Once: once})
}

// AppliedGeneration is called when the agent reports it applied desired
// state generation gen: extensions still Deleting that were already absent
// from that desired state are gone from the machine (or were never there),
// so they are dropped.
func (s *Service) AppliedGeneration(ctx context.Context, machineID string, gen int64) error {
	names, err := s.dropped.Call(ctx, store.AppliedGeneration{MachineID: machineID, Generation: gen})
	if err != nil {
		return err
	}
	if len(names) > 0 {
		s.log.InfoContext(ctx, "deleted extensions dropped after the agent applied their removal", "machine", machineID, "extensions", names, "generation", gen)
	}
	return nil
}

// CatalogForMachine returns a publisher's current signed catalog for an
// agent. Catalogs hold only digests and are readable by every machine.
func (s *Service) CatalogForMachine(ctx context.Context, publisher string) (wire.SignedCatalog, error) {
	return s.GetCatalog(ctx, publisher)
}

// PackageForMachine returns the archive with digest if it is the package of
// one of the machine's desired extensions: a machine cannot download
// arbitrary packages.
func (s *Service) PackageForMachine(ctx context.Context, machineID, digest string) ([]byte, error) {
	if !extpkg.ValidDigest(digest) {
		return nil, refusal.Invalid("digest", "digest %q is not sha256:HEX", digest)
	}
	es, err := s.store.ListMachineExtensions(ctx, machineID)
	if err != nil {
		return nil, err
	}
	desired := slices.ContainsFunc(es, func(e store.MachineExtension) bool { return !e.Deleting && e.Digest == digest })
	if !desired {
		return nil, refusal.NotFound("package %s is not in this machine's desired state", digest)
	}
	b, err := s.store.GetPackageArchive(ctx, digest)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refusal.NotFound("package %s was not found", digest)
	}
	return b, err
}
