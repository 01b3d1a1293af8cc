// Package extensions is the agent's extension manager, the first agent
// feature (feature.Feature). It reconciles the extensions installed on the
// machine toward the desired set from the control plane, under the local
// lock-down rules (localconfig.Effective.CheckExtension), and reports each
// extension's state back.
//
// Trust chain for every downloaded package, checked before anything is
// unpacked or run: the publisher's ed25519 key (pinned on first sight, a
// change is refused) verifies the publisher's signed catalog (its serial
// never goes back); the catalog must list the exact type, version and
// digest the desired state names; the downloaded archive's sha256 must
// equal that digest; the archive's manifest must name the same publisher,
// type and version. Only then is it unpacked (safely, see extpkg.Unpack)
// and are its handlers run — as root, with a timeout, captured and capped
// output, under the CPU limit where cgroup v2 allows, and with protected
// settings opened in memory and handed over on standard input only.
//
// First-party extensions (publisher Corral) are never downloaded: their
// code ships with the agent as feature.Builtin implementations, and a
// package for publisher Corral is refused whatever signs it. They pass the
// same lock-down checks as any extension.
//
// Lock-down decisions are made on the identity that will actually run (an
// extension whose publisher/type changes under the same name is removed and
// the new one installed, each checked) and read the local configuration as
// it is on disk before every handler starts; a configuration change that
// forbids the operation in progress stops it (ConfigChanged).
//
// Apply is serialized; ConfigChanged may run beside it.
package extensions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/publishers"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/wire"
)

// Name is the feature's name.
const Name = "extensions"

// Manager reconciles extensions.
type Manager struct {
	env feature.Env
	dir string
	log *slog.Logger

	mu sync.Mutex // serializes Apply and guards st and presented
	st *state
	// pins decides which publisher keys are trusted (and pins them).
	pins *publishers.Store
	// presented are the keys the current desired state presents.
	presented map[string][]byte
	// dirty says st changed without being saved (refusals are saved once,
	// at the end of a pass).
	dirty bool

	// cur is the operation in progress, so that ConfigChanged can stop it.
	curMu sync.Mutex
	cur   *operation
}

// operation is one extension operation in progress.
type operation struct {
	name   string // Publisher/Type that runs
	op     localconfig.Operation
	cancel context.CancelCauseFunc
}

var (
	_ feature.Feature       = (*Manager)(nil)
	_ feature.ConfigWatcher = (*Manager)(nil)
)

// New returns the extension manager; Start opens its state.
func New() *Manager { return &Manager{} }

// Name implements feature.Feature.
func (m *Manager) Name() string { return Name }

// Start opens the extension state in STATE/extensions.
func (m *Manager) Start(_ context.Context, env feature.Env) error {
	m.env, m.log = env, env.Logger
	if m.log == nil {
		m.log = slog.Default()
	}
	m.dir = env.StateDir.Path(statedir.ExtensionDir)
	if err := statedir.MkdirPrivate(filepath.Join(m.dir, "packages")); err != nil {
		return err
	}
	st, err := loadState(m.dir)
	if err != nil {
		return err
	}
	m.st = st
	m.pins = publishers.Open(string(env.StateDir))
	if len(st.Publishers) > 0 {
		// Pins of an older agent move to the pins file.
		var old []publishers.Pin
		for name, p := range st.Publishers {
			old = append(old, publishers.Pin{Publisher: name, Key: p.PublicKey, Serial: p.Serial})
		}
		if err := m.pins.Import(old); err != nil {
			return err
		}
		st.Publishers = map[string]*pin{}
		if err := st.save(m.dir); err != nil {
			return err
		}
	}
	m.removeUnusedPackages()
	return nil
}

// Close implements feature.Feature; handlers run within Apply, which has
// returned by then.
func (m *Manager) Close() error { return nil }

// removeUnusedPackages deletes package directories no extension uses: the
// old version of an upgrade interrupted between the new install and the
// old uninstall, or an unpack a crash cut short.
func (m *Manager) removeUnusedPackages() {
	entries, err := os.ReadDir(filepath.Join(m.dir, "packages"))
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, r := range m.st.Extensions {
		used[r.Dir] = true
	}
	for _, e := range entries {
		if !used[e.Name()] {
			m.log.Info("removing an unused package directory", "dir", e.Name())
			os.RemoveAll(filepath.Join(m.dir, "packages", e.Name()))
		}
	}
	m.removeUnusedArchives()
}

// removeUnusedArchives deletes kept archives no installed extension uses.
func (m *Manager) removeUnusedArchives() {
	entries, err := os.ReadDir(filepath.Join(m.dir, "archives"))
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, r := range m.st.Extensions {
		if r.Digest != "" {
			used[filepath.Base(m.archivePath(r.Digest))] = true
		}
	}
	for _, e := range entries {
		if !used[e.Name()] {
			os.Remove(filepath.Join(m.dir, "archives", e.Name()))
		}
	}
}

func extName(publisher, typ string) string { return publisher + "/" + typ }

// isFirstParty reports whether publisher is Corral's own.
func isFirstParty(publisher string) bool { return strings.EqualFold(publisher, wire.PublisherCorral) }

// Apply brings installed extensions toward the desired set.
func (m *Manager) Apply(ctx context.Context, d feature.Desired) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	desired := d.State
	var errs []error
	m.noteKeys(desired.Publishers)
	defer func() {
		if m.dirty {
			if err := m.st.save(m.dir); err != nil {
				m.log.ErrorContext(ctx, "save extension state", "err", err)
			}
			m.dirty = false
		}
	}()
	wanted := map[string]bool{}
	exts := desired.Extensions
	if len(exts) > feature.MaxDesiredExtensions {
		m.env.LogRefused(ctx, "the desired state lists more extensions than the agent takes; the rest are ignored",
			"listed", len(exts), "max", feature.MaxDesiredExtensions)
		for _, de := range exts[feature.MaxDesiredExtensions:] {
			wanted[de.Name] = true // ignored, but not removed either
		}
		exts = exts[:feature.MaxDesiredExtensions]
	}
	for _, de := range exts {
		wanted[de.Name] = true
		if !wire.ValidResourceName(de.Name) {
			m.env.LogRefused(ctx, "desired extension with an invalid name ignored", "name", truncate(de.Name, 80))
			continue
		}
		if err := m.reconcileOne(ctx, de, desired.Generation); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for name, rec := range m.st.Extensions {
		if !wanted[name] {
			if err := m.remove(ctx, rec, desired.Generation); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ConfigChanged stops the operation in progress when the new local
// configuration forbids it; it ends Failed with the reason and is retried
// when root allows it again.
func (m *Manager) ConfigChanged(_ context.Context, cfg localconfig.Effective) {
	m.curMu.Lock()
	defer m.curMu.Unlock()
	if m.cur == nil {
		return
	}
	if err := cfg.CheckExtension(m.cur.op, m.cur.name); err != nil {
		m.log.Warn("stopping an extension operation the local configuration now forbids", "extension", m.cur.name, "op", m.cur.op, "err", err)
		m.cur.cancel(err)
	}
}

// begin registers the operation in progress and returns its context.
func (m *Manager) begin(ctx context.Context, name string, op localconfig.Operation) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	m.curMu.Lock()
	m.cur = &operation{name: name, op: op, cancel: cancel}
	m.curMu.Unlock()
	return ctx, func() {
		m.curMu.Lock()
		m.cur = nil
		m.curMu.Unlock()
		cancel(nil)
	}
}

// allowed re-reads the local configuration and says whether op on name may
// (still) run. It is called before every handler starts.
func (m *Manager) allowed(op localconfig.Operation, name string) error {
	cfg := m.env.Config()
	if err := cfg.CheckExtension(op, name); err != nil {
		return err
	}
	if publisher, _, _ := strings.Cut(name, "/"); op != localconfig.OpRemove && !isFirstParty(publisher) {
		// Root's trust in the publisher's key is part of the lock-down.
		if err := m.pins.Check(cfg, publisher, m.presented[strings.ToLower(publisher)]); err != nil {
			return err
		}
	}
	if op != localconfig.OpRemove && !m.reportOnly(name) {
		if err := m.env.HostChangesRefused(); err != nil {
			return err
		}
	}
	return nil
}

// reportOnly reports whether name is a first-party extension whose handlers
// run while host changes are off (feature.ReportOnlyBuiltin).
func (m *Manager) reportOnly(name string) bool {
	publisher, _, _ := strings.Cut(name, "/")
	if !isFirstParty(publisher) {
		return false
	}
	b, ok := m.env.Builtins[strings.ToLower(name)].(feature.ReportOnlyBuiltin)
	return ok && b.RunsWithoutHostChanges()
}

// decide returns the operation a desired extension needs, or "" if none.
func decide(rec *record, d wire.DesiredExtension, present bool) localconfig.Operation {
	switch {
	case rec == nil || !rec.Installed:
		if rec != nil && rec.AttemptSeq == d.SeqNo && !rec.InProgress && !rec.Blocked {
			return "" // failed before; wait for a new request
		}
		return localconfig.OpInstall
	case rec.InProgress || rec.AttemptSeq != d.SeqNo || rec.Blocked:
		if rec.Version != d.Version {
			return localconfig.OpUpgrade
		}
		return localconfig.OpUpdate
	case !present:
		return localconfig.OpInstall // removed locally but still desired: put back
	}
	return ""
}

// sameIdentity reports whether the installed rec is the extension d names.
func sameIdentity(rec *record, d wire.DesiredExtension) bool {
	return strings.EqualFold(rec.Publisher, d.Publisher) && strings.EqualFold(rec.Type, d.Type)
}

// present reports whether what rec installed is still on the machine (a
// first-party extension has no package directory).
func (m *Manager) present(rec *record) bool {
	if rec == nil || !rec.Installed {
		return false
	}
	if isFirstParty(rec.Publisher) {
		return true
	}
	if rec.Dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(m.dir, "packages", rec.Dir, wire.ManifestFile))
	return err == nil
}

func (m *Manager) reconcileOne(ctx context.Context, d wire.DesiredExtension, gen int64) error {
	rec := m.st.Extensions[d.Name]
	if rec != nil && rec.Installed && !sameIdentity(rec, d) {
		// The same name now means another publisher/type: what is installed
		// is removed (always allowed) and the new one installed, each under
		// its own identity's lock-down check — never the installed one's
		// handlers run with the new name's verdict.
		m.log.WarnContext(ctx, "extension replaced by another publisher/type under the same name",
			"extension", d.Name, "installed", extName(rec.Publisher, rec.Type), "desired", extName(d.Publisher, d.Type))
		if err := m.uninstall(ctx, rec, gen); err != nil || m.st.Extensions[d.Name] != nil {
			return err
		}
		rec = nil
	}
	present := m.present(rec)
	op := decide(rec, d, present)
	if op == "" {
		return nil
	}
	if rec != nil && rec.Installed && !present && op == localconfig.OpInstall {
		m.log.WarnContext(ctx, "extension removed locally but still desired; reinstalling", "extension", d.Name)
		rec.Installed = false
	}
	if rec == nil {
		rec = &record{Name: d.Name, Publisher: d.Publisher, Type: d.Type}
		m.st.Extensions[d.Name] = rec
	}
	if !rec.Installed {
		rec.Publisher, rec.Type = d.Publisher, d.Type
	}
	name := extName(d.Publisher, d.Type)
	if err := m.allowed(op, name); err != nil {
		return m.refuse(ctx, rec, d, op, err)
	}
	if rec.InProgress {
		m.killLeftovers(ctx, rec)
	}
	// Record the attempt before touching anything, so a crash repeats it.
	rec.AttemptSeq, rec.Op, rec.InProgress, rec.Blocked = d.SeqNo, string(op), true, false
	rec.AttemptID = newAttemptID()
	rec.State = wire.ExtUpdating
	if op == localconfig.OpInstall {
		rec.State = wire.ExtCreating
	}
	rec.Message = ""
	if err := m.st.save(m.dir); err != nil {
		return err
	}
	m.report(rec, d, op, false)

	opCtx, end := m.begin(ctx, name, op)
	msg, err := m.apply(opCtx, rec, d, op)
	end()
	if ctx.Err() != nil {
		return ctx.Err() // stopping: leave InProgress set, redo after restart
	}
	rec.InProgress, rec.PGID = false, 0
	var blocked *blockedError
	switch {
	case errors.As(err, &blocked) || context.Cause(opCtx) != nil && !errors.Is(context.Cause(opCtx), context.Canceled):
		// Root forbade it while it ran: stopped, retried when allowed.
		why := context.Cause(opCtx)
		if blocked != nil {
			why = blocked.err
		}
		rec.Blocked = true
		rec.State, rec.Message = wire.ExtFailed, "stopped: "+why.Error()
		m.log.WarnContext(ctx, "extension operation stopped by the local configuration", "extension", d.Name, "op", op, "err", why)
	case err != nil:
		rec.State, rec.Message = wire.ExtFailed, err.Error()
		m.log.ErrorContext(ctx, "extension operation failed", "extension", d.Name, "op", op, "err", err)
	default:
		rec.State, rec.Message = wire.ExtSucceeded, msg
		m.log.InfoContext(ctx, "extension operation succeeded", "extension", d.Name, "op", op, "version", d.Version)
	}
	if err := m.st.save(m.dir); err != nil {
		return err
	}
	m.report(rec, d, op, false)
	return nil
}

// refuse records and reports an operation the local rules refuse, once per
// request: a refusal already reported for this seqNo is not saved or
// reported again on every pass.
func (m *Manager) refuse(ctx context.Context, rec *record, d wire.DesiredExtension, op localconfig.Operation, why error) error {
	if rec.Blocked && rec.AttemptSeq == d.SeqNo && rec.Message == why.Error() {
		return nil
	}
	rec.AttemptSeq, rec.Op, rec.InProgress, rec.Blocked = d.SeqNo, string(op), false, true
	rec.State, rec.Message = wire.ExtFailed, why.Error()
	if !rec.Installed {
		// Never installed: nothing of it is on the machine.
		rec.Version, rec.Digest = "", ""
	}
	m.dirty = true
	m.env.LogRefused(ctx, "extension operation refused", "extension", d.Name, "op", op, "err", why)
	m.report(rec, d, op, false)
	return nil
}

func (m *Manager) report(rec *record, d wire.DesiredExtension, op localconfig.Operation, removed bool) {
	if m.env.Report == nil {
		return
	}
	version := rec.Version
	if version == "" {
		version = d.Version
	}
	m.env.Report(wire.ReportExtension, wire.ExtensionStatus{Name: rec.Name, Publisher: rec.Publisher, Type: rec.Type, Version: version,
		SeqNo: rec.AttemptSeq, Operation: string(op), State: rec.State, Message: rec.Message, Removed: removed}, "extension:"+rec.Name)
}

// attemptEnv names, in every handler's environment, the operation attempt
// it belongs to (record.AttemptID).
const attemptEnv = "CORRAL_ATTEMPT_ID="

func newAttemptID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// remove uninstalls an extension that is no longer desired by the desired
// state of generation gen, unless the local configuration refuses.
func (m *Manager) remove(ctx context.Context, rec *record, gen int64) error {
	d := wire.DesiredExtension{Name: rec.Name, Publisher: rec.Publisher, Type: rec.Type, Version: rec.Version}
	if err := m.allowed(localconfig.OpRemove, extName(rec.Publisher, rec.Type)); err != nil {
		// Reported once per desired-state generation: deleting it again on
		// the server makes a new one, and without a new report the server
		// would take the generation applied without it as its removal.
		if rec.Op != string(localconfig.OpRemove) || rec.State != wire.ExtFailed || rec.RefusedGeneration != gen {
			rec.Op, rec.State, rec.Message, rec.Blocked = string(localconfig.OpRemove), wire.ExtFailed, err.Error(), true
			rec.RefusedGeneration = gen
			m.report(rec, d, localconfig.OpRemove, false)
			return m.st.save(m.dir)
		}
		return nil
	}
	if err := m.uninstall(ctx, rec, gen); err != nil {
		return err
	}
	if m.st.Extensions[rec.Name] == nil {
		rec.State, rec.Message = wire.ExtSucceeded, "removed"
		m.report(rec, d, localconfig.OpRemove, true)
		m.log.InfoContext(ctx, "extension removed", "extension", rec.Name)
	}
	return nil
}

// uninstall runs rec's disable and uninstall handlers and forgets it. A
// failing handler leaves it recorded as Failed (and reported).
func (m *Manager) uninstall(ctx context.Context, rec *record, _ int64) error {
	d := wire.DesiredExtension{Name: rec.Name, Publisher: rec.Publisher, Type: rec.Type, Version: rec.Version}
	if rec.InProgress {
		m.killLeftovers(ctx, rec)
	}
	rec.Op, rec.InProgress, rec.State, rec.Message = string(localconfig.OpRemove), true, wire.ExtDeleting, ""
	rec.AttemptID = newAttemptID()
	if err := m.st.save(m.dir); err != nil {
		return err
	}
	if rec.Installed {
		name := extName(rec.Publisher, rec.Type)
		opCtx, end := m.begin(ctx, name, localconfig.OpRemove)
		err := m.runRemoveHandlers(opCtx, rec)
		end()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rec.InProgress, rec.State, rec.Message = false, wire.ExtFailed, err.Error()
			m.report(rec, d, localconfig.OpRemove, false)
			return m.st.save(m.dir)
		}
	}
	delete(m.st.Extensions, rec.Name)
	if err := m.st.save(m.dir); err != nil {
		return err
	}
	m.removeDirIfUnused(rec.Dir)
	return nil
}

// removeDirIfUnused deletes a package directory no record uses, and kept
// archives no record uses.
func (m *Manager) removeDirIfUnused(dirName string) {
	m.removeUnusedArchives()
	if dirName == "" {
		return
	}
	for _, r := range m.st.Extensions {
		if r.Dir == dirName {
			return
		}
	}
	os.RemoveAll(filepath.Join(m.dir, "packages", dirName))
}

// blockedError is a handler start the local configuration refused.
type blockedError struct{ err error }

func (e *blockedError) Error() string { return e.err.Error() }
func (e *blockedError) Unwrap() error { return e.err }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// errNoBuiltin is a first-party extension this agent does not ship.
func errNoBuiltin(name string) error {
	return fmt.Errorf("this agent has no built-in %s: first-party extensions come only with the agent (upgrade the agent package)", name)
}
