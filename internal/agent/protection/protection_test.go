package protection

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/agent/supervise"
	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/sigset"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// TestMain lets the feature run this test binary as its daemon.
func TestMain(m *testing.M) {
	if os.Getenv("CORRAL_TEST_PROTECTION_DAEMON") == "1" {
		os.Exit(DaemonMain(os.Args[1:]))
	}
	if spec := os.Getenv("CORRAL_TEST_WRITER"); spec != "" {
		writeFiles(spec)
	}
	os.Exit(m.Run())
}

// report is one report the feature made.
type report struct {
	kind string
	body any
	key  string
}

type harness struct {
	t     testing.TB
	state string
	root  string
	f     *Feature
	sup   *supervise.Supervisor
	off   string // HostChangesOff
	cp    feature.ControlPlane

	mu      sync.Mutex
	reports []report
}

// sandbox re-runs the test in a private mount namespace with a tmpfs as
// the agent's host root, so that fanotify marks only that tmpfs. It
// returns the root in the child and "" in the parent (which returns).
func sandbox(t testing.TB) string {
	t.Helper()
	testutil.NeedRoot(t)
	if !testutil.InChild(t, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}) {
		return ""
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=256m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs in the private namespace: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	for _, d := range []string{"watched", "tmp", "srv/data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func newHarness(t testing.TB, root string) *harness { return newHarnessIn(t, root, t.TempDir()) }

// newHarnessIn is newHarness with the agent's state directory at state.
func newHarnessIn(t testing.TB, root, state string) *harness {
	h := &harness{t: t, state: state, root: root}
	h.sup = supervise.New(nil, slog.New(slog.DiscardHandler))
	h.sup.MinBackoff, h.sup.MaxBackoff, h.sup.StopGrace = 50*time.Millisecond, time.Second, 5*time.Second
	t.Cleanup(h.sup.Close)
	h.open()
	return h
}

func (h *harness) open() {
	h.t.Helper()
	f := NewWith(Options{Command: []string{os.Args[0]}, Env: []string{"CORRAL_TEST_PROTECTION_DAEMON=1"}})
	dir := statedir.Dir(h.state).Path(statedir.FeaturesDir, wire.FeatureProtection)
	if err := statedir.MkdirPrivate(dir); err != nil {
		h.t.Fatal(err)
	}
	err := f.Start(context.Background(), feature.Env{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), StateDir: statedir.Dir(h.state),
		Dir: dir, HostRoot: h.root, Supervisor: h.sup, HostChangesOff: h.off, ControlPlane: h.cp,
		Report: func(kind string, body any, key string) {
			h.mu.Lock()
			h.reports = append(h.reports, report{kind, body, key})
			h.mu.Unlock()
		},
		Config: func() localconfig.Effective { e, _ := localconfig.Current(h.state); return e },
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.f = f
	h.t.Cleanup(func() { f.Close() })
}

func (h *harness) set(kv ...string) {
	h.t.Helper()
	c, err := localconfig.Load(h.state)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if err := c.Set(kv[i], kv[i+1]); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := localconfig.Save(h.state, c); err != nil {
		h.t.Fatal(err)
	}
	h.f.ConfigChanged(context.Background(), c.Effective())
}

func (h *harness) handler(name, settings string) (string, error) {
	return builtin{h.f}.RunHandler(context.Background(), name, wire.HandlerInput{Name: wire.ProtectionExtensionName, Settings: json.RawMessage(settings)})
}

func (h *harness) enable(settings string) {
	h.t.Helper()
	for _, name := range []string{wire.HandlerInstall, wire.HandlerEnable} {
		if _, err := h.handler(name, settings); err != nil {
			h.t.Fatalf("%s: %v", name, err)
		}
	}
}

func (h *harness) apply(fresh bool, d wire.ProtectionDesired) {
	h.t.Helper()
	b, _ := json.Marshal(d)
	if err := h.f.Apply(context.Background(), feature.Desired{Fresh: fresh,
		State: wire.DesiredState{Features: map[string]json.RawMessage{wire.FeatureProtection: b}}}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) detections() []wire.ProtectionDetection {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []wire.ProtectionDetection
	for _, r := range h.reports {
		if d, ok := r.body.(wire.ProtectionDetection); ok {
			out = append(out, d)
		}
	}
	return out
}

// status is the last status reported.
func (h *harness) status() wire.ProtectionStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.reports) - 1; i >= 0; i-- {
		if s, ok := h.reports[i].body.(wire.ProtectionStatus); ok {
			return s
		}
	}
	return wire.ProtectionStatus{}
}

func (h *harness) waitStatus(what string, ok func(wire.ProtectionStatus) bool) wire.ProtectionStatus {
	h.t.Helper()
	testutil.Eventually(h.t, 15*time.Second, func() string {
		if s := h.status(); !ok(s) {
			return fmt.Sprintf("%s: last status %+v", what, s)
		}
		return ""
	})
	return h.status()
}

func running(s wire.ProtectionStatus) bool { return s.State == wire.ProtectionRunning }

func gone(path string) func() string {
	return func() string {
		if _, err := os.Lstat(path); err == nil {
			return path + " is still there"
		}
		return ""
	}
}

const realtimeOn = `{"realtime":{"enabled":true,"paths":["/watched"]},"action":"quarantine"}`

// The extension's handlers start the daemon as a process of its own: a
// file with the EICAR string written in a watched directory is
// quarantined, the detection names the host's path, and the quarantine is
// reported. Disable stops it: the next file stays.
func TestEnableQuarantinesAndDisableStops(t *testing.T) {
	root := sandbox(t)
	if root == "" {
		return
	}
	h := newHarness(t, root)
	h.enable(realtimeOn)
	st := h.waitStatus("running with real time", func(s wire.ProtectionStatus) bool { return running(s) && s.RealtimeEnabled })
	if st.RealtimeMode != "fanotify" || st.Signatures != 1 || st.Action != "quarantine" || st.EngineVersion == "" {
		t.Errorf("status %+v", st)
	}
	sup, _ := h.sup.Status(daemonName)
	if !sup.Running || sup.PID == os.Getpid() {
		t.Errorf("the daemon is not a process of its own: %+v", sup)
	}

	eicar := filepath.Join(root, "watched", "eicar.com")
	if err := os.WriteFile(eicar, scan.EICAR(), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, gone(eicar))
	testutil.Eventually(t, 5*time.Second, func() string {
		if len(h.detections()) == 0 {
			return "no detection reported"
		}
		return ""
	})
	d := h.detections()[0]
	if d.Path != "/watched/eicar.com" || d.Signature != "Eicar-Test-Signature" || d.Action != wire.DetectionQuarantined ||
		d.QuarantineID == "" || d.Source != "realtime" || d.ID == "" || len(d.SHA256) != 64 {
		t.Errorf("detection %+v", d)
	}
	testutil.Eventually(t, 5*time.Second, func() string {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range h.reports {
			if q, ok := r.body.(wire.ProtectionQuarantineReport); ok && len(q.Entries) == 1 && q.Entries[0].Path == "/watched/eicar.com" {
				return ""
			}
		}
		return "no quarantine report naming the file"
	})

	if _, err := h.handler(wire.HandlerDisable, ""); err != nil {
		t.Fatal(err)
	}
	if s, ok := h.sup.Status(daemonName); ok {
		t.Errorf("daemon still supervised after disable: %+v", s)
	}
	if s := h.status(); s.State != wire.ProtectionStopped {
		t.Errorf("status after disable: %+v", s)
	}
	stays := filepath.Join(root, "watched", "eicar2.com")
	if err := os.WriteFile(stays, scan.EICAR(), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(stays); err != nil {
		t.Errorf("a file written with protection off was removed: %v", err)
	}
}

// Settings the contract does not allow fail the handler with the reason,
// and nothing runs.
func TestBadSettingsRefused(t *testing.T) {
	h := newHarness(t, t.TempDir())
	for settings, want := range map[string]string{
		`{"action":"shred"}`: `action "shred"`,
		`{"realtime":{"enabled":true,"paths":["watched"]}}`:   "not absolute",
		`{"realtime":{"enabled":true,"paths":["/a/../etc"]}}`: "not clean",
		`{"exclusions":{"extensions":["a/b"]}}`:               "exclusions.extensions[0]",
		`{"realtime":{"enabled":true},"colour":"red"}`:        `unknown field "colour"`,
		`{"realtime":{"enabled":true,"paths":[]}}`:            "realtime.paths is empty",
		`[1,2]`: "settings",
		`{"exclusions":{"paths":["/ok","/x\u0000y"]}}`:         "control characters",
		`{"realtime":{"enabled":true,"paths":["/"]}} trailing`: "settings",
	} {
		for _, name := range []string{wire.HandlerInstall, wire.HandlerEnable} {
			if _, err := h.handler(name, settings); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s %s: %v, want an error containing %q", name, settings, err, want)
			}
		}
	}
	if _, ok := h.sup.Status(daemonName); ok {
		t.Error("a daemon was started with refused settings")
	}
	if _, err := os.Stat(filepath.Join(h.f.dir, extensionFile)); err == nil {
		t.Error("refused settings were recorded")
	}
}

// The local lock-down is read at each decision: blocking the extension
// stops the daemon at once, allowing it again starts it, and
// extensions.enabled=false stops it too.
func TestLockDownStopsAndStartsTheDaemon(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.enable(`{"realtime":{"enabled":false}}`)
	h.waitStatus("running", running)
	h.set(localconfig.KeyBlocklist, wire.ExtEndpointProtection)
	if _, ok := h.sup.Status(daemonName); ok {
		t.Fatal("the daemon runs while the extension is blocked")
	}
	if s := h.status(); s.State != wire.ProtectionRefused || !strings.Contains(s.Message, "blocklist") {
		t.Errorf("status while blocked: %+v", s)
	}
	h.set(localconfig.KeyBlocklist, "")
	h.waitStatus("running again", running)
	h.set(localconfig.KeyExtensionsEnabled, "false")
	if s := h.status(); s.State != wire.ProtectionRefused || !strings.Contains(s.Message, "extensions.enabled=false") {
		t.Errorf("status with the extension manager off: %+v", s)
	}
	h.set(localconfig.KeyExtensionsEnabled, "true", localconfig.KeyMode, localconfig.ModeMonitor)
	h.waitStatus("running in monitor mode", running)
}

// With host changes off (corral dev, trial mode) protection only reports:
// the file stays, the detection says so.
func TestReportOnlyWhenHostChangesAreOff(t *testing.T) {
	root := sandbox(t)
	if root == "" {
		return
	}
	h := &harness{t: t, state: t.TempDir(), root: root, off: "this is the corral dev agent: host changes are off"}
	h.sup = supervise.New(nil, slog.New(slog.DiscardHandler))
	t.Cleanup(h.sup.Close)
	h.open()
	if !(builtin{h.f}).RunsWithoutHostChanges() {
		t.Fatal("the extension would not even install in trial mode")
	}
	h.enable(realtimeOn)
	st := h.waitStatus("running", func(s wire.ProtectionStatus) bool { return running(s) && s.RealtimeEnabled })
	if st.Action != "report" || !strings.Contains(st.ReportOnly, "corral dev") {
		t.Errorf("status %+v", st)
	}
	p := filepath.Join(root, "watched", "eicar.com")
	if err := os.WriteFile(p, scan.EICAR(), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() string {
		if len(h.detections()) == 0 {
			return "no detection"
		}
		return ""
	})
	if d := h.detections()[0]; d.Action != wire.DetectionReported {
		t.Errorf("detection %+v", d)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("report-only protection removed the file: %v", err)
	}
	h.apply(true, wire.ProtectionDesired{Restores: []wire.ProtectionRestoreRequest{{ID: "r1", QuarantineID: "0123456789abcdef", RequestedAt: time.Now()}}})
	h.mu.Lock()
	defer h.mu.Unlock()
	found := false
	for _, r := range h.reports {
		if res, ok := r.body.(wire.ProtectionRestoreResult); ok && res.ID == "r1" {
			found = res.State == wire.ScanFailed && strings.Contains(res.Message, "corral dev")
		}
	}
	if !found {
		t.Error("a restore was not refused while host changes are off")
	}
}

// A message the daemon spooled while the agent was away is reported after
// the feature starts again: nothing is lost across an agent restart.
func TestSpoolSurvivesRestart(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.f.Close()
	s := &spool{dir: filepath.Join(h.f.dir, spoolDir)}
	for i := range 3 {
		if err := s.put(wire.ReportProtectionDetection, wire.ProtectionDetection{ID: fmt.Sprint("d", i), Path: "/tmp/x", Signature: "Eicar-Signature",
			Action: wire.DetectionQuarantined}); err != nil {
			t.Fatal(err)
		}
	}
	// A half-written message (the daemon died writing it) is not read.
	if err := os.WriteFile(filepath.Join(h.f.dir, spoolDir, ".half.json.tmp-1"), []byte(`{"kind":`), 0o600); err != nil {
		t.Fatal(err)
	}
	h.open()
	testutil.Eventually(t, 5*time.Second, func() string {
		if n := len(h.detections()); n != 3 {
			return fmt.Sprintf("%d detections reported", n)
		}
		return ""
	})
	for i, d := range h.detections() {
		if d.ID != fmt.Sprint("d", i) {
			t.Errorf("detection %d is %s: reported out of order", i, d.ID)
		}
	}
	if left := pending(filepath.Join(h.f.dir, spoolDir)); len(left) != 0 {
		t.Errorf("spool not drained: %v", left)
	}
}

// controlPlane serves signature sets.
type controlPlane struct {
	mu   sync.Mutex
	sets map[string][]byte
}

func (c *controlPlane) Do(context.Context, string, string, any, any) error { return nil }
func (c *controlPlane) Download(_ context.Context, path string, max int64) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.sets[path]
	if !ok || int64(len(b)) > max {
		return nil, fmt.Errorf("no %s", path)
	}
	return b, nil
}

func buildSet(t *testing.T, key ed25519.PrivateKey, version uint64, sigs string) ([]byte, wire.ProtectionSignatureRef) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test.ndb")
	if err := os.WriteFile(p, []byte(sigs), 0o644); err != nil {
		t.Fatal(err)
	}
	set, _, _, err := sigset.Build(key, version, time.Now(), p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256sum(set)
	return set, wire.ProtectionSignatureRef{Version: version, SHA256: sum, Size: int64(len(set))}
}

// Signature sets: the first key presented is pinned, a set signed with it
// is installed, a set signed with another key is refused and the previous
// set stays in use (also after the daemon restarts), and a scan uses it.
func TestSignatureSetsVerifiedAndPreviousKept(t *testing.T) {
	cp := &controlPlane{sets: map[string][]byte{}}
	h := &harness{t: t, state: t.TempDir(), root: t.TempDir(), cp: cp}
	h.sup = supervise.New(nil, slog.New(slog.DiscardHandler))
	t.Cleanup(h.sup.Close)
	h.open()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, evil, _ := ed25519.GenerateKey(rand.Reader)
	set1, ref1 := buildSet(t, priv, 1, "Test.Marker.One:0:*:"+fmt.Sprintf("%x", "corral-marker-one")+"\n")
	cp.sets[wire.PathProtectionSignatures+"1"] = set1
	h.enable(`{"realtime":{"enabled":false}}`)
	h.apply(true, wire.ProtectionDesired{SignatureKey: pub, Signatures: &ref1})
	h.waitStatus("set 1 installed", func(s wire.ProtectionStatus) bool { return running(s) && s.SignatureVersion == 1 && s.Signatures == 2 })

	// Set 2 signed by another key: refused, set 1 kept.
	set2, ref2 := buildSet(t, evil, 2, "Test.Marker.Two:0:*:"+fmt.Sprintf("%x", "corral-marker-two")+"\n")
	cp.sets[wire.PathProtectionSignatures+"2"] = set2
	h.apply(true, wire.ProtectionDesired{SignatureKey: pub, Signatures: &ref2})
	st := h.waitStatus("set 2 refused", func(s wire.ProtectionStatus) bool { return s.SignatureError != "" })
	if st.SignatureVersion != 1 || !strings.Contains(st.SignatureError, "signature set 2 refused, version 1 kept") ||
		!strings.Contains(st.SignatureError, "does not verify") {
		t.Errorf("status after a badly signed set: %+v", st)
	}
	// The key the control plane presents changes: refused, reported.
	h.apply(true, wire.ProtectionDesired{SignatureKey: evil.Public().(ed25519.PublicKey), Signatures: &ref2})
	h.waitStatus("new key refused", func(s wire.ProtectionStatus) bool {
		return running(s) && strings.Contains(s.SignatureError, "not the pinned") && s.SignatureVersion == 1
	})

	// A scan of a file carrying set 1's marker finds it with the set kept.
	if err := os.WriteFile(filepath.Join(h.root, "tmp-marker"), []byte("xx corral-marker-one xx"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.apply(true, wire.ProtectionDesired{SignatureKey: pub, Signatures: &ref2, Scans: []wire.ProtectionScanRequest{
		{ID: "s1", Type: wire.ScanCustom, Paths: []string{"/"}, RequestedAt: time.Now()}}})
	testutil.Eventually(t, 15*time.Second, func() string {
		for _, d := range h.detections() {
			if d.Signature == "Test.Marker.One" && d.Path == "/tmp-marker" && d.ScanID == "s1" && d.Action == wire.DetectionQuarantined {
				return ""
			}
		}
		return fmt.Sprintf("no detection of the marker: %+v", h.detections())
	})
	if _, err := os.Stat(filepath.Join(h.root, "tmp-marker")); err == nil {
		t.Error("the scan's detection was not quarantined")
	}
	// The same scan asked again is not run again.
	h.apply(true, wire.ProtectionDesired{SignatureKey: pub, Scans: []wire.ProtectionScanRequest{{ID: "s1", Type: wire.ScanCustom, Paths: []string{"/"}}}})
	time.Sleep(200 * time.Millisecond)
	if n := len(pending(filepath.Join(h.f.dir, requestsDir))); n != 0 {
		t.Errorf("scan s1 was handed to the daemon again (%d requests)", n)
	}
}

func TestScanRequestsRefusedWithReason(t *testing.T) {
	h := newHarness(t, t.TempDir())
	now := time.Now()
	h.apply(true, wire.ProtectionDesired{Scans: []wire.ProtectionScanRequest{{ID: "off", Type: wire.ScanQuick, RequestedAt: now}}})
	h.enable(`{"realtime":{"enabled":false}}`)
	h.waitStatus("running", running)
	h.apply(true, wire.ProtectionDesired{Scans: []wire.ProtectionScanRequest{
		{ID: "old", Type: wire.ScanQuick, RequestedAt: now.Add(-48 * time.Hour)},
		{ID: "bad-type", Type: "deep", RequestedAt: now},
		{ID: "bad-path", Type: wire.ScanCustom, Paths: []string{"../etc"}, RequestedAt: now},
		{ID: "missing", Type: wire.ScanCustom, Paths: []string{"/no/such/dir"}, RequestedAt: now},
	}})
	want := map[string]string{"off": "not enabled", "old": "was not run", "bad-type": `unknown scan type "deep"`,
		"bad-path": "not absolute", "missing": "/no/such/dir"}
	testutil.Eventually(t, 10*time.Second, func() string {
		h.mu.Lock()
		defer h.mu.Unlock()
		got := map[string]string{}
		for _, r := range h.reports {
			if res, ok := r.body.(wire.ProtectionScanResult); ok && res.State == wire.ScanFailed {
				got[res.ID] = res.Message
			}
		}
		for id, w := range want {
			if !strings.Contains(got[id], w) {
				return fmt.Sprintf("scan %s: %q, want it failed with %q", id, got[id], w)
			}
		}
		return ""
	})
}

func sha256sum(b []byte) string {
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// The scope's schedule runs a scan every period, counted from when the
// machine first saw it; the scan is reported as scheduled.
func TestScheduledScan(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "tmp-eicar.com"), scan.EICAR(), 0o644)
	h := &harness{t: t, state: t.TempDir(), root: root}
	h.sup = supervise.New(nil, slog.New(slog.DiscardHandler))
	t.Cleanup(h.sup.Close)
	h.open()
	now := time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	h.f.env.Clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h.enable(`{"realtime":{"enabled":false}}`)
	h.waitStatus("running", running)
	sched := &wire.ProtectionSchedule{Type: wire.ScanFull, Every: wire.Duration(6 * time.Hour)}
	h.apply(false, wire.ProtectionDesired{Schedule: sched})
	scheduled := func() []wire.ProtectionScanResult {
		h.mu.Lock()
		defer h.mu.Unlock()
		var out []wire.ProtectionScanResult
		for _, r := range h.reports {
			if res, ok := r.body.(wire.ProtectionScanResult); ok && res.Scheduled && res.State != wire.ScanRunning {
				out = append(out, res)
			}
		}
		return out
	}
	tick := func() {
		t.Helper()
		if err := h.f.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	tick()
	advance(5 * time.Hour)
	tick()
	time.Sleep(300 * time.Millisecond)
	if n := len(scheduled()); n != 0 {
		t.Fatalf("%d scheduled scans before the period passed", n)
	}
	advance(time.Hour)
	tick()
	testutil.Eventually(t, 15*time.Second, func() string {
		if s := scheduled(); len(s) != 1 || s[0].State != wire.ScanSucceeded || s[0].Infected != 1 || s[0].Type != wire.ScanFull {
			return fmt.Sprintf("scheduled scans %+v", s)
		}
		return ""
	})
	if d := h.detections(); len(d) != 1 || d[0].Path != "/tmp-eicar.com" || d[0].Source != "scan" {
		t.Errorf("detections of the scheduled scan %+v", d)
	}
	// Not again until another period passed.
	tick()
	advance(time.Hour)
	tick()
	time.Sleep(300 * time.Millisecond)
	if n := len(scheduled()); n != 1 {
		t.Errorf("%d scheduled scans within one period", n)
	}
}

// A daemon that dies is restarted by the supervisor with backoff, the
// feature reports it, and protection comes back without the control plane.
func TestDaemonCrashRestarts(t *testing.T) {
	root := sandbox(t)
	if root == "" {
		return
	}
	h := newHarness(t, root)
	h.enable(realtimeOn)
	h.waitStatus("running", func(s wire.ProtectionStatus) bool { return running(s) && s.RealtimeEnabled })
	first, _ := h.sup.Status(daemonName)
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() string {
		if st, _ := h.sup.Status(daemonName); st.LastExit == "" {
			return "exit not seen"
		}
		return ""
	})
	if err := h.f.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	failed := false
	for _, r := range h.reports {
		if s, ok := r.body.(wire.ProtectionStatus); ok && s.State == wire.ProtectionFailed && strings.Contains(s.Message, "killed by signal") {
			failed = true
		}
	}
	h.mu.Unlock()
	if !failed {
		t.Error("the crash was not reported")
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		if st, _ := h.sup.Status(daemonName); !st.Running || st.PID == first.PID || st.Restarts < 1 {
			return fmt.Sprintf("daemon %+v", st)
		}
		return ""
	})
	st := h.waitStatus("running again", func(s wire.ProtectionStatus) bool { return running(s) && s.RealtimeEnabled && s.Restarts >= 1 })
	if st.RealtimeMode != "fanotify" {
		t.Errorf("status after the restart %+v", st)
	}
	p := filepath.Join(root, "watched", "after-crash.com")
	if err := os.WriteFile(p, scan.EICAR(), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, gone(p))
}
