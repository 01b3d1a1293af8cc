package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// The updates phase: a scope-wide assessment and a deployment to every
// simulated machine, each timed from the API request until every machine's
// result is recorded on the server. The simulated agents answer their
// updates slice like the real feature: an assessment result with the
// pending list of a typical Debian machine (80 updates, four of them perl
// security updates), and for a deployment an InProgress report then the
// result with one entry per pending update.

// UpdatesResult holds the figures of the updates phase.
type UpdatesResult struct {
	Machines int
	// Assessment: the request (the server stores one request per machine
	// and pushes a sync to each), then until no machine is pending.
	AssessRequest, AssessAllDone time.Duration
	AssessSucceeded, AssessLeft  int
	AssessCPU                    time.Duration // server CPU time during the phase
	// Deployment: the request, then until the run ended.
	DeployRequest, DeployAllDone time.Duration
	DeployStatus                 string
	DeploySucceeded, DeployLeft  int
	DeployCPU                    time.Duration
	RSSAfterAssess, RSSAfter     int64
	PeakRSS                      int64
}

func (u *UpdatesResult) format(w io.Writer) {
	if u == nil {
		return
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	fmt.Fprintf(w, "update assessment %d machines: request %s, all results in %s (%d succeeded, %d left); server CPU %s; RSS %.0f MiB\n",
		u.Machines, u.AssessRequest.Round(1e6), u.AssessAllDone.Round(1e6), u.AssessSucceeded, u.AssessLeft, u.AssessCPU.Round(1e7), mib(u.RSSAfterAssess))
	fmt.Fprintf(w, "update deployment %d machines: request %s, run %s in %s (%d succeeded, %d left); server CPU %s; RSS %.0f MiB (peak %.0f MiB)\n",
		u.Machines, u.DeployRequest.Round(1e6), u.DeployStatus, u.DeployAllDone.Round(1e6), u.DeploySucceeded, u.DeployLeft, u.DeployCPU.Round(1e7),
		mib(u.RSSAfter), mib(u.PeakRSS))
}

// simPending is the pending list every simulated machine reports.
var simPending = func() []wire.PendingUpdate {
	var ups []wire.PendingUpdate
	for _, n := range []string{"perl", "perl-base", "perl-modules-5.36", "libperl5.36"} {
		ups = append(ups, wire.PendingUpdate{Name: n, Arch: "amd64", InstalledVersion: "5.36.0-7+deb12u1", CandidateVersion: "5.36.0-7+deb12u2",
			Source: "bookworm-security", Classification: wire.UpdateSecurity})
	}
	for i := range 76 {
		ups = append(ups, wire.PendingUpdate{Name: fmt.Sprintf("libsim%02d", i), Arch: "amd64", InstalledVersion: "1.2.3-1",
			CandidateVersion: "1.2.3-1+deb12u1", Source: "bookworm-updates", Classification: wire.UpdateOther})
	}
	return ups
}()

// answerUpdates answers the updates slice of a fetched desired state:
// each request not answered yet, once.
func (g *run) answerUpdates(ctx context.Context, a *simAgent, ds wire.DesiredState) {
	raw, ok := ds.Features[wire.FeatureUpdates]
	if !ok {
		return
	}
	var slice wire.UpdatesDesired
	if json.Unmarshal(raw, &slice) != nil {
		return
	}
	a.mu.Lock()
	if a.updates == nil {
		a.updates = map[string]bool{}
	}
	var reports []wire.Report
	var ids []string
	now := time.Now().UTC()
	for _, as := range slice.Assessments {
		if a.updates[as.ID] {
			continue
		}
		a.updates[as.ID] = true
		ids = append(ids, as.ID)
		reports = append(reports, wire.Report{ID: a.name + "-a-" + as.ID, Kind: wire.ReportUpdateAssessment, TakenAt: now,
			Body: mustJSON(wire.UpdateAssessmentResult{ID: as.ID, Trigger: wire.TriggerOnDemand, State: wire.AssessmentSucceeded, Manager: "apt",
				Refreshed: true, Updates: simPending, StartedAt: now, FinishedAt: now})})
	}
	var deploys []wire.DesiredUpdateDeployment
	for _, d := range slice.Deployments {
		if !a.updates[d.ID] {
			a.updates[d.ID] = true
			ids = append(ids, d.ID)
			deploys = append(deploys, d)
		}
	}
	a.mu.Unlock()
	for _, d := range deploys {
		reports = append(reports, wire.Report{ID: a.name + "-p-" + d.ID, Kind: wire.ReportUpdateDeployment, TakenAt: now,
			Body: mustJSON(wire.UpdateDeploymentReport{ID: d.ID, State: wire.UpdateInProgress, Manager: "apt", Current: simPending[0].Name,
				Packages: []wire.UpdatePackageResult{}, StartedAt: now})})
		rep := wire.UpdateDeploymentReport{ID: d.ID, State: wire.UpdateSucceeded, Manager: "apt", Reboot: wire.RebootNotNeeded,
			Packages: make([]wire.UpdatePackageResult, 0, len(simPending)), StartedAt: now, FinishedAt: now}
		for _, u := range simPending {
			p := wire.UpdatePackageResult{Name: u.Name, Arch: u.Arch, Classification: u.Classification, Status: wire.PackageNotSelected,
				BeforeVersion: u.InstalledVersion, AfterVersion: u.InstalledVersion}
			for _, c := range d.Classifications {
				if c == u.Classification {
					p.Status, p.AfterVersion, p.StartedAt, p.FinishedAt = wire.PackageInstalled, u.CandidateVersion, now, now
				}
			}
			rep.Packages = append(rep.Packages, p)
		}
		reports = append(reports, wire.Report{ID: a.name + "-d-" + d.ID, Kind: wire.ReportUpdateDeployment, TakenAt: now, Body: mustJSON(rep)})
	}
	if len(reports) == 0 {
		return
	}
	var ack wire.ReportAck
	// The real agent keeps reports in its outbox until acknowledged.
	if err := retry(ctx, func() error {
		return a.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: reports}, &ack)
	}); err != nil {
		g.noteError(err)
		a.mu.Lock()
		for _, id := range ids {
			delete(a.updates, id) // answered again at the next sync
		}
		a.mu.Unlock()
	}
}

// retry calls fn until it succeeds, up to 8 times, waiting a random time
// up to 250 ms, 500 ms, 1 s, ... (at most 8 s) between tries, as the real
// agent's fetch and outbox do.
func retry(ctx context.Context, fn func() error) error {
	wait := 250 * time.Millisecond
	var err error
	for range 8 {
		if err = fn(); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(mrand.Int64N(int64(wait)))):
		}
		wait = min(wait*2, 8*time.Second)
	}
	return err
}

// measureUpdates runs the updates phase over the resource group.
func (g *run) measureUpdates(ctx context.Context, machines int) *UpdatesResult {
	res := &UpdatesResult{Machines: machines}
	sub := "default"
	scope := resource.ResourceGroup(sub, g.opts.ResourceGroup).String()
	base := "/api/v1/subscriptions/" + sub
	cpu0 := procCPU(g.opts.ServerPID)
	limit := 10 * time.Minute
	timed := func(what string, start time.Time) {
		fmt.Fprintf(g.opts.Log, "%s after %s\n", what, time.Since(start).Round(time.Millisecond))
	}

	fmt.Fprintf(g.opts.Log, "assessing %d machines at %s...\n", machines, scope)
	start := time.Now()
	var b wire.UpdateAssessmentBatch
	if err := g.admin.Do(ctx, http.MethodPost, base+"/updateAssessments", wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Scope: scope}}, &b); err != nil {
		g.noteError(err)
		return res
	}
	res.AssessRequest = time.Since(start)
	timed("assessment requested", start)
	for last := time.Now(); time.Since(start) < limit && ctx.Err() == nil; {
		if err := g.admin.Do(ctx, http.MethodGet, base+"/updateAssessments/"+b.ID, nil, &b); err != nil {
			g.noteError(err)
		} else if b.Pending == 0 {
			break
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			fmt.Fprintf(g.opts.Log, "  %s: %d assessed, %d pending\n", time.Since(start).Round(time.Second), b.Succeeded+b.Failed, b.Pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.AssessAllDone, res.AssessSucceeded, res.AssessLeft = time.Since(start), b.Succeeded, b.Pending
	res.AssessCPU = procCPU(g.opts.ServerPID) - cpu0
	if g.opts.ServerPID > 0 {
		res.RSSAfterAssess, _ = procRSS(g.opts.ServerPID)
	}

	fmt.Fprintf(g.opts.Log, "deploying Security updates to %d machines at %s...\n", machines, scope)
	cpu1 := procCPU(g.opts.ServerPID)
	start = time.Now()
	var r wire.UpdateRun
	if err := g.admin.Do(ctx, http.MethodPost, base+"/updateRuns", wire.UpdateRunCreate{UpdateTargets: wire.UpdateTargets{Scope: scope},
		UpdateDeploymentSettings: wire.UpdateDeploymentSettings{Classifications: []string{wire.UpdateSecurity}, Reboot: wire.RebootNever,
			Window: wire.Duration(wire.MaxUpdateWindow)}}, &r); err != nil {
		g.noteError(err)
		return res
	}
	res.DeployRequest = time.Since(start)
	timed("deployment requested", start)
	for last := time.Now(); time.Since(start) < limit && ctx.Err() == nil; {
		if err := g.admin.Do(ctx, http.MethodGet, base+"/updateRuns/"+r.ID, nil, &r); err != nil {
			g.noteError(err)
		} else if r.Status != wire.UpdateInProgress {
			break
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			fmt.Fprintf(g.opts.Log, "  %s: %d done, %d in progress, %d pending\n", time.Since(start).Round(time.Second),
				r.Counts.Succeeded+r.Counts.Failed+r.Counts.CompletedWithWarnings, r.Counts.InProgress, r.Counts.Pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.DeployAllDone, res.DeployStatus = time.Since(start), r.Status
	res.DeploySucceeded, res.DeployLeft = r.Counts.Succeeded, r.Counts.Pending+r.Counts.InProgress
	res.DeployCPU = procCPU(g.opts.ServerPID) - cpu1
	if g.opts.ServerPID > 0 {
		res.RSSAfter, res.PeakRSS = procRSS(g.opts.ServerPID)
	}
	return res
}
