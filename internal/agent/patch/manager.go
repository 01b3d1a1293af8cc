package patch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// ErrUnsupportedOS is returned for a root whose os-release names no
// distribution family this package drives.
var ErrUnsupportedOS = errors.New("unsupported operating system")

// Options tunes a Manager; the zero value is usable.
type Options struct {
	// Kind forces a package manager; empty chooses from os-release.
	Kind Kind
	// CommandTimeout bounds each package-manager command (default 30 min).
	CommandTimeout time.Duration
	// OutputCap bounds the manager output kept in a message (default 16 KiB).
	OutputCap int
	Logger    *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager drives the package manager of one root. Its methods must not be
// called concurrently.
type Manager struct {
	root string
	opts Options
	os   osRelease
	drv  driver
}

// driver is one package manager's commands. Each method runs the real
// manager through s.
type driver interface {
	kind() Kind
	// setup prepares a session (apt writes its APT_CONFIG there).
	setup(s *session) error
	refresh(ctx context.Context, s *session) (warnings []string, err error)
	// pending lists the updates the manager would install, without refreshing.
	pending(ctx context.Context, s *session) ([]Update, error)
	// installed maps {name, arch} and {name, ""} to the installed version.
	installed(ctx context.Context, s *session) (map[pkgID]string, error)
	// install upgrades one package to u.CandidateVersion, removing nothing.
	install(ctx context.Context, s *session, u Update) (output string, err error)
	// audit reports packages an interrupted run left half-done ("" = none).
	audit(ctx context.Context, s *session) (string, error)
	// repair finishes what an interrupted run left (dpkg --configure -a).
	repair(ctx context.Context, s *session) (string, error)
	// rebootPending says whether the system asks for a reboot.
	rebootPending(ctx context.Context, s *session) bool
}

// session is the state of one operation: the environment of its commands
// and the hook that records their process groups.
type session struct {
	m       *Manager
	tmp     string   // private temp dir, removed by close
	env     []string // added to every command's environment
	started func(pgid int)
}

func (s *session) close() {
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// New returns a Manager for the system under root ("/" for the machine
// itself), chosen from root's os-release unless opts.Kind says otherwise.
// The manager's commands must be on PATH.
func New(root string, opts Options) (*Manager, error) {
	if root == "" {
		root = "/"
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", root, err)
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 30 * time.Minute
	}
	if opts.OutputCap <= 0 {
		opts.OutputCap = 16 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rel, err := readOSRelease(abs)
	if err != nil {
		return nil, err
	}
	kind := opts.Kind
	if kind == "" {
		if kind, err = rel.kind(); err != nil {
			return nil, err
		}
	}
	m := &Manager{root: abs, opts: opts, os: rel}
	var tools []string
	switch kind {
	case Apt:
		m.drv, tools = &aptDriver{root: abs}, []string{"apt-get", "apt-cache", "apt", "dpkg", "dpkg-query"}
	case Dnf:
		m.drv, tools = &dnfDriver{root: abs, releasever: rel.versionID}, []string{"dnf", "rpm"}
	case Zypper:
		m.drv, tools = &zypperDriver{root: abs}, []string{"zypper", "rpm"}
	default:
		return nil, fmt.Errorf("%w: package manager %q", ErrUnsupportedOS, kind)
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return nil, fmt.Errorf("%s needs %s: %w", kind, t, err)
		}
	}
	return m, nil
}

// Kind is the package manager in use.
func (m *Manager) Kind() Kind { return m.drv.kind() }

// Root is the root the manager works on.
func (m *Manager) Root() string { return m.root }

func (m *Manager) newSession() (*session, error) {
	tmp, err := os.MkdirTemp("", "corral-patch-")
	if err != nil {
		return nil, fmt.Errorf("session dir: %w", err)
	}
	s := &session{m: m, tmp: tmp}
	if err := m.drv.setup(s); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// Assess refreshes the package lists and returns the pending updates,
// sorted by classification then name. It installs and holds nothing. A
// refresh the manager reports as failed (a broken repository) is an error
// carrying the manager's message (*ManagerError).
func (m *Manager) Assess(ctx context.Context) (Assessment, error) {
	a := Assessment{Manager: m.Kind(), Started: m.opts.Now()}
	s, err := m.newSession()
	if err != nil {
		return a, err
	}
	defer s.close()
	if a.Warnings, err = m.drv.refresh(ctx, s); err != nil {
		return a, fmt.Errorf("refresh the package lists: %w", err)
	}
	if a.Updates, err = m.pendingSorted(ctx, s); err != nil {
		return a, err
	}
	a.RebootPending = m.drv.rebootPending(ctx, s)
	a.Finished = m.opts.Now()
	return a, nil
}

// AssessCached is Assess without the refresh: the pending updates against
// the package lists as last fetched.
func (m *Manager) AssessCached(ctx context.Context) (Assessment, error) {
	a := Assessment{Manager: m.Kind(), Started: m.opts.Now()}
	s, err := m.newSession()
	if err != nil {
		return a, err
	}
	defer s.close()
	if a.Updates, err = m.pendingSorted(ctx, s); err != nil {
		return a, err
	}
	a.RebootPending = m.drv.rebootPending(ctx, s)
	a.Finished = m.opts.Now()
	return a, nil
}

func (m *Manager) pendingSorted(ctx context.Context, s *session) ([]Update, error) {
	ups, err := m.drv.pending(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("list pending updates: %w", err)
	}
	for i := range ups {
		ups[i].RebootRequired = ups[i].RebootRequired || needsReboot(ups[i].Name)
	}
	sort.SliceStable(ups, func(i, j int) bool {
		if ri, rj := ups[i].Classification.rank(), ups[j].Classification.rank(); ri != rj {
			return ri < rj
		}
		if ups[i].Name != ups[j].Name {
			return ups[i].Name < ups[j].Name
		}
		return ups[i].Arch < ups[j].Arch
	})
	if ups == nil {
		ups = []Update{}
	}
	return ups, nil
}

// rebootPatterns name the packages whose update needs a reboot to take
// effect: kernels, firmware and microcode, the C library, init and the
// system bus (the set Ubuntu's update-notifier and dnf needs-restarting use).
var rebootPatterns = []string{
	"linux-image-*", "linux-signed-image-*", "linux-base", "linux-firmware*", "firmware-*",
	"kernel", "kernel-core", "kernel-default*", "kernel-rt*", "kernel-uek*", "kernel-firmware*",
	"libc6", "glibc", "systemd", "systemd-sysv", "udev", "dbus", "dbus-daemon", "dbus-broker",
	"intel-microcode", "amd64-microcode", "microcode_ctl", "ucode-intel", "ucode-amd",
}

func needsReboot(name string) bool {
	return slices.ContainsFunc(rebootPatterns, func(p string) bool {
		ok, _ := path.Match(p, name)
		return ok
	})
}

// osRelease is what the root's os-release says.
type osRelease struct {
	id, versionID string
	idLike        []string
}

func readOSRelease(root string) (osRelease, error) {
	var r osRelease
	var f *os.File
	var err error
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		if f, err = os.Open(filepath.Join(root, p)); err == nil {
			break
		}
	}
	if err != nil {
		return r, fmt.Errorf("%w: no os-release under %s: %w", ErrUnsupportedOS, root, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			r.id = strings.ToLower(v)
		case "ID_LIKE":
			r.idLike = strings.Fields(strings.ToLower(v))
		case "VERSION_ID":
			r.versionID = v
		}
	}
	return r, sc.Err()
}

// kind chooses the package manager from the distribution family.
func (r osRelease) kind() (Kind, error) {
	for _, id := range append([]string{r.id}, r.idLike...) {
		switch {
		case id == "debian" || id == "ubuntu" || id == "raspbian" || id == "linuxmint":
			return Apt, nil
		case id == "rhel" || id == "fedora" || id == "centos" || id == "rocky" || id == "almalinux" ||
			id == "ol" || id == "amzn" || id == "azurelinux" || id == "mariner":
			return Dnf, nil
		case id == "suse" || id == "sles" || id == "sled" || strings.HasPrefix(id, "opensuse") || id == "sle-micro":
			return Zypper, nil
		}
	}
	return "", fmt.Errorf("%w: os-release ID %q (ID_LIKE %q)", ErrUnsupportedOS, r.id, strings.Join(r.idLike, " "))
}

// DetectKind returns the package manager New would choose for root.
func DetectKind(root string) (Kind, error) {
	r, err := readOSRelease(root)
	if err != nil {
		return "", err
	}
	return r.kind()
}

// isRealRoot says whether root is the machine's own "/".
func isRealRoot(root string) bool { return filepath.Clean(root) == "/" }
