package patch

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
)

// runMarkerEnv is set in the environment of every command a deployment
// runs, with the run's id, so a later run can tell its leftovers from an
// unrelated process that reuses the process group id.
const runMarkerEnv = "CORRAL_PATCH_RUN"

// ManagerError is a package-manager command that failed: its exit code and
// its own output (capped), which is the message a person needs.
type ManagerError struct {
	Command  string // the command line, shortened
	ExitCode int    // -1 when it did not exit by itself
	TimedOut bool
	// Message is the manager's own error lines ("E: ...", "Error: ...",
	// "Problem: ..."), or its last lines when it printed none.
	Message string
	Output  string // the command's stdout then stderr, capped (the end kept)
}

func (e *ManagerError) Error() string {
	what := fmt.Sprintf("exited with %d", e.ExitCode)
	if e.TimedOut {
		what = "timed out"
	}
	if e.Message == "" {
		return fmt.Sprintf("%s %s", e.Command, what)
	}
	return fmt.Sprintf("%s %s: %s", e.Command, what, e.Message)
}

// errorPrefixes start the lines in which apt, dpkg, dnf, rpm and zypper
// say what went wrong.
var errorPrefixes = []string{"E: ", "Error: ", "Error:", "error: ", "Problem: ", "Problem ", "dpkg: ", "Failed to ",
	"Repository '", "Abort", "No provider", "Nothing to do", "conflicts with", "Warning: Repository"}

// errorLines picks the manager's error lines out of its output; without
// any, its last three lines. At most 2 KiB.
func errorLines(out string) string {
	var picked, all []string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if t == "" {
			continue
		}
		all = append(all, t)
		for _, p := range errorPrefixes {
			if strings.HasPrefix(t, p) || (len(p) > 6 && strings.Contains(t, p)) {
				picked = append(picked, t)
				break
			}
		}
	}
	if len(picked) == 0 {
		picked = all[max(len(all)-3, 0):]
	}
	return capText(strings.Join(picked, "\n"), 2<<10)
}

// cmdSpec is one package-manager command.
type cmdSpec struct {
	args    []string
	env     []string // added to the fixed environment
	timeout time.Duration
	// okCodes are exit codes that are not failures (dnf check-update's 100).
	okCodes []int
}

// cmdResult is what a command produced. Stdout is kept whole up to
// parseCap (it is parsed); Output (stderr then stdout tail) is capped at
// the Manager's OutputCap for messages.
type cmdResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// parseCap bounds what is read of a command's standard output for parsing;
// a listing past it is refused rather than read partially.
const parseCap = 64 << 20

// baseEnv is the fixed environment of every command: nothing inherited
// from the agent, output in the C locale (it is parsed), no prompts.
func baseEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive",
		"APT_LISTCHANGES_FRONTEND=none", "APT_LISTBUGS_FRONTEND=none", "NEEDRESTART_MODE=l",
	}
}

// limitedBuffer keeps the first max bytes and counts the rest.
type limitedBuffer struct {
	mu      sync.Mutex
	max     int
	buf     bytes.Buffer
	dropped int64
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - b.buf.Len()
	if room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	if len(p) > room {
		b.dropped += int64(len(p) - max(room, 0))
	}
	return len(p), nil
}

// capText keeps at most n bytes of s: its end, where package managers put
// the error, cut on a UTF-8 boundary, with a note of what was dropped.
func capText(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	note := fmt.Sprintf("[%d bytes before this cut]\n", len(s)-n)
	cut := len(s) - max(n-len(note), 0)
	for cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut++
	}
	return note + s[cut:]
}

// run runs c in its own process group with the fixed environment. The
// whole group is killed when the timeout passes or ctx ends; the process
// dies with the agent. A non-zero exit (not in okCodes) is a *ManagerError.
func (s *session) run(ctx context.Context, c cmdSpec) (cmdResult, error) {
	m := s.m
	timeout := c.timeout
	if timeout <= 0 {
		timeout = m.opts.CommandTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := cmdResult{ExitCode: -1}
	cmd := exec.Command(c.args[0], c.args[1:]...)
	cmd.Env = append(append(baseEnv(), s.env...), c.env...)
	stdout := &limitedBuffer{max: parseCap}
	stderr := &limitedBuffer{max: m.opts.OutputCap}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", c.args[0], err)
	}
	if s.started != nil {
		s.started(cmd.Process.Pid)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	timedOut := false
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
		timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	}
	res.Stdout, res.Stderr = stdout.buf.String(), stderr.buf.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	m.opts.Logger.DebugContext(ctx, "package manager command", "op", c.args[0], "args", shortCommand(c.args),
		"exit", res.ExitCode, "elapsed", time.Since(start).Round(time.Millisecond))
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return res, fmt.Errorf("run %s: %w", c.args[0], err)
	}
	if stdout.dropped > 0 {
		return res, fmt.Errorf("run %s: output longer than %d bytes", shortCommand(c.args), parseCap)
	}
	if ctx.Err() != nil && !timedOut {
		return res, fmt.Errorf("run %s: %w", shortCommand(c.args), ctx.Err())
	}
	if timedOut || (res.ExitCode != 0 && !slicesContains(c.okCodes, res.ExitCode)) {
		all := joinOutput(res.Stderr, res.Stdout)
		return res, &ManagerError{Command: shortCommand(c.args), ExitCode: res.ExitCode, TimedOut: timedOut,
			Message: errorLines(all), Output: capText(all, m.opts.OutputCap)}
	}
	return res, nil
}

func slicesContains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// joinOutput puts stderr (where managers say what went wrong) before the
// end of stdout.
func joinOutput(stderr, stdout string) string {
	stderr, stdout = strings.TrimSpace(stderr), strings.TrimSpace(stdout)
	switch {
	case stderr == "":
		return stdout
	case stdout == "":
		return stderr
	}
	return stdout + "\n" + stderr
}

// shortCommand is argv for messages, without the long option noise.
func shortCommand(args []string) string {
	var kept []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "-o" || a == "--root" || a == "--qf") && i+1 < len(args) {
			i++
			continue
		}
		if strings.HasPrefix(a, "--root=") || strings.HasPrefix(a, "--installroot=") || strings.HasPrefix(a, "--log=") ||
			strings.HasPrefix(a, "--setopt=") || strings.HasPrefix(a, "--releasever=") {
			continue
		}
		if len(kept) >= 12 {
			kept = append(kept, "…")
			break
		}
		kept = append(kept, a)
	}
	return strings.Join(kept, " ")
}

// killLeftovers kills the processes of process group pgid whose
// environment carries CORRAL_PATCH_RUN=runID: what is left of a run whose
// agent was killed. It returns how many it killed.
func killLeftovers(pgid int, runID string) int {
	if pgid <= 1 || runID == "" {
		return 0
	}
	marker := []byte(runMarkerEnv + "=" + runID)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !containsEntry(env, marker) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	return killed
}

func containsEntry(environ, entry []byte) bool {
	for _, e := range bytes.Split(environ, []byte{0}) {
		if bytes.Equal(e, entry) {
			return true
		}
	}
	return false
}
