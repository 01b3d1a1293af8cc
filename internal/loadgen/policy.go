package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// The policy phase: the built-in linux-passwd-0644 assigned to the
// resource group at t0, timed until the server's roll-up shows a verdict
// for every machine. The simulated agents answer their guest configuration
// slice like the real feature: one compliance report per assignment (and
// again for each new on-demand evaluation) with the configuration's one
// rule, Compliant, with its evidence and SSG rule id.

// PolicyResult holds the figures of the policy phase.
type PolicyResult struct {
	Machines int
	// Request is the assignment's PUT; AllDone until the roll-up counts a
	// verdict for every machine.
	Request, AllDone time.Duration
	Evaluated, Left  int
	CPU              time.Duration // server CPU time during the phase
	RSSAfter         int64
	PeakRSS          int64
}

func (p *PolicyResult) format(w io.Writer) {
	if p == nil {
		return
	}
	fmt.Fprintf(w, "policy assignment %d machines: linux-passwd-0644 assigned in %s, compliance shown for all in %s (%d evaluated, %d left); server CPU %s; RSS %.0f MiB (peak %.0f MiB)\n",
		p.Machines, p.Request.Round(1e6), p.AllDone.Round(1e6), p.Evaluated, p.Left, p.CPU.Round(1e7),
		float64(p.RSSAfter)/(1<<20), float64(p.PeakRSS)/(1<<20))
}

// answerGuest answers the guest configuration slice of a fetched desired
// state: each assignment (and evaluation request) not answered yet, once.
func (g *run) answerGuest(ctx context.Context, a *simAgent, ds wire.DesiredState) {
	raw, ok := ds.Features[wire.FeatureGuestConfiguration]
	if !ok {
		return
	}
	var slice wire.GuestConfigurationDesired
	if json.Unmarshal(raw, &slice) != nil {
		return
	}
	now := time.Now().UTC()
	var reports []wire.Report
	var keys []string
	a.mu.Lock()
	if a.guest == nil {
		a.guest = map[string]bool{}
	}
	for _, as := range slice.Assignments {
		k := as.ID + "|" + as.AssignmentType + "|" + slice.EvaluationRequest
		if a.guest[k] {
			continue
		}
		a.guest[k] = true
		keys = append(keys, k)
		reports = append(reports, wire.Report{ID: fmt.Sprintf("%s-g-%d-%d", a.name, now.UnixNano(), len(reports)), Kind: wire.ReportGuestCompliance,
			TakenAt: now, Body: mustJSON(wire.GuestComplianceReport{Assignment: as.ID, Configuration: as.Configuration, AssignmentType: as.AssignmentType,
				Trigger: wire.TriggerAssignment, EvaluationRequest: slice.EvaluationRequest, EvaluatedAt: now,
				Rules: []wire.GuestRuleResult{{Rule: "file-passwd-permissions", Title: "/etc/passwd is mode 0644 or stricter", Severity: "medium",
					ComplianceState: wire.ComplianceCompliant, Evidence: "/etc/passwd mode 0644, owner 0, group 0",
					SSGRuleID: "xccdf_org.ssgproject.content_rule_file_permissions_etc_passwd"}}})})
	}
	a.mu.Unlock()
	if len(reports) == 0 {
		return
	}
	var ack wire.ReportAck
	if err := retry(ctx, func() error {
		return a.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: reports}, &ack)
	}); err != nil {
		g.noteError(err)
		a.mu.Lock()
		for _, k := range keys {
			delete(a.guest, k)
		}
		a.mu.Unlock()
	}
}

// measurePolicy runs the policy phase over the resource group.
func (g *run) measurePolicy(ctx context.Context, machines int) *PolicyResult {
	res := &PolicyResult{Machines: machines}
	scope := resource.ResourceGroup("default", g.opts.ResourceGroup).String()
	cpu0 := procCPU(g.opts.ServerPID)
	fmt.Fprintf(g.opts.Log, "assigning linux-passwd-0644 to %d machines at %s...\n", machines, scope)
	name := fmt.Sprintf("loadgen-passwd-%d", time.Now().Unix())
	start := time.Now()
	if err := g.admin.Do(ctx, http.MethodPut, "/api/v1/policyAssignments/"+name, wire.PolicyAssignmentCreate{Definition: "linux-passwd-0644",
		Scope: scope, NonComplianceMessage: "passwd must be 0644"}, nil); err != nil {
		g.noteError(err)
		return res
	}
	res.Request = time.Since(start)
	fmt.Fprintf(g.opts.Log, "assignment created after %s\n", res.Request.Round(time.Millisecond))
	path := "/api/v1/policyStates/summary?" + url.Values{"scope": {scope}}.Encode()
	for last := time.Now(); time.Since(start) < 10*time.Minute && ctx.Err() == nil; {
		var l wire.List[wire.PolicyComplianceSummary]
		if err := g.admin.Do(ctx, http.MethodGet, path, nil, &l); err != nil {
			g.noteError(err)
		} else {
			for _, s := range l.Value {
				if s.Assignment == scope+"/providers/Corral.Authorization/policyAssignments/"+name {
					res.Evaluated, res.Left = s.Compliant+s.NonCompliant+s.Unknown+s.Exempt, s.NotEvaluated
				}
			}
			if res.Evaluated >= machines {
				break
			}
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			fmt.Fprintf(g.opts.Log, "  %s: %d evaluated, %d left\n", time.Since(start).Round(time.Second), res.Evaluated, res.Left)
		}
		time.Sleep(500 * time.Millisecond)
	}
	res.AllDone = time.Since(start)
	res.CPU = procCPU(g.opts.ServerPID) - cpu0
	if g.opts.ServerPID > 0 {
		res.RSSAfter, res.PeakRSS = procRSS(g.opts.ServerPID)
	}
	return res
}
