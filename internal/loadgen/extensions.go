package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/wire"
)

// fanoutExtension is the extension the fan-out phase sets on every machine:
// the first-party run-command handler, published by every control plane.
const fanoutExtension = "runcommand"

// syncDesired is what a simulated agent does on a sync: fetch its desired
// state and, for each extension request it has not answered, download and
// verify the catalog and package like the real agent, then report
// Succeeded. The report's acknowledgement is when the control plane has
// recorded the result.
func (g *run) syncDesired(ctx context.Context, a *simAgent) {
	var ds wire.DesiredState
	// Like the real agent, a failed fetch is tried again with backoff.
	if err := retry(ctx, func() error { return a.api.Do(ctx, http.MethodGet, wire.PathDesiredState, nil, &ds) }); err != nil {
		g.noteError(err)
		return
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
	if len(todo) == 0 {
		return
	}
	keys := map[string][]byte{}
	for _, p := range ds.Publishers {
		keys[p.Name] = p.PublicKey
	}
	var reports []wire.Report
	for _, e := range todo {
		st := wire.ExtensionStatus{Name: e.Name, Publisher: e.Publisher, Type: e.Type, Version: e.Version, SeqNo: e.SeqNo,
			Operation: "install", State: wire.ExtSucceeded, Message: "simulated"}
		if err := g.verifyPackage(ctx, a, e, keys[e.Publisher]); err != nil {
			st.State, st.Message = wire.ExtFailed, err.Error()
		}
		reports = append(reports, wire.Report{ID: fmt.Sprintf("%s-%s-%d", a.name, e.Name, e.SeqNo), Kind: wire.ReportExtension,
			TakenAt: time.Now().UTC(), Body: mustJSON(st)})
	}
	var ack wire.ReportAck
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
// the real agent does before it unpacks anything.
func (g *run) verifyPackage(ctx context.Context, a *simAgent, e wire.DesiredExtension, key []byte) error {
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
