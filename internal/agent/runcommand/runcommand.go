// Package runcommand is the agent feature behind Corral/RunCommand: it runs
// the scripts and commands of the desired state's run commands, as root or
// another local user, with a timeout, captured and capped output, and
// reports each run's result.
//
// Each run executes at most once: its local record is written Running
// before it starts, and an agent that finds a Running record after a
// restart reports the run failed instead of running it again. Runs start
// only from a freshly fetched desired state, never from a cached copy that
// may be days old.
//
// Every run is checked against the local configuration as it is on disk at
// the moment it starts (Corral/RunCommand must be allowed like any
// extension install), and a configuration change that forbids run commands
// stops the ones running (ConfigChanged), each reported Failed with why.
// Scripts, commands and parameters are passed on standard input and in the
// environment, never in argv where every local user could read them.
// Protected parameters arrive sealed to this machine for their run and are
// opened in memory just before the process starts.
package runcommand

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/proc"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/wire"
)

// Name is the feature's name.
const Name = "runCommand"

// Feature runs run commands.
type Feature struct {
	env feature.Env
	dir string

	mu     sync.Mutex
	wg     sync.WaitGroup
	active map[string]context.CancelCauseFunc
	// refused names the listed runs this process refused and reported:
	// a desired state fetched again does not report them again. It holds
	// only names still listed, so at most MaxDesiredRuns.
	refused map[string]struct{}
	closed  bool
}

var (
	_ feature.Feature           = (*Feature)(nil)
	_ feature.ConfigWatcher     = (*Feature)(nil)
	_ feature.BuiltinProvider   = (*Feature)(nil)
	_ feature.ReportOnlyBuiltin = builtin{}
)

// New returns the run command feature.
func New() *Feature {
	return &Feature{active: map[string]context.CancelCauseFunc{}, refused: map[string]struct{}{}}
}

// Name implements feature.Feature.
func (f *Feature) Name() string { return Name }

// Builtins provides Corral/RunCommand: it has nothing to install; the runs
// themselves are this feature's work.
func (f *Feature) Builtins() []feature.Builtin { return []feature.Builtin{builtin{}} }

type builtin struct{}

func (builtin) ExtensionName() string { return wire.ExtRunCommand }

// RunsWithoutHostChanges: installing it changes nothing; each run is
// refused by the feature while host changes are off.
func (builtin) RunsWithoutHostChanges() bool { return true }

func (builtin) RunHandler(_ context.Context, handler string, _ wire.HandlerInput) (string, error) {
	return wire.ExtRunCommand + " " + handler + " succeeded", nil
}

// Start records where run records live. They stay in STATE/extensions/runs,
// where earlier agents kept them, so an upgrade keeps "at most once".
func (f *Feature) Start(_ context.Context, env feature.Env) error {
	f.env = env
	f.dir = env.StateDir.Path(statedir.ExtensionDir, "runs")
	return statedir.MkdirPrivate(f.dir)
}

// runRecord is STATE/extensions/runs/<name>.json.
type runRecord struct {
	State string `json:"state"` // Running or a final state
}

func (f *Feature) load(name string) (runRecord, bool) {
	var rr runRecord
	b, err := os.ReadFile(filepath.Join(f.dir, name+".json"))
	if err != nil {
		return rr, false
	}
	return rr, json.Unmarshal(b, &rr) == nil
}

func (f *Feature) save(name string, rr runRecord) error {
	b, _ := json.Marshal(rr)
	return statedir.WriteFileAtomic(filepath.Join(f.dir, name+".json"), b, statedir.PrivateMode)
}

func (f *Feature) report(res wire.RunCommandResult) {
	if f.env.Report != nil {
		f.env.Report(wire.ReportRunCommand, res, "run:"+res.Name+":"+res.State)
	}
}

// allowed says whether a run may start now, under the local configuration
// as it is on disk at this moment.
func (f *Feature) allowed() error {
	if err := f.env.Config().CheckExtension(localconfig.OpInstall, wire.ExtRunCommand); err != nil {
		return err
	}
	if err := f.env.HostChangesRefused(); err != nil {
		return err
	}
	return nil
}

// Apply starts desired runs not yet run (from a fresh desired state only)
// and forgets old records.
func (f *Feature) Apply(ctx context.Context, d feature.Desired) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	if d.Fresh {
		runs := d.State.RunCommands
		if len(runs) > feature.MaxDesiredRuns {
			f.env.LogRefused(ctx, "the desired state lists more run commands than the agent takes; the rest wait",
				"listed", len(runs), "max", feature.MaxDesiredRuns)
			runs = runs[:feature.MaxDesiredRuns]
		}
		listed := make(map[string]struct{}, len(runs))
		for _, run := range runs {
			listed[run.Name] = struct{}{}
		}
		maps.DeleteFunc(f.refused, func(name string, _ struct{}) bool { _, ok := listed[name]; return !ok })
		for _, run := range runs {
			f.start(ctx, run)
		}
	}
	f.forgetOld()
	return nil
}

// start starts one run unless it ran or runs already. Caller holds f.mu.
func (f *Feature) start(ctx context.Context, run wire.DesiredRunCommand) {
	if !wire.ValidResourceName(run.Name) {
		f.env.LogRefused(ctx, "run command with an invalid name ignored", "run", truncate(run.Name, 80))
		return
	}
	if _, busy := f.active[run.Name]; busy {
		return
	}
	if _, done := f.refused[run.Name]; done {
		return
	}
	rr, known := f.load(run.Name)
	switch {
	case known && rr.State == wire.RunRunning:
		_ = f.save(run.Name, runRecord{State: wire.RunFailed})
		f.report(wire.RunCommandResult{Name: run.Name, State: wire.RunFailed, FinishedAt: f.now(),
			Message: "the agent restarted while the command was running; it was not run again"})
		return
	case known:
		return // finished; its result is in the outbox or delivered
	}
	if err := f.allowed(); err != nil {
		f.env.LogRefused(ctx, "run command refused by the local configuration", "run", run.Name, "err", err)
		// Refusals are final for this run and reported, but not written to
		// disk: a control plane sending thousands cannot fill it.
		f.refused[run.Name] = struct{}{}
		f.report(wire.RunCommandResult{Name: run.Name, State: wire.RunFailed, Message: err.Error(), FinishedAt: f.now()})
		return
	}
	if err := f.save(run.Name, runRecord{State: wire.RunRunning}); err != nil {
		f.report(wire.RunCommandResult{Name: run.Name, State: wire.RunFailed, Message: "cannot record the run: " + err.Error(), FinishedAt: f.now()})
		return
	}
	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	f.active[run.Name] = cancel
	limit := proc.CgroupLimit(f.env.Limiter, wire.ExtRunCommand+"-"+run.Name, f.env.Config().ExtensionsCPULimit)
	f.wg.Go(func() {
		defer cancel(nil)
		res := f.execute(runCtx, run, limit)
		if err := f.save(run.Name, runRecord{State: res.State}); err != nil {
			f.env.Logger.Error("record run command result", "run", run.Name, "err", err)
		}
		f.report(res)
		f.mu.Lock()
		delete(f.active, run.Name)
		f.mu.Unlock()
	})
}

func (f *Feature) now() time.Time {
	if f.env.Clock != nil {
		return f.env.Clock().UTC()
	}
	return time.Now().UTC()
}

// forgetOld removes finished runs' records after a day: by then the control
// plane has either recorded their result or failed them as overdue, so it
// will never list them again. Caller holds f.mu.
func (f *Feature) forgetOld() {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name, isRecord := strings.CutSuffix(e.Name(), ".json")
		if !isRecord || strings.HasPrefix(name, ".") {
			continue // a record being written (temp file)
		}
		info, err := e.Info()
		if _, busy := f.active[name]; err != nil || busy || time.Since(info.ModTime()) < recordRetention {
			continue
		}
		os.Remove(filepath.Join(f.dir, e.Name()))
	}
}

// recordRetention is how long a finished run's record is kept: far longer
// than any run may stay listed (its timeout, at most two hours, plus the
// server's grace).
const recordRetention = 24 * time.Hour

var paramRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// errStopped is the cause of a run stopped by the agent.
var errStopped = errors.New("the run was stopped because the agent stopped")

// execute runs one command and returns its final result.
func (f *Feature) execute(ctx context.Context, run wire.DesiredRunCommand, limit func(*syscall.SysProcAttr) (func(), error)) wire.RunCommandResult {
	res := wire.RunCommandResult{Name: run.Name, State: wire.RunRunning, StartedAt: f.now()}
	fail := func(msg string) wire.RunCommandResult {
		res.State, res.Message, res.FinishedAt = wire.RunFailed, msg, f.now()
		return res
	}
	c := proc.Command{Dir: "/", Timeout: time.Duration(run.Timeout), Limit: limit, Args: []string{"/bin/sh", "-s"}}
	if c.Timeout <= 0 {
		c.Timeout = wire.DefaultRunCommandTimeout
	}
	c.Timeout = min(c.Timeout, wire.MaxHandlerTimeout)
	switch {
	case run.Script != "" && run.Command == "":
		c.Stdin = []byte(run.Script)
	case run.Command != "" && run.Script == "":
		c.Stdin = []byte(run.Command + "\n")
	default:
		return fail("a run command needs exactly one of script and command")
	}
	c.Env = proc.HandlerEnv(wire.ExtRunCommand, "/", "run")
	for _, k := range slices.Sorted(maps.Keys(run.Parameters)) {
		if !paramRE.MatchString(k) {
			return fail(fmt.Sprintf("parameter name %q is not a valid environment variable name", k))
		}
		c.Env = append(c.Env, k+"="+run.Parameters[k])
	}
	protected, err := f.openProtected(run)
	if err != nil {
		return fail(err.Error())
	}
	for _, k := range slices.Sorted(maps.Keys(protected)) {
		c.Env = append(c.Env, k+"="+protected[k])
	}
	clear(protected)
	if run.RunAsUser != "" && run.RunAsUser != "root" {
		cred, home, err := lookupUser(run.RunAsUser)
		if err != nil {
			return fail(err.Error())
		}
		c.Credential, c.Dir = cred, home
		c.Env = append(c.Env, "HOME="+home, "USER="+run.RunAsUser, "LOGNAME="+run.RunAsUser)
	}
	// The last moment before it runs: root's word as it is now.
	if err := f.allowed(); err != nil {
		return fail(err.Error())
	}
	f.report(res) // Running
	p, err := proc.Run(ctx, c)
	res.FinishedAt = f.now()
	res.Stdout, res.Stderr = p.Stdout, p.Stderr
	if err != nil {
		if errors.Is(err, context.Canceled) {
			cause := context.Cause(ctx)
			if cause == nil || errors.Is(cause, context.Canceled) {
				cause = errStopped
			}
			return fail("stopped: " + cause.Error())
		}
		return fail(err.Error())
	}
	code := p.ExitCode
	res.ExitCode = &code
	switch {
	case p.TimedOut:
		res.State, res.Message = wire.RunTimedOut, fmt.Sprintf("timed out after %s; the command and its children were killed", c.Timeout)
	case code == 0:
		res.State = wire.RunSucceeded
	default:
		res.State, res.Message = wire.RunFailed, fmt.Sprintf("exited with code %d", code)
	}
	return res
}

// openProtected opens the run's protected parameters, sealed to this
// machine for this run (sealing.RunCommandAAD), in memory only: they reach
// the process through its environment and are never written anywhere.
func (f *Feature) openProtected(run wire.DesiredRunCommand) (map[string]string, error) {
	if len(run.ProtectedParameters) == 0 {
		return nil, nil
	}
	if f.env.Machine.SealingKey == nil {
		return nil, errors.New("cannot open the protected parameters: this agent has no sealing key")
	}
	key, err := f.env.Machine.SealingKey()
	if err != nil {
		return nil, fmt.Errorf("cannot open the protected parameters: %w", err)
	}
	plain, err := sealing.Open(key, sealing.RunCommandAAD(f.env.Machine.ID, run.Name), run.ProtectedParameters)
	if err != nil {
		return nil, fmt.Errorf("cannot open the protected parameters: %w", err)
	}
	defer clear(plain)
	var out map[string]string
	if err := json.Unmarshal(plain, &out); err != nil {
		return nil, errors.New("the protected parameters are not a JSON object of strings")
	}
	for k, v := range out {
		_, twice := run.Parameters[k]
		switch {
		case !paramRE.MatchString(k):
			return nil, fmt.Errorf("protected parameter name %q is not a valid environment variable name", k)
		case twice:
			return nil, fmt.Errorf("parameter %q is both a parameter and a protected parameter", k)
		case strings.ContainsRune(v, 0):
			return nil, fmt.Errorf("protected parameter %q contains a NUL character", k)
		}
	}
	return out, nil
}

func lookupUser(name string) (*syscall.Credential, string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, "", fmt.Errorf("run-as user %q does not exist on this machine", name)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, "", fmt.Errorf("run-as user %q has a non-numeric id", name)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	home := u.HomeDir
	if fi, err := os.Stat(home); err != nil || !fi.IsDir() {
		home = "/"
	}
	return cred, home, nil
}

// ConfigChanged stops every running command when run commands are no longer
// allowed; each is reported Failed with the reason.
func (f *Feature) ConfigChanged(ctx context.Context, _ localconfig.Effective) {
	err := f.allowed()
	if err == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, cancel := range f.active {
		f.env.Logger.WarnContext(ctx, "stopping a run command the local configuration now forbids", "run", name, "err", err)
		cancel(err)
	}
}

// Close stops running commands and waits for them to end.
func (f *Feature) Close() error {
	f.mu.Lock()
	f.closed = true
	for _, cancel := range f.active {
		cancel(errStopped)
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
