package updates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/patch"
	"github.com/corralhq/corral/internal/agent/proc"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/wire"
)

// Timing of a deployment.
const (
	// installEstimate is the least time one install is assumed to take.
	installEstimate = time.Minute
	// rebootReserve is kept free at the end of the window when the
	// deployment may reboot.
	rebootReserve = 5 * time.Minute
	// maxScriptTimeout bounds a pre or post script.
	maxScriptTimeout = 30 * time.Minute
	// rebootTimeout bounds the reboot command itself.
	rebootTimeout = 5 * time.Minute
	// scriptOutputCap is what is reported of a script's output.
	scriptOutputCap = 16 << 10
)

// deployKey is the supersede key of a deployment's reports: progress is
// replaced by newer progress and by the result while undelivered.
func deployKey(id string) string { return "deploy:" + id }

// deploy carries out one deployment and reports its progress and result.
func (f *Feature) deploy(ctx context.Context, d wire.DesiredUpdateDeployment) {
	start := f.now()
	if err := f.save(d.ID, record{Kind: kindDeployment, State: stateRunning, At: start}); err != nil {
		// Without the record "at most once" cannot hold: refuse to start.
		f.report(wire.ReportUpdateDeployment, wire.UpdateDeploymentReport{ID: d.ID, State: wire.UpdateFailed,
			Reason: wire.ReasonCanceled, Message: "cannot record the deployment: " + err.Error(), Packages: []wire.UpdatePackageResult{},
			StartedAt: start, FinishedAt: f.now()}, deployKey(d.ID))
		return
	}
	rep := f.carryOut(ctx, d, start)
	if rep.FinishedAt.IsZero() {
		rep.FinishedAt = f.now()
	}
	reboot := rep.Reboot == wire.RebootStarted
	f.report(wire.ReportUpdateDeployment, rep, deployKey(d.ID))
	if err := f.save(d.ID, record{Kind: kindDeployment, State: stateDone, At: f.now()}); err != nil {
		f.env.Logger.Error("record update deployment", "id", d.ID, "err", err)
	}
	f.env.Logger.InfoContext(ctx, "update deployment", "id", d.ID, "state", rep.State, "reason", rep.Reason, "packages", len(rep.Packages),
		"reboot", rep.Reboot)
	if reboot {
		f.reboot(ctx, d.ID)
	}
}

// carryOut runs the checks, the pre script, the installs, the post script
// and decides the reboot; the result's Reboot is Started when the caller
// must reboot.
func (f *Feature) carryOut(ctx context.Context, d wire.DesiredUpdateDeployment, start time.Time) wire.UpdateDeploymentReport {
	rep := wire.UpdateDeploymentReport{ID: d.ID, State: wire.UpdateInProgress, Packages: []wire.UpdatePackageResult{}, StartedAt: start}
	fail := func(reason, msg string) wire.UpdateDeploymentReport {
		rep.State, rep.Reason, rep.Message, rep.FinishedAt = wire.UpdateFailed, reason, msg, f.now()
		return rep
	}
	// The moment before anything runs: root's word as it is now.
	if err := f.allowed(); err != nil {
		f.env.LogRefused(ctx, "update deployment refused by the local configuration", "id", d.ID, "err", err)
		return fail(wire.ReasonBlocked, err.Error())
	}
	if err := f.env.HostChangesRefused(); err != nil {
		f.env.LogRefused(ctx, "update deployment refused: host changes are off", "id", d.ID, "err", err)
		return fail(wire.ReasonHostChangesOff, err.Error())
	}
	if d.PreScript != "" || d.PostScript != "" {
		if err := f.env.Config().CheckExtension(localconfig.OpInstall, wire.ExtRunCommand); err != nil {
			return fail(wire.ReasonBlocked, "the deployment's pre/post scripts are run commands: "+err.Error())
		}
	}
	sel, err := selection(d.UpdateDeploymentSettings)
	if err != nil {
		return fail(wire.ReasonCanceled, err.Error())
	}
	deadline := start.Add(time.Duration(d.Window))
	if !d.Deadline.IsZero() && d.Deadline.Before(deadline) {
		deadline = d.Deadline
	}
	if !start.Before(deadline) {
		return fail(wire.ReasonMaintenanceWindowExceeded, fmt.Sprintf("the deployment reached the machine after its maintenance window closed (%s)",
			deadline.Format(time.RFC3339)))
	}
	m, err := f.manager()
	if err != nil {
		return fail(wire.ReasonUnsupportedOS, err.Error())
	}
	rep.Manager = string(m.Kind())
	f.report(wire.ReportUpdateDeployment, rep, deployKey(d.ID)) // InProgress

	if d.PreScript != "" {
		rep.PreScript = f.runScript(ctx, d.ID, "preScript", d.PreScript, deadline)
		if ctx.Err() != nil {
			return fail(wire.ReasonCanceled, "stopped during the pre script: "+context.Cause(ctx).Error()+"; nothing was installed")
		}
		if rep.PreScript.ExitCode != 0 {
			return fail(wire.ReasonPreScriptFailed, "the pre script failed ("+rep.PreScript.Message+"); nothing was installed")
		}
	}
	reserve := time.Duration(0)
	if d.Reboot != wire.RebootNever {
		reserve = rebootReserve
	}
	lastSent := ""
	res, err := m.Deploy(ctx, patch.Deployment{ID: d.ID, Selection: sel, Deadline: deadline, Reserve: reserve,
		InstallEstimate: installEstimate, JournalDir: f.jdir, Progress: func(j patch.Journal) {
			installed := 0
			for _, p := range j.Packages {
				if p.Status == patch.Installed {
					installed++
				}
			}
			key := fmt.Sprintf("%s/%d/%d", j.Current, installed, len(j.Packages))
			if key == lastSent {
				return
			}
			lastSent = key
			prog := rep
			prog.Current, prog.Packages = j.Current, packageResults(j.Packages)
			f.report(wire.ReportUpdateDeployment, prog, deployKey(d.ID))
		}})
	if err != nil {
		// Bad input or a journal that cannot be written: nothing was done.
		reason := wire.ReasonCanceled
		if errors.Is(err, patch.ErrDeploymentRunning) {
			reason = wire.ReasonInstallFailed
		}
		return fail(reason, err.Error())
	}
	rep.Packages, rep.RebootRequired, rep.Recovery = packageResults(res.Packages), res.RebootRequired, recoveryText(res.Recovery)
	rep.State, rep.Reason, rep.Message = wire.UpdateSucceeded, string(res.Reason), res.Message
	if res.Status == patch.RunFailed {
		rep.State = wire.UpdateFailed
		if res.Reason == patch.ReasonCanceled {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				rep.Message = "stopped: " + cause.Error()
			}
		}
	}
	if d.PostScript != "" && res.Reason != patch.ReasonCanceled {
		rep.PostScript = f.runScript(ctx, d.ID, "postScript", d.PostScript, deadline.Add(maxScriptTimeout))
		if rep.PostScript.ExitCode != 0 && rep.State == wire.UpdateSucceeded {
			rep.State, rep.Reason, rep.Message = wire.UpdateCompletedWithWarnings, wire.ReasonPostScriptFailed, "the post script failed: "+rep.PostScript.Message
		}
	}
	rep.Reboot = wire.RebootNotNeeded
	switch {
	case res.Reason == patch.ReasonCanceled:
	case d.Reboot == wire.RebootAlways || (d.Reboot == wire.RebootIfRequired && res.RebootRequired):
		if err := f.env.HostChangesRefused(); err != nil {
			rep.Reboot = wire.RebootFailedState
			rep.Message = strings.TrimPrefix(rep.Message+"; the reboot was refused: "+err.Error(), "; ")
			if rep.State == wire.UpdateSucceeded {
				rep.State, rep.Reason = wire.UpdateCompletedWithWarnings, wire.ReasonRebootFailed
			}
			break
		}
		rep.Reboot = wire.RebootStarted
	case res.RebootRequired:
		rep.Reboot = wire.RebootRequiredNotAllowed
		if rep.State == wire.UpdateSucceeded {
			rep.State = wire.UpdateCompletedWithWarnings
			rep.Message = "the machine needs a reboot, which the deployment's reboot setting Never did not allow"
		}
	}
	rep.FinishedAt = f.now()
	return rep
}

// selection turns the deployment settings into the engine's selection.
func selection(s wire.UpdateDeploymentSettings) (patch.Selection, error) {
	var sel patch.Selection
	for _, c := range s.Classifications {
		pc, err := patch.ParseClassification(c)
		if err != nil {
			return sel, err
		}
		sel.Classifications = append(sel.Classifications, pc)
	}
	sel.Include, sel.Exclude = s.Include, s.Exclude
	return sel, sel.Validate()
}

func packageResults(ps []patch.PackageResult) []wire.UpdatePackageResult {
	out := make([]wire.UpdatePackageResult, 0, len(ps))
	for _, p := range ps {
		st := string(p.Status)
		if p.Status == patch.Pending {
			st = wire.PackageNotStarted
		}
		out = append(out, wire.UpdatePackageResult{Name: p.Name, Arch: p.Arch, Classification: string(p.Classification), Status: st,
			BeforeVersion: p.BeforeVersion, AfterVersion: p.AfterVersion, Message: p.Message, StartedAt: p.Started, FinishedAt: p.Finished})
	}
	return out
}

// recoveryText says what a deployment found and repaired of an earlier
// one the agent did not finish ("" when there was nothing).
func recoveryText(r patch.Recovery) string {
	var parts []string
	if r.Interrupted {
		what := "an earlier deployment did not finish (the agent stopped during it)"
		if r.Previous != nil {
			what = fmt.Sprintf("deployment %s did not finish (the agent stopped during it", r.Previous.ID)
			if r.Previous.Current != "" {
				what += " while installing " + r.Previous.Current
			}
			what += ")"
		}
		parts = append(parts, what)
	}
	if r.Killed > 0 {
		parts = append(parts, fmt.Sprintf("%d leftover package-manager processes were killed", r.Killed))
	}
	if r.Broken != "" {
		parts = append(parts, "the package database had half-done packages, repaired: "+firstLines(r.Broken, 5))
	}
	return strings.Join(parts, "; ")
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, " / ")
}

// runScript runs a pre or post script like a run command: /bin/sh reading
// it on standard input, as root, in the host root, with a fixed
// environment, until the window ends (at most 30 minutes).
func (f *Feature) runScript(ctx context.Context, runID, which, script string, until time.Time) *wire.UpdateScriptResult {
	timeout := min(until.Sub(f.now()), maxScriptTimeout)
	if timeout < time.Second {
		return &wire.UpdateScriptResult{ExitCode: -1, Message: "no time left in the maintenance window"}
	}
	env := append(proc.HandlerEnv(wire.ExtPatchManagement, f.hostRoot(), which),
		"CORRAL_UPDATE_RUN_ID="+runID, "CORRAL_HOST_ROOT="+f.hostRoot())
	c := proc.Command{Args: []string{"/bin/sh", "-s"}, Dir: f.hostRoot(), Env: env, Stdin: []byte(script), Timeout: timeout,
		Limit: proc.CgroupLimit(f.env.Limiter, wire.ExtPatchManagement+"-"+which, f.env.Config().ExtensionsCPULimit)}
	p, err := proc.Run(ctx, c)
	out := &wire.UpdateScriptResult{ExitCode: p.ExitCode, Output: capOutput(strings.TrimSpace(p.Stdout + "\n" + p.Stderr))}
	switch {
	case err != nil:
		out.ExitCode, out.Message = -1, err.Error()
	case p.TimedOut:
		out.ExitCode, out.Message = -1, fmt.Sprintf("timed out after %s", timeout.Round(time.Second))
	case p.ExitCode != 0:
		out.Message = fmt.Sprintf("exited with code %d: %s", p.ExitCode, proc.LastLine(p.Stderr+"\n"+p.Stdout))
	}
	return out
}

func capOutput(s string) string {
	if len(s) <= scriptOutputCap {
		return s
	}
	return "[…]" + s[len(s)-scriptOutputCap:]
}

// rebootState is STATE/features/updates/reboot.json: a reboot the agent
// started, reported at its next start.
type rebootState struct {
	RunID  string    `json:"runId"`
	At     time.Time `json:"at"`
	BootID string    `json:"bootId,omitempty"`
}

func (f *Feature) rebootFile() string { return filepath.Join(f.dir, "reboot.json") }

// reboot records the reboot, then runs the local reboot command once. A
// command that fails is reported at once; one that succeeds is reported
// by the next start.
func (f *Feature) reboot(ctx context.Context, runID string) {
	cfg := f.env.Config()
	st := rebootState{RunID: runID, At: f.now(), BootID: f.bootID()}
	b, _ := json.Marshal(st)
	if err := statedir.WriteFileAtomic(f.rebootFile(), b, statedir.PrivateMode); err != nil {
		f.report(wire.ReportUpdateReboot, wire.UpdateRebootReport{ID: runID, State: wire.RebootFailedState,
			Message: "the reboot was not started: cannot record it: " + err.Error(), At: f.now()}, "reboot:"+runID)
		return
	}
	command := cfg.RebootCommand
	if command == "" {
		command = localconfig.DefaultRebootCommand
	}
	f.env.Logger.WarnContext(ctx, "rebooting the machine after an update deployment", "run", runID, "command", command)
	env := append(proc.HandlerEnv(wire.ExtPatchManagement, f.hostRoot(), "reboot"),
		"CORRAL_UPDATE_RUN_ID="+runID, "CORRAL_HOST_ROOT="+f.hostRoot())
	p, err := proc.Run(context.WithoutCancel(ctx), proc.Command{Args: []string{"/bin/sh", "-c", command}, Dir: f.hostRoot(), Env: env,
		Timeout: rebootTimeout})
	msg := ""
	switch {
	case err != nil:
		msg = err.Error()
	case p.TimedOut:
		msg = fmt.Sprintf("timed out after %s", rebootTimeout)
	case p.ExitCode != 0:
		msg = fmt.Sprintf("exited with code %d: %s", p.ExitCode, proc.LastLine(p.Stderr+"\n"+p.Stdout))
	}
	if msg != "" {
		os.Remove(f.rebootFile())
		f.report(wire.ReportUpdateReboot, wire.UpdateRebootReport{ID: runID, State: wire.RebootFailedState,
			Message: "the reboot command (" + localconfig.KeyRebootCommand + ") failed: " + msg, At: f.now()}, "reboot:"+runID)
	}
}

// reportReboot reports a reboot a previous agent started: Performed when
// the host's boot id changed since (or cannot be told), Failed when it
// did not (the command returned but the machine never restarted).
func (f *Feature) reportReboot(ctx context.Context) {
	b, err := os.ReadFile(f.rebootFile())
	if err != nil {
		return
	}
	var st rebootState
	if json.Unmarshal(b, &st) != nil || !validID(st.RunID) {
		os.Remove(f.rebootFile())
		return
	}
	rep := wire.UpdateRebootReport{ID: st.RunID, State: wire.RebootPerformed, At: f.now()}
	now := f.bootID()
	switch {
	case st.BootID == "" || now == "":
		rep.Message = fmt.Sprintf("the agent started again %s after the reboot command ran (the boot id cannot be read)",
			rep.At.Sub(st.At).Round(time.Second))
	case now != st.BootID:
		rep.Message = fmt.Sprintf("the machine restarted: the agent started again %s after the reboot command ran", rep.At.Sub(st.At).Round(time.Second))
	default:
		rep.State = wire.RebootFailedState
		rep.Message = "the reboot command ran but the machine did not restart (its boot id is unchanged)"
	}
	f.report(wire.ReportUpdateReboot, rep, "reboot:"+st.RunID)
	f.env.Logger.InfoContext(ctx, "reboot after an update deployment", "run", st.RunID, "state", rep.State)
	os.Remove(f.rebootFile())
}

// reportInterrupted reports deployments a previous agent started and never
// finished (its record still Running), truthfully from the engine's
// journal, and never runs them again.
func (f *Feature) reportInterrupted(ctx context.Context) {
	entries, err := os.ReadDir(f.opsDir())
	if err != nil {
		return
	}
	j, jerr := patch.LastRun(f.jdir)
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		r, known := f.load(id)
		if !known || r.Kind != kindDeployment || r.State != stateRunning {
			continue
		}
		rep := wire.UpdateDeploymentReport{ID: id, State: wire.UpdateFailed, Reason: wire.ReasonInterrupted, Packages: []wire.UpdatePackageResult{},
			StartedAt: r.At, FinishedAt: f.now()}
		switch {
		case jerr == nil && j != nil && j.ID == id && j.State == patch.JournalFinished:
			// The engine finished; the agent stopped before it reported.
			rep.Packages = packageResults(j.Packages)
			rep.State, rep.Reason = wire.UpdateSucceeded, string(j.Reason)
			rep.Message = "the agent stopped after the installs ended and before it reported them; the results are from its journal"
			if j.Status == patch.RunFailed {
				rep.State = wire.UpdateFailed
			}
		case jerr == nil && j != nil && j.ID == id:
			rep.Packages = packageResults(j.Packages)
			rep.Message = "the agent stopped during the deployment"
			if j.Current != "" {
				rep.Message += " while " + j.Current + " was being installed (its state is unknown)"
				for i := range rep.Packages {
					if rep.Packages[i].Name == j.Current && rep.Packages[i].Status == wire.PackageNotStarted {
						rep.Packages[i].Status = wire.PackageFailed
						rep.Packages[i].Message = "interrupted: the agent stopped while it was being installed"
					}
				}
			}
			rep.Message += "; the next deployment first repairs the package database (dpkg --configure -a or the manager's equivalent)"
		default:
			rep.Message = "the agent stopped before the installs started; nothing was installed"
		}
		f.report(wire.ReportUpdateDeployment, rep, deployKey(id))
		if err := f.save(id, record{Kind: kindDeployment, State: stateDone, At: f.now()}); err != nil {
			f.env.Logger.Error("record interrupted update deployment", "id", id, "err", err)
		}
		f.env.Logger.WarnContext(ctx, "reported an update deployment the agent did not finish", "id", id, "state", rep.State)
	}
}
