package realtime_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/quarantine"
	"github.com/corralhq/corral/internal/scan/realtime"
	"github.com/corralhq/corral/internal/testutil"
)

// sandbox re-runs the test in a private mount namespace with a tmpfs
// mounted on a temp dir, so that fanotify marks only that tmpfs: no host
// process can ever wait on this test's permission events, and if the test
// dies the kernel drops its marks with its descriptor. It returns "" in the
// parent, which then returns.
func sandbox(t testing.TB) string {
	t.Helper()
	testutil.NeedRoot(t)
	if !testutil.InChild(t, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}) {
		return ""
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1g,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs in the private namespace: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	os.Mkdir(filepath.Join(dir, "watched"), 0o755)
	return dir
}

// detections collects OnDetection calls.
type detections struct {
	mu   sync.Mutex
	list []realtime.Detection
}

func (d *detections) add(x realtime.Detection) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, x)
}

func (d *detections) get() []realtime.Detection {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]realtime.Detection{}, d.list...)
}

const marker = "corral-realtime-test-marker"

// start runs a watcher on dir/watched until the test ends.
func start(t testing.TB, dir string, cfg realtime.Config) (*realtime.Watcher, *detections, *quarantine.Quarantine) {
	t.Helper()
	b := scan.NewBuilder(false)
	// A body signature at the end of files, for scans that take a while.
	sig := "Test.Marker:0:*:" + hex.EncodeToString([]byte(marker)) + "\n"
	if err := b.Add("test.ndb", scan.FormatNDB, strings.NewReader(sig)); err != nil {
		t.Fatal(err)
	}
	q, err := quarantine.Open(filepath.Join(dir, "quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	d := &detections{}
	cfg.Paths = []string{filepath.Join(dir, "watched")}
	cfg.Engine = scan.New(b.Build(), scan.Options{})
	cfg.Quarantine = q
	also := cfg.OnDetection
	cfg.OnDetection = func(x realtime.Detection) {
		d.add(x)
		if also != nil {
			also(x)
		}
	}
	w, err := realtime.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
	testutil.Eventually(t, 5*time.Second, func() string {
		if w.Stats().Mode == "" {
			return "watcher not started"
		}
		return ""
	})
	return w, d, q
}

func gone(path string) func() string {
	return func() string {
		if _, err := os.Lstat(path); err == nil {
			return path + " is still there"
		}
		return ""
	}
}

func TestEICARWrittenIsQuarantined(t *testing.T) {
	for _, mode := range []string{realtime.ModeFanotify, realtime.ModeInotify} {
		t.Run(mode, func(t *testing.T) {
			dir := sandbox(t)
			if dir == "" {
				return
			}
			w, d, q := start(t, dir, realtime.Config{Action: realtime.ActionQuarantine, Mode: mode})
			watched := filepath.Join(dir, "watched")
			os.MkdirAll(filepath.Join(watched, "sub", "deeper"), 0o755)
			time.Sleep(50 * time.Millisecond) // inotify adds the new directories' watches
			eicar := filepath.Join(watched, "sub", "deeper", "eicar.com")
			clean := filepath.Join(watched, "clean.txt")
			os.WriteFile(clean, []byte("clean"), 0o644)
			os.WriteFile(eicar, scan.EICAR(), 0o644)
			// Another process writes one too.
			src := filepath.Join(dir, "src.com")
			os.WriteFile(src, scan.EICAR(), 0o644)
			copied := filepath.Join(watched, "copied.com")
			if out, err := exec.Command("cp", src, copied).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			testutil.Eventually(t, 5*time.Second, gone(eicar))
			testutil.Eventually(t, 5*time.Second, gone(copied))
			if _, err := os.Stat(clean); err != nil {
				t.Errorf("clean file: %v", err)
			}
			recs, err := q.List()
			if err != nil || len(recs) != 2 {
				t.Fatalf("quarantine %+v %v", recs, err)
			}
			for _, det := range d.get() {
				if det.Action != "quarantined" || det.Signature != scan.EICARName || det.QuarantineID == "" || det.Event != "close-write" {
					t.Errorf("detection %+v", det)
				}
			}
			st := w.Stats()
			if st.Mode != mode || st.Detections != 2 || st.Scanned < 3 {
				t.Errorf("stats %+v", st)
			}
			if mode == realtime.ModeInotify && (st.ModeReason == "" || st.Blocking) {
				t.Errorf("inotify stats %+v", st)
			}
		})
	}
}

func TestBlockingDeniesOpenAndExec(t *testing.T) {
	dir := sandbox(t)
	if dir == "" {
		return
	}
	watched := filepath.Join(dir, "watched")
	pre := filepath.Join(watched, "pre.com")
	os.WriteFile(pre, scan.EICAR(), 0o644)
	clean := filepath.Join(watched, "clean.txt")
	os.WriteFile(clean, []byte("clean"), 0o644)
	script := filepath.Join(watched, "run.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n# "+marker+"\necho ran\n"), 0o755)
	cat, _ := exec.LookPath("cat")
	cat, _ = filepath.EvalSymlinks(cat)
	w, d, _ := start(t, dir, realtime.Config{Block: true, Action: realtime.ActionReport})
	out, err := exec.Command(cat, pre).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Errorf("cat of a detected file: %v %s, want it denied", err, out)
	}
	if _, err := exec.Command(cat, pre).CombinedOutput(); err == nil {
		t.Error("second cat allowed")
	}
	// The script is executed by a shell, not by this process: Go starts a
	// program with vfork, and a vforking thread the kernel holds on the
	// watcher's permission event can stop this process's garbage collector
	// — and so the watcher's own goroutines — forever. A watcher must never
	// run in the process that executes watched files (the agent runs it as
	// its own daemon).
	if out, err := exec.Command("/bin/sh", "-c", `exec "$0"`, script).CombinedOutput(); err == nil || !strings.Contains(string(out), "Operation not permitted") && !strings.Contains(string(out), "Permission denied") {
		t.Errorf("exec of a detected script: %v %s, want it denied", err, out)
	}
	for range 3 {
		if out, err := exec.Command(cat, clean).CombinedOutput(); err != nil || string(out) != "clean" {
			t.Errorf("cat of a clean file: %v %s", err, out)
		}
	}
	st := w.Stats()
	if st.Denied < 3 || st.CacheHits < 3 || !st.Blocking {
		t.Errorf("stats %+v: want >= 3 denials and the clean file's repeat opens from the cache", st)
	}
	// One alert per file, not per attempt; the file is still there (report).
	if dets := d.get(); len(dets) != 2 || dets[0].Action != "denied" || dets[0].Process == "" {
		t.Errorf("detections %+v", dets)
	}
	if _, err := os.Stat(pre); err != nil {
		t.Errorf("reported file: %v", err)
	}
	// This process's own opens are never held (the quarantine must not wait on itself).
	if _, err := os.ReadFile(pre); err != nil {
		t.Errorf("own open: %v", err)
	}
}

func TestExclusions(t *testing.T) {
	dir := sandbox(t)
	if dir == "" {
		return
	}
	watched := filepath.Join(dir, "watched")
	os.MkdirAll(filepath.Join(watched, "build"), 0o755)
	cat, _ := exec.LookPath("cat")
	cat, _ = filepath.EvalSymlinks(cat)
	detected := filepath.Join(watched, "before.com") // there before the watcher: not scanned until opened
	os.WriteFile(detected, scan.EICAR(), 0o644)
	w, d, _ := start(t, dir, realtime.Config{Block: true, Action: realtime.ActionDelete, Exclusions: realtime.Exclusions{
		Paths: []string{filepath.Join(watched, "build")}, Extensions: []string{"TXT"}, Processes: []string{cat}}})
	kept := []string{filepath.Join(watched, "build", "e.com"), filepath.Join(watched, "notes.txt")}
	for _, p := range kept {
		os.WriteFile(p, scan.EICAR(), 0o644)
	}
	victim := filepath.Join(watched, "e.com")
	os.WriteFile(victim, scan.EICAR(), 0o644)
	testutil.Eventually(t, 5*time.Second, gone(victim))
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("excluded %s: %v", p, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "outside.com"), scan.EICAR(), 0o644) // same mount, not watched
	// An excluded process may open a detected file.
	if out, err := exec.Command(cat, detected).CombinedOutput(); err != nil {
		t.Errorf("excluded process: %v %s", err, out)
	}
	if out, err := exec.Command("head", "-c1", detected).CombinedOutput(); err == nil {
		t.Errorf("head (not excluded) was allowed: %s", out)
	}
	testutil.Eventually(t, 5*time.Second, gone(detected)) // denied on open, then deleted
	if _, err := os.Stat(filepath.Join(dir, "outside.com")); err != nil {
		t.Errorf("file outside the watched path: %v", err)
	}
	if n := len(d.get()); n != 2 || w.Stats().Detections != 2 {
		t.Errorf("%d detections, want 2: %+v", n, d.get())
	}
}

func TestDecisionTimeoutFailsOpen(t *testing.T) {
	dir := sandbox(t)
	if dir == "" {
		return
	}
	// 128 MiB with the marker at the end: its scan takes far longer than 1 ms.
	big := filepath.Join(dir, "watched", "big.bin")
	data := make([]byte, 128<<20)
	rand.Read(data)
	copy(data[len(data)-len(marker):], marker)
	os.WriteFile(big, data, 0o644)
	w, _, _ := start(t, dir, realtime.Config{Block: true, Action: realtime.ActionReport, DecisionTimeout: time.Millisecond})
	if out, err := exec.Command("head", "-c", "4", big).CombinedOutput(); err != nil {
		t.Fatalf("first open past the deadline must be allowed: %v %s", err, out)
	}
	if w.Stats().Timeouts < 1 {
		t.Errorf("stats %+v: want a timeout", w.Stats())
	}
	// The scan went on and its verdict is cached: now it is denied at once.
	testutil.Eventually(t, 10*time.Second, func() string {
		if err := exec.Command("head", "-c", "4", big).Run(); err == nil {
			return "still allowed"
		}
		return ""
	})
}

// TestConfigIsChecked needs no privileges.
func TestConfigIsChecked(t *testing.T) {
	t.Parallel()
	db, _ := scan.LoadFiles(false)
	e := scan.New(db, scan.Options{})
	for _, c := range []realtime.Config{
		{Paths: []string{"/x"}},
		{Engine: e},
		{Engine: e, Paths: []string{"/x"}, Action: "shred"},
		{Engine: e, Paths: []string{"/x"}, Action: realtime.ActionQuarantine},
		{Engine: e, Paths: []string{"/x"}, Mode: "polling"},
	} {
		if _, err := realtime.New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
