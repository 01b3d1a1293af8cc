package testutil

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Podman is podman run as root with everything it keeps in a test's temp
// dir: image and container storage (vfs driver), run state, crun's state,
// volumes, events, temporary files. The host's container storage and
// configuration are never read or written.
type Podman struct {
	Dir    string   // the test's podman directory
	env    []string // CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, TMPDIR
	global []string // global flags of every podman command
}

// NewPodman prepares an isolated podman. It must run in a private mount
// namespace (a child started by InChild with CLONE_NEWNS), because podman
// as root also writes to fixed host paths whatever --root says — its blob
// cache in /var/lib/containers/cache, its lock segment /dev/shm/libpod_lock,
// image copies in /var/tmp — so it mounts empty tmpfs over /var/lib,
// /var/tmp and /dev/shm there. On a hybrid cgroup host it also hides the
// cgroup v2 mount (crun refuses hybrid hierarchies): containers run with
// cgroups disabled and create no cgroup on the host.
//
// Containers get this process's hard open-files limit (at most 65536) and
// 4096 processes: podman's defaults would raise the limits, which needs
// CAP_SYS_RESOURCE. Everything is removed when the test ends.
func NewPodman(t testing.TB) *Podman {
	t.Helper()
	NeedTool(t, "podman")
	crun := NeedTool(t, "crun")
	self, _ := os.Readlink("/proc/self/ns/mnt")
	if host, _ := os.Readlink("/proc/1/ns/mnt"); self == host {
		t.Fatal("NewPodman must run in a private mount namespace (testutil.InChild with CLONE_NEWNS)")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
	for _, dir := range []string{"/var/lib", "/var/tmp", "/dev/shm"} {
		if tmp := os.TempDir(); tmp == dir || strings.HasPrefix(tmp, dir+"/") {
			t.Fatalf("the temporary directory %s is under %s, which NewPodman hides: set TMPDIR elsewhere", tmp, dir)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=1777"); err != nil {
			t.Fatalf("mount a private tmpfs on %s: %v", dir, err)
		}
	}
	if hybridCgroupV2() {
		if err := unix.Unmount("/sys/fs/cgroup/unified", unix.MNT_DETACH); err != nil {
			t.Fatalf("hide the cgroup v2 mount of this hybrid host: %v", err)
		}
	}

	dir := t.TempDir()
	p := &Podman{Dir: dir}
	for _, d := range []string{"tmp", "vartmp", "crun", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// crun keeps container state in /run/crun unless told --root; podman's
	// --runtime-flag does not reach the cleanup it runs when a container
	// exits, so the runtime named "crun" is this wrapper.
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --root %s \"$@\"\n", crun, filepath.Join(dir, "crun"))
	if err := os.WriteFile(filepath.Join(dir, "bin", "crun"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	nofile := min(lim.Max, 65536)
	conf := fmt.Sprintf(`[containers]
cgroups = "disabled"
default_ulimits = ["nofile=%d:%d", "nproc=4096:4096"]

[engine]
events_logger = "file"
runtime = "crun"
tmp_dir = %q
image_copy_tmp_dir = %q
volume_path = %q

[engine.runtimes]
crun = [%q]
`, nofile, nofile, filepath.Join(dir, "tmp"), filepath.Join(dir, "vartmp"), filepath.Join(dir, "root", "volumes"), filepath.Join(dir, "bin", "crun"))
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", filepath.Join(dir, "run"), filepath.Join(dir, "root"))
	for name, content := range map[string]string{"containers.conf": conf, "storage.conf": storage} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.env = []string{"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"), "CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"TMPDIR=" + filepath.Join(dir, "vartmp")}
	p.global = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--storage-driver", "vfs", "--runtime", "crun", "--events-backend", "file"}
	t.Cleanup(func() {
		for _, args := range [][]string{{"rm", "--all", "--force", "--time", "5"}, {"volume", "rm", "--all", "--force"}, {"rmi", "--all", "--force"}} {
			if out, err := p.Run(args...); err != nil {
				t.Errorf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})
	return p
}

// hybridCgroupV2 reports whether cgroup v1 hierarchies are mounted with a
// cgroup v2 one at /sys/fs/cgroup/unified.
func hybridCgroupV2() bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != "/sys/fs/cgroup/unified" {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return true
			}
		}
	}
	return false
}

// Command is a podman command with the isolated storage (for Start).
func (p *Podman) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "podman", append(append([]string{}, p.global...), args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	return cmd
}

// Run runs a podman command (two minutes at most) and returns its standard
// output, with standard error after it when the command fails.
func (p *Podman) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := p.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// Must runs a podman command and fails the test if it fails.
func (p *Podman) Must(t testing.TB, args ...string) string {
	t.Helper()
	out, err := p.Run(args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// SkipUnlessStrict skips the test with reason, or fails it when
// CORRAL_TEST_STRICT=1 (for a tool that is installed but cannot work here).
func SkipUnlessStrict(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CORRAL_TEST_STRICT") == "1" {
		t.Fatalf("%s, and CORRAL_TEST_STRICT=1", reason)
	}
	t.Skip(reason)
}
