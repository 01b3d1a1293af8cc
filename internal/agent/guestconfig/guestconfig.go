// Package guestconfig is the agent feature that evaluates machine
// configurations (typed guest rules, internal/policy/guest) inside the OS
// under env.HostRoot, for the policy assignments the control plane sends in
// wire.GuestConfigurationDesired, and reports each rule's verdict with
// evidence (wire.ReportGuestCompliance).
//
// When it evaluates: when an assignment is added or changed, every
// guestconfiguration.interval minutes (local key, default 15), on demand (a new evaluation request
// id in the slice), when root changes the local configuration, and —
// through inotify (fsnotify) on the files and directories the assigned
// rules read — within a moment of a change to one of them.
//
// Apply modes: ApplyAndMonitor remediates NonCompliant rules once, when the
// assignment arrives; ApplyAndAutoCorrect remediates them whenever they
// drift. Every remediation backs up what it changes (guest.Rule.Apply) into
// STATE/features/guestConfiguration/changes/<id>.json (root-only) and is
// reported (wire.ReportGuestRemediation); a rollback asked for by the
// control plane restores it, refusing over a file changed since unless
// forced (wire.ReportGuestRollback). A rolled-back rule is not corrected
// again until its assignment changes: root or an administrator undid it on
// purpose.
//
// Local rules, read at every decision (env.Config() at that moment):
// guestconfiguration.enabled false or config.mode monitor stops every
// evaluation and apply — the rules are reported Unknown with that reason;
// env.HostChangesRefused() (corral dev without --allow-host-changes,
// trial mode) refuses every remediation and rollback, said in the evidence.
// The agent only runs machine configurations built into it
// (internal/policy/builtin): the control plane names one, never sends rules.
//
// Concurrency: one worker goroutine, owned by the feature and stopped by
// Close, does every evaluation, remediation and rollback in turn; Apply,
// Tick, ConfigChanged and the file watcher only queue work.
package guestconfig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/policy/builtin"
	"github.com/corralhq/corral/internal/policy/guest"
	"github.com/corralhq/corral/internal/wire"
)

// Name is the feature's name.
const Name = wire.FeatureGuestConfiguration

// DefaultInterval is how often every assignment is evaluated anyway.
const DefaultInterval = 15 * time.Minute

// Feature is the guest configuration feature.
type Feature struct {
	// Interval, when set, overrides the periodic evaluation's local key
	// guestconfiguration.interval (default DefaultInterval); tests make
	// it short.
	Interval time.Duration
	// Debounce gathers a burst of file events into one evaluation
	// (default 150 ms).
	Debounce time.Duration

	env feature.Env
	cat *builtin.Catalog

	mu        sync.Mutex
	st        persisted
	pending   map[string]string // assignment id -> trigger
	rollbacks []wire.GuestRollback
	attempted map[string]bool // rollbacks tried by this process
	wake      chan struct{}
	stop      context.CancelFunc
	wg        sync.WaitGroup
	watcher   *fsnotify.Watcher
	watched   map[string]bool // directories watched (host paths)
	relevant  map[string]bool // host paths the rules read
	debounce  *time.Timer
	// lastPeriodic is when the last periodic evaluation was queued (only
	// Tick touches it).
	lastPeriodic time.Time
}

var (
	_ feature.Feature       = (*Feature)(nil)
	_ feature.ConfigWatcher = (*Feature)(nil)
	_ feature.Ticker        = (*Feature)(nil)
)

// persisted is STATE/features/guestConfiguration/state.json.
type persisted struct {
	Assignments []wire.GuestAssignment `json:"assignments"`
	// Applied: ApplyAndMonitor assignments (id|type) already applied once.
	Applied map[string]bool `json:"applied,omitempty"`
	// Suspended: assignment id|rule whose remediation was rolled back,
	// with the remediation id.
	Suspended map[string]string `json:"suspended,omitempty"`
	// EvalRequest is the newest on-demand evaluation request seen.
	EvalRequest string `json:"evaluationRequest,omitempty"`
}

// New returns the guest configuration feature.
func New() *Feature {
	return &Feature{pending: map[string]string{}, attempted: map[string]bool{}, wake: make(chan struct{}, 1),
		watched: map[string]bool{}, relevant: map[string]bool{}}
}

// Name implements feature.Feature.
func (f *Feature) Name() string { return Name }

func (f *Feature) stateFile() string  { return filepath.Join(f.env.Dir, "state.json") }
func (f *Feature) changesDir() string { return filepath.Join(f.env.Dir, "changes") }

func (f *Feature) now() time.Time {
	if f.env.Clock != nil {
		return f.env.Clock().UTC()
	}
	return time.Now().UTC()
}

func (f *Feature) hostRoot() string {
	if f.env.HostRoot == "" {
		return "/"
	}
	return f.env.HostRoot
}

// Start loads the built-in machine configurations and the feature's state
// and starts the worker and the file watcher.
func (f *Feature) Start(ctx context.Context, env feature.Env) error {
	f.env = env
	f.lastPeriodic = f.now()
	if f.Debounce <= 0 {
		f.Debounce = 150 * time.Millisecond
	}
	cat, err := builtin.Load()
	if err != nil {
		return err
	}
	f.cat = cat
	for _, d := range []string{env.Dir, f.changesDir()} {
		if err := statedir.MkdirPrivate(d); err != nil {
			return err
		}
	}
	if b, err := os.ReadFile(f.stateFile()); err == nil {
		_ = json.Unmarshal(b, &f.st)
	}
	if f.st.Applied == nil {
		f.st.Applied = map[string]bool{}
	}
	if f.st.Suspended == nil {
		f.st.Suspended = map[string]string{}
	}
	for _, a := range f.st.Assignments {
		f.pending[a.ID] = wire.TriggerPeriodic // evaluate what we had at start
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		env.Logger.WarnContext(ctx, "no file watches: changes show at the next periodic evaluation", "err", err)
	} else {
		f.watcher = w
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	f.stop = stop
	f.wg.Go(func() { f.work(wctx) })
	if f.watcher != nil {
		f.wg.Go(func() { f.watch(wctx) })
	}
	f.signal()
	return nil
}

// Close stops the worker and the watcher.
func (f *Feature) Close() error {
	if f.stop != nil {
		f.stop()
	}
	if f.watcher != nil {
		_ = f.watcher.Close()
	}
	f.wg.Wait()
	f.mu.Lock()
	if f.debounce != nil {
		f.debounce.Stop()
	}
	f.mu.Unlock()
	return nil
}

func (f *Feature) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *Feature) saveLocked() {
	b, _ := json.Marshal(f.st)
	if err := statedir.WriteFileAtomic(f.stateFile(), b, statedir.PrivateMode); err != nil {
		f.env.Logger.Warn("save guest configuration state", "err", err)
	}
}

// Apply takes the guest configuration slice: new or changed assignments
// are evaluated now, a new evaluation request evaluates everything, and
// rollbacks (from a fresh desired state only) are queued.
func (f *Feature) Apply(_ context.Context, d feature.Desired) error {
	var slice wire.GuestConfigurationDesired
	if raw, ok := d.State.Features[Name]; ok && len(raw) > 0 {
		if err := json.Unmarshal(raw, &slice); err != nil {
			return fmt.Errorf("guest configuration slice: %w", err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := map[string]wire.GuestAssignment{}
	for _, a := range f.st.Assignments {
		old[a.ID] = a
	}
	var next []wire.GuestAssignment
	seen := map[string]bool{}
	for _, a := range slice.Assignments {
		if a.ID == "" || seen[a.ID] || len(next) >= 200 {
			continue
		}
		seen[a.ID] = true
		next = append(next, a)
		if prev, ok := old[a.ID]; !ok || !sameAssignment(prev, a) {
			f.pending[a.ID] = wire.TriggerAssignment
			for k := range f.st.Suspended {
				if strings.HasPrefix(k, a.ID+"|") {
					delete(f.st.Suspended, k)
				}
			}
		}
	}
	for id := range old {
		if !seen[id] {
			delete(f.pending, id)
			for k := range f.st.Suspended {
				if strings.HasPrefix(k, id+"|") {
					delete(f.st.Suspended, k)
				}
			}
			for k := range f.st.Applied {
				if strings.HasPrefix(k, id+"|") {
					delete(f.st.Applied, k)
				}
			}
		}
	}
	f.st.Assignments = next
	if slice.EvaluationRequest != "" && slice.EvaluationRequest != f.st.EvalRequest {
		f.st.EvalRequest = slice.EvaluationRequest
		for _, a := range next {
			if _, ok := f.pending[a.ID]; !ok {
				f.pending[a.ID] = wire.TriggerOnDemand
			}
		}
	}
	if d.Fresh {
		for _, rb := range slice.Rollbacks {
			key := rb.ID + "@" + rb.RequestedAt.Format(time.RFC3339Nano)
			if !f.attempted[key] && len(f.rollbacks) < 100 {
				f.attempted[key] = true
				f.rollbacks = append(f.rollbacks, rb)
			}
		}
	}
	f.saveLocked()
	f.signal()
	return nil
}

func sameAssignment(a, b wire.GuestAssignment) bool {
	return a.Configuration == b.Configuration && a.Version == b.Version && a.AssignmentType == b.AssignmentType &&
		a.Definition == b.Definition && slices.Equal(a.Rules, b.Rules)
}

// TickInterval implements feature.Ticker: a minute, so that a change of
// guestconfiguration.interval is in force at once.
func (f *Feature) TickInterval() time.Duration {
	if f.Interval > 0 && f.Interval < time.Minute {
		return f.Interval
	}
	return time.Minute
}

// interval is the periodic evaluation's interval now.
func (f *Feature) interval() time.Duration {
	if f.Interval > 0 {
		return f.Interval
	}
	if d := f.env.Config().GuestConfigInterval; d > 0 {
		return d
	}
	return DefaultInterval
}

// Tick queues the periodic evaluation of every assignment when the
// interval has passed.
func (f *Feature) Tick(context.Context) error {
	if now := f.now(); now.Sub(f.lastPeriodic) >= f.interval() {
		f.lastPeriodic = now
		f.queueAll(wire.TriggerPeriodic)
	}
	return nil
}

// ConfigChanged re-evaluates everything: rules turn Unknown when root
// turned guest configuration off, and are evaluated again when back on.
func (f *Feature) ConfigChanged(context.Context, localconfig.Effective) {
	f.queueAll(wire.TriggerPeriodic)
}

func (f *Feature) queueAll(trigger string) {
	f.mu.Lock()
	for _, a := range f.st.Assignments {
		if _, ok := f.pending[a.ID]; !ok {
			f.pending[a.ID] = trigger
		}
	}
	f.mu.Unlock()
	f.signal()
}

// work runs queued rollbacks and evaluations until ctx ends.
func (f *Feature) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		for {
			f.mu.Lock()
			rbs := f.rollbacks
			f.rollbacks = nil
			var jobs []job
			for _, a := range f.st.Assignments {
				if tr, ok := f.pending[a.ID]; ok {
					jobs = append(jobs, job{a: a, trigger: tr, evalReq: f.st.EvalRequest})
				}
			}
			f.pending = map[string]string{}
			f.mu.Unlock()
			if len(rbs) == 0 && len(jobs) == 0 {
				break
			}
			for _, rb := range rbs {
				f.rollback(ctx, rb)
			}
			for _, j := range jobs {
				if ctx.Err() != nil {
					return
				}
				f.evaluate(ctx, j)
			}
			f.updateWatches()
		}
	}
}

type job struct {
	a       wire.GuestAssignment
	trigger string
	evalReq string
}

// offReason is why guest configuration may not run now ("" when it may).
func offReason(cfg localconfig.Effective) string {
	switch {
	case cfg.Damaged != nil:
		return "not evaluated: the local configuration cannot be read (" + cfg.Damaged.Error() + "); guest configuration is off until root repairs it"
	case cfg.Mode == localconfig.ModeMonitor:
		return "not evaluated: the local configuration is in monitor mode (config.mode monitor), which turns guest configuration off"
	case !cfg.GuestConfigEnabled:
		return "not evaluated: guestconfiguration.enabled is false in the local configuration"
	}
	return ""
}

func (f *Feature) guestEnv() guest.Env {
	env := guest.NewEnv(f.hostRoot())
	env.Now = f.now
	return env
}

// evaluate evaluates one assignment, remediates what its type asks for and
// reports the verdicts.
func (f *Feature) evaluate(ctx context.Context, j job) {
	a := j.a
	rep := wire.GuestComplianceReport{Assignment: a.ID, Configuration: a.Configuration, AssignmentType: a.AssignmentType,
		Trigger: j.trigger, EvaluationRequest: j.evalReq, EvaluatedAt: f.now(), Rules: []wire.GuestRuleResult{}}
	conf, ok := f.cat.Configuration(a.Configuration)
	if !ok {
		rep.Reason = fmt.Sprintf("not evaluated: machine configuration %q is not built into this agent", a.Configuration)
		rep.Rules = append(rep.Rules, wire.GuestRuleResult{Rule: a.Configuration, ComplianceState: wire.ComplianceUnknown, Evidence: rep.Reason})
		f.env.Report(wire.ReportGuestCompliance, rep, wire.ReportGuestCompliance+"/"+a.ID)
		return
	}
	rules := conf.Rules
	if len(a.Rules) > 0 {
		rules = nil
		for _, id := range a.Rules {
			if r, ok := conf.Rule(id); ok {
				rules = append(rules, r)
			}
		}
	}
	if reason := offReason(f.env.Config()); reason != "" {
		if j.trigger == wire.TriggerFileChange {
			return // already reported Unknown; nothing to say
		}
		rep.Reason = reason
		for _, r := range rules {
			rep.Rules = append(rep.Rules, wire.GuestRuleResult{Rule: r.ID, Title: r.Title, Severity: r.Severity,
				ComplianceState: wire.ComplianceUnknown, Evidence: reason, SSGRuleID: r.SSGRuleID})
		}
		f.env.Report(wire.ReportGuestCompliance, rep, wire.ReportGuestCompliance+"/"+a.ID)
		return
	}
	env := guest.NewEnv(f.hostRoot())
	env.Now = f.now
	sub := &guest.Configuration{Name: conf.Name, Rules: rules}
	results := sub.Evaluate(ctx, env)
	applyNow := a.AssignmentType == wire.AssignmentTypeApplyAndAutoCorrect
	onceKey := a.ID + "|" + a.AssignmentType
	if a.AssignmentType == wire.AssignmentTypeApplyAndMonitor {
		f.mu.Lock()
		applyNow = !f.st.Applied[onceKey]
		f.mu.Unlock()
	}
	if applyNow {
		for i, res := range results {
			if res.State != guest.NonCompliant {
				continue
			}
			if note := f.remediate(ctx, env, a, rules[i], res); note != "" {
				results[i].Evidence += "; " + note
			} else {
				results[i] = rules[i].Evaluate(ctx, env)
			}
		}
		if a.AssignmentType == wire.AssignmentTypeApplyAndMonitor {
			f.mu.Lock()
			f.st.Applied[onceKey] = true
			f.saveLocked()
			f.mu.Unlock()
		}
	}
	for _, r := range results {
		rep.Rules = append(rep.Rules, wire.GuestRuleResult{Rule: r.Rule, Title: r.Title, Severity: r.Severity,
			ComplianceState: string(r.State), Evidence: r.Evidence, SSGRuleID: r.SSGRuleID})
	}
	f.env.Report(wire.ReportGuestCompliance, rep, wire.ReportGuestCompliance+"/"+a.ID)
}

// remediate applies one rule's fix; it returns why it did not ("" when
// the rule was fixed and reported).
func (f *Feature) remediate(ctx context.Context, env guest.Env, a wire.GuestAssignment, r *guest.Rule, res guest.Result) string {
	if !r.Remediable() {
		return "not remediated: " + guest.ErrNotRemediable.Error()
	}
	f.mu.Lock()
	rem, suspended := f.st.Suspended[a.ID+"|"+r.ID]
	f.mu.Unlock()
	if suspended {
		return "not remediated: remediation " + rem + " was rolled back; auto-correction resumes when the assignment changes"
	}
	if err := f.env.HostChangesRefused(); err != nil {
		f.env.LogRefused(ctx, "guest configuration remediation refused", "assignment", a.Name, "rule", r.ID, "err", err)
		return "not remediated: " + err.Error()
	}
	ch, err := r.Apply(ctx, env)
	if err != nil {
		id := fmt.Sprintf("failed-%d", f.now().UnixNano())
		f.env.Report(wire.ReportGuestRemediation, wire.GuestRemediationReport{ID: id, Assignment: a.ID, Rule: r.ID, Result: wire.ResultFailed,
			Message: err.Error(), EvidenceBefore: res.Evidence, At: f.now()}, "")
		return "remediation failed: " + err.Error()
	}
	if ch == nil {
		return ""
	}
	b, _ := json.Marshal(ch)
	if err := statedir.WriteFileAtomic(filepath.Join(f.changesDir(), ch.ID+".json"), b, statedir.PrivateMode); err != nil {
		f.env.Logger.WarnContext(ctx, "keep a remediation's backup", "remediation", ch.ID, "err", err)
	}
	f.env.Report(wire.ReportGuestRemediation, wire.GuestRemediationReport{ID: ch.ID, Assignment: a.ID, Rule: r.ID, Result: wire.ResultSucceeded,
		Message: fmt.Sprintf("%s of %s", a.AssignmentType, a.Name), EvidenceBefore: ch.Before, EvidenceAfter: ch.After,
		Files: fileChanges(ch), At: f.now()}, "")
	f.env.Logger.InfoContext(ctx, "guest configuration remediated a rule", "assignment", a.Name, "rule", r.ID, "remediation", ch.ID)
	return ""
}

func fileChanges(ch *guest.Change) []wire.GuestFileChange {
	var out []wire.GuestFileChange
	for _, fc := range ch.Files {
		c := wire.GuestFileChange{Path: fc.Path, Created: !fc.Before.Exists && fc.After.Exists,
			ContentChanged: fc.Before.SHA256 != fc.After.SHA256}
		if fc.Before.Exists {
			c.ModeBefore = fmt.Sprintf("%04o", fc.Before.Mode&0o7777)
			c.OwnerBefore = fmt.Sprintf("%d:%d", fc.Before.UID, fc.Before.GID)
		}
		if fc.After.Exists {
			c.ModeAfter = fmt.Sprintf("%04o", fc.After.Mode&0o7777)
			c.OwnerAfter = fmt.Sprintf("%d:%d", fc.After.UID, fc.After.GID)
		}
		out = append(out, c)
		if len(out) == 100 {
			break
		}
	}
	return out
}

// rollback restores a remediation the control plane asked to undo.
func (f *Feature) rollback(ctx context.Context, rb wire.GuestRollback) {
	report := func(result, msg string) {
		f.env.Report(wire.ReportGuestRollback, wire.GuestRollbackReport{ID: rb.ID, Result: result, Message: msg, At: f.now()},
			wire.ReportGuestRollback+"/"+rb.ID)
	}
	if !validID(rb.ID) {
		return
	}
	if reason := offReason(f.env.Config()); reason != "" {
		report(wire.ResultFailed, strings.Replace(reason, "not evaluated", "not rolled back", 1))
		return
	}
	if err := f.env.HostChangesRefused(); err != nil {
		report(wire.ResultFailed, "not rolled back: "+err.Error())
		return
	}
	path := filepath.Join(f.changesDir(), rb.ID+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		report(wire.ResultFailed, "this machine has no backup of remediation "+rb.ID)
		return
	}
	var ch guest.Change
	if err := json.Unmarshal(b, &ch); err != nil {
		report(wire.ResultFailed, "the backup of remediation "+rb.ID+" is damaged: "+err.Error())
		return
	}
	if ch.Rollback != nil {
		report(wire.ResultSucceeded, "already rolled back at "+ch.Rollback.Format(time.RFC3339))
		return
	}
	env := f.guestEnv()
	if err := guest.Rollback(ctx, env, &ch, rb.Force); err != nil {
		msg := err.Error()
		if errors.Is(err, guest.ErrChangedSinceApply) {
			msg += " (roll back with --force to restore over it)"
		}
		report(wire.ResultFailed, msg)
		return
	}
	at := f.now()
	ch.Rollback = &at
	b, _ = json.Marshal(&ch)
	_ = statedir.WriteFileAtomic(path, b, statedir.PrivateMode)
	f.mu.Lock()
	for _, a := range f.st.Assignments {
		// The change names its rule; suspend it in every assignment that
		// holds it, so auto-correction does not undo the rollback.
		if conf, ok := f.cat.Configuration(a.Configuration); ok {
			if _, ok := conf.Rule(ch.Rule); ok {
				f.st.Suspended[a.ID+"|"+ch.Rule] = ch.ID
				f.pending[a.ID] = wire.TriggerOnDemand
			}
		}
	}
	f.saveLocked()
	f.mu.Unlock()
	report(wire.ResultSucceeded, fmt.Sprintf("restored %d files as they were before the remediation", len(ch.Files)))
}

// validID: remediation ids name files.
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

// updateWatches watches the directories holding what the assigned rules
// read, so a change shows within a moment.
func (f *Feature) updateWatches() {
	if f.watcher == nil {
		return
	}
	env := f.guestEnv()
	f.mu.Lock()
	as := slices.Clone(f.st.Assignments)
	f.mu.Unlock()
	relevant := map[string]bool{}
	dirs := map[string]bool{}
	for _, a := range as {
		conf, ok := f.cat.Configuration(a.Configuration)
		if !ok {
			continue
		}
		for _, p := range conf.WatchPaths(env) {
			hp, err := env.HostPath(p)
			if err != nil {
				continue
			}
			relevant[hp] = true
			if fi, err := os.Stat(hp); err == nil && fi.IsDir() {
				dirs[hp] = true
			}
			// The parent sees the file replaced, created or removed.
			for d := filepath.Dir(hp); ; d = filepath.Dir(d) {
				if fi, err := os.Stat(d); err == nil && fi.IsDir() {
					dirs[d] = true
					break
				}
				if d == filepath.Dir(d) {
					break
				}
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.relevant = relevant
	for d := range f.watched {
		if !dirs[d] {
			_ = f.watcher.Remove(d)
			delete(f.watched, d)
		}
	}
	var add []string
	for d := range dirs {
		if !f.watched[d] {
			add = append(add, d)
		}
	}
	sort.Strings(add)
	for _, d := range add {
		if len(f.watched) >= 4096 {
			break
		}
		if err := f.watcher.Add(d); err == nil {
			f.watched[d] = true
		}
	}
}

// watch turns file events on what the rules read into evaluations.
func (f *Feature) watch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-f.watcher.Events:
			if !ok {
				return
			}
			f.mu.Lock()
			hit := f.relevant[ev.Name] || f.relevant[filepath.Dir(ev.Name)]
			if hit {
				if f.debounce == nil {
					f.debounce = time.AfterFunc(f.Debounce, func() { f.queueAll(wire.TriggerFileChange) })
				} else {
					f.debounce.Reset(f.Debounce)
				}
			}
			f.mu.Unlock()
		case _, ok := <-f.watcher.Errors:
			if !ok {
				return
			}
		}
	}
}
