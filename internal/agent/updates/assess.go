package updates

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/agent/patch"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/wire"
)

// manager returns the package-manager engine of the host root.
func (f *Feature) manager() (*patch.Manager, error) {
	return patch.New(f.hostRoot(), patch.Options{Logger: f.env.Logger, Now: f.now})
}

// assess runs one assessment and reports it: the pending updates, or why
// there are none to show (refused locally, no supported package manager,
// the manager's own error).
func (f *Feature) assess(ctx context.Context, j job) {
	now := f.now()
	_ = statedir.WriteFileAtomic(f.lastFile(), []byte(now.Format(time.RFC3339Nano)), statedir.PrivateMode)
	res := wire.UpdateAssessmentResult{ID: j.id, Trigger: j.trigger, StartedAt: now, Updates: []wire.PendingUpdate{}}
	fail := func(reason, msg string) {
		res.State, res.Reason, res.Message, res.FinishedAt = wire.AssessmentFailed, reason, msg, f.now()
	}
	if err := f.allowed(); err != nil {
		f.env.LogRefused(ctx, "update assessment refused by the local configuration", "err", err)
		fail(wire.ReasonBlocked, err.Error())
	} else if m, err := f.manager(); err != nil {
		fail(wire.ReasonUnsupportedOS, err.Error())
	} else {
		res.Manager = string(m.Kind())
		var a patch.Assessment
		// Refreshing the package lists writes to the host: when host
		// changes are refused the lists stay as last fetched.
		if refused := f.env.HostChangesRefused(); refused != nil {
			a, err = m.AssessCached(ctx)
			res.Message = "the package lists were not refreshed: " + refused.Error()
		} else {
			a, err = m.Assess(ctx)
			res.Refreshed = err == nil
		}
		switch {
		case err != nil && strings.HasPrefix(err.Error(), "refresh the package lists"):
			fail(wire.ReasonRefreshFailed, err.Error())
		case err != nil:
			fail(wire.ReasonAssessmentFailed, err.Error())
		default:
			res.State, res.RebootPending, res.Warnings, res.FinishedAt = wire.AssessmentSucceeded, a.RebootPending, a.Warnings, f.now()
			for _, u := range a.Updates {
				res.Updates = append(res.Updates, wire.PendingUpdate{Name: u.Name, Arch: u.Arch, InstalledVersion: u.InstalledVersion,
					CandidateVersion: u.CandidateVersion, Source: u.Source, Classification: string(u.Classification),
					Advisories: u.Advisories, RebootRequired: u.RebootRequired})
			}
			if len(res.Updates) > wire.MaxUpdatesPerAssessment {
				res.Updates = res.Updates[:wire.MaxUpdatesPerAssessment]
				res.Warnings = append(res.Warnings, fmt.Sprintf("only the first %d pending updates are reported", wire.MaxUpdatesPerAssessment))
			}
		}
	}
	if errors.Is(context.Cause(ctx), errStopped) {
		return // the agent stops; the request stays unanswered and is asked again
	}
	f.report(wire.ReportUpdateAssessment, res, "assess:"+j.id)
	if j.trigger != wire.TriggerPeriodic {
		if err := f.save(j.id, record{Kind: kindAssessment, State: stateDone, At: f.now()}); err != nil {
			f.env.Logger.Error("record update assessment", "id", j.id, "err", err)
		}
	}
	f.env.Logger.InfoContext(ctx, "update assessment", "id", j.id, "trigger", j.trigger, "state", res.State,
		"updates", len(res.Updates), "reason", res.Reason)
}

// bootID is the host's boot id (changes with every boot), "" if unknown.
func (f *Feature) bootID() string {
	b, err := os.ReadFile(filepath.Join(f.hostRoot(), "proc/sys/kernel/random/boot_id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
