package extensions

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/proc"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/wire"
)

// runner is what runs one lifecycle handler of an extension: a package's
// shell command or a first-party built-in.
type runner interface {
	run(ctx context.Context, handler string, input []byte, in wire.HandlerInput) (string, error)
	// identity is the Publisher/Type this runner executes.
	identity() string
}

// apply performs op and returns the last handler's message.
func (m *Manager) apply(ctx context.Context, rec *record, d wire.DesiredExtension, op localconfig.Operation) (string, error) {
	in, input, err := m.handlerInput(d, op)
	if err != nil {
		return "", err
	}
	name := extName(d.Publisher, d.Type)
	// check re-reads the local configuration before each handler starts.
	check := func(r runner) error {
		// The code about to run must be what was checked: a manifest or
		// built-in of another publisher/type never runs under this verdict.
		if !strings.EqualFold(r.identity(), name) {
			return fmt.Errorf("refusing to run %s handlers for %s", r.identity(), name)
		}
		if err := m.allowed(op, name); err != nil {
			return &blockedError{err}
		}
		return nil
	}
	step := func(r runner, handler string) (string, error) {
		if err := check(r); err != nil {
			return "", err
		}
		return r.run(ctx, handler, input, in)
	}

	if isFirstParty(d.Publisher) {
		b := m.env.Builtins[strings.ToLower(name)]
		if b == nil {
			return "", errNoBuiltin(name)
		}
		r := builtinRunner{b}
		if op != localconfig.OpInstall {
			if _, err := step(r, wire.HandlerUpdate); err != nil {
				return "", err
			}
		} else if _, err := step(r, wire.HandlerInstall); err != nil {
			return "", err
		}
		rec.Installed, rec.Version, rec.Digest, rec.Dir = true, d.Version, "", ""
		if err := m.st.save(m.dir); err != nil {
			return "", err
		}
		return step(r, wire.HandlerEnable)
	}

	switch op {
	case localconfig.OpUpdate:
		r, err := m.installedRunner(rec)
		if err != nil {
			return "", err
		}
		if err := m.stillListed(ctx, rec); err != nil {
			return "", err
		}
		if _, err := step(r, wire.HandlerUpdate); err != nil {
			return "", err
		}
		return step(r, wire.HandlerEnable)
	case localconfig.OpInstall, localconfig.OpUpgrade:
		if err := check(identityOnly(name)); err != nil {
			return "", err // nothing downloaded for a refused extension
		}
		man, dirName, err := m.fetchAndUnpack(ctx, d)
		if err != nil {
			return "", err
		}
		r := &packageRunner{m: m, man: man, dir: filepath.Join(m.dir, "packages", dirName), name: rec.Name}
		var old *packageRunner
		if op == localconfig.OpUpgrade && rec.Installed {
			if o, err := m.installedRunner(rec); err == nil && o.dir != r.dir {
				old = o
				if _, err := step(old, wire.HandlerDisable); err != nil {
					return "", fmt.Errorf("disable the installed version %s: %w", rec.Version, err)
				}
				if _, err := step(r, wire.HandlerUpdate); err != nil {
					return "", err
				}
			}
		}
		if _, err := step(r, wire.HandlerInstall); err != nil {
			return "", err
		}
		rec.Installed, rec.Version, rec.Digest, rec.Dir = true, d.Version, d.Digest, dirName
		if err := m.st.save(m.dir); err != nil {
			return "", err
		}
		if old != nil {
			if _, err := step(old, wire.HandlerUninstall); err != nil {
				m.log.WarnContext(ctx, "uninstall of the previous version failed", "extension", rec.Name, "err", err)
			}
			m.removeDirIfUnused(filepath.Base(old.dir))
		}
		return step(r, wire.HandlerEnable)
	}
	return "", fmt.Errorf("unknown operation %q", op)
}

// runRemoveHandlers runs disable and uninstall of what rec installed.
// Removal is always allowed by the lists; a disabled extension manager
// (checked by the caller) refuses it.
func (m *Manager) runRemoveHandlers(ctx context.Context, rec *record) error {
	in := wire.HandlerInput{Name: rec.Name, Operation: string(localconfig.OpRemove)}
	input, _ := json.Marshal(in)
	var r runner
	if isFirstParty(rec.Publisher) {
		b := m.env.Builtins[strings.ToLower(extName(rec.Publisher, rec.Type))]
		if b == nil {
			return nil // nothing of it can be running: this agent does not have it
		}
		r = builtinRunner{b}
	} else {
		pr, err := m.installedRunner(rec)
		if err != nil {
			return nil // the package is gone already: nothing left to run
		}
		r = pr
	}
	for _, h := range []string{wire.HandlerDisable, wire.HandlerUninstall} {
		if _, err := r.run(ctx, h, input, in); err != nil {
			return err
		}
	}
	return nil
}

// handlerInput builds the handler's input, opening protected settings in
// memory only.
func (m *Manager) handlerInput(d wire.DesiredExtension, op localconfig.Operation) (wire.HandlerInput, []byte, error) {
	in := wire.HandlerInput{Name: d.Name, Operation: string(op), Settings: d.Settings}
	if len(d.ProtectedSettings) > 0 {
		key, err := m.env.Machine.SealingKey()
		if err != nil {
			return in, nil, err
		}
		pt, err := sealing.Open(key, sealing.ExtensionAAD(m.env.Machine.ID, d.Name, d.Publisher, d.Type), d.ProtectedSettings)
		if err != nil {
			return in, nil, err
		}
		in.ProtectedSettings = pt
	}
	b, err := json.Marshal(in)
	return in, b, err
}

func (m *Manager) installedRunner(rec *record) (*packageRunner, error) {
	dir := filepath.Join(m.dir, "packages", rec.Dir)
	man, err := readManifest(dir, rec.Name)
	if err != nil {
		return nil, err
	}
	return &packageRunner{m: m, man: man, dir: dir, name: rec.Name}, nil
}

func readManifest(dir, name string) (wire.ExtensionManifest, error) {
	var man wire.ExtensionManifest
	b, err := os.ReadFile(filepath.Join(dir, wire.ManifestFile))
	if err != nil {
		return man, fmt.Errorf("the installed package of %s is missing: %w", name, err)
	}
	if err := json.Unmarshal(b, &man); err != nil {
		return man, fmt.Errorf("the installed manifest of %s is damaged: %w", name, err)
	}
	return man, nil
}

// identityOnly is a runner used only to check an identity before download.
type identityOnly string

func (i identityOnly) identity() string { return string(i) }
func (i identityOnly) run(context.Context, string, []byte, wire.HandlerInput) (string, error) {
	return "", nil
}

// builtinRunner runs a first-party extension's handlers in the agent.
type builtinRunner struct{ b feature.Builtin }

func (r builtinRunner) identity() string { return r.b.ExtensionName() }

func (r builtinRunner) run(ctx context.Context, handler string, _ []byte, in wire.HandlerInput) (string, error) {
	msg, err := r.b.RunHandler(ctx, handler, in)
	if err != nil {
		return "", fmt.Errorf("%s handler: %w", handler, err)
	}
	if msg == "" {
		msg = r.b.ExtensionName() + " " + handler + " succeeded"
	}
	return msg, nil
}

// packageRunner runs the shell handlers of an unpacked package.
type packageRunner struct {
	m    *Manager
	man  wire.ExtensionManifest
	dir  string
	name string // the extension instance
}

func (r *packageRunner) identity() string { return extName(r.man.Publisher, r.man.Type) }

// run runs one lifecycle handler; an empty command succeeds at once.
func (r *packageRunner) run(ctx context.Context, handler string, input []byte, _ wire.HandlerInput) (string, error) {
	man := r.man
	command := map[string]string{
		wire.HandlerInstall: man.Handlers.Install, wire.HandlerEnable: man.Handlers.Enable, wire.HandlerDisable: man.Handlers.Disable,
		wire.HandlerUpdate: man.Handlers.Update, wire.HandlerUninstall: man.Handlers.Uninstall,
	}[handler]
	if strings.TrimSpace(command) == "" {
		return handler + " succeeded", nil
	}
	if strings.HasPrefix(command, wire.BuiltinHandlerPrefix) {
		return "", fmt.Errorf("%s handler: %q names a built-in handler, which only first-party extensions shipped with the agent have", handler, command)
	}
	m := r.m
	env := proc.HandlerEnv(r.name, r.dir, handler)
	if rec := m.st.Extensions[r.name]; rec != nil && rec.AttemptID != "" {
		env = append(env, attemptEnv+rec.AttemptID)
	}
	c := proc.Command{Args: []string{"/bin/sh", "-c", command}, Dir: r.dir, Env: env, Stdin: input,
		Timeout: extpkg.HandlerTimeout(man, handler), Limit: m.limit(r.name), Started: func(pgid int) {
			if rec := m.st.Extensions[r.name]; rec != nil {
				rec.PGID = pgid
				_ = m.st.save(m.dir)
			}
		}}
	p, err := proc.Run(ctx, c)
	if err != nil {
		return "", fmt.Errorf("%s handler: %w", handler, err)
	}
	if p.TimedOut {
		return "", fmt.Errorf("%s handler timed out after %s", handler, c.Timeout)
	}
	if p.ExitCode != 0 {
		detail := proc.LastLine(p.Stderr)
		if detail == "" {
			detail = proc.LastLine(p.Stdout)
		}
		return "", fmt.Errorf("%s handler exited with code %d: %s", handler, p.ExitCode, detail)
	}
	if l := proc.LastLine(p.Stdout); l != "" {
		return l, nil
	}
	return handler + " succeeded", nil
}

// killLeftovers kills what the handlers of rec's interrupted attempt (an
// agent killed during it) left running, before the attempt is made again:
// every process carrying the attempt's id, whatever its process group
// (the agent may have died before it recorded one), and, for state
// written by older agents, the recorded process group.
func (m *Manager) killLeftovers(ctx context.Context, rec *record) {
	n := 0
	if rec.AttemptID != "" {
		n += proc.KillLeftovers(0, attemptEnv+rec.AttemptID)
	}
	if rec.PGID > 0 {
		n += proc.KillLeftovers(rec.PGID, "CORRAL_EXTENSION_NAME="+rec.Name)
	}
	if n > 0 {
		m.log.WarnContext(ctx, "killed handler processes left by a previous agent run", "extension", rec.Name, "processes", n)
	}
	rec.PGID = 0
}

// limit returns the cgroup hook for a handler, or nil when not enforced.
// The CPU limit is read from the local configuration as it is now.
func (m *Manager) limit(name string) func(*syscall.SysProcAttr) (func(), error) {
	return proc.CgroupLimit(m.env.Limiter, name, m.env.Config().ExtensionsCPULimit)
}
