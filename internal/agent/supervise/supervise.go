// Package supervise runs the agent's long-lived first-party daemons (the
// endpoint-protection scanner is one): a Supervisor starts each as its own
// process, in its own process group and — where cgroup v2 is delegated to
// the agent — its own cgroup under the local CPU limit and a memory cap;
// restarts it with exponential backoff when it exits or crashes; and stops
// it (SIGTERM, then SIGKILL after a grace period) when asked: on disable,
// removal, a local lock-down change, or agent shutdown.
//
// Where the memory controller is not available the cap is enforced by
// sampling the daemon's resident memory every MemoryPoll and killing it
// (and so restarting it, counted) when it is over; Status says which.
//
// Ownership: the Supervisor owns one goroutine per daemon; Stop and Close
// wait for it to end. Daemons never outlive the agent (Pdeathsig).
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/agent/cpulimit"
)

// Spec describes one daemon.
type Spec struct {
	// Name identifies the daemon (unique per Supervisor); it also names its
	// cgroup.
	Name string
	Path string
	Args []string
	Env  []string
	Dir  string
	// CPUPercent limits the daemon to this share of one CPU where cgroup v2
	// allows (0: no limit).
	CPUPercent int
	// MemoryMax caps the daemon's memory in bytes (0: no cap).
	MemoryMax int64
}

func (s Spec) equal(o Spec) bool {
	return s.Name == o.Name && s.Path == o.Path && slices.Equal(s.Args, o.Args) && slices.Equal(s.Env, o.Env) &&
		s.Dir == o.Dir && s.CPUPercent == o.CPUPercent && s.MemoryMax == o.MemoryMax
}

// Status is what is known of one daemon.
type Status struct {
	Name      string    `json:"name"`
	Running   bool      `json:"running"`
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	// Restarts counts starts after the first.
	Restarts   int       `json:"restarts"`
	LastExit   string    `json:"lastExit,omitempty"`
	LastExitAt time.Time `json:"lastExitAt,omitzero"`
	// Limits says how CPU and memory limits are enforced.
	Limits string `json:"limits,omitempty"`
}

// Supervisor runs daemons. Its zero value is not usable; use New.
type Supervisor struct {
	limiter *cpulimit.Limiter
	log     *slog.Logger

	// MinBackoff and MaxBackoff bound the delay before a restart; a daemon
	// that ran longer than MaxBackoff starts again from MinBackoff.
	MinBackoff, MaxBackoff time.Duration
	// StopGrace is how long a daemon has to exit after SIGTERM.
	StopGrace time.Duration
	// MemoryPoll is how often the memory cap is checked without cgroups.
	MemoryPoll time.Duration

	mu      sync.Mutex
	daemons map[string]*daemon
	closed  bool
}

// New returns a Supervisor; limiter may be nil (limits not enforceable).
func New(limiter *cpulimit.Limiter, log *slog.Logger) *Supervisor {
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{limiter: limiter, log: log, MinBackoff: time.Second, MaxBackoff: time.Minute,
		StopGrace: 10 * time.Second, MemoryPoll: time.Second, daemons: map[string]*daemon{}}
}

type daemon struct {
	spec   Spec
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	status Status
}

func (d *daemon) update(f func(*Status)) {
	d.mu.Lock()
	f(&d.status)
	d.mu.Unlock()
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("supervisor closed")

// Start runs spec.Name as spec says. A daemon already running with the same
// spec is left alone; one with another spec is stopped and started anew.
func (s *Supervisor) Start(spec Spec) error {
	if spec.Name == "" || spec.Path == "" {
		return errors.New("a daemon needs a name and a path")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	old := s.daemons[spec.Name]
	if old != nil && old.spec.equal(spec) {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	if old != nil {
		s.Stop(spec.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{spec: spec, cancel: cancel, done: make(chan struct{}), status: Status{Name: spec.Name}}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return ErrClosed
	}
	s.daemons[spec.Name] = d
	s.mu.Unlock()
	go s.supervise(ctx, d)
	return nil
}

// Stop stops the daemon name and waits for it; unknown names are ignored.
func (s *Supervisor) Stop(name string) {
	s.mu.Lock()
	d := s.daemons[name]
	delete(s.daemons, name)
	s.mu.Unlock()
	if d != nil {
		d.cancel()
		<-d.done
	}
}

// Status returns the status of daemon name.
func (s *Supervisor) Status(name string) (Status, bool) {
	s.mu.Lock()
	d := s.daemons[name]
	s.mu.Unlock()
	if d == nil {
		return Status{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status, true
}

// Close stops every daemon and refuses new ones.
func (s *Supervisor) Close() {
	s.mu.Lock()
	s.closed = true
	names := make([]string, 0, len(s.daemons))
	for n := range s.daemons {
		names = append(names, n)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() { s.Stop(n) })
	}
	wg.Wait()
}

// supervise is the loop of one daemon: run, and after an exit wait and run
// again, until ctx ends.
func (s *Supervisor) supervise(ctx context.Context, d *daemon) {
	defer close(d.done)
	log := s.log.With("daemon", d.spec.Name)
	backoff := s.MinBackoff
	for starts := 0; ; starts++ {
		started := time.Now()
		exit := s.runOnce(ctx, d, starts)
		if ctx.Err() != nil {
			return
		}
		log.Warn("supervised daemon exited; restarting", "exit", exit, "after", backoff)
		if time.Since(started) > s.MaxBackoff {
			backoff = s.MinBackoff
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		backoff = min(backoff*2, s.MaxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// runOnce starts the daemon and waits until it exits or ctx ends (then it
// is stopped). It returns why it exited.
func (s *Supervisor) runOnce(ctx context.Context, d *daemon, starts int) string {
	spec := d.spec
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	limits := "not enforced (no cgroup v2 delegation)"
	pollMemory := spec.MemoryMax > 0
	if s.limiter != nil && (spec.CPUPercent > 0 || spec.MemoryMax > 0) {
		percent := spec.CPUPercent
		if percent <= 0 {
			percent = 100 * 64 // no CPU limit: as many CPUs as New allows
		}
		g, err := s.limiter.New(spec.Name, percent)
		if err != nil {
			return s.failed(d, starts, fmt.Sprintf("prepare its cgroup: %v", err))
		}
		defer g.Close()
		limits = "cgroup v2"
		if spec.MemoryMax > 0 {
			if err := g.SetMemoryMax(spec.MemoryMax); err == nil {
				pollMemory = false
			} else {
				limits = "cgroup v2 (CPU); memory sampled"
			}
		}
		g.Apply(cmd.SysProcAttr)
	} else if pollMemory {
		limits = "CPU not enforced (no cgroup v2 delegation); memory sampled"
	}
	if err := cmd.Start(); err != nil {
		return s.failed(d, starts, fmt.Sprintf("start %s: %v", spec.Path, err))
	}
	pid := cmd.Process.Pid
	d.update(func(st *Status) {
		st.Running, st.PID, st.StartedAt, st.Restarts, st.Limits = true, pid, time.Now(), starts, limits
	})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var poll <-chan time.Time
	if pollMemory {
		t := time.NewTicker(s.MemoryPoll)
		defer t.Stop()
		poll = t.C
	}
	var why string
	for why == "" {
		select {
		case err := <-done:
			why = exitReason(cmd, err)
		case <-poll:
			if rss := residentBytes(pid); rss > spec.MemoryMax {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-done
				why = fmt.Sprintf("killed: resident memory %d MiB over the cap of %d MiB", rss>>20, spec.MemoryMax>>20)
			}
		case <-ctx.Done():
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(s.StopGrace):
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-done
			}
			why = "stopped"
		}
	}
	// Whatever the daemon left in its process group goes with it.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	d.update(func(st *Status) { st.Running, st.PID, st.LastExit, st.LastExitAt = false, 0, why, time.Now() })
	return why
}

func (s *Supervisor) failed(d *daemon, starts int, why string) string {
	d.update(func(st *Status) { st.Running, st.Restarts, st.LastExit, st.LastExitAt = false, starts, why, time.Now() })
	return why
}

func exitReason(cmd *exec.Cmd, err error) string {
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	if cmd.ProcessState != nil {
		return fmt.Sprintf("exited with code %d", cmd.ProcessState.ExitCode())
	}
	return err.Error()
}

// residentBytes is the resident set size of pid (0 if unknown).
func residentBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
