package loadgen

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/scan/sigset"
	"github.com/corralhq/corral/internal/wire"
)

// ProtectionResult are the figures of the endpoint protection phase:
// protection enabled on the whole resource group at once, each machine
// timed from the enable until its status report (after downloading and
// verifying the signature set, as the real feature does) is recorded; an
// alert from about one machine in AlertEvery; and the reads the security
// view makes at that scale.
type ProtectionResult struct {
	Machines           int
	Samples, Lost      int
	P50, P99, Max      time.Duration
	EnableDuration     time.Duration // the PUT itself (installs on every machine)
	SetBytes           int64
	SetDownloads       int64
	Alerts             int64
	AlertListLatency   time.Duration // GET 100 newest active alerts of the group
	StatusListLatency  time.Duration // GET every machine's protection status
	StatusListMachines int
}

// alertEvery is how many machines report one detection for one that does.
const alertEvery = 20

// protState is the simulated feature of every agent.
type protState struct {
	mu       sync.Mutex
	on       bool
	pending  map[string]time.Time // machine id -> enabled at
	samples  []time.Duration
	agents   map[string]*protAgent
	setBytes int64
	download int64
	alerts   int64
}

type protAgent struct {
	sigVersion uint64
	reported   bool
}

// syncProtection answers the protection part of a desired state like the
// real feature: with Corral/EndpointProtection desired it downloads the
// named signature set (checked against the digest and verified with the
// key the slice presents), reports its status, and now and then an alert.
func (g *run) syncProtection(ctx context.Context, a *simAgent, ds wire.DesiredState) {
	raw := ds.Features[wire.FeatureProtection]
	enabled := false
	for _, e := range ds.Extensions {
		if strings.EqualFold(e.Type, wire.ProtectionExtensionType) && strings.EqualFold(e.Publisher, wire.PublisherCorral) {
			enabled = true
		}
	}
	p := &g.prot
	p.mu.Lock()
	if !p.on || !enabled || raw == nil {
		p.mu.Unlock()
		return
	}
	st := p.agents[a.machineID]
	if st == nil {
		st = &protAgent{}
		p.agents[a.machineID] = st
	}
	if st.reported {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	var d wire.ProtectionDesired
	if err := json.Unmarshal(raw, &d); err != nil {
		g.noteError(err)
		return
	}
	status := wire.ProtectionStatus{State: wire.ProtectionRunning, EngineVersion: "2026.11.0", Signatures: 1, RealtimeEnabled: true,
		RealtimeMode: "fanotify", Action: wire.ProtectionQuarantine, Limits: "cgroup v2", At: time.Now().UTC()}
	if ref := d.Signatures; ref != nil && ref.Version > st.sigVersion {
		set, err := a.api.Download(ctx, wire.PathProtectionSignatures+strconv.FormatUint(ref.Version, 10), ref.Size)
		if err != nil {
			g.noteError(err)
			return
		}
		sum := sha256.Sum256(set)
		h, _, err := sigset.Verify(d.SignatureKey, set)
		if err != nil || hex.EncodeToString(sum[:]) != ref.SHA256 {
			g.noteError(fmt.Errorf("signature set %d does not verify: %v", ref.Version, err))
			return
		}
		p.mu.Lock()
		p.download++
		p.setBytes = int64(len(set))
		st.sigVersion = h.Version
		p.mu.Unlock()
		status.SignatureVersion, status.Signatures = h.Version, h.Total()+1
	}
	reports := []wire.Report{{ID: a.name + "-protection-status", Kind: wire.ReportProtectionStatus, TakenAt: time.Now().UTC(), Body: mustJSON(status)}}
	if rand.IntN(alertEvery) == 0 {
		det := wire.ProtectionDetection{ID: "loadgen-" + a.name, Time: time.Now().UTC(), Path: "/tmp/eicar-" + a.name + ".com",
			SHA256: "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", Signature: "Eicar-Test-Signature",
			Kind: "signature", Source: "realtime", Event: "close-write", Action: wire.DetectionQuarantined, QuarantineID: "0123456789abcdef",
			Process: "/usr/bin/wget", PID: 4242}
		reports = append(reports, wire.Report{ID: a.name + "-protection-detection", Kind: wire.ReportProtectionDetection,
			TakenAt: time.Now().UTC(), Body: mustJSON(det)})
	}
	var ack wire.ReportAck
	if err := a.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: reports}, &ack); err != nil {
		g.noteError(err)
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	st.reported = true
	if len(reports) > 1 {
		p.alerts++
	}
	if sent, ok := p.pending[a.machineID]; ok {
		p.samples = append(p.samples, now.Sub(sent))
		delete(p.pending, a.machineID)
	}
}

// measureProtection imports a signature set of hashes hash signatures,
// enables protection on the group and times every machine until its
// status is recorded, then times the security view's reads.
func (g *run) measureProtection(ctx context.Context, agents []*simAgent, hashes int) ProtectionResult {
	var res ProtectionResult
	dir, err := os.MkdirTemp("", "corral-loadgen-sigs-")
	if err != nil {
		g.noteError(err)
		return res
	}
	defer os.RemoveAll(dir)
	var b strings.Builder
	for i := range hashes {
		fmt.Fprintf(&b, "%x:%d:Loadgen.Hash.%d\n", sha256.Sum256([]byte(strconv.Itoa(i))), 1000+i, i)
	}
	hsb := filepath.Join(dir, "loadgen.hsb")
	if err := os.WriteFile(hsb, []byte(b.String()), 0o600); err != nil {
		g.noteError(err)
		return res
	}
	if _, err := g.admin.ImportSignatures(ctx, hsb); err != nil {
		g.noteError(fmt.Errorf("import signatures: %w", err))
		return res
	}
	p := &g.prot
	p.mu.Lock()
	p.on, p.pending, p.agents = true, map[string]time.Time{}, map[string]*protAgent{}
	start := time.Now()
	for _, a := range agents {
		if a != nil {
			p.pending[a.machineID] = start
			res.Machines++
		}
	}
	p.mu.Unlock()
	scope := resource.ResourceGroup("default", g.opts.ResourceGroup)
	if _, err := g.admin.EnableProtection(ctx, scope, wire.ProtectionEnable{Settings: wire.DefaultProtectionSettings()}); err != nil {
		g.noteError(fmt.Errorf("enable protection: %w", err))
		return res
	}
	res.EnableDuration = time.Since(start)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		p.mu.Lock()
		left := len(p.pending)
		p.mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	res.Samples, res.Lost = len(p.samples), len(p.pending)
	res.P50, res.P99, res.Max = percentiles(p.samples)
	res.SetBytes, res.SetDownloads, res.Alerts = p.setBytes, p.download, p.alerts
	p.mu.Unlock()

	t0 := time.Now()
	if _, err := g.admin.ListAlerts(ctx, client.AlertFilter{Scope: scope.String(), State: wire.AlertActive, Max: 100}); err != nil {
		g.noteError(err)
	}
	res.AlertListLatency = time.Since(t0)
	t0 = time.Now()
	ms, err := g.admin.ListMachineProtection(ctx, scope)
	if err != nil {
		g.noteError(err)
	}
	res.StatusListLatency, res.StatusListMachines = time.Since(t0), len(ms)
	return res
}

// Format prints the phase's figures.
func (r ProtectionResult) Format(w interface{ Write([]byte) (int, error) }) {
	if r.Machines == 0 {
		return
	}
	fmt.Fprintf(w, "protection        %d machines: enable->status p50 %s  p99 %s  max %s  (%d done, %d lost; PUT took %s)\n",
		r.Machines, r.P50.Round(1e5), r.P99.Round(1e5), r.Max.Round(1e5), r.Samples, r.Lost, r.EnableDuration.Round(1e6))
	fmt.Fprintf(w, "                  signature set %.1f KiB downloaded and verified %d times; %d alerts reported\n",
		float64(r.SetBytes)/1024, r.SetDownloads, r.Alerts)
	fmt.Fprintf(w, "                  security view: 100 active alerts in %s, %d machine statuses in %s\n",
		r.AlertListLatency.Round(1e5), r.StatusListMachines, r.StatusListLatency.Round(1e5))
}
