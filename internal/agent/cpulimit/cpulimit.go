// Package cpulimit runs extension handlers under a CPU quota with cgroup v2,
// where the agent's own cgroup is writable (under systemd: Delegate=yes in
// the unit). It keeps the agent in a leaf "agent" cgroup and gives each
// handler a sibling cgroup with cpu.max set to the configured percentage
// of one CPU; the handler is started directly inside it (clone3 with a
// cgroup fd), so not one instruction runs unlimited.
//
// Where cgroup v2 or its cpu controller is missing or not writable, Detect
// says why and the agent reports the limit as not enforced; handlers then
// run without a quota rather than not at all.
package cpulimit

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Limiter creates per-handler cgroups under Base.
type Limiter struct {
	// Base is the agent's own cgroup directory (delegated to it).
	Base string

	once    sync.Once
	initErr error

	mu   sync.Mutex
	live map[string]bool // group directories of handlers still running
}

// Detect finds a usable cgroup v2 delegation for this process under root
// (normally /sys/fs/cgroup). It returns a Limiter, or nil and the reason
// limits cannot be enforced.
func Detect(root string) (*Limiter, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, "cgroup v2 is not mounted at " + root
	}
	rel, err := selfCgroup("/proc/self/cgroup")
	if err != nil {
		return nil, err.Error()
	}
	base := filepath.Join(root, rel)
	ctrl, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil || !hasWord(string(ctrl), "cpu") {
		return nil, "the cpu controller is not available to the agent's cgroup " + base
	}
	if unix.Access(filepath.Join(base, "cgroup.subtree_control"), unix.W_OK) != nil || unix.Access(base, unix.W_OK) != nil {
		return nil, "the agent's cgroup " + base + " is not writable (systemd: Delegate=yes)"
	}
	return &Limiter{Base: base}, ""
}

func hasWord(s, w string) bool {
	for f := range strings.FieldsSeq(s) {
		if f == w {
			return true
		}
	}
	return false
}

// selfCgroup is the unified-hierarchy path of this process.
func selfCgroup(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return rest, nil
		}
	}
	return "", errors.New("this process is not in a cgroup v2 hierarchy")
}

// init moves the agent's processes into Base/agent (a cgroup with
// processes cannot delegate controllers) and enables cpu for children.
func (l *Limiter) init() error {
	l.once.Do(func() {
		leaf := filepath.Join(l.Base, "agent")
		if err := os.MkdirAll(leaf, 0o755); err != nil {
			l.initErr = err
			return
		}
		procs, err := os.ReadFile(filepath.Join(l.Base, "cgroup.procs"))
		if err != nil {
			l.initErr = err
			return
		}
		for p := range strings.FieldsSeq(string(procs)) {
			// A process may exit meanwhile; that is fine.
			_ = os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(p), 0o644)
		}
		l.initErr = os.WriteFile(filepath.Join(l.Base, "cgroup.subtree_control"), []byte("+cpu"), 0o644)
		// The memory controller caps supervised daemons where it is
		// delegated too; without it MemoryMax reports why.
		if ctrl, err := os.ReadFile(filepath.Join(l.Base, "cgroup.controllers")); err == nil && hasWord(string(ctrl), "memory") {
			_ = os.WriteFile(filepath.Join(l.Base, "cgroup.subtree_control"), []byte("+memory"), 0o644)
		}
	})
	return l.initErr
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// removeStale removes the groups of finished handlers that could not be
// removed when they ended, because something the handler started (a
// daemon an enable handler launched) was still inside. rmdir fails on a
// group with processes, so only empty ones go. Caller holds l.mu.
func (l *Limiter) removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(l.Base, "ext-*"))
	for _, d := range dirs {
		if !l.live[d] {
			_ = unix.Rmdir(d)
		}
	}
}

// Group is a handler's cgroup.
type Group struct {
	dir string
	fd  int
	l   *Limiter
}

// New creates a cgroup for one handler run limited to percent of one CPU.
func (l *Limiter) New(name string, percent int) (*Group, error) {
	if err := l.init(); err != nil {
		return nil, fmt.Errorf("prepare cgroups: %w", err)
	}
	percent = min(max(percent, 1), 100*64)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeStale()
	dir, err := os.MkdirTemp(l.Base, "ext-"+unsafeChars.ReplaceAllString(name, "_")+"-")
	if err != nil {
		return nil, err
	}
	if l.live == nil {
		l.live = map[string]bool{}
	}
	l.live[dir] = true
	g := &Group{dir: dir, fd: -1, l: l}
	if err := WriteCPUMax(dir, percent); err != nil {
		g.Close()
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		g.Close()
		return nil, err
	}
	g.fd = fd
	return g, nil
}

// WriteCPUMax sets dir's cpu.max to percent of one CPU per 100 ms period.
func WriteCPUMax(dir string, percent int) error {
	return os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d 100000", percent*1000), 0o644)
}

// SetMemoryMax caps the group's memory (memory.max): the kernel reclaims and
// then kills inside the group when it is exceeded. It fails where the
// memory controller is not delegated to the agent.
func (g *Group) SetMemoryMax(bytes int64) error {
	if err := os.WriteFile(filepath.Join(g.dir, "memory.max"), fmt.Appendf(nil, "%d", bytes), 0o644); err != nil {
		return fmt.Errorf("set memory.max: %w", err)
	}
	return nil
}

// Apply makes a command start inside the group.
func (g *Group) Apply(attr *syscall.SysProcAttr) {
	attr.UseCgroupFD = true
	attr.CgroupFD = g.fd
}

// Close removes the group once the handler exited; a group still holding
// processes the handler left running is removed by a later New.
func (g *Group) Close() error {
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
	if g.l != nil {
		g.l.mu.Lock()
		delete(g.l.live, g.dir)
		g.l.mu.Unlock()
	}
	return unix.Rmdir(g.dir)
}
