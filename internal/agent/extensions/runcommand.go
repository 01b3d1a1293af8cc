package extensions

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

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/wire"
)

// runner executes run commands with the Corral/RunCommand built-in handler.
// Each run executes at most once: its local record is written Running
// before it starts, and an agent that finds a Running record after a
// restart reports the run failed instead of running it again.
type runner struct {
	m      *Manager
	mu     sync.Mutex
	wg     sync.WaitGroup
	active map[string]context.CancelFunc
	closed bool
}

// runRecord is STATE/extensions/runs/<name>.json.
type runRecord struct {
	State string `json:"state"` // Running or a final state
}

func (r *runner) dir() string { return filepath.Join(r.m.cfg.Dir, "runs") }

var runNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

func (r *runner) load(name string) (runRecord, bool) {
	var rr runRecord
	b, err := os.ReadFile(filepath.Join(r.dir(), name+".json"))
	if err != nil {
		return rr, false
	}
	return rr, json.Unmarshal(b, &rr) == nil
}

func (r *runner) save(name string, rr runRecord) error {
	if err := os.MkdirAll(r.dir(), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(rr)
	return localconfig.WriteFileAtomic(filepath.Join(r.dir(), name+".json"), b, 0o600)
}

func (r *runner) report(res wire.RunCommandResult) {
	if r.m.cfg.Report != nil {
		r.m.cfg.Report(wire.ReportRunCommand, res, "run:"+res.Name+":"+res.State)
	}
}

// reconcile starts desired runs not yet run and forgets old records.
func (r *runner) reconcile(ctx context.Context, runs []wire.DesiredRunCommand, cfg localconfig.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if r.active == nil {
		r.active = map[string]context.CancelFunc{}
	}
	for _, run := range runs {
		if !runNameRE.MatchString(run.Name) {
			continue
		}
		if _, busy := r.active[run.Name]; busy {
			continue
		}
		rr, known := r.load(run.Name)
		switch {
		case known && rr.State == wire.RunRunning:
			now := time.Now().UTC()
			_ = r.save(run.Name, runRecord{State: wire.RunFailed})
			r.report(wire.RunCommandResult{Name: run.Name, State: wire.RunFailed, FinishedAt: now,
				Message: "the agent restarted while the command was running; it was not run again"})
			continue
		case known:
			continue // finished; its result is in the outbox or delivered
		}
		refuse := func(msg string) {
			_ = r.save(run.Name, runRecord{State: wire.RunFailed})
			r.report(wire.RunCommandResult{Name: run.Name, State: wire.RunFailed, Message: msg, FinishedAt: time.Now().UTC()})
		}
		if err := cfg.CheckExtension(localconfig.OpInstall, wire.ExtRunCommand); err != nil {
			r.m.cfg.Logger.WarnContext(ctx, "run command refused by the local configuration", "run", run.Name, "err", err)
			refuse(err.Error())
			continue
		}
		if r.m.cfg.HostChangesOff != "" {
			refuse(r.m.cfg.HostChangesOff)
			continue
		}
		if err := r.save(run.Name, runRecord{State: wire.RunRunning}); err != nil {
			refuse("cannot record the run: " + err.Error())
			continue
		}
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r.active[run.Name] = cancel
		limit := r.m.limit(wire.ExtRunCommand + "-" + run.Name)
		r.wg.Go(func() {
			defer cancel()
			res := r.execute(runCtx, run, limit)
			if err := r.save(run.Name, runRecord{State: res.State}); err != nil {
				r.m.cfg.Logger.Error("record run command result", "run", run.Name, "err", err)
			}
			r.report(res)
			r.mu.Lock()
			delete(r.active, run.Name)
			r.mu.Unlock()
		})
	}
	// Forget finished runs after a day: by then the control plane has
	// either recorded their result or failed them as overdue, so it will
	// never list them again.
	if entries, err := os.ReadDir(r.dir()); err == nil {
		for _, e := range entries {
			name, isRecord := strings.CutSuffix(e.Name(), ".json")
			if !isRecord || strings.HasPrefix(name, ".") {
				continue // a record being written (temp file)
			}
			info, err := e.Info()
			if _, busy := r.active[name]; err != nil || busy || time.Since(info.ModTime()) < runRecordRetention {
				continue
			}
			os.Remove(filepath.Join(r.dir(), e.Name()))
		}
	}
}

// runRecordRetention is how long a finished run's record is kept: far
// longer than any run may stay listed (its timeout, at most two hours,
// plus the server's grace).
const runRecordRetention = 24 * time.Hour

var paramRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// execute runs one command and returns its final result.
func (r *runner) execute(ctx context.Context, run wire.DesiredRunCommand, limit func(*syscall.SysProcAttr) (func(), error)) wire.RunCommandResult {
	res := wire.RunCommandResult{Name: run.Name, State: wire.RunRunning, StartedAt: time.Now().UTC()}
	fail := func(msg string) wire.RunCommandResult {
		res.State, res.Message, res.FinishedAt = wire.RunFailed, msg, time.Now().UTC()
		return res
	}
	c := Command{Dir: "/", Timeout: time.Duration(run.Timeout), Limit: limit}
	if c.Timeout <= 0 {
		c.Timeout = wire.DefaultRunCommandTimeout
	}
	c.Timeout = min(c.Timeout, wire.MaxHandlerTimeout)
	switch {
	case run.Script != "" && run.Command == "":
		c.Args, c.Stdin = []string{"/bin/sh", "-s"}, []byte(run.Script)
	case run.Command != "" && run.Script == "":
		c.Args = []string{"/bin/sh", "-c", run.Command}
	default:
		return fail("a run command needs exactly one of script and command")
	}
	c.Env = handlerEnv(wire.ExtRunCommand, "/", "run")
	for _, k := range slices.Sorted(maps.Keys(run.Parameters)) {
		if !paramRE.MatchString(k) {
			return fail(fmt.Sprintf("parameter name %q is not a valid environment variable name", k))
		}
		c.Env = append(c.Env, k+"="+run.Parameters[k])
	}
	if run.RunAsUser != "" && run.RunAsUser != "root" {
		cred, home, err := lookupUser(run.RunAsUser)
		if err != nil {
			return fail(err.Error())
		}
		c.Credential, c.Dir = cred, home
		c.Env = append(c.Env, "HOME="+home, "USER="+run.RunAsUser, "LOGNAME="+run.RunAsUser)
	}
	r.report(res) // Running
	p, err := Run(ctx, c)
	res.FinishedAt = time.Now().UTC()
	res.Stdout, res.Stderr = p.Stdout, p.Stderr
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fail("the run was stopped because the agent stopped or the extension manager was disabled")
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

// stopAll cancels running commands and waits for them to end.
func (r *runner) stopAll() {
	r.mu.Lock()
	r.closed = true
	for _, cancel := range r.active {
		cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// cancelAll stops running commands (the extension manager was disabled).
func (r *runner) cancelAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cancel := range r.active {
		cancel()
	}
}
