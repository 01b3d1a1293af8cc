package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// fanoutExtension is the extension the fan-out phase sets on every machine:
// the first-party run-command handler, published by every control plane.
const fanoutExtension = "runcommand"

// syncDesired is what a simulated agent does on a sync: fetch its desired
// state and, for each extension request it has not answered, download and
// report Creating (unless the install is first-party, see below), verify
// the catalog and package like the real agent, then report Succeeded, and
// the desired state applied. The report's acknowledgement is when the
// control plane has recorded the result.
func (g *run) syncDesired(ctx context.Context, a *simAgent) {
	var ds wire.DesiredState
	// Like the real agent, a failed fetch is tried again with backoff.
	if err := retry(ctx, func() error { return a.api.Do(ctx, http.MethodGet, wire.PathDesiredState, nil, &ds) }); err != nil {
		g.noteError(err)
		return
	}
	a.mu.Lock()
	first := !a.synced
	a.fetched, a.synced = ds.Generation, true
	a.mu.Unlock()
	if first {
		defer g.stats.caughtUp.Add(1)
	}
	g.syncProtection(ctx, a, ds)
	g.answerUpdates(ctx, a, ds)
	g.answerGuest(ctx, a, ds)
	g.syncAccess(ctx, a, ds)
	a.mu.Lock()
	var todo []wire.DesiredExtension
	for _, e := range ds.Extensions {
		if a.answered[e.Name] < e.SeqNo {
			todo = append(todo, e)
		}
	}
	a.mu.Unlock()
	// Like corral-agent, every desired state fetched is reported applied,
	// after the extension states it led to.
	applied := wire.Report{ID: fmt.Sprintf("%s-applied-%d", a.name, ds.Generation), Kind: wire.ReportApplied, TakenAt: time.Now().UTC(),
		Body: mustJSON(wire.AppliedState{Generation: ds.Generation})}
	if len(todo) == 0 {
		var ack wire.ReportAck
		if err := a.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: []wire.Report{applied}}, &ack); err != nil {
			g.noteError(err)
		}
		return
	}
	keys := map[string][]byte{}
	for _, p := range ds.Publishers {
		keys[p.Name] = p.PublicKey
	}
	status := func(e wire.DesiredExtension, st wire.ExtensionStatus) wire.Report {
		st.Name, st.Publisher, st.Type, st.Version, st.SeqNo, st.Operation = e.Name, e.Publisher, e.Type, e.Version, e.SeqNo, "install"
		return wire.Report{ID: fmt.Sprintf("%s-%s-%d-%s", a.name, e.Name, e.SeqNo, st.State), Kind: wire.ReportExtension,
			TakenAt: time.Now().UTC(), Body: mustJSON(st)}
	}
	// corral-agent reports Creating before it touches anything, and its
	// outbox delivers it unless the final state supersedes it within the
	// settle (50 ms): a first-party install (nothing to download) is
	// quicker, one that downloads a package is taken to be slower.
	var creating []wire.Report
	for _, e := range todo {
		if !strings.EqualFold(e.Publisher, wire.PublisherCorral) {
			creating = append(creating, status(e, wire.ExtensionStatus{State: wire.ExtCreating}))
		}
	}
	var ack wire.ReportAck
	if len(creating) > 0 {
		if err := a.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: creating}, &ack); err != nil {
			g.noteError(err)
			return
		}
	}
	var reports []wire.Report
	for _, e := range todo {
		st := wire.ExtensionStatus{State: wire.ExtSucceeded, Message: "simulated"}
		if err := g.verifyPackage(ctx, a, e, keys[e.Publisher]); err != nil {
			st.State, st.Message = wire.ExtFailed, err.Error()
		}
		reports = append(reports, status(e, st))
	}
	reports = append(reports, applied)
	if err := a.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: reports}, &ack); err != nil {
		g.noteError(err)
		return
	}
	now := time.Now()
	a.mu.Lock()
	for _, e := range todo {
		a.answered[e.Name] = e.SeqNo
	}
	a.mu.Unlock()
	for _, e := range todo {
		if e.Name == fanoutExtension {
			g.extensionDone(a.machineID, now)
		}
	}
}

// verifyPackage checks the catalog signature and the package digest, as
// the real agent does before it unpacks anything. A first-party extension
// (publisher Corral) ships with the agent: the real agent downloads
// nothing for it, and neither does a simulated one.
func (g *run) verifyPackage(ctx context.Context, a *simAgent, e wire.DesiredExtension, key []byte) error {
	if strings.EqualFold(e.Publisher, wire.PublisherCorral) {
		return nil
	}
	var sc wire.SignedCatalog
	if err := a.api.Do(ctx, http.MethodGet, wire.PathCatalogs+url.PathEscape(e.Publisher), nil, &sc); err != nil {
		return err
	}
	cat, err := extpkg.VerifyCatalog(key, e.Publisher, sc)
	if err != nil {
		return err
	}
	entry, ok := extpkg.Find(cat, e.Type, e.Version)
	if !ok || entry.Digest != e.Digest {
		return fmt.Errorf("%s/%s %s is not in the signed catalog", e.Publisher, e.Type, e.Version)
	}
	body, err := a.api.Download(ctx, wire.PathPackages+url.PathEscape(e.Digest), wire.MaxPackageBytes)
	if err != nil {
		return err
	}
	if extpkg.Digest(body) != e.Digest {
		return fmt.Errorf("package digest mismatch")
	}
	return nil
}

// measureExtensionFanout sets the run-command extension on n machines at
// once and times each until its agent's Succeeded report is recorded.
func (g *run) measureExtensionFanout(ctx context.Context, agents []*simAgent, n int) {
	live := make([]*simAgent, 0, n)
	for _, a := range agents {
		if a != nil && len(live) < n {
			live = append(live, a)
		}
	}
	g.mu.Lock()
	g.extPending = map[string]time.Time{}
	g.mu.Unlock()
	start := time.Now()
	stopRSS := g.sampleRSS()
	defer stopRSS()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, a := range live {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			g.mu.Lock()
			g.extPending[a.machineID] = time.Now()
			g.mu.Unlock()
			body := wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand"}
			if _, err := g.admin.SetMachineExtension(ctx, "default", g.opts.ResourceGroup, a.name, fanoutExtension, body); err != nil {
				g.noteError(err)
				g.mu.Lock()
				delete(g.extPending, a.machineID)
				g.mu.Unlock()
			}
		})
	}
	wg.Wait()
	g.mu.Lock()
	g.extSetDuration = time.Since(start)
	g.mu.Unlock()
	g.waitExtensions(ctx, start)
}

// measureExtensionFanoutBulk sets the run-command extension on every
// machine of the resource group through one bulk request and times each
// machine from the request until its agent's Succeeded is recorded.
func (g *run) measureExtensionFanoutBulk(ctx context.Context, agents []*simAgent) {
	g.mu.Lock()
	g.extPending = map[string]time.Time{}
	start := time.Now()
	for _, a := range agents {
		if a != nil {
			g.extPending[a.machineID] = start
		}
	}
	g.mu.Unlock()
	body := wire.BulkOperationCreate{Kind: wire.BulkExtensionSet, Scope: resource.ResourceGroup("default", g.opts.ResourceGroup).String(),
		Name: fanoutExtension, Extension: &wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand"}}
	stopRSS := g.sampleRSS()
	op, err := g.admin.CreateBulkOperation(ctx, "default", body)
	g.mu.Lock()
	g.extSetDuration = time.Since(start)
	g.mu.Unlock()
	if err != nil {
		// A request that timed out is still being written by the server:
		// its machines are waited for all the same.
		g.noteError(err)
	}
	g.waitExtensions(ctx, start)
	stopRSS()
	if err != nil {
		return
	}
	// The server's own account of the operation.
	if op, err = g.admin.GetBulkOperation(ctx, "default", op.Name); err != nil {
		g.noteError(err)
		return
	}
	g.mu.Lock()
	g.extBulk = &op
	g.mu.Unlock()
}

// waitExtensions waits (at most 2 minutes) until every pending machine's
// Succeeded is recorded.
func (g *run) waitExtensions(ctx context.Context, start time.Time) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		g.mu.Lock()
		left := len(g.extPending)
		g.mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.mu.Lock()
	g.extAllDone = time.Since(start)
	g.mu.Unlock()
}

// sampleRSS samples the server's RSS every 50 ms until the returned func
// is called, keeping the highest in extPeakRSS.
func (g *run) sampleRSS() func() {
	if g.opts.ServerPID == 0 {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if rss, _ := procRSS(g.opts.ServerPID); rss > 0 {
				g.mu.Lock()
				g.extPeakRSS = max(g.extPeakRSS, rss)
				g.mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func (g *run) extensionDone(machineID string, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sent, ok := g.extPending[machineID]; ok {
		g.extSamples = append(g.extSamples, at.Sub(sent))
		delete(g.extPending, machineID)
	}
}

// percentiles returns p50, p99 and max of samples (sorted in place).
func percentiles(samples []time.Duration) (p50, p99, maxd time.Duration) {
	n := len(samples)
	if n == 0 {
		return 0, 0, 0
	}
	slices.Sort(samples)
	return samples[n*50/100], samples[min(n-1, n*99/100)], samples[n-1]
}
