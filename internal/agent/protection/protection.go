// Package protection is the agent feature behind Corral/EndpointProtection:
// it provides the first-party extension (feature.Builtin), runs the scanner
// daemon (internal/scan) as a process of its own under the agent's
// supervisor, and carries what the daemon finds to the control plane.
//
// The extension is the switch. Its enable and update handlers validate the
// settings ({"realtime":{"enabled","paths","block"},"action",
// "exclusions":{"paths","extensions"}}) and record them in
// features/protection/extension.json; disable and uninstall record it off.
// The daemon runs while the extension is on and the local configuration
// allows Corral/EndpointProtection (read when each decision is made:
// monitor mode allows it, the lists can block it, extensions.enabled=false
// stops it); a configuration change that forbids it stops the daemon at
// once (ConfigChanged), one that allows it again starts it. While host
// changes are off (corral dev, trial mode) the daemon runs in report-only
// mode: detections are reported, nothing is quarantined, deleted or
// restored.
//
// The daemon is the agent binary itself (`corral-agent protection-daemon`,
// DaemonMain) in the extension cgroup, under extensions.agent.cpulimit and
// a memory cap, restarted with backoff when it dies. Everything between
// the two processes goes through the feature's folder (see spool.go), so
// a detection made while the agent restarts is reported afterwards.
//
// The control plane's part of the desired state (wire.ProtectionDesired)
// names the signature set to install, on-demand scans, quarantine restores
// and a recurring scan. Signature sets are downloaded over the agent's
// machine channel, checked against the digest the desired state names and
// handed to the daemon, which verifies them with the trusted key (trust.go)
// and loads them completely before replacing the current set; a bad set is
// refused and the previous one kept. Scans and restores run at most once
// and only from a freshly fetched desired state.
//
// Concurrency: the handlers, Apply, ConfigChanged, Tick and the spool
// drainer serialize on one mutex; the daemon's start and stop happen under
// it. Close stops the daemon and the drainer.
package protection

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/agent/supervise"
	"github.com/corralhq/corral/internal/scan/quarantine"
	"github.com/corralhq/corral/internal/version"
	"github.com/corralhq/corral/internal/wire"
)

// Files and folders in the feature's folder (STATE/features/protection).
const (
	extensionFile     = "extension.json"
	daemonConfigFile  = "daemon.json"
	daemonLogFile     = "daemon.log"
	signaturesDir     = "signatures"
	incomingDir       = "incoming"
	requestsDir       = "requests"
	runningDir        = "requests/running"
	spoolDir          = "spool"
	scansDir          = "scans"
	restoresDir       = "restores"
	scheduleFile      = "schedule.json"
	lastScanFile      = "lastscan.json"
	fetchFile         = "fetch.json"
	quarantineDirName = "quarantine" // in the state directory, shared with `corral-agent quarantine`
	daemonName        = "endpoint-protection"
)

// DefaultMemoryMax caps the daemon: a million signatures load in under
// 200 MB, and an update holds the old and the new set for a moment.
const DefaultMemoryMax = 768 << 20

// FeatureDir is the feature's folder in an agent state directory.
func FeatureDir(stateDir string) string {
	return statedir.Dir(stateDir).Path(statedir.FeaturesDir, wire.FeatureProtection)
}

// Options tune the feature; the zero value is what the agent runs.
type Options struct {
	// Command is the daemon's executable and the arguments before its own
	// flags; empty means this executable with "protection-daemon".
	Command []string
	// Env is added to the daemon's environment.
	Env []string
	// MemoryMax caps the daemon (default DefaultMemoryMax).
	MemoryMax int64
	// ScanRequestTTL is how old a scan request may be when the machine
	// first sees it (default 24 h): older ones are reported expired.
	ScanRequestTTL time.Duration
}

// extState is extension.json: what the extension's handlers last said.
type extState struct {
	Enabled   bool                    `json:"enabled"`
	Settings  wire.ProtectionSettings `json:"settings"`
	UpdatedAt time.Time               `json:"updatedAt"`
}

// Feature is endpoint protection on the agent.
type Feature struct {
	opts Options
	env  feature.Env
	dir  string
	log  *slog.Logger
	host hostFS

	mu       sync.Mutex
	ext      extState
	desired  wire.ProtectionDesired
	daemonOn bool
	// own is the last status the feature reported itself (daemon off).
	own string
	// exited is the last daemon exit reported.
	exited time.Time
	// quarantineDue asks the drainer to report the quarantine.
	quarantineDue bool

	fetching bool
	// ctx ends at Close: downloads and the drainer stop with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}
}

var (
	_ feature.Feature         = (*Feature)(nil)
	_ feature.ConfigWatcher   = (*Feature)(nil)
	_ feature.Ticker          = (*Feature)(nil)
	_ feature.BuiltinProvider = (*Feature)(nil)
)

// New returns the feature as the agent runs it.
func New() *Feature { return NewWith(Options{}) }

// NewWith returns the feature with opts.
func NewWith(opts Options) *Feature {
	if opts.MemoryMax <= 0 {
		opts.MemoryMax = DefaultMemoryMax
	}
	if opts.ScanRequestTTL <= 0 {
		opts.ScanRequestTTL = 24 * time.Hour
	}
	return &Feature{opts: opts, kick: make(chan struct{}, 1)}
}

// Name implements feature.Feature.
func (f *Feature) Name() string { return wire.FeatureProtection }

// Builtins provides Corral/EndpointProtection.
func (f *Feature) Builtins() []feature.Builtin { return []feature.Builtin{builtin{f}} }

// Start opens the feature's folder, starts the drainer and, if the
// extension is on and allowed, the daemon.
func (f *Feature) Start(ctx context.Context, env feature.Env) error {
	f.env, f.dir, f.log = env, env.Dir, env.Logger
	if f.log == nil {
		f.log = slog.Default()
	}
	if f.env.Supervisor == nil {
		f.env.Supervisor = supervise.New(env.Limiter, f.log)
	}
	f.host = newHostFS(env.HostRoot)
	for _, d := range []string{f.dir, filepath.Join(f.dir, signaturesDir), filepath.Join(f.dir, incomingDir),
		filepath.Join(f.dir, requestsDir), filepath.Join(f.dir, runningDir), filepath.Join(f.dir, spoolDir),
		filepath.Join(f.dir, scansDir), filepath.Join(f.dir, restoresDir)} {
		if err := statedir.MkdirPrivate(d); err != nil {
			return err
		}
	}
	if err := readJSON(filepath.Join(f.dir, extensionFile), &f.ext); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("endpoint protection state: %w", err)
	}
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.ctx, f.cancel = dctx, cancel
	f.wg.Go(func() { watchDirs(dctx, []string{filepath.Join(f.dir, spoolDir)}, time.Second, f.kick) })
	f.wg.Go(func() { f.drainLoop(dctx) })
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reconcile(ctx)
	if f.ext.Enabled {
		f.quarantineDue = true
	}
	return nil
}

// Close stops the daemon and the drainer; what the daemon wrote and was
// not yet drained is reported after the next start.
func (f *Feature) Close() error {
	f.mu.Lock()
	if f.daemonOn {
		f.env.Supervisor.Stop(daemonName)
		f.daemonOn = false
	}
	f.mu.Unlock()
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	f.drain()
	return nil
}

func (f *Feature) now() time.Time {
	if f.env.Clock != nil {
		return f.env.Clock().UTC()
	}
	return time.Now().UTC()
}

// allowed says why the daemon may not run now ("" = it may), reading the
// local configuration as it is on disk.
func (f *Feature) allowed() (state, why string) {
	if !f.ext.Enabled {
		return wire.ProtectionStopped, "endpoint protection is not enabled on this machine"
	}
	if err := f.env.Config().CheckExtension(localconfig.OpUpdate, wire.ExtEndpointProtection); err != nil {
		return wire.ProtectionRefused, err.Error()
	}
	return "", ""
}

// reconcile starts, restarts (new configuration) or stops the daemon as
// the extension state and the local configuration say. Caller holds f.mu.
func (f *Feature) reconcile(ctx context.Context) {
	state, why := f.allowed()
	if state != "" {
		if f.daemonOn {
			f.log.InfoContext(ctx, "stopping endpoint protection", "why", why)
			f.env.Supervisor.Stop(daemonName)
			f.daemonOn = false
		}
		f.reportOwn(state, why)
		return
	}
	cfg := f.env.Config()
	t, err := decideTrust(f.dir, cfg, f.desired.SignatureKey, true, f.now())
	if err != nil {
		f.log.ErrorContext(ctx, "signature key", "err", err)
	}
	if t.Refused != "" {
		f.env.LogRefused(ctx, "signature key refused", "why", t.Refused)
	}
	dc := daemonConfig{HostRoot: f.host.root, StateDir: string(f.env.StateDir), Settings: f.ext.Settings, SignatureKey: t.Key,
		KeyRefused: t.Refused, Version: version.Version}
	if err := f.env.HostChangesRefused(); err != nil {
		dc.ReportOnly = err.Error()
	}
	b, _ := json.MarshalIndent(dc, "", "  ")
	sum := sha256.Sum256(b)
	if err := statedir.WriteFileAtomic(filepath.Join(f.dir, daemonConfigFile), b, statedir.PrivateMode); err != nil {
		f.reportOwn(wire.ProtectionFailed, "cannot write the daemon configuration: "+err.Error())
		return
	}
	spec, err := f.spec(hex.EncodeToString(sum[:8]), cfg.ExtensionsCPULimit)
	if err == nil {
		err = f.env.Supervisor.Start(spec)
	}
	if err != nil {
		f.reportOwn(wire.ProtectionFailed, "cannot start the protection daemon: "+err.Error())
		return
	}
	if !f.daemonOn {
		f.log.InfoContext(ctx, "endpoint protection running", "reportOnly", dc.ReportOnly, "realtime", f.ext.Settings.Realtime.Enabled)
		f.daemonOn = true
		f.own = ""
		f.report(wire.ReportProtectionStatus, wire.ProtectionStatus{State: wire.ProtectionStarting, EngineVersion: version.Version,
			Action: f.ext.Settings.Action, ReportOnly: dc.ReportOnly, At: f.now()}, statusKey)
	}
}

const statusKey = "protection:status"

// spec is how the supervisor runs the daemon.
func (f *Feature) spec(digest string, cpu int) (supervise.Spec, error) {
	cmd := f.opts.Command
	if len(cmd) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return supervise.Spec{}, err
		}
		if strings.HasSuffix(exe, ".test") {
			// A test binary would run its tests again as "the daemon".
			return supervise.Spec{}, errors.New("this is a Go test binary, not corral-agent: give the feature Options.Command")
		}
		cmd = []string{exe}
	}
	args := append(append([]string{}, cmd[1:]...), DaemonCommand, "--state-dir", string(f.env.StateDir), "--dir", f.dir, "--config-digest", digest)
	env := append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, f.opts.Env...)
	return supervise.Spec{Name: daemonName, Path: cmd[0], Args: args, Env: env, Dir: "/", CPUPercent: cpu, MemoryMax: f.opts.MemoryMax}, nil
}

// reportOwn reports a status the feature knows itself (the daemon is not
// running), once per change. A machine where protection was never enabled
// reports nothing. Caller holds f.mu.
func (f *Feature) reportOwn(state, why string) {
	if f.own == state+why || !f.ext.Enabled && f.ext.UpdatedAt.IsZero() {
		return
	}
	f.own = state + why
	f.report(wire.ReportProtectionStatus, wire.ProtectionStatus{State: state, Message: why, EngineVersion: version.Version, At: f.now()}, statusKey)
}

func (f *Feature) report(kind string, body any, key string) {
	if f.env.Report != nil {
		f.env.Report(kind, body, key)
	}
}

// Apply takes the desired slice: the signature key and set, scans and
// restores (from a fresh desired state only), the schedule.
func (f *Feature) Apply(ctx context.Context, d feature.Desired) error {
	var desired wire.ProtectionDesired
	if raw := d.State.Features[wire.FeatureProtection]; len(raw) > 0 {
		if err := json.Unmarshal(raw, &desired); err != nil {
			f.env.LogRefused(ctx, "malformed endpoint protection desired state ignored", "err", err)
			return nil
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desired = desired
	f.reconcile(ctx)
	if d.Fresh {
		f.startScans(ctx, desired.Scans)
		f.restore(ctx, desired.Restores)
	}
	f.fetchSignatures(ctx)
	f.forgetOld()
	return nil
}

// ConfigChanged stops the daemon when root now forbids it and starts it
// again when root allows it.
func (f *Feature) ConfigChanged(ctx context.Context, _ localconfig.Effective) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reconcile(ctx)
}

// TickInterval implements feature.Ticker.
func (f *Feature) TickInterval() time.Duration { return 20 * time.Second }

// Tick starts a scheduled scan when one is due and reports a daemon that
// keeps exiting.
func (f *Feature) Tick(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.daemonOn {
		return nil
	}
	if st, ok := f.env.Supervisor.Status(daemonName); ok && !st.Running && st.LastExit != "" && st.LastExitAt.After(f.exited) {
		f.exited = st.LastExitAt
		f.report(wire.ReportProtectionStatus, wire.ProtectionStatus{State: wire.ProtectionFailed, EngineVersion: version.Version,
			Message: "the protection daemon " + st.LastExit + "; restarting it", Restarts: st.Restarts, Limits: st.Limits, At: f.now()}, statusKey)
	}
	f.scheduled(ctx)
	return nil
}

// drainLoop drains the spool whenever the daemon writes to it.
func (f *Feature) drainLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		}
		f.drain()
	}
}

// drain reports every message in the spool, oldest first, and removes it
// only once it is in the outbox.
func (f *Feature) drain() {
	dir := filepath.Join(f.dir, spoolDir)
	for _, name := range pending(dir) {
		path := filepath.Join(dir, name)
		m, err := readMessage(path)
		if err != nil {
			f.log.Error("unreadable protection message dropped", "file", name, "err", err)
			os.Remove(path)
			continue
		}
		f.forward(m)
		os.Remove(path)
	}
	f.mu.Lock()
	due := f.quarantineDue
	f.quarantineDue = false
	f.mu.Unlock()
	if due {
		f.reportQuarantine()
	}
}

// forward hands one daemon message to the outbox.
func (f *Feature) forward(m message) {
	switch m.Kind {
	case wire.ReportProtectionDetection:
		var det wire.ProtectionDetection
		if json.Unmarshal(m.Body, &det) != nil {
			return
		}
		f.report(m.Kind, det, "")
		if det.Action == wire.DetectionQuarantined {
			f.mu.Lock()
			f.quarantineDue = true
			f.mu.Unlock()
		}
	case wire.ReportProtectionScan:
		var res wire.ProtectionScanResult
		if json.Unmarshal(m.Body, &res) != nil {
			return
		}
		f.report(m.Kind, res, "protection:scan:"+res.ID)
		if res.State != wire.ScanRunning && validID(res.ID) {
			_ = writeJSON(filepath.Join(f.dir, scansDir, res.ID+".json"), scanRecord{State: res.State, At: f.now()})
		}
	case wire.ReportProtectionStatus:
		var st wire.ProtectionStatus
		if json.Unmarshal(m.Body, &st) != nil {
			return
		}
		f.mu.Lock()
		on := f.daemonOn
		f.mu.Unlock()
		if !on {
			return // a status of a daemon stopped since
		}
		if sup, ok := f.env.Supervisor.Status(daemonName); ok {
			st.Restarts, st.Limits = sup.Restarts, sup.Limits
		}
		f.report(m.Kind, st, statusKey)
	}
}

// reportQuarantine reports the whole quarantine (host paths).
func (f *Feature) reportQuarantine() {
	dir := string(f.env.StateDir.Path(quarantineDirName))
	entries := []wire.QuarantineEntry{}
	if _, err := os.Stat(dir); err == nil {
		q, err := quarantine.Open(dir)
		if err != nil {
			f.log.Error("open quarantine", "err", err)
			return
		}
		recs, err := q.List()
		if err != nil {
			f.log.Error("list quarantine", "err", err)
			return
		}
		for _, r := range recs {
			p := f.host.host(r.Path)
			if p == "" {
				p = r.Path
			}
			entries = append(entries, wire.QuarantineEntry{ID: r.ID, Path: p, SHA256: r.SHA256, Signature: r.Signature, Size: r.Size,
				UID: r.UID, GID: r.GID, Mode: r.Mode, Time: r.Time})
		}
	}
	f.report(wire.ReportProtectionQuarantine, wire.ProtectionQuarantineReport{Entries: entries}, "protection:quarantine")
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func validID(id string) bool { return idRE.MatchString(id) }

// scanRecord is scans/ID.json (and restores/ID.json): a request seen, so
// it runs at most once.
type scanRecord struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

// maxDesiredScans bounds the scans and restores taken from one desired
// state.
const maxDesiredScans = 20

// startScans hands new scan requests to the daemon. Caller holds f.mu.
func (f *Feature) startScans(ctx context.Context, reqs []wire.ProtectionScanRequest) {
	for i, r := range reqs {
		if i == maxDesiredScans {
			f.env.LogRefused(ctx, "the desired state lists more scans than the agent takes; the rest wait", "listed", len(reqs))
			break
		}
		if !validID(r.ID) {
			f.env.LogRefused(ctx, "scan request with an invalid id ignored")
			continue
		}
		rec := filepath.Join(f.dir, scansDir, r.ID+".json")
		if _, err := os.Stat(rec); err == nil {
			continue
		}
		if err := writeJSON(rec, scanRecord{State: wire.ScanPending, At: f.now()}); err != nil {
			f.log.ErrorContext(ctx, "record scan request", "scan", r.ID, "err", err)
			continue
		}
		fail := func(msg string) {
			_ = writeJSON(rec, scanRecord{State: wire.ScanFailed, At: f.now()})
			f.report(wire.ReportProtectionScan, wire.ProtectionScanResult{ID: r.ID, Type: r.Type, Paths: r.Paths, State: wire.ScanFailed,
				Message: msg, FinishedAt: f.now()}, "protection:scan:"+r.ID)
		}
		if state, why := f.allowed(); state != "" {
			fail(why)
			continue
		}
		if !r.RequestedAt.IsZero() && f.now().Sub(r.RequestedAt) > f.opts.ScanRequestTTL {
			fail(fmt.Sprintf("the scan was requested at %s and the machine saw it only now; it was not run", r.RequestedAt.UTC().Format(time.RFC3339)))
			continue
		}
		if err := checkScanRequest(r); err != nil {
			fail(err.Error())
			continue
		}
		if err := writeJSON(filepath.Join(f.dir, requestsDir, "scan-"+r.ID+".json"), scanRequest{ProtectionScanRequest: r}); err != nil {
			fail("cannot hand the scan to the protection daemon: " + err.Error())
		}
	}
}

func checkScanRequest(r wire.ProtectionScanRequest) error {
	switch r.Type {
	case wire.ScanQuick, wire.ScanFull:
		if len(r.Paths) > 0 {
			return fmt.Errorf("a %s scan takes no paths", r.Type)
		}
	case wire.ScanCustom:
		if len(r.Paths) == 0 || len(r.Paths) > 64 {
			return errors.New("a custom scan takes 1 to 64 paths")
		}
		for _, p := range r.Paths {
			if err := wire.CheckHostPath(p); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown scan type %q", r.Type)
	}
	return nil
}

// schedule is schedule.json: when the last scheduled scan started.
type schedule struct {
	Last time.Time `json:"last"`
}

// scheduled starts the recurring scan when it is due: Every after the
// last one (or after the schedule was first seen). Caller holds f.mu.
func (f *Feature) scheduled(ctx context.Context) {
	sc := f.desired.Schedule
	if sc == nil || sc.Validate() != nil {
		return
	}
	path := filepath.Join(f.dir, scheduleFile)
	var s schedule
	if err := readJSON(path, &s); err != nil || s.Last.IsZero() {
		_ = writeJSON(path, schedule{Last: f.now()})
		return
	}
	if f.now().Sub(s.Last) < time.Duration(sc.Every) {
		return
	}
	id := "scheduled-" + f.now().Format("20060102-150405")
	req := scanRequest{ProtectionScanRequest: wire.ProtectionScanRequest{ID: id, Type: sc.Type, RequestedAt: f.now()}, Scheduled: true}
	if err := writeJSON(filepath.Join(f.dir, scansDir, id+".json"), scanRecord{State: wire.ScanPending, At: f.now()}); err != nil {
		return
	}
	if err := writeJSON(filepath.Join(f.dir, requestsDir, "scan-"+id+".json"), req); err != nil {
		f.log.ErrorContext(ctx, "start a scheduled scan", "err", err)
		return
	}
	_ = writeJSON(path, schedule{Last: f.now()})
}

// forgetOld removes scan and restore records after a week: by then the
// control plane has the results and no longer lists the requests.
func (f *Feature) forgetOld() {
	for _, sub := range []string{scansDir, restoresDir} {
		dir := filepath.Join(f.dir, sub)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if info, err := e.Info(); err == nil && !strings.HasPrefix(e.Name(), ".") && time.Since(info.ModTime()) > 7*24*time.Hour {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}
