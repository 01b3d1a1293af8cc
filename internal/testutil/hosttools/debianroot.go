package hosttools

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// DebianMirror is the archive debootstrap installs from; CORRAL_TEST_DEBIAN_MIRROR overrides it.
const DebianMirror = "http://deb.debian.org/debian"

// NeedRoot skips a test that needs root powers (namespaces, chroot, nft), or
// fails it when CORRAL_TEST_STRICT=1. Such tests use those powers only inside
// their own namespaces and temp dirs, never on the host's own state.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CORRAL_TEST_STRICT") == "1" {
		t.Fatal("this test needs root (namespaces, chroot or nft in its own sandbox) and CORRAL_TEST_STRICT=1")
	}
	t.Skip("this test needs root (namespaces, chroot or nft in its own sandbox)")
}

// DebianRoot returns a private copy of a minimal Debian 12 (bookworm) tree,
// made by `debootstrap --variant=minbase` with the extra packages in
// include, for tests that need a real OS tree: a chrooted sshd, OpenSCAP,
// apt and dpkg working on a tree. The test may change its copy freely.
//
// The pristine tree is built once per machine and per package set under
// CORRAL_TEST_CACHE (default /var/tmp/corral-test-cache), guarded by a lock
// file so parallel test binaries build it once; each call copies it into
// t.TempDir() (about a second for the 200 MB of a minbase tree). Needs root,
// debootstrap and the Debian mirror; without them the test skips (fails in
// strict mode).
func DebianRoot(t testing.TB, include ...string) string {
	t.Helper()
	NeedRoot(t)
	NeedTool(t, "debootstrap")
	include = slices.Clone(include)
	slices.Sort(include)
	include = slices.Compact(include)
	sum := sha256.Sum256([]byte("bookworm minbase " + strings.Join(include, ",")))
	cache := os.Getenv("CORRAL_TEST_CACHE")
	if cache == "" {
		cache = "/var/tmp/corral-test-cache"
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatalf("test cache: %v", err)
	}
	pristine := filepath.Join(cache, "debian-bookworm-"+hex.EncodeToString(sum[:6]))

	lock, err := os.OpenFile(pristine+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("lock %s: %v", pristine, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", pristine, err)
	}
	if _, err := os.Stat(filepath.Join(pristine, ".complete")); err != nil {
		os.RemoveAll(pristine)
		building := pristine + ".building"
		os.RemoveAll(building)
		mirror := os.Getenv("CORRAL_TEST_DEBIAN_MIRROR")
		if mirror == "" {
			mirror = DebianMirror
		}
		args := []string{"--variant=minbase"}
		if len(include) > 0 {
			args = append(args, "--include="+strings.Join(include, ","))
		}
		args = append(args, "bookworm", building, mirror)
		out, err := exec.Command("debootstrap", args...).CombinedOutput()
		if err != nil {
			os.RemoveAll(building)
			msg := string(out)
			if len(msg) > 2000 {
				msg = msg[len(msg)-2000:]
			}
			t.Fatalf("debootstrap %v: %v\n%s", args, err, msg)
		}
		// Package caches are not needed by any test and double the copy.
		os.RemoveAll(filepath.Join(building, "var/cache/apt/archives"))
		os.MkdirAll(filepath.Join(building, "var/cache/apt/archives/partial"), 0o755)
		if err := os.WriteFile(filepath.Join(building, ".complete"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(building, pristine); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", "--reflink=auto", pristine, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy the Debian tree: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(dst, ".complete"))
	return dst
}
