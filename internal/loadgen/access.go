package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// accessState is what a simulated agent's access feature holds: the
// grants it reported applied, so it reports only when that set changes
// (the real feature reports the whole status when it changes).
type accessState struct {
	mu       sync.Mutex
	reported []byte
	seq      int
	applied  map[string]bool // grants reported applied
}

// syncAccess answers the access slice of a desired state as the real
// feature does on a machine with nftables: every unexpired grant of a
// policy applied, in one whole-status report.
func (g *run) syncAccess(ctx context.Context, a *simAgent, ds wire.DesiredState) {
	raw, ok := ds.Features[wire.FeatureAccess]
	if !ok {
		return
	}
	var ad wire.AccessDesired
	if err := json.Unmarshal(raw, &ad); err != nil {
		g.noteError(fmt.Errorf("access slice: %w", err))
		return
	}
	st := wire.AccessStatus{JIT: wire.JITStatus{State: wire.JITStateNone}, SSH: wire.SSHStatus{State: wire.SSHStateOff}}
	var applied []string
	if ad.JIT != nil {
		st.JIT.State, st.JIT.Ports = wire.JITStateApplied, ad.JIT.Ports
		now := time.Now()
		for _, gr := range ad.JIT.Grants {
			if gr.Expires.After(now) {
				st.JIT.Grants = append(st.JIT.Grants, wire.JITGrantStatus{ID: gr.ID, State: wire.JITApplied, Expires: gr.Expires})
				applied = append(applied, gr.ID)
			}
		}
	}
	body := mustJSON(st)
	a.access.mu.Lock()
	if string(body) == string(a.access.reported) {
		a.access.mu.Unlock()
		return
	}
	a.access.seq++
	id := fmt.Sprintf("%s-access-%d", a.name, a.access.seq)
	a.access.mu.Unlock()
	var ack wire.ReportAck
	if err := a.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: []wire.Report{{ID: id, Kind: wire.ReportAccess,
		TakenAt: time.Now().UTC(), Body: body}}}, &ack); err != nil {
		g.noteError(err)
		return
	}
	at := time.Now()
	a.access.mu.Lock()
	a.access.reported = body
	if a.access.applied == nil {
		a.access.applied = map[string]bool{}
	}
	var fresh []string
	for _, id := range applied {
		if !a.access.applied[id] {
			a.access.applied[id] = true
			fresh = append(fresh, id)
		}
	}
	a.access.mu.Unlock()
	for _, id := range fresh {
		g.grantApplied(id, at)
	}
}

// measureJIT sets a JIT policy on the load generator's resource group (one
// policy change reaching every machine), then requests a grant on n
// machines at once, each timed from its request until its agent's Applied
// report is recorded.
func (g *run) measureJIT(ctx context.Context, agents []*simAgent, n int) {
	scope := resource.ResourceGroup("default", g.opts.ResourceGroup).String()
	if _, err := g.admin.SetJITPolicy(ctx, scope, wire.JITPolicySet{Ports: []string{"22"}, MaxDuration: wire.Duration(time.Hour)}); err != nil {
		g.noteError(err)
		return
	}
	live := make([]*simAgent, 0, n)
	for _, a := range agents {
		if a != nil && len(live) < n {
			live = append(live, a)
		}
	}
	g.mu.Lock()
	g.jitPending = map[string]time.Time{}
	g.mu.Unlock()
	start := time.Now()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, a := range live {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sent := time.Now()
			src := fmt.Sprintf("10.%d.%d.%d", (i+1)>>16&255, (i+1)>>8&255, (i+1)&255)
			r, err := g.admin.RequestJIT(ctx, "default", g.opts.ResourceGroup, a.name, wire.JITRequestCreate{Port: "22", SourceIP: src,
				Duration: wire.Duration(30 * time.Minute), Justification: "loadgen"})
			if err != nil {
				g.noteError(err)
				return
			}
			g.mu.Lock()
			if done, ok := g.jitEarly[r.ID]; ok { // the agent answered before the request returned
				g.jitSamples = append(g.jitSamples, done.Sub(sent))
				delete(g.jitEarly, r.ID)
			} else {
				g.jitPending[r.ID] = sent
			}
			g.mu.Unlock()
		})
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		g.mu.Lock()
		left := len(g.jitPending)
		g.mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.mu.Lock()
	g.jitAllDone = time.Since(start)
	g.mu.Unlock()
	// Leave the machines as they were: the policy goes (their tables too).
	if err := g.admin.DeleteJITPolicy(ctx, scope); err != nil {
		g.noteError(err)
	}
}

func (g *run) grantApplied(id string, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sent, ok := g.jitPending[id]; ok {
		g.jitSamples = append(g.jitSamples, at.Sub(sent))
		delete(g.jitPending, id)
		return
	}
	if g.jitEarly == nil {
		g.jitEarly = map[string]time.Time{}
	}
	g.jitEarly[id] = at
}
