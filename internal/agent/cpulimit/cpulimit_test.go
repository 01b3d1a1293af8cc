package cpulimit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSelfCgroupAndCPUMax(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "cgroup")
	os.WriteFile(p, []byte("12:cpu:/x\n0::/system.slice/corral-agent.service\n"), 0o644)
	if got, err := selfCgroup(p); err != nil || got != "/system.slice/corral-agent.service" {
		t.Errorf("selfCgroup = %q, %v", got, err)
	}
	os.WriteFile(p, []byte("12:cpu:/x\n"), 0o644)
	if _, err := selfCgroup(p); err == nil {
		t.Error("a v1-only process was placed in cgroup v2")
	}
	if err := WriteCPUMax(dir, 5); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cpu.max")); string(b) != "5000 100000" {
		t.Errorf("cpu.max = %q", b)
	}
}

func TestDetectExplainsWhyNot(t *testing.T) {
	t.Parallel()
	if l, why := Detect(t.TempDir()); l != nil || !strings.Contains(why, "not mounted") {
		t.Errorf("Detect on a plain directory = %v, %q", l, why)
	}
}

// TestHandlerRunsUnderTheLimit needs a cgroup v2 with the cpu controller
// delegated to this process (a systemd unit with Delegate=yes, or a
// container with a private cgroup namespace). It is a kernel feature, not a
// tool a test can install, so it skips with the reason where absent.
func TestHandlerRunsUnderTheLimit(t *testing.T) {
	l, why := Detect("/sys/fs/cgroup")
	if l == nil {
		t.Skip("CPU limits cannot be enforced here: " + why)
	}
	g, err := l.New("test", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	cmd := exec.Command("/bin/sh", "-c", "while :; do :; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	g.Apply(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	cmd.Process.Kill()
	cmd.Wait()
	b, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		t.Fatal(err)
	}
	var usec int64
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
			usec = parseInt(v)
		}
	}
	// 10% of one CPU for 2 s is 200 ms; allow scheduling slack.
	if usec > 400_000 {
		t.Errorf("the busy loop used %d µs of CPU in 2 s under a 10%% limit", usec)
	}
	// A group its handler left a process in stays until it is empty, then
	// the next handler's New removes it.
	left, err := l.New("left", 10)
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command("sleep", "60")
	daemon.SysProcAttr = &syscall.SysProcAttr{}
	left.Apply(daemon.SysProcAttr)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	if err := left.Close(); err == nil {
		t.Error("a group with a process in it was removed")
	}
	daemon.Process.Kill()
	daemon.Wait()
	next, err := l.New("next", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if _, err := os.Stat(left.dir); !os.IsNotExist(err) {
		t.Errorf("the emptied group %s was not cleaned up: %v", left.dir, err)
	}
}

func parseInt(s string) int64 {
	var n int64
	for _, c := range strings.TrimSpace(s) {
		n = n*10 + int64(c-'0')
	}
	return n
}
