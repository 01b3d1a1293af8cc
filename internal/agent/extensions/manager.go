// Package extensions is the agent's extension manager. It reconciles the
// extensions installed on the machine toward the desired set from the
// control plane, under the local lock-down rules (localconfig.CheckExtension),
// and reports each extension's state back.
//
// Trust chain for every package, checked before anything is unpacked or
// run: the publisher's ed25519 key (pinned on first sight, a change is
// refused) verifies the publisher's signed catalog (its serial never goes
// back); the catalog must list the exact type, version and digest the
// desired state names; the downloaded archive's sha256 must equal that
// digest; the archive's manifest must name the same publisher, type and
// version. Only then is it unpacked (safely, see extpkg.Unpack) and are its
// handlers run — as root, with a timeout, captured and capped output, under
// the CPU limit where cgroup v2 allows, and with protected settings opened
// in memory and handed over on standard input only.
//
// Reconcile is called by the daemon after every desired-state fetch and
// periodically; it is serialized. Run commands (the Corral/RunCommand
// first-party handler) run in their own goroutines, owned by the Manager and
// stopped by Close.
package extensions

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/corralhq/corral/internal/agent/cpulimit"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/wire"
)

// Fetcher downloads from the control plane over the agent's mTLS channel.
type Fetcher interface {
	Catalog(ctx context.Context, publisher string) (wire.SignedCatalog, error)
	Package(ctx context.Context, digest string) ([]byte, error)
}

// Reporter queues a report for the control plane (the daemon's outbox).
type Reporter func(kind string, body any, supersedeKey string)

// Config wires a Manager.
type Config struct {
	// Dir is STATE/extensions.
	Dir string
	// MachineID binds sealed settings to this machine.
	MachineID string
	// SealingKey opens protected settings.
	SealingKey func() ([]byte, error)
	Fetch      Fetcher
	Report     Reporter
	Logger     *slog.Logger
	// Limiter applies extensions.agent.cpulimit; nil = not enforced.
	Limiter *cpulimit.Limiter
	// HostChangesOff refuses every handler and run command with this reason
	// (corral dev without --allow-host-changes). Empty = allowed.
	HostChangesOff string
}

// Manager reconciles extensions.
type Manager struct {
	cfg Config

	mu       sync.Mutex // serializes Reconcile and guards st and cpuLimit
	st       *state
	cpuLimit int // extensions.agent.cpulimit of the reconcile in progress

	runs runner
}

// New opens the extension state in cfg.Dir.
func New(cfg Config) (*Manager, error) {
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "packages"), 0o700); err != nil {
		return nil, fmt.Errorf("create extension directory: %w", err)
	}
	st, err := loadState(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{cfg: cfg, st: st}
	m.runs.m = m
	m.removeUnusedPackages()
	return m, nil
}

// removeUnusedPackages deletes package directories no extension uses: the
// old version of an upgrade interrupted between the new install and the
// old uninstall, or an unpack a crash cut short.
func (m *Manager) removeUnusedPackages() {
	entries, err := os.ReadDir(filepath.Join(m.cfg.Dir, "packages"))
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, r := range m.st.Extensions {
		used[r.Dir] = true
	}
	for _, e := range entries {
		if !used[e.Name()] {
			m.cfg.Logger.Info("removing an unused package directory", "dir", e.Name())
			os.RemoveAll(filepath.Join(m.cfg.Dir, "packages", e.Name()))
		}
	}
}

// Close stops running commands and waits for them.
func (m *Manager) Close() { m.runs.stopAll() }

func extName(publisher, typ string) string { return publisher + "/" + typ }

// Reconcile brings installed extensions toward desired, under cfg.
func (m *Manager) Reconcile(ctx context.Context, desired wire.DesiredState, cfg localconfig.Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cpuLimit = cfg.Wire().ExtensionsCPULimit
	if !cfg.Wire().ExtensionsEnabled {
		// Handlers hosted by the extension manager stop.
		m.runs.cancelAll()
	}
	var errs []error
	if err := m.pinPublishers(desired.Publishers); err != nil {
		// Nothing from an untrusted key is installed; removals still happen.
		errs = append(errs, err)
	}
	wanted := map[string]bool{}
	for _, d := range desired.Extensions {
		wanted[d.Name] = true
		if err := m.reconcileOne(ctx, d, cfg); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	for name, rec := range m.st.Extensions {
		if !wanted[name] {
			if err := m.remove(ctx, rec, cfg, desired.Generation); err != nil {
				errs = append(errs, err)
			}
		}
	}
	m.runs.reconcile(ctx, desired.RunCommands, cfg)
	return errors.Join(errs...)
}

// pinPublishers pins each publisher's key on first sight and refuses a
// different key later: a control plane cannot silently swap a publisher.
// Publisher names are case-insensitive (as on the control plane and in the
// local allowlist and blocklist), so "contoso" is the publisher pinned as
// "Contoso", not a new one whose key could be pinned beside it.
func (m *Manager) pinPublishers(keys []wire.PublisherKey) error {
	changed := false
	var errs []error
	for _, k := range keys {
		p, ok := m.st.pinned(k.Name)
		switch {
		case !ok:
			m.st.Publishers[k.Name] = &pin{PublicKey: k.PublicKey}
			changed = true
		case !bytes.Equal(p.PublicKey, k.PublicKey):
			errs = append(errs, fmt.Errorf("publisher %s presents a signing key different from the one pinned on this machine", k.Name))
		}
	}
	if changed {
		if err := m.st.save(m.cfg.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// decide returns the operation a desired extension needs, or "" if none.
func decide(rec *record, d wire.DesiredExtension, dirExists bool) localconfig.Operation {
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
	case !dirExists:
		return localconfig.OpInstall // removed locally but still desired: put back
	}
	return ""
}

func (m *Manager) reconcileOne(ctx context.Context, d wire.DesiredExtension, cfg localconfig.Config) error {
	name := extName(d.Publisher, d.Type)
	rec := m.st.Extensions[d.Name]
	dirExists := false
	if rec != nil && rec.Dir != "" {
		_, err := os.Stat(filepath.Join(m.cfg.Dir, "packages", rec.Dir, wire.ManifestFile))
		dirExists = err == nil
	}
	op := decide(rec, d, dirExists)
	if op == "" {
		return nil
	}
	if rec != nil && rec.Installed && !dirExists && op == localconfig.OpInstall {
		m.cfg.Logger.WarnContext(ctx, "extension removed locally but still desired; reinstalling", "extension", d.Name)
		rec.Installed = false
	}
	if rec == nil {
		rec = &record{Name: d.Name, Publisher: d.Publisher, Type: d.Type}
		m.st.Extensions[d.Name] = rec
	}
	if err := cfg.CheckExtension(op, name); err != nil {
		wasBlocked := rec.Blocked && rec.AttemptSeq == d.SeqNo
		rec.AttemptSeq, rec.Op, rec.InProgress, rec.Blocked = d.SeqNo, string(op), false, true
		rec.State, rec.Message = wire.ExtFailed, err.Error()
		if !rec.Installed {
			// Never installed: nothing of it is on the machine.
			rec.Version, rec.Digest = "", ""
		}
		if saveErr := m.st.save(m.cfg.Dir); saveErr != nil {
			return saveErr
		}
		if !wasBlocked {
			m.cfg.Logger.WarnContext(ctx, "extension operation refused by the local configuration", "extension", d.Name, "op", op, "err", err)
			m.report(rec, d, op, false)
		}
		return nil
	}
	if m.cfg.HostChangesOff != "" {
		rec.AttemptSeq, rec.Op, rec.InProgress, rec.Blocked = d.SeqNo, string(op), false, false
		rec.State, rec.Message = wire.ExtFailed, m.cfg.HostChangesOff
		m.report(rec, d, op, false)
		return m.st.save(m.cfg.Dir)
	}
	if rec.InProgress {
		m.killLeftovers(ctx, rec)
	}
	// Record the attempt before touching anything, so a crash repeats it.
	rec.AttemptSeq, rec.Op, rec.InProgress, rec.Blocked = d.SeqNo, string(op), true, false
	rec.AttemptID = newAttemptID()
	rec.State = map[localconfig.Operation]string{localconfig.OpInstall: wire.ExtCreating}[op]
	if rec.State == "" {
		rec.State = wire.ExtUpdating
	}
	rec.Message = ""
	if err := m.st.save(m.cfg.Dir); err != nil {
		return err
	}
	m.report(rec, d, op, false)

	msg, err := m.apply(ctx, rec, d, op)
	if ctx.Err() != nil {
		return ctx.Err() // stopping: leave InProgress set, redo after restart
	}
	rec.InProgress, rec.PGID = false, 0
	if err != nil {
		rec.State, rec.Message = wire.ExtFailed, err.Error()
		m.cfg.Logger.ErrorContext(ctx, "extension operation failed", "extension", d.Name, "op", op, "err", err)
	} else {
		rec.State, rec.Message = wire.ExtSucceeded, msg
		m.cfg.Logger.InfoContext(ctx, "extension operation succeeded", "extension", d.Name, "op", op, "version", d.Version)
	}
	if err := m.st.save(m.cfg.Dir); err != nil {
		return err
	}
	m.report(rec, d, op, false)
	return nil
}

func (m *Manager) report(rec *record, d wire.DesiredExtension, op localconfig.Operation, removed bool) {
	if m.cfg.Report == nil {
		return
	}
	version := rec.Version
	if version == "" {
		version = d.Version
	}
	m.cfg.Report(wire.ReportExtension, wire.ExtensionStatus{Name: rec.Name, Publisher: rec.Publisher, Type: rec.Type, Version: version,
		SeqNo: rec.AttemptSeq, Operation: string(op), State: rec.State, Message: rec.Message, Removed: removed}, "extension:"+rec.Name)
}

// apply performs op and returns the handler's message.
func (m *Manager) apply(ctx context.Context, rec *record, d wire.DesiredExtension, op localconfig.Operation) (string, error) {
	input, err := m.handlerInput(d, op)
	if err != nil {
		return "", err
	}
	switch op {
	case localconfig.OpUpdate:
		man, dir, err := m.installedManifest(rec)
		if err != nil {
			return "", err
		}
		if _, err := m.runHandler(ctx, man, dir, wire.HandlerUpdate, rec.Name, input); err != nil {
			return "", err
		}
		return m.runHandler(ctx, man, dir, wire.HandlerEnable, rec.Name, input)
	case localconfig.OpInstall, localconfig.OpUpgrade:
		man, dirName, err := m.fetchAndUnpack(ctx, d)
		if err != nil {
			return "", err
		}
		dir := filepath.Join(m.cfg.Dir, "packages", dirName)
		var old *wire.ExtensionManifest
		var oldDir string
		if op == localconfig.OpUpgrade && rec.Installed {
			if om, od, err := m.installedManifest(rec); err == nil && od != dir {
				old, oldDir = &om, od
				if _, err := m.runHandler(ctx, om, od, wire.HandlerDisable, rec.Name, input); err != nil {
					return "", fmt.Errorf("disable the installed version %s: %w", rec.Version, err)
				}
				if _, err := m.runHandler(ctx, man, dir, wire.HandlerUpdate, rec.Name, input); err != nil {
					return "", err
				}
			}
		}
		if _, err := m.runHandler(ctx, man, dir, wire.HandlerInstall, rec.Name, input); err != nil {
			return "", err
		}
		rec.Installed, rec.Version, rec.Digest, rec.Dir = true, d.Version, d.Digest, dirName
		if err := m.st.save(m.cfg.Dir); err != nil {
			return "", err
		}
		if old != nil {
			if _, err := m.runHandler(ctx, *old, oldDir, wire.HandlerUninstall, rec.Name, input); err != nil {
				m.cfg.Logger.WarnContext(ctx, "uninstall of the previous version failed", "extension", rec.Name, "err", err)
			}
			m.removeDirIfUnused(filepath.Base(oldDir))
		}
		return m.runHandler(ctx, man, dir, wire.HandlerEnable, rec.Name, input)
	}
	return "", fmt.Errorf("unknown operation %q", op)
}

// handlerInput builds the handler's stdin, opening protected settings in
// memory only.
func (m *Manager) handlerInput(d wire.DesiredExtension, op localconfig.Operation) ([]byte, error) {
	in := wire.HandlerInput{Name: d.Name, Operation: string(op), Settings: d.Settings}
	if len(d.ProtectedSettings) > 0 {
		key, err := m.cfg.SealingKey()
		if err != nil {
			return nil, err
		}
		pt, err := sealing.Open(key, []byte(m.cfg.MachineID+"/"+d.Name), d.ProtectedSettings)
		if err != nil {
			return nil, err
		}
		in.ProtectedSettings = pt
	}
	return json.Marshal(in)
}

func (m *Manager) installedManifest(rec *record) (wire.ExtensionManifest, string, error) {
	var man wire.ExtensionManifest
	dir := filepath.Join(m.cfg.Dir, "packages", rec.Dir)
	b, err := os.ReadFile(filepath.Join(dir, wire.ManifestFile))
	if err != nil {
		return man, dir, fmt.Errorf("the installed package of %s is missing: %w", rec.Name, err)
	}
	if err := json.Unmarshal(b, &man); err != nil {
		return man, dir, fmt.Errorf("the installed manifest of %s is damaged: %w", rec.Name, err)
	}
	return man, dir, nil
}

// fetchAndUnpack verifies the whole trust chain and unpacks the package
// into packages/<dir>; an existing, already verified directory is reused.
func (m *Manager) fetchAndUnpack(ctx context.Context, d wire.DesiredExtension) (wire.ExtensionManifest, string, error) {
	var man wire.ExtensionManifest
	if !extpkg.ValidName(d.Publisher) || !extpkg.ValidName(d.Type) || !extpkg.ValidVersion(d.Version) || !extpkg.ValidDigest(d.Digest) {
		return man, "", fmt.Errorf("the desired state names an invalid package %s/%s %s %s", d.Publisher, d.Type, d.Version, d.Digest)
	}
	p, ok := m.st.pinned(d.Publisher)
	if !ok {
		return man, "", fmt.Errorf("unknown publisher %s: the control plane sent no signing key for it", d.Publisher)
	}
	sc, err := m.cfg.Fetch.Catalog(ctx, d.Publisher)
	if err != nil {
		return man, "", fmt.Errorf("download the catalog of %s: %w", d.Publisher, err)
	}
	cat, err := extpkg.VerifyCatalog(p.PublicKey, d.Publisher, sc)
	if err != nil {
		return man, "", fmt.Errorf("catalog of %s refused: %w", d.Publisher, err)
	}
	if cat.Serial < p.Serial {
		return man, "", fmt.Errorf("catalog of %s refused: serial %d is older than %d already seen (replay)", d.Publisher, cat.Serial, p.Serial)
	}
	if cat.Serial > p.Serial {
		p.Serial = cat.Serial
		if err := m.st.save(m.cfg.Dir); err != nil {
			return man, "", err
		}
	}
	entry, ok := extpkg.Find(cat, d.Type, d.Version)
	if !ok {
		return man, "", fmt.Errorf("%s/%s %s is not in the publisher's signed catalog", d.Publisher, d.Type, d.Version)
	}
	if entry.Digest != d.Digest {
		return man, "", fmt.Errorf("the desired digest of %s/%s %s does not match the signed catalog", d.Publisher, d.Type, d.Version)
	}
	dirName := strings.ToLower(d.Publisher+"."+d.Type+"-"+d.Version) + "-" + d.Digest[len("sha256:"):len("sha256:")+12]
	dir := filepath.Join(m.cfg.Dir, "packages", dirName)
	if b, err := os.ReadFile(filepath.Join(dir, ".digest")); err == nil && string(b) == d.Digest {
		man, _, err := m.installedManifest(&record{Name: d.Name, Dir: dirName})
		return man, dirName, err
	}
	archive, err := m.cfg.Fetch.Package(ctx, d.Digest)
	if err != nil {
		return man, "", fmt.Errorf("download %s/%s %s: %w", d.Publisher, d.Type, d.Version, err)
	}
	if got := extpkg.Digest(archive); got != entry.Digest || int64(len(archive)) != entry.Size {
		return man, "", fmt.Errorf("package %s/%s %s refused: its digest %s does not match the signed catalog", d.Publisher, d.Type, d.Version, got)
	}
	man, err = extpkg.ReadManifest(archive)
	if err != nil {
		return man, "", fmt.Errorf("package %s/%s %s refused: %w", d.Publisher, d.Type, d.Version, err)
	}
	if !strings.EqualFold(man.Publisher, d.Publisher) || !strings.EqualFold(man.Type, d.Type) || man.Version != d.Version {
		return man, "", fmt.Errorf("package refused: its manifest says %s/%s %s, the catalog %s/%s %s", man.Publisher, man.Type, man.Version, d.Publisher, d.Type, d.Version)
	}
	if !extpkg.Supports(man, runtime.GOOS, runtime.GOARCH) {
		return man, "", fmt.Errorf("%s/%s %s does not support %s/%s", d.Publisher, d.Type, d.Version, runtime.GOOS, runtime.GOARCH)
	}
	os.RemoveAll(dir) // a half-unpacked leftover of a crash
	tmp := dir + ".unpacking"
	os.RemoveAll(tmp)
	if err := extpkg.Unpack(bytes.NewReader(archive), tmp, extpkg.DefaultLimits); err != nil {
		return man, "", fmt.Errorf("package %s/%s %s refused: %w", d.Publisher, d.Type, d.Version, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".digest"), []byte(d.Digest), 0o600); err != nil {
		os.RemoveAll(tmp)
		return man, "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return man, "", err
	}
	return man, dirName, nil
}

// runHandler runs one lifecycle handler of man in dir; an empty command
// succeeds at once.
func (m *Manager) runHandler(ctx context.Context, man wire.ExtensionManifest, dir, handler, name string, input []byte) (string, error) {
	command := map[string]string{
		wire.HandlerInstall: man.Handlers.Install, wire.HandlerEnable: man.Handlers.Enable, wire.HandlerDisable: man.Handlers.Disable,
		wire.HandlerUpdate: man.Handlers.Update, wire.HandlerUninstall: man.Handlers.Uninstall,
	}[handler]
	if strings.TrimSpace(command) == "" {
		return handler + " succeeded", nil
	}
	if b, ok := strings.CutPrefix(command, wire.BuiltinHandlerPrefix); ok {
		return builtin(b, handler)
	}
	env := handlerEnv(name, dir, handler)
	if rec := m.st.Extensions[name]; rec != nil && rec.AttemptID != "" {
		env = append(env, attemptEnv+rec.AttemptID)
	}
	c := Command{Args: []string{"/bin/sh", "-c", command}, Dir: dir, Env: env, Stdin: input,
		Timeout: extpkg.HandlerTimeout(man, handler), Limit: m.limit(name), Started: func(pgid int) {
			if rec := m.st.Extensions[name]; rec != nil {
				rec.PGID = pgid
				_ = m.st.save(m.cfg.Dir)
			}
		}}
	p, err := Run(ctx, c)
	if err != nil {
		return "", fmt.Errorf("%s handler: %w", handler, err)
	}
	if p.TimedOut {
		return "", fmt.Errorf("%s handler timed out after %s", handler, c.Timeout)
	}
	if p.ExitCode != 0 {
		detail := lastLine(p.Stderr)
		if detail == "" {
			detail = lastLine(p.Stdout)
		}
		return "", fmt.Errorf("%s handler exited with code %d: %s", handler, p.ExitCode, detail)
	}
	if l := lastLine(p.Stdout); l != "" {
		return l, nil
	}
	return handler + " succeeded", nil
}

// attemptEnv names, in every handler's environment, the operation attempt
// it belongs to (record.AttemptID).
const attemptEnv = "CORRAL_ATTEMPT_ID="

func newAttemptID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// killLeftovers kills what the handlers of rec's interrupted attempt (an
// agent killed during it) left running, before the attempt is made again:
// every process carrying the attempt's id, whatever its process group
// (the agent may have died before it recorded one), and, for state
// written by older agents, the recorded process group.
func (m *Manager) killLeftovers(ctx context.Context, rec *record) {
	n := 0
	if rec.AttemptID != "" {
		n += KillLeftovers(0, attemptEnv+rec.AttemptID)
	}
	if rec.PGID > 0 {
		n += KillLeftovers(rec.PGID, "CORRAL_EXTENSION_NAME="+rec.Name)
	}
	if n > 0 {
		m.cfg.Logger.WarnContext(ctx, "killed handler processes left by a previous agent run", "extension", rec.Name, "processes", n)
	}
	rec.PGID = 0
}

// builtin runs a handler implemented inside the agent.
func builtin(name, handler string) (string, error) {
	switch name {
	case "runcommand":
		// Run commands are executed per request (see runner); the extension
		// itself has nothing to install.
		return "Corral/RunCommand " + handler + " succeeded", nil
	}
	return "", fmt.Errorf("this agent has no built-in handler %q", name)
}

// limit returns the cgroup hook for a handler, or nil when not enforced.
func (m *Manager) limit(name string) func(*syscall.SysProcAttr) (func(), error) {
	if m.cfg.Limiter == nil {
		return nil
	}
	percent := m.cpuLimit
	return func(attr *syscall.SysProcAttr) (func(), error) {
		g, err := m.cfg.Limiter.New(name, percent)
		if err != nil {
			return nil, err
		}
		g.Apply(attr)
		return func() { g.Close() }, nil
	}
}

// remove uninstalls an extension that is no longer desired by the desired
// state of generation gen.
func (m *Manager) remove(ctx context.Context, rec *record, cfg localconfig.Config, gen int64) error {
	d := wire.DesiredExtension{Name: rec.Name, Publisher: rec.Publisher, Type: rec.Type, Version: rec.Version}
	if err := cfg.CheckExtension(localconfig.OpRemove, extName(rec.Publisher, rec.Type)); err != nil {
		// Reported once per desired-state generation: deleting it again on
		// the server makes a new one, and without a new report the server
		// would take the generation applied without it as its removal.
		if rec.Op != string(localconfig.OpRemove) || rec.State != wire.ExtFailed || rec.RefusedGeneration != gen {
			rec.Op, rec.State, rec.Message, rec.Blocked = string(localconfig.OpRemove), wire.ExtFailed, err.Error(), true
			rec.RefusedGeneration = gen
			m.report(rec, d, localconfig.OpRemove, false)
			return m.st.save(m.cfg.Dir)
		}
		return nil
	}
	if rec.InProgress {
		m.killLeftovers(ctx, rec)
	}
	rec.Op, rec.InProgress, rec.State, rec.Message = string(localconfig.OpRemove), true, wire.ExtDeleting, ""
	rec.AttemptID = newAttemptID()
	if err := m.st.save(m.cfg.Dir); err != nil {
		return err
	}
	if rec.Installed {
		if man, dir, err := m.installedManifest(rec); err == nil {
			input, _ := json.Marshal(wire.HandlerInput{Name: rec.Name, Operation: string(localconfig.OpRemove)})
			for _, h := range []string{wire.HandlerDisable, wire.HandlerUninstall} {
				if _, err := m.runHandler(ctx, man, dir, h, rec.Name, input); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					rec.InProgress, rec.State, rec.Message = false, wire.ExtFailed, err.Error()
					m.report(rec, d, localconfig.OpRemove, false)
					return m.st.save(m.cfg.Dir)
				}
			}
		}
	}
	delete(m.st.Extensions, rec.Name)
	if err := m.st.save(m.cfg.Dir); err != nil {
		return err
	}
	m.removeDirIfUnused(rec.Dir)
	rec.State, rec.Message = wire.ExtSucceeded, "removed"
	m.report(rec, d, localconfig.OpRemove, true)
	m.cfg.Logger.InfoContext(ctx, "extension removed", "extension", rec.Name)
	return nil
}

// removeDirIfUnused deletes a package directory no record uses.
func (m *Manager) removeDirIfUnused(dirName string) {
	if dirName == "" {
		return
	}
	for _, r := range m.st.Extensions {
		if r.Dir == dirName {
			return
		}
	}
	os.RemoveAll(filepath.Join(m.cfg.Dir, "packages", dirName))
}
