package patch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"syscall"
	"time"
)

// ErrDeploymentRunning is returned when another deployment holds the
// journal directory.
var ErrDeploymentRunning = errors.New("another deployment is running")

// Deploy installs the selected pending updates before d.Deadline.
//
// Bad input (an invalid selection, no journal directory, no deadline) and
// a journal that cannot be written are errors, and nothing is done.
// Everything else is in the result: Status Failed with a Reason
// (RefreshFailed, RepairFailed, InstallFailed, MaintenanceWindowExceeded,
// Canceled) and the manager's own message, and per package what happened.
//
// Order: kill leftovers of an interrupted earlier run, audit and repair
// (dpkg --configure -a), refresh, list, then install one update at a time,
// Critical first, then Security, then Other, by name. Before each install
// the time check: the install starts only if now + max(InstallEstimate,
// longest install so far) + Reserve is not past the deadline. An update
// an earlier install already brought in (as a dependency) is not run again.
func (m *Manager) Deploy(ctx context.Context, d Deployment) (DeploymentResult, error) {
	res := DeploymentResult{ID: d.ID, Manager: m.Kind(), Packages: []PackageResult{}, Started: m.opts.Now()}
	if err := d.Selection.Validate(); err != nil {
		return res, err
	}
	switch {
	case d.ID == "":
		return res, fmt.Errorf("%w: no id", ErrBadDeployment)
	case d.JournalDir == "":
		return res, fmt.Errorf("%w: no journal directory", ErrBadDeployment)
	case d.Deadline.IsZero():
		return res, fmt.Errorf("%w: no deadline", ErrBadDeployment)
	}
	if err := os.MkdirAll(d.JournalDir, 0o700); err != nil {
		return res, fmt.Errorf("journal directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(d.JournalDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return res, fmt.Errorf("journal lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return res, fmt.Errorf("%w (%s is locked)", ErrDeploymentRunning, d.JournalDir)
	}

	prev, err := LastRun(d.JournalDir)
	if err != nil {
		// A torn journal is itself the sign of an interrupted run.
		m.opts.Logger.WarnContext(ctx, "unreadable deployment journal", "err", err)
		res.Recovery.Interrupted = true
	}
	if prev != nil && prev.State == JournalRunning {
		res.Recovery.Interrupted, res.Recovery.Previous = true, prev
		res.Recovery.Killed = killLeftovers(prev.PGID, prev.ID)
	}

	j := &Journal{ID: d.ID, Manager: m.Kind(), State: JournalRunning, Started: res.Started}
	save := func() error {
		j.Updated = m.opts.Now()
		if err := writeJournal(d.JournalDir, j); err != nil {
			return err
		}
		if d.Progress != nil {
			c := *j
			c.Packages = slices.Clone(j.Packages)
			d.Progress(c)
		}
		return nil
	}
	if err := save(); err != nil {
		return res, err
	}
	s, err := m.newSession()
	if err != nil {
		return res, err
	}
	defer s.close()
	s.env = append(s.env, runMarkerEnv+"="+d.ID)
	s.started = func(pgid int) {
		j.PGID = pgid
		if err := save(); err != nil {
			m.opts.Logger.WarnContext(ctx, "deployment journal", "err", err)
		}
	}
	finish := func(reason Reason, msg string) (DeploymentResult, error) {
		res.Finished = m.opts.Now()
		res.Status, res.Reason, res.Message = RunSucceeded, reason, msg
		if reason != ReasonNone {
			res.Status = RunFailed
		}
		j.State, j.Current, j.Packages, j.Status, j.Reason = JournalFinished, "", res.Packages, res.Status, res.Reason
		if err := save(); err != nil {
			return res, err
		}
		return res, nil
	}

	// Repair first: an install over a half-configured dpkg fails, and the
	// agent is the only one who will ever run it on an unattended machine.
	if res.Recovery.Broken, err = m.drv.audit(ctx, s); err != nil {
		return finish(ReasonRepairFailed, errText(err))
	}
	if res.Recovery.Output, err = m.drv.repair(ctx, s); err != nil {
		res.Recovery.Output = capText(res.Recovery.Output, m.opts.OutputCap)
		return finish(ReasonRepairFailed, errText(err))
	}
	res.Recovery.Output = capText(res.Recovery.Output, m.opts.OutputCap)
	if _, err := m.drv.refresh(ctx, s); err != nil {
		return finish(ReasonRefreshFailed, "refresh the package lists: "+errText(err))
	}
	pending, err := m.pendingSorted(ctx, s)
	if err != nil {
		return finish(ReasonAssessmentFailed, errText(err))
	}
	before, err := m.drv.installed(ctx, s)
	if err != nil {
		return finish(ReasonAssessmentFailed, errText(err))
	}

	var todo []int
	for _, u := range pending {
		st := d.Selection.status(u)
		if st == Pending {
			todo = append(todo, len(res.Packages))
		}
		res.Packages = append(res.Packages, PackageResult{Name: u.Name, Arch: u.Arch, Classification: u.Classification,
			Status: st, BeforeVersion: u.InstalledVersion})
	}
	j.Packages = res.Packages
	if err := save(); err != nil {
		return res, err
	}

	reason, msg := ReasonNone, ""
	var longest time.Duration
	for n, i := range todo {
		p, u := &res.Packages[i], pending[i]
		if ctx.Err() != nil {
			reason, msg = ReasonCanceled, ctx.Err().Error()
		} else if need := max(d.InstallEstimate, longest) + d.Reserve; m.opts.Now().Add(need).After(d.Deadline) {
			reason = ReasonMaintenanceWindowExceeded
			msg = fmt.Sprintf("%d of %d selected updates not started: the maintenance window ends %s",
				len(todo)-n, len(todo), d.Deadline.Format(time.RFC3339))
		}
		if reason != ReasonNone {
			for _, k := range todo[n:] {
				res.Packages[k].Status = NotStarted
			}
			break
		}
		// An earlier install may have brought this one in as a dependency.
		if now, err := m.drv.installed(ctx, s); err == nil && installedVersion(now, u) == u.CandidateVersion {
			p.Status, p.AfterVersion, p.Message = Installed, u.CandidateVersion, "upgraded as a dependency of an earlier update"
			continue
		}
		if why := unsafeArgs(u); why != "" {
			// Names come from repositories: one shaped like an option
			// would change what the package manager does.
			p.Status, p.Message = Failed, why
			continue
		}
		j.Current, j.Packages = u.Name, res.Packages
		if err := save(); err != nil {
			return res, err
		}
		p.Started = m.opts.Now()
		out, err := m.drv.install(ctx, s, u)
		p.Finished = m.opts.Now()
		longest = max(longest, p.Finished.Sub(p.Started))
		if err != nil {
			p.Status, p.Message, p.Output = Failed, errText(err), capText(out, m.opts.OutputCap)
		} else {
			p.Status, p.Output = Installed, capText(out, m.opts.OutputCap) // dropped below unless the version says otherwise
		}
		j.Current = ""
		m.opts.Logger.InfoContext(ctx, "update", "op", "install", "package", u.Name, "status", p.Status,
			"elapsed", p.Finished.Sub(p.Started).Round(time.Millisecond))
	}

	// The truth is what the package database says afterwards.
	after, err := m.drv.installed(ctx, s)
	if err == nil {
		seen := map[string]bool{}
		for i := range res.Packages {
			p := &res.Packages[i]
			u := pending[i]
			seen[u.Name] = true
			p.AfterVersion = installedVersion(after, u)
			if p.Status == Installed && p.AfterVersion != u.CandidateVersion {
				p.Status = Failed
				p.Message = fmt.Sprintf("the manager reported success but %s is at version %q, not %q", u.Name, p.AfterVersion, u.CandidateVersion)
				if p.Output != "" {
					p.Message += ": " + errorLines(p.Output)
				}
			} else if p.Status == Installed {
				p.Output = ""
			}
		}
		res.Packages = append(res.Packages, dependencyChanges(before, after, seen)...)
	}
	for _, p := range res.Packages {
		if p.Status == Installed && needsReboot(p.Name) {
			res.RebootRequired = true
		}
		if p.Status == Failed && reason == ReasonNone {
			reason, msg = ReasonInstallFailed, "an update failed to install: "+p.Name
		}
	}
	res.RebootRequired = res.RebootRequired || m.drv.rebootPending(ctx, s)
	return finish(reason, msg)
}

// installedVersion looks u up in a map from installed().
func installedVersion(m map[pkgID]string, u Update) string {
	if v, ok := m[pkgID{u.Name, u.Arch}]; ok {
		return v
	}
	return m[pkgID{Name: u.Name}]
}

// dependencyChanges are packages whose version changed in the run that
// were not pending updates: new or upgraded dependencies.
func dependencyChanges(before, after map[pkgID]string, seen map[string]bool) []PackageResult {
	var out []PackageResult
	for k, v := range after {
		if k.Arch != "" || seen[k.Name] || before[k] == v {
			continue
		}
		out = append(out, PackageResult{Name: k.Name, Status: Installed, BeforeVersion: before[k], AfterVersion: v,
			Message: "installed as a dependency"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// pkgID keys installed versions: {name, arch}, and {name, ""} for the
// package whatever its architecture (the native or newest one).
type pkgID struct{ Name, Arch string }

// errText is an error as a person reads it: a manager's failure is its
// own output.
func errText(err error) string {
	var me *ManagerError
	if errors.As(err, &me) {
		return me.Error()
	}
	return err.Error()
}

// Package names, versions and architectures as the package managers write
// them (Debian policy, RPM): never starting with "-", never blank.
var (
	pkgNameRE    = regexp.MustCompile(`^[A-Za-z0-9_+][A-Za-z0-9._+~-]{0,199}$`)
	pkgVersionRE = regexp.MustCompile(`^[A-Za-z0-9_.+~:^][A-Za-z0-9_.+~:^-]{0,199}$`)
	pkgArchRE    = regexp.MustCompile(`^[A-Za-z0-9_]{0,32}$`)
)

// unsafeArgs says why u cannot be put on a package manager's command
// line, or "" if it can.
func unsafeArgs(u Update) string {
	switch {
	case !pkgNameRE.MatchString(u.Name):
		return fmt.Sprintf("refused: the package name %.80q is not one a package manager writes", u.Name)
	case !pkgVersionRE.MatchString(u.CandidateVersion):
		return fmt.Sprintf("refused: the version %.80q of %s is not one a package manager writes", u.CandidateVersion, u.Name)
	case !pkgArchRE.MatchString(u.Arch):
		return fmt.Sprintf("refused: the architecture %.40q of %s is not one a package manager writes", u.Arch, u.Name)
	}
	return ""
}
