// Package updates is the agent feature behind Corral/PatchManagement: it
// assesses the host's pending updates through its own package manager
// (internal/agent/patch: apt, dnf or zypper under env.HostRoot) on request
// and periodically, and carries out deployments inside their maintenance
// window with per-package results, pre/post scripts and the reboot the
// deployment asks for, reporting each to the control plane.
//
// Local rules, read at every decision (env.Config() at that moment):
//   - Corral/PatchManagement must be allowed by the extension lock-down
//     (monitor mode allows it); a refusal is reported as the operation's
//     reason instead of results.
//   - A deployment changes the host: env.HostChangesRefused() refuses it
//     (trial mode, corral dev). An assessment in that case does not
//     refresh the package lists (patch.AssessCached) and says so.
//   - Pre/post scripts are run commands: Corral/RunCommand must be allowed
//     too, and they run like run commands (/bin/sh reading the script on
//     standard input, root, fixed environment, timeout, capped output).
//   - The reboot runs the local key update.rebootcommand (default
//     "systemctl reboot"), which the control plane can never set.
//   - ConfigChanged stops a deployment that root just forbade (reported
//     Failed with why; the next deployment repairs the package database).
//
// At most once: a deployment's record is written Running before anything
// runs; an agent that finds a Running record at start reports the run as
// interrupted (from the engine's journal: what was installed, what was
// being installed) and never runs it again. A reboot is recorded before
// the command runs, and the next start reports what became of it (the
// host's boot id changed or not), so the reboot command runs once.
//
// Concurrency: one worker goroutine, owned by the feature and stopped by
// Close, runs the operations one at a time in the order they came; Apply
// and Tick only queue work. The package manager's own lock refuses a
// concurrent change by someone else.
package updates

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/patch"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/wire"
)

// Name is the feature's name.
const Name = wire.FeatureUpdates

// recordRetention is how long a finished operation's record is kept: far
// longer than the control plane lists an operation it has a result of.
const recordRetention = 7 * 24 * time.Hour

// maxQueued bounds the operations waiting, so a control plane cannot make
// the agent queue without bound.
const maxQueued = 200

// Feature is the updates feature.
type Feature struct {
	// TickEvery is how often Tick runs (default one minute); tests make it
	// shorter.
	TickEvery time.Duration

	env  feature.Env
	dir  string
	jdir string // the engine's journal directory

	mu       sync.Mutex
	queue    []job
	queued   map[string]bool
	interval time.Duration // periodic assessments; 0: not enrolled
	closed   bool
	cancel   context.CancelCauseFunc // the operation running, if any
	wake     chan struct{}
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

var (
	_ feature.ReportOnlyBuiltin = builtin{}
	_ feature.Feature           = (*Feature)(nil)
	_ feature.ConfigWatcher     = (*Feature)(nil)
	_ feature.Ticker            = (*Feature)(nil)
	_ feature.BuiltinProvider   = (*Feature)(nil)
)

// New returns the updates feature.
func New() *Feature { return &Feature{queued: map[string]bool{}, wake: make(chan struct{}, 1)} }

// Name implements feature.Feature.
func (f *Feature) Name() string { return Name }

// job is one queued operation.
type job struct {
	id         string
	assessment bool
	trigger    string // assessments: OnDemand or Periodic
	deployment wire.DesiredUpdateDeployment
}

// record is STATE/features/updates/ops/<id>.json.
type record struct {
	Kind  string    `json:"kind"`  // assessment or deployment
	State string    `json:"state"` // Running or Done
	At    time.Time `json:"at"`
}

const (
	kindAssessment = "assessment"
	kindDeployment = "deployment"
	stateRunning   = "Running"
	stateDone      = "Done"
)

func (f *Feature) opsDir() string { return filepath.Join(f.dir, "ops") }

func (f *Feature) load(id string) (record, bool) {
	var r record
	b, err := os.ReadFile(filepath.Join(f.opsDir(), recordFile(id)))
	if err != nil {
		return r, false
	}
	return r, json.Unmarshal(b, &r) == nil
}

func (f *Feature) save(id string, r record) error {
	b, _ := json.Marshal(r)
	return statedir.WriteFileAtomic(filepath.Join(f.opsDir(), recordFile(id)), b, statedir.PrivateMode)
}

// recordFile names an id's record; ids come from the control plane and
// are checked (validID) before they get here.
func recordFile(id string) string { return id + ".json" }

// validID: ids name files, so only a safe alphabet.
func validID(id string) bool {
	if id == "" || len(id) > 100 || strings.HasPrefix(id, ".") {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func (f *Feature) now() time.Time {
	if f.env.Clock != nil {
		return f.env.Clock().UTC()
	}
	return time.Now().UTC()
}

// Start recovers from what a previous agent left (a reboot it started, a
// deployment it did not finish) and starts the worker.
func (f *Feature) Start(ctx context.Context, env feature.Env) error {
	f.env = env
	f.dir = env.Dir
	f.jdir = filepath.Join(env.Dir, "journal")
	for _, d := range []string{f.dir, f.opsDir(), f.jdir} {
		if err := statedir.MkdirPrivate(d); err != nil {
			return err
		}
	}
	f.reportReboot(ctx)
	f.reportInterrupted(ctx)
	f.forgetOld()
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	f.stop = stop
	f.wg.Go(func() { f.work(wctx) })
	return nil
}

// Builtins provides Corral/PatchManagement: its install and enable check
// that the host has a package manager this agent drives.
func (f *Feature) Builtins() []feature.Builtin { return []feature.Builtin{builtin{f}} }

type builtin struct{ f *Feature }

func (builtin) ExtensionName() string { return wire.ExtPatchManagement }

// RunsWithoutHostChanges: its handlers only look for a package manager;
// the feature refuses deployments itself while host changes are off, and
// assessments then read what the lists already hold.
func (builtin) RunsWithoutHostChanges() bool { return true }

func (b builtin) RunHandler(_ context.Context, handler string, _ wire.HandlerInput) (string, error) {
	if handler == wire.HandlerInstall || handler == wire.HandlerEnable || handler == wire.HandlerUpdate {
		kind, err := patch.DetectKind(b.f.hostRoot())
		if err != nil {
			return "", err
		}
		return wire.ExtPatchManagement + " " + handler + " succeeded: package manager " + string(kind), nil
	}
	return wire.ExtPatchManagement + " " + handler + " succeeded", nil
}

func (f *Feature) hostRoot() string {
	if f.env.HostRoot == "" {
		return "/"
	}
	return f.env.HostRoot
}

// Apply takes the updates slice: the periodic interval always, new
// requests only from a freshly fetched desired state.
func (f *Feature) Apply(ctx context.Context, d feature.Desired) error {
	raw, ok := d.State.Features[Name]
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	if !ok {
		f.interval = 0
		return nil
	}
	var slice wire.UpdatesDesired
	if err := json.Unmarshal(raw, &slice); err != nil {
		f.env.LogRefused(ctx, "malformed updates slice in the desired state ignored", "err", err)
		return nil
	}
	f.interval = time.Duration(slice.AssessmentInterval)
	if f.interval < wire.MinAssessmentInterval {
		f.interval = wire.DefaultAssessmentInterval
	}
	if !d.Fresh {
		return nil
	}
	for _, a := range slice.Assessments {
		f.enqueue(ctx, job{id: a.ID, assessment: true, trigger: wire.TriggerOnDemand})
	}
	for _, dep := range slice.Deployments {
		f.enqueue(ctx, job{id: dep.ID, deployment: dep})
	}
	return nil
}

// enqueue queues j unless it ran, runs or waits already. Caller holds f.mu.
func (f *Feature) enqueue(ctx context.Context, j job) {
	if !validID(j.id) {
		f.env.LogRefused(ctx, "update operation with an invalid id ignored", "id", truncate(j.id, 80))
		return
	}
	if f.queued[j.id] {
		return
	}
	if _, known := f.load(j.id); known {
		return
	}
	if len(f.queue) >= maxQueued {
		f.env.LogRefused(ctx, "too many update operations waiting; the rest wait for the next desired state", "max", maxQueued)
		return
	}
	f.queued[j.id] = true
	f.queue = append(f.queue, j)
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// TickInterval implements feature.Ticker.
func (f *Feature) TickInterval() time.Duration {
	if f.TickEvery > 0 {
		return f.TickEvery
	}
	return time.Minute
}

// lastFile holds when the last assessment (of any trigger) was made.
func (f *Feature) lastFile() string { return filepath.Join(f.dir, "last-assessment") }

// Tick queues a periodic assessment when the machine is enrolled and the
// interval has passed since the last assessment.
func (f *Feature) Tick(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.interval <= 0 || len(f.queue) > 0 || f.cancel != nil {
		return nil
	}
	last := time.Time{}
	if b, err := os.ReadFile(f.lastFile()); err == nil {
		last, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	}
	now := f.now()
	if !last.IsZero() && now.Sub(last) < f.interval {
		return nil
	}
	f.enqueue(ctx, job{id: "periodic-" + now.Format("20060102T150405Z"), assessment: true, trigger: wire.TriggerPeriodic})
	return nil
}

// work runs queued operations one at a time until ctx ends.
func (f *Feature) work(ctx context.Context) {
	for {
		f.mu.Lock()
		var j job
		have := len(f.queue) > 0 && !f.closed
		var opCtx context.Context
		if have {
			j, f.queue = f.queue[0], f.queue[1:]
			var cancel context.CancelCauseFunc
			opCtx, cancel = context.WithCancelCause(ctx)
			f.cancel = cancel
		}
		f.mu.Unlock()
		if !have {
			select {
			case <-ctx.Done():
				return
			case <-f.wake:
				continue
			}
		}
		if j.assessment {
			f.assess(opCtx, j)
		} else {
			f.deploy(opCtx, j.deployment)
		}
		f.mu.Lock()
		f.cancel(nil)
		f.cancel = nil
		delete(f.queued, j.id)
		f.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

// allowed says whether Corral/PatchManagement may act now.
func (f *Feature) allowed() error {
	return f.env.Config().CheckExtension(localconfig.OpInstall, wire.ExtPatchManagement)
}

// ConfigChanged stops a deployment root just forbade: the extension is
// blocked or host changes are refused now.
func (f *Feature) ConfigChanged(ctx context.Context, _ localconfig.Effective) {
	err := f.allowed()
	if err == nil {
		err = f.env.HostChangesRefused()
	}
	if err == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		f.env.Logger.WarnContext(ctx, "stopping the update operation the local configuration now forbids", "err", err)
		f.cancel(err)
	}
}

// errStopped is the cause of an operation stopped because the agent stops.
var errStopped = errors.New("the agent stopped")

// Close stops the worker (an operation running is cancelled: a deployment
// stops before its next install) and waits for it.
func (f *Feature) Close() error {
	f.mu.Lock()
	f.closed = true
	if f.cancel != nil {
		f.cancel(errStopped)
	}
	f.mu.Unlock()
	if f.stop != nil {
		f.stop()
	}
	f.wg.Wait()
	return nil
}

// forgetOld removes finished records older than recordRetention.
func (f *Feature) forgetOld() {
	entries, err := os.ReadDir(f.opsDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		r, known := f.load(id)
		info, err := e.Info()
		if err != nil || (known && r.State == stateRunning) || time.Since(info.ModTime()) < recordRetention {
			continue
		}
		os.Remove(filepath.Join(f.opsDir(), e.Name()))
	}
}

func (f *Feature) report(kind string, body any, key string) {
	if f.env.Report != nil {
		f.env.Report(kind, body, key)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
