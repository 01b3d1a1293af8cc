package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

// binaries builds corral and corral-agent once per test run.
func binaries(t testing.TB) (corral, agent string) {
	t.Helper()
	if dir := os.Getenv(binDirEnv); dir != "" {
		// A test re-run in a child process (testutil.InChild) uses the
		// binaries its parent built.
		return filepath.Join(dir, "corral"), filepath.Join(dir, "corral-agent")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "corral-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range []string{"corral", "corral-agent"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b), "./cmd/"+b)
			cmd.Dir = "../.."
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "corral"), filepath.Join(binDir, "corral-agent")
}

// binDirEnv names the parent's binary directory in a child test process.
const binDirEnv = "CORRAL_E2E_BIN_DIR"

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proc is a running child process whose output is kept for inspection.
type proc struct {
	cmd    *exec.Cmd
	out    *testutil.SyncBuffer
	done   chan struct{}
	waited error
}

func start(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.waited = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 20s after SIGTERM:\n%s", p.cmd.Path, p.out.String())
	}
}

// waitFor polls the process output for a line starting with prefix.
func (p *proc) waitFor(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				return strings.TrimSpace(rest)
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before printing %q: %v\n%s", p.cmd.Path, prefix, p.waited, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not print %q within %s:\n%s", p.cmd.Path, prefix, timeout, p.out.String())
	return ""
}

// run runs a command to completion and returns its combined output.
func run(t testing.TB, stdin io.Reader, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
