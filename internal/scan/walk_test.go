package scan_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/testutil"
)

type walkResult struct {
	infected, errors, skipped []string
	sum                       scan.Summary
}

func walk(t *testing.T, e *scan.Engine, roots ...string) walkResult {
	t.Helper()
	var w walkResult
	var mu sync.Mutex
	sum, err := e.Scan(context.Background(), roots, func(r scan.FileResult) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Infected():
			w.infected = append(w.infected, r.Path)
		case r.Error != "":
			w.errors = append(w.errors, r.Path+": "+r.Error)
		case r.Skipped != "":
			w.skipped = append(w.skipped, r.Path+": "+r.Skipped)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(w.infected)
	slices.Sort(w.errors)
	slices.Sort(w.skipped)
	w.sum = sum
	return w
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWalkSpecialFilesAndSymlinks(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	tree, outside := filepath.Join(base, "tree"), filepath.Join(base, "outside")
	write(t, filepath.Join(tree, "a", "eicar.com"), scan.EICAR())
	write(t, filepath.Join(tree, "a", "clean.txt"), []byte("clean"))
	write(t, filepath.Join(tree, "b", "c", "deep.com"), scan.EICAR())
	write(t, filepath.Join(outside, "out.com"), scan.EICAR())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(filepath.Join(outside, "out.com"), filepath.Join(tree, "link-out-file")))
	must(os.Symlink(outside, filepath.Join(tree, "link-out-dir")))
	must(os.Symlink(filepath.Join(tree, "a", "eicar.com"), filepath.Join(tree, "link-in")))
	must(os.Symlink("/nonexistent/target", filepath.Join(tree, "dangling")))
	must(unix.Mkfifo(filepath.Join(tree, "fifo"), 0o644))
	l, err := net.Listen("unix", filepath.Join(tree, "sock"))
	must(err)
	defer l.Close()
	e := builtin(t, scan.Options{})
	got := walk(t, e, tree)
	want := []string{filepath.Join(tree, "a", "eicar.com"), filepath.Join(tree, "b", "c", "deep.com")}
	if diff := cmp.Diff(want, got.infected); diff != "" {
		t.Errorf("infected (-want +got):\n%s", diff)
	}
	if len(got.errors) != 0 {
		t.Errorf("errors: %q", got.errors)
	}
	wantSkipped := []string{"dangling", "fifo", "link-out-dir", "link-out-file", "sock"}
	var skipped []string
	for _, s := range got.skipped {
		skipped = append(skipped, strings.TrimPrefix(strings.SplitN(s, ":", 2)[0], tree+"/"))
	}
	if os.Geteuid() == 0 {
		must(unix.Mknod(filepath.Join(tree, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		got = walk(t, e, tree)
		wantSkipped = []string{"dangling", "fifo", "link-out-dir", "link-out-file", "null", "sock"}
		skipped = nil
		for _, s := range got.skipped {
			skipped = append(skipped, strings.TrimPrefix(strings.SplitN(s, ":", 2)[0], tree+"/"))
		}
	}
	// The dangling link resolves nowhere: it is silently not followed.
	wantSkipped = slices.DeleteFunc(wantSkipped, func(s string) bool { return s == "dangling" })
	if diff := cmp.Diff(wantSkipped, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s\n%q", diff, got.skipped)
	}
	for _, s := range got.skipped {
		if strings.Contains(s, "link-out") && !strings.Contains(s, "outside the scanned tree: not followed") {
			t.Errorf("skip reason %q", s)
		}
	}
	// A root given as a symbolic link is followed, like clamscan does.
	if got := walk(t, e, filepath.Join(tree, "link-out-file")); len(got.infected) != 1 {
		t.Errorf("symlink root: %+v", got)
	}
	// A missing root is an error and the other roots are still scanned.
	got = walk(t, e, filepath.Join(base, "missing"), tree)
	if len(got.errors) != 1 || len(got.infected) != 2 {
		t.Errorf("missing root: %+v", got)
	}
}

// TestWalkUnreadableFiles runs as an unprivileged user (root reads
// everything): unreadable files and directories are errors, the scan goes on.
func TestWalkUnreadableFiles(t *testing.T) {
	dir := os.Getenv("SCAN_TEST_TREE")
	if dir == "" {
		testutil.NeedRoot(t)
		dir = t.TempDir()
		for d := dir; d != "/"; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
				if err := os.Chmod(d, fi.Mode().Perm()|0o005); err != nil {
					t.Fatal(err)
				}
			}
		}
		write(t, filepath.Join(dir, "readable.com"), scan.EICAR())
		write(t, filepath.Join(dir, "secret.com"), scan.EICAR())
		write(t, filepath.Join(dir, "locked", "inside.com"), scan.EICAR())
		os.Chmod(filepath.Join(dir, "secret.com"), 0o600)
		os.Chmod(filepath.Join(dir, "locked"), 0o700)
		t.Setenv("SCAN_TEST_TREE", dir)
	}
	if !testutil.InChild(t, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}) {
		return
	}
	got := walk(t, builtin(t, scan.Options{}), dir)
	if diff := cmp.Diff([]string{filepath.Join(dir, "readable.com")}, got.infected); diff != "" {
		t.Errorf("infected (-want +got):\n%s", diff)
	}
	if len(got.errors) != 2 || !strings.Contains(got.errors[0], "locked: open") || !strings.Contains(got.errors[1], "secret.com: open") ||
		!strings.Contains(got.errors[1], "permission denied") {
		t.Errorf("errors %q, want the locked directory and the secret file", got.errors)
	}
}
