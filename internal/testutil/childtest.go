package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

const childEnv = "CORRAL_TEST_CHILD"

// InChild re-runs the current test in a child process of the test binary
// started with attr (a private mount namespace with Unshareflags
// CLONE_NEWNS, another user with Credential, ...) and reports whether the
// caller is that child. In the parent it waits for the child (killed with
// the parent), logs its output, fails if the child failed and skips if the
// child skipped; the caller then returns:
//
//	if !testutil.InChild(t, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}) {
//		return
//	}
//	// here in the child: mount a tmpfs, drop privileges...
//
// Tests that use it must not call t.Parallel before it.
//
// In a benchmark the child runs that benchmark once (-test.benchtime=1x).
func InChild(t testing.TB, attr *syscall.SysProcAttr) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	var parts []string
	for _, p := range strings.Split(t.Name(), "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(p)+"$")
	}
	bin := os.Args[0]
	if attr != nil && attr.Credential != nil {
		// Another user cannot execute the binary in go test's private
		// build directory: give the child a copy it can run.
		bin = execCopy(t, bin)
	}
	args := []string{"-test.run=" + strings.Join(parts, "/"), "-test.v", "-test.count=1", "-test.timeout=" + (10 * time.Minute).String()}
	_, bench := t.(*testing.B)
	if bench {
		args = []string{"-test.run=^$", "-test.bench=" + strings.Join(parts, "/"), "-test.benchtime=1x", "-test.v", "-test.benchmem"}
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	cmd.Dir = os.TempDir()
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	attr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr = attr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if bench {
		os.Stdout.Write(out.Bytes()) // benchmark logs are truncated: print figures whole
	} else {
		t.Logf("child process:\n%s", out.String())
	}
	switch {
	case err != nil:
		t.Fatalf("the test failed in its child process: %v", err)
	case strings.Contains(out.String(), "--- SKIP: "+t.Name()):
		t.Skip("skipped in the child process")
	case !bench && !strings.Contains(out.String(), "--- PASS: "+t.Name()):
		t.Fatalf("the child process did not run %s", t.Name())
	}
	return false
}

func execCopy(t testing.TB, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "corral-child-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(bin))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
