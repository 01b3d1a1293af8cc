// Package proc runs the agent's child processes the way every handler needs
// them run: in their own process group, as root or another user, with a
// timeout that kills the whole group, captured and capped output, no
// environment inherited from the agent, optionally inside a CPU-limited
// cgroup, and never outliving an agent killed with SIGKILL (Pdeathsig).
// Extension handlers, run commands and later features all use it.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/agent/cpulimit"
	"github.com/corralhq/corral/internal/wire"
)

// cappedBuffer keeps the first max bytes written and counts the rest.
type cappedBuffer struct {
	mu      sync.Mutex
	max     int
	buf     bytes.Buffer
	dropped int64
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - c.buf.Len()
	if room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	if len(p) > room {
		c.dropped += int64(len(p) - max(room, 0))
	}
	return len(p), nil
}

// String is the kept output, with a note when some was dropped. The note
// fits within max (the output is cut shorter to make room, on a UTF-8
// boundary), since the control plane keeps no more than max bytes.
func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf.Bytes()
	if c.dropped == 0 {
		return string(b)
	}
	keep := len(b)
	for {
		note := fmt.Sprintf("\n[output truncated: %d more bytes]", c.dropped+int64(len(b)-keep))
		if keep+len(note) <= c.max || keep == 0 {
			return string(b[:keep]) + note
		}
		keep = max(c.max-len(note), 0)
		for keep > 0 && !utf8.RuneStart(b[keep]) {
			keep--
		}
	}
}

// Process is what a handler run produced.
type Process struct {
	ExitCode int
	Stdout   string
	Stderr   string
	TimedOut bool
	Started  time.Time
	Finished time.Time
}

// Command describes one process to run.
type Command struct {
	Args    []string // argv; Args[0] resolved through PATH
	Dir     string
	Env     []string
	Stdin   []byte
	Timeout time.Duration
	// Credential runs the process as another user (nil = the agent's).
	Credential *syscall.Credential
	// Limit starts the process inside a CPU-limited cgroup (nil = none).
	Limit func(*syscall.SysProcAttr) (cleanup func(), err error)
	// Started is told the process group id once the process runs.
	Started func(pgid int)
}

// outputGrace is how long Run keeps reading stdout and stderr after the
// process exited: a child it left running in the background (an enable
// handler starting a daemon, "cmd &" in a run command) may hold them open
// for good, and must neither hold the result back nor turn it into a
// timeout.
const outputGrace = 2 * time.Second

// Run runs c in its own process group, killing the whole group when the
// timeout passes or ctx ends, and captures capped stdout and stderr. The
// result is the process's own: Run returns at most outputGrace after it
// exits (or is killed), even if something it started outside its process
// group keeps the output open.
func Run(ctx context.Context, c Command) (Process, error) {
	p := Process{ExitCode: -1}
	if c.Timeout <= 0 {
		c.Timeout = wire.DefaultHandlerTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.Command(c.Args[0], c.Args[1:]...)
	cmd.Dir, cmd.Env = c.Dir, c.Env
	cmd.Stdin = bytes.NewReader(c.Stdin)
	stdout := &cappedBuffer{max: wire.MaxHandlerOutputBytes}
	stderr := &cappedBuffer{max: wire.MaxHandlerOutputBytes}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = outputGrace
	// Pdeathsig: a handler does not outlive an agent killed with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.Credential, Pdeathsig: syscall.SIGKILL}
	if c.Limit != nil {
		cleanup, err := c.Limit(cmd.SysProcAttr)
		if err != nil {
			return p, fmt.Errorf("apply the CPU limit: %w", err)
		}
		defer cleanup()
	}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return p, fmt.Errorf("start %s: %w", c.Args[0], err)
	}
	if c.Started != nil {
		c.Started(cmd.Process.Pid)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// The handler and everything it started.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
		p.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	}
	p.Finished = time.Now()
	p.Stdout, p.Stderr = stdout.String(), stderr.String()
	if cmd.ProcessState != nil {
		p.ExitCode = cmd.ProcessState.ExitCode()
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // exited 0; only the output was still held open
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return p, err
	}
	if ctx.Err() != nil && !p.TimedOut {
		return p, ctx.Err()
	}
	return p, nil
}

// LastLine is the last non-empty line of s, at most 512 bytes.
func LastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 512 {
		l = l[:512] + "…"
	}
	return l
}

// HandlerEnv is the environment of a handler: a fixed PATH and the
// extension's identity, nothing inherited from the agent.
func HandlerEnv(name, dir, op string) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8",
		"CORRAL_EXTENSION_NAME=" + name, "CORRAL_EXTENSION_DIR=" + dir, "CORRAL_OPERATION=" + op,
	}
}

// KillLeftovers kills what is left of a handler from a previous agent
// process (killed while the handler ran): every process whose environment
// carries marker and, if pgid is not 0, whose process group is pgid. With
// a pgid the marker is the CORRAL_EXTENSION_NAME=... every handler
// inherits, so a reused process group id of an unrelated program is never
// touched; without one it must be unique to the attempt
// (CORRAL_ATTEMPT_ID=...). It returns how many processes it killed.
func KillLeftovers(pgid int, marker string) int {
	if pgid < 0 || pgid == 1 || marker == "" {
		return 0
	}
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): state ppid pgrp.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 3 || (pgid != 0 && f[2] != strconv.Itoa(pgid)) {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, append([]byte(marker), 0)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	return killed
}

// CgroupLimit returns a Command.Limit hook that starts the process in a new
// cgroup of l limited to percent of one CPU, named after name; nil when l is
// nil (limits not enforceable here).
func CgroupLimit(l *cpulimit.Limiter, name string, percent int) func(*syscall.SysProcAttr) (func(), error) {
	if l == nil {
		return nil
	}
	return func(attr *syscall.SysProcAttr) (func(), error) {
		g, err := l.New(name, percent)
		if err != nil {
			return nil, err
		}
		g.Apply(attr)
		return func() { g.Close() }, nil
	}
}
