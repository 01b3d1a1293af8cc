package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// NpmPackage returns the directory where the npm package pkg at the pinned
// version is installed (pkg lives in its node_modules), for tests that
// drive a Node.js tool such as Redocly CLI. It is installed once per
// machine under CORRAL_TEST_CACHE (default /var/tmp/corral-test-cache),
// never in the repository, guarded by a lock file so parallel test
// binaries install it once. Without node or npm, or when npm cannot install
// it (no registry), the test is skipped, or fails when CORRAL_TEST_STRICT=1.
func NpmPackage(t testing.TB, pkg, version string) string {
	t.Helper()
	NeedTool(t, "node")
	NeedTool(t, "npm")
	cache := os.Getenv("CORRAL_TEST_CACHE")
	if cache == "" {
		cache = "/var/tmp/corral-test-cache"
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatalf("test cache: %v", err)
	}
	dir := filepath.Join(cache, "npm-"+strings.NewReplacer("/", "-", "@", "").Replace(pkg)+"-"+version)
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("lock %s: %v", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	building := dir + ".building"
	os.RemoveAll(dir)
	os.RemoveAll(building)
	if err := os.MkdirAll(building, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("npm", "install", "--prefix", building, "--no-audit", "--no-fund", "--no-save",
		"--loglevel=error", pkg+"@"+version)
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(building)
		msg := string(out)
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		if os.Getenv("CORRAL_TEST_STRICT") == "1" {
			t.Fatalf("npm install %s@%s: %v\n%s", pkg, version, err, msg)
		}
		t.Skipf("npm could not install %s@%s (no registry?): %v\n%s", pkg, version, err, msg)
	}
	if err := os.WriteFile(filepath.Join(building, ".complete"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(building, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}
