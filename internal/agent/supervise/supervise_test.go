package supervise

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

// The test binary doubles as the supervised test daemon: with
// SUPERVISE_TEST_DAEMON set it records its pid and behaves as told.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SUPERVISE_TEST_DAEMON"); mode != "" {
		testDaemon(mode)
		return
	}
	os.Exit(m.Run())
}

func testDaemon(mode string) {
	f, _ := os.OpenFile(os.Getenv("SUPERVISE_TEST_PIDS"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	fmt.Fprintln(f, os.Getpid())
	f.Close()
	switch mode {
	case "crash":
		time.Sleep(50 * time.Millisecond)
		os.Exit(7)
	case "hog":
		b := make([]byte, 96<<20)
		for i := range b {
			b[i] = byte(i)
		}
		time.Sleep(time.Hour)
		_ = b[len(b)-1]
	case "ignore-term":
		signalIgnoreTerm()
		time.Sleep(time.Hour)
	default: // "serve"
		time.Sleep(time.Hour)
	}
}

func signalIgnoreTerm() { syscallIgnore(syscall.SIGTERM) }

func newSupervisor(t *testing.T) *Supervisor {
	s := New(nil, slog.New(slog.DiscardHandler))
	s.MinBackoff, s.MaxBackoff, s.StopGrace, s.MemoryPoll = 20*time.Millisecond, 200*time.Millisecond, 300*time.Millisecond, 30*time.Millisecond
	t.Cleanup(s.Close)
	return s
}

func spec(t *testing.T, name, mode string) (Spec, string) {
	pids := filepath.Join(t.TempDir(), "pids")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Name: name, Path: self, Env: []string{"SUPERVISE_TEST_DAEMON=" + mode, "SUPERVISE_TEST_PIDS=" + pids}}, pids
}

func startedPIDs(path string) []int {
	b, _ := os.ReadFile(path)
	var out []int
	for l := range strings.FieldsSeq(string(b)) {
		n, _ := strconv.Atoi(l)
		out = append(out, n)
	}
	return out
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestCrashingDaemonIsRestartedWithBackoff(t *testing.T) {
	t.Parallel()
	s := newSupervisor(t)
	sp, pids := spec(t, "crasher", "crash")
	if err := s.Start(sp); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() string {
		if n := len(startedPIDs(pids)); n < 4 {
			return fmt.Sprintf("%d starts so far", n)
		}
		return ""
	})
	st, ok := s.Status("crasher")
	if !ok || st.Restarts < 3 || !strings.Contains(st.LastExit, "code 7") {
		t.Errorf("status after crashes: %+v", st)
	}
	s.Stop("crasher")
	n := len(startedPIDs(pids))
	time.Sleep(300 * time.Millisecond)
	if m := len(startedPIDs(pids)); m != n {
		t.Errorf("a stopped daemon was started again (%d → %d starts)", n, m)
	}
	if _, ok := s.Status("crasher"); ok {
		t.Error("a stopped daemon still has a status")
	}
}

func TestStopEndsTheDaemonEvenIfItIgnoresSIGTERM(t *testing.T) {
	t.Parallel()
	s := newSupervisor(t)
	for _, mode := range []string{"serve", "ignore-term"} {
		sp, pids := spec(t, "d-"+mode, mode)
		if err := s.Start(sp); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() string {
			if st, _ := s.Status(sp.Name); !st.Running || len(startedPIDs(pids)) == 0 {
				return "not running yet"
			}
			return ""
		})
		pid := startedPIDs(pids)[0]
		s.Stop(sp.Name)
		if alive(pid) {
			t.Errorf("%s: pid %d alive after Stop", mode, pid)
		}
	}
}

func TestSameSpecKeepsTheProcessOtherSpecRestartsIt(t *testing.T) {
	t.Parallel()
	s := newSupervisor(t)
	sp, pids := spec(t, "steady", "serve")
	must(t, s.Start(sp))
	testutil.Eventually(t, 10*time.Second, func() string {
		if len(startedPIDs(pids)) == 0 {
			return "not started"
		}
		return ""
	})
	must(t, s.Start(sp))
	time.Sleep(100 * time.Millisecond)
	if n := len(startedPIDs(pids)); n != 1 {
		t.Fatalf("the same spec started %d processes", n)
	}
	first := startedPIDs(pids)[0]
	sp.Args = []string{"--changed"}
	must(t, s.Start(sp))
	testutil.Eventually(t, 10*time.Second, func() string {
		if len(startedPIDs(pids)) < 2 {
			return "not restarted with the new spec"
		}
		return ""
	})
	if alive(first) {
		t.Error("the process of the old spec is still running")
	}
}

// Without a cgroup memory controller (this test passes no limiter) the cap
// is enforced by sampling: a daemon over it is killed and restarted.
func TestMemoryCapKillsAndRestarts(t *testing.T) {
	t.Parallel()
	s := newSupervisor(t)
	sp, pids := spec(t, "hog", "hog")
	sp.MemoryMax = 32 << 20
	must(t, s.Start(sp))
	testutil.Eventually(t, 20*time.Second, func() string {
		if len(startedPIDs(pids)) < 2 {
			return "not killed and restarted yet"
		}
		return ""
	})
	st, _ := s.Status("hog")
	if !strings.Contains(st.LastExit, "over the cap") || !strings.Contains(st.Limits, "memory sampled") {
		t.Errorf("status of a capped daemon: %+v", st)
	}
}

func TestCloseStopsEverythingAndRefusesNewDaemons(t *testing.T) {
	t.Parallel()
	s := newSupervisor(t)
	a, pa := spec(t, "a", "serve")
	b, pb := spec(t, "b", "serve")
	must(t, s.Start(a))
	must(t, s.Start(b))
	testutil.Eventually(t, 10*time.Second, func() string {
		if len(startedPIDs(pa)) == 0 || len(startedPIDs(pb)) == 0 {
			return "not started"
		}
		return ""
	})
	s.Close()
	for _, p := range append(startedPIDs(pa), startedPIDs(pb)...) {
		if alive(p) {
			t.Errorf("pid %d alive after Close", p)
		}
	}
	if err := s.Start(a); err != ErrClosed {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
