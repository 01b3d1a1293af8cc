package updates_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/patch"
	"github.com/corralhq/corral/internal/agent/updates"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// harness runs the feature with a local configuration the test changes
// and records what it reports.
type harness struct {
	t        *testing.T
	f        *updates.Feature
	dir      string
	root     string
	hostOff  string
	mu       sync.Mutex
	cfg      localconfig.Config
	reports  []wire.Report
	kinds    map[string]int
	reported chan struct{}
}

func newHarness(t *testing.T, root string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), root: root, kinds: map[string]int{}, reported: make(chan struct{}, 1000)}
	h.start()
	return h
}

func (h *harness) set(key, value string) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.cfg.Set(key, value); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) env() feature.Env {
	return feature.Env{Logger: slog.New(slog.DiscardHandler), Dir: h.dir, HostRoot: h.root, Clock: time.Now, HostChangesOff: h.hostOff,
		Config: func() localconfig.Effective {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.cfg.Effective()
		},
		Report: func(kind string, body any, _ string) {
			b, _ := json.Marshal(body)
			h.mu.Lock()
			h.reports = append(h.reports, wire.Report{Kind: kind, Body: b})
			h.mu.Unlock()
			h.reported <- struct{}{}
		}}
}

func (h *harness) start() {
	h.t.Helper()
	h.f = updates.New()
	h.f.TickEvery = time.Hour
	if err := h.f.Start(context.Background(), h.env()); err != nil {
		h.t.Fatal(err)
	}
	f := h.f
	h.t.Cleanup(func() { f.Close() })
}

func (h *harness) apply(slice wire.UpdatesDesired) {
	h.t.Helper()
	b, _ := json.Marshal(slice)
	ds := wire.DesiredState{Features: map[string]json.RawMessage{wire.FeatureUpdates: b}}
	if err := h.f.Apply(context.Background(), feature.Desired{State: ds, Fresh: true}); err != nil {
		h.t.Fatal(err)
	}
}

// wait returns the first report of kind for which match is true.
func wait[T any](h *harness, kind string, match func(T) bool) T {
	h.t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		h.mu.Lock()
		for _, r := range h.reports {
			var v T
			if r.Kind == kind && json.Unmarshal(r.Body, &v) == nil && match(v) {
				h.mu.Unlock()
				return v
			}
		}
		h.mu.Unlock()
		select {
		case <-h.reported:
		case <-deadline:
			h.t.Fatalf("no %s report as expected; reports: %s", kind, h.dump())
		}
	}
}

func (h *harness) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range h.reports {
		fmt.Fprintf(&b, "\n%s %s", r.Kind, r.Body)
	}
	return b.String()
}

func final(r wire.UpdateDeploymentReport) bool { return r.State != wire.UpdateInProgress }

// fakeRoot is a host root with an os-release and nothing else.
func fakeRoot(t *testing.T, osRelease string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/os-release"), []byte(osRelease), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

var security = wire.UpdateDeploymentSettings{Classifications: []string{"Security"}, Reboot: wire.RebootNever, Window: wire.Duration(time.Hour)}

// TestRefusalsAreReportedAsTheReason: what the local configuration or the
// host refuses is reported as the operation's reason instead of results,
// read at the moment of each operation.
func TestRefusalsAreReportedAsTheReason(t *testing.T) {
	h := newHarness(t, fakeRoot(t, "ID=alpine\n"))

	h.set(localconfig.KeyBlocklist, wire.ExtPatchManagement)
	h.apply(wire.UpdatesDesired{Assessments: []wire.DesiredUpdateAssessment{{ID: "a1"}},
		Deployments: []wire.DesiredUpdateDeployment{{ID: "d1", UpdateDeploymentSettings: security, Deadline: time.Now().Add(time.Hour)}}})
	a := wait(h, wire.ReportUpdateAssessment, func(r wire.UpdateAssessmentResult) bool { return r.ID == "a1" })
	if a.State != wire.AssessmentFailed || a.Reason != wire.ReasonBlocked || !strings.Contains(a.Message, "extensions.blocklist") {
		t.Errorf("blocked assessment: %+v", a)
	}
	d := wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "d1" && final(r) })
	if d.State != wire.UpdateFailed || d.Reason != wire.ReasonBlocked {
		t.Errorf("blocked deployment: %+v", d)
	}

	// Monitor mode keeps Corral/PatchManagement: the refusal is now the
	// host's (no package manager this agent drives).
	h.set(localconfig.KeyBlocklist, "")
	h.set(localconfig.KeyMode, localconfig.ModeMonitor)
	h.apply(wire.UpdatesDesired{Assessments: []wire.DesiredUpdateAssessment{{ID: "a2"}}})
	a = wait(h, wire.ReportUpdateAssessment, func(r wire.UpdateAssessmentResult) bool { return r.ID == "a2" })
	if a.State != wire.AssessmentFailed || a.Reason != wire.ReasonUnsupportedOS || !strings.Contains(a.Message, "alpine") {
		t.Errorf("assessment on Alpine in monitor mode: %+v", a)
	}
	if _, err := h.f.Builtins()[0].RunHandler(context.Background(), wire.HandlerInstall, wire.HandlerInput{}); err == nil {
		t.Error("Corral/PatchManagement installed on a host without a supported package manager")
	}

	// Trial mode refuses deployments.
	h.set(localconfig.KeyMode, localconfig.ModeFull)
	h.set(localconfig.KeyHostChanges, "false")
	h.apply(wire.UpdatesDesired{Deployments: []wire.DesiredUpdateDeployment{{ID: "d2", UpdateDeploymentSettings: security, Deadline: time.Now().Add(time.Hour)}}})
	d = wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "d2" && final(r) })
	if d.State != wire.UpdateFailed || d.Reason != wire.ReasonHostChangesOff || !strings.Contains(d.Message, "hostchanges.enabled") {
		t.Errorf("deployment in trial mode: %+v", d)
	}

	// Scripts are run commands: a blocked Corral/RunCommand refuses them.
	h.set(localconfig.KeyHostChanges, "true")
	h.set(localconfig.KeyBlocklist, wire.ExtRunCommand)
	withScript := security
	withScript.PreScript = "true"
	h.apply(wire.UpdatesDesired{Deployments: []wire.DesiredUpdateDeployment{{ID: "d3", UpdateDeploymentSettings: withScript, Deadline: time.Now().Add(time.Hour)}}})
	d = wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "d3" && final(r) })
	if d.State != wire.UpdateFailed || d.Reason != wire.ReasonBlocked || !strings.Contains(d.Message, "run commands") {
		t.Errorf("deployment with a script, RunCommand blocked: %+v", d)
	}

	// A deployment that arrives after its window closed does not start.
	h.set(localconfig.KeyBlocklist, "")
	h.apply(wire.UpdatesDesired{Deployments: []wire.DesiredUpdateDeployment{{ID: "d4", UpdateDeploymentSettings: security, Deadline: time.Now().Add(-time.Minute)}}})
	d = wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "d4" && final(r) })
	if d.State != wire.UpdateFailed || d.Reason != wire.ReasonMaintenanceWindowExceeded {
		t.Errorf("late deployment: %+v", d)
	}

	// Each request runs once: applied again (and after a restart) nothing
	// new is reported.
	n := len(strings.Split(h.dump(), "\n"))
	h.apply(wire.UpdatesDesired{Assessments: []wire.DesiredUpdateAssessment{{ID: "a1"}, {ID: "a2"}},
		Deployments: []wire.DesiredUpdateDeployment{{ID: "d1", UpdateDeploymentSettings: security}, {ID: "d4", UpdateDeploymentSettings: security}}})
	h.f.Close()
	h.start()
	h.apply(wire.UpdatesDesired{Deployments: []wire.DesiredUpdateDeployment{{ID: "d2", UpdateDeploymentSettings: security}}})
	time.Sleep(300 * time.Millisecond)
	if m := len(strings.Split(h.dump(), "\n")); m != n {
		t.Errorf("requests ran again: %d reports, then %d:%s", n, m, h.dump())
	}
	// Invalid ids never name a file.
	h.apply(wire.UpdatesDesired{Assessments: []wire.DesiredUpdateAssessment{{ID: "../../etc/passwd"}, {ID: ".hidden"}}})
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(h.dump(), "passwd") || strings.Contains(h.dump(), "hidden") {
		t.Errorf("an invalid id was run: %s", h.dump())
	}
}

// TestPeriodicAssessments: the interval comes from the desired slice; Tick
// queues one when it has passed since the last assessment, and none for a
// machine not enrolled.
func TestPeriodicAssessments(t *testing.T) {
	h := newHarness(t, fakeRoot(t, "ID=alpine\n"))
	if err := h.f.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if h.dump() != "" {
		t.Fatalf("a machine not enrolled assessed: %s", h.dump())
	}
	h.apply(wire.UpdatesDesired{AssessmentInterval: wire.Duration(time.Hour)})
	if err := h.f.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := wait(h, wire.ReportUpdateAssessment, func(r wire.UpdateAssessmentResult) bool { return r.Trigger == wire.TriggerPeriodic })
	if !strings.HasPrefix(p.ID, "periodic-") {
		t.Errorf("periodic assessment: %+v", p)
	}
	before := h.dump()
	if err := h.f.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if h.dump() != before {
		t.Errorf("assessed again within the interval: %s", h.dump())
	}
}

// aptHost is a Debian tree whose apt sees a -security suite and a normal
// one: sec 1.0 → 1.1 (Security), tool 1.0 → 2.0 (Other), kernel-ish
// libc6-free "corral-needs-reboot" 1.0 → 1.1 (Security, its postinst asks
// for a reboot like Debian's do: /run/reboot-required).
func aptHost(t *testing.T) *testutil.AptTree {
	t.Helper()
	testutil.NeedRoot(t)
	tree := testutil.NewAptTree(t)
	dir := t.TempDir()
	var old []string
	for _, n := range []string{"corral-sec", "corral-tool", "corral-needs-reboot"} {
		old = append(old, testutil.BuildDeb(t, dir, testutil.Deb{Name: n, Version: "1.0"}))
	}
	tree.Install(t, old...)
	main := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "bookworm", Origin: "Debian", Debs: []testutil.Deb{{Name: "corral-tool", Version: "2.0"}}})
	sec := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "bookworm-security", Origin: "Debian", Label: "Debian-Security", Debs: []testutil.Deb{
		{Name: "corral-sec", Version: "1.1"},
		{Name: "corral-needs-reboot", Version: "1.1", Postinst: "mkdir -p /run && touch /run/reboot-required"}}})
	tree.UseRepos(t, main, sec)
	return tree
}

// TestAssessDeployAndRebootOnAnAptTree: the feature drives the real apt
// under the host root; an assessment in trial mode does not refresh; the
// reboot runs update.rebootcommand once and the next start reports it.
func TestAssessDeployAndRebootOnAnAptTree(t *testing.T) {
	testutil.NeedTool(t, "apt-get")
	tree := aptHost(t)
	bootID := filepath.Join(tree.Root, "proc/sys/kernel/random/boot_id")
	if err := os.MkdirAll(filepath.Dir(bootID), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bootID, []byte("boot-a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(t.TempDir(), "calls")
	h := newHarness(t, tree.Root)

	// Trial mode: the lists were never fetched, so nothing is pending, and
	// the report says the lists were not refreshed.
	h.set(localconfig.KeyHostChanges, "false")
	h.apply(wire.UpdatesDesired{Assessments: []wire.DesiredUpdateAssessment{{ID: "trial"}}})
	a := wait(h, wire.ReportUpdateAssessment, func(r wire.UpdateAssessmentResult) bool { return r.ID == "trial" })
	if a.State != wire.AssessmentSucceeded || a.Refreshed || len(a.Updates) != 0 || !strings.Contains(a.Message, "not refreshed") {
		t.Errorf("assessment in trial mode: %+v", a)
	}
	if entries, _ := os.ReadDir(filepath.Join(tree.Root, "var/lib/apt/lists")); len(entries) > 2 {
		t.Errorf("trial mode fetched package lists: %d entries", len(entries))
	}

	h.set(localconfig.KeyHostChanges, "true")
	h.set(localconfig.KeyRebootCommand, fmt.Sprintf(`echo "$CORRAL_UPDATE_RUN_ID" >> %s; echo boot-b > %s`, calls, bootID))
	h.apply(wire.UpdatesDesired{Assessments: []wire.DesiredUpdateAssessment{{ID: "full"}}})
	a = wait(h, wire.ReportUpdateAssessment, func(r wire.UpdateAssessmentResult) bool { return r.ID == "full" })
	got := map[string]string{}
	for _, u := range a.Updates {
		got[u.Name] = u.Classification + " " + u.InstalledVersion + "->" + u.CandidateVersion
	}
	want := map[string]string{"corral-sec": "Security 1.0->1.1", "corral-tool": "Other 1.0->2.0", "corral-needs-reboot": "Security 1.0->1.1"}
	if !a.Refreshed || fmt.Sprint(got) != fmt.Sprint(want) || a.Manager != string(patch.Apt) {
		t.Errorf("assessment: %+v\ngot %v want %v", a, got, want)
	}

	// Security with reboot IfRequired: the postinst asked for a reboot.
	set := security
	set.Reboot = wire.RebootIfRequired
	set.PostScript = "echo post-ran; exit 3"
	h.apply(wire.UpdatesDesired{Deployments: []wire.DesiredUpdateDeployment{{ID: "run1", UpdateDeploymentSettings: set, Deadline: time.Now().Add(time.Hour)}}})
	d := wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "run1" && final(r) })
	if d.State != wire.UpdateCompletedWithWarnings || d.Reason != wire.ReasonPostScriptFailed || d.Reboot != wire.RebootStarted ||
		!d.RebootRequired || d.PostScript == nil || d.PostScript.ExitCode != 3 || !strings.Contains(d.PostScript.Output, "post-ran") {
		t.Errorf("deployment: %+v (post %+v)", d, d.PostScript)
	}
	for _, p := range d.Packages {
		wantStatus := wire.PackageInstalled
		if p.Name == "corral-tool" {
			wantStatus = wire.PackageNotSelected
		}
		if p.Status != wantStatus {
			t.Errorf("package %s: %+v", p.Name, p)
		}
	}
	readCalls := func() string {
		b, _ := os.ReadFile(calls)
		return strings.TrimSpace(string(b))
	}
	deadline := time.Now().Add(10 * time.Second)
	for readCalls() == "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if readCalls() != "run1" {
		t.Fatalf("reboot command calls: %q", readCalls())
	}
	// "After the reboot": a new agent reports it performed, and never runs
	// the command again.
	h.f.Close()
	h.start()
	rb := wait(h, wire.ReportUpdateReboot, func(r wire.UpdateRebootReport) bool { return r.ID == "run1" })
	if rb.State != wire.RebootPerformed {
		t.Errorf("reboot report: %+v", rb)
	}
	h.f.Close()
	h.start()
	time.Sleep(200 * time.Millisecond)
	if readCalls() != "run1" {
		t.Errorf("the reboot command ran again: %q", readCalls())
	}

	// A reboot command that returns without rebooting is reported Failed
	// at the next start (the boot id did not change).
	h.set(localconfig.KeyRebootCommand, "echo again >> "+calls)
	always := wire.UpdateDeploymentSettings{Classifications: []string{"Other"}, Reboot: wire.RebootAlways, Window: wire.Duration(time.Hour)}
	h.apply(wire.UpdatesDesired{Deployments: []wire.DesiredUpdateDeployment{{ID: "run2", UpdateDeploymentSettings: always, Deadline: time.Now().Add(time.Hour)}}})
	d = wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "run2" && final(r) })
	if d.State != wire.UpdateSucceeded || d.Reboot != wire.RebootStarted {
		t.Errorf("deployment with reboot Always: %+v", d)
	}
	h.f.Close()
	h.start()
	rb = wait(h, wire.ReportUpdateReboot, func(r wire.UpdateRebootReport) bool { return r.ID == "run2" })
	if rb.State != wire.RebootFailedState || !strings.Contains(rb.Message, "did not restart") {
		t.Errorf("reboot that did not happen: %+v", rb)
	}
}

// TestConfigChangeStopsADeployment: root blocking Corral/PatchManagement
// while a deployment runs stops it (here in its pre script), reported with
// why; nothing is installed.
func TestConfigChangeStopsADeployment(t *testing.T) {
	testutil.NeedTool(t, "apt-get")
	tree := aptHost(t)
	h := newHarness(t, tree.Root)
	marker := filepath.Join(t.TempDir(), "pre-started")
	set := security
	set.PreScript = "touch " + marker + "\nsleep 60"
	h.apply(wire.UpdatesDesired{Deployments: []wire.DesiredUpdateDeployment{{ID: "stopme", UpdateDeploymentSettings: set, Deadline: time.Now().Add(time.Hour)}}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pre script did not start: %s", h.dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.set(localconfig.KeyBlocklist, wire.ExtPatchManagement)
	start := time.Now()
	h.f.ConfigChanged(context.Background(), localconfig.Effective{})
	d := wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "stopme" && final(r) })
	if d.State != wire.UpdateFailed || d.Reason != wire.ReasonCanceled || !strings.Contains(d.Message, "extensions.blocklist") || time.Since(start) > 20*time.Second {
		t.Errorf("stopped deployment after %s: %+v", time.Since(start), d)
	}
	if v := tree.Versions(t); v["corral-sec"] != "1.0" {
		t.Errorf("a stopped deployment installed corral-sec %s", v["corral-sec"])
	}
}

// TestInterruptedDeploymentIsReportedFromTheJournal: a deployment a
// previous agent left Running is reported Interrupted at start, with what
// the engine's journal says, and never run again.
func TestInterruptedDeploymentIsReportedFromTheJournal(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ops"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "journal"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(p string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "ops", "run-x.json"), map[string]any{"kind": "deployment", "state": "Running", "at": time.Now().Add(-time.Minute)})
	write(filepath.Join(dir, "ops", "run-y.json"), map[string]any{"kind": "deployment", "state": "Running", "at": time.Now().Add(-time.Hour)})
	write(filepath.Join(dir, "journal", "deployment.json"), patch.Journal{ID: "run-x", Manager: patch.Apt, State: patch.JournalRunning,
		Current: "openssl", Packages: []patch.PackageResult{
			{Name: "libssl3", Status: patch.Installed, BeforeVersion: "3.0.1", AfterVersion: "3.0.2"},
			{Name: "openssl", Status: patch.Pending, BeforeVersion: "3.0.1"},
			{Name: "zlib1g", Status: patch.Pending, BeforeVersion: "1.2"}}})
	h := &harness{t: t, dir: dir, root: fakeRoot(t, "ID=debian\n"), kinds: map[string]int{}, reported: make(chan struct{}, 100)}
	h.start()
	x := wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "run-x" })
	byName := map[string]string{}
	for _, p := range x.Packages {
		byName[p.Name] = p.Status
	}
	if x.State != wire.UpdateFailed || x.Reason != wire.ReasonInterrupted || !strings.Contains(x.Message, "openssl was being installed") ||
		byName["libssl3"] != wire.PackageInstalled || byName["openssl"] != wire.PackageFailed || byName["zlib1g"] != wire.PackageNotStarted {
		t.Errorf("interrupted run-x: %+v", x)
	}
	y := wait(h, wire.ReportUpdateDeployment, func(r wire.UpdateDeploymentReport) bool { return r.ID == "run-y" })
	if y.Reason != wire.ReasonInterrupted || !strings.Contains(y.Message, "before the installs started") {
		t.Errorf("interrupted run-y: %+v", y)
	}
	h.apply(wire.UpdatesDesired{Deployments: []wire.DesiredUpdateDeployment{{ID: "run-x", UpdateDeploymentSettings: security, Deadline: time.Now().Add(time.Hour)}}})
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(h.dump(), `"id":"run-x"`); n != 1 {
		t.Errorf("run-x reported %d times (ran again?): %s", n, h.dump())
	}
}

// Corral/PatchManagement's handlers change nothing on the host, so with
// host changes off (corral dev, trial mode) the extension installs and
// assessments work; deployments are refused by the feature itself.
func TestPatchManagementInstallsWithHostChangesOff(t *testing.T) {
	for _, b := range updates.New().Builtins() {
		ro, ok := b.(feature.ReportOnlyBuiltin)
		if b.ExtensionName() == wire.ExtPatchManagement && (!ok || !ro.RunsWithoutHostChanges()) {
			t.Errorf("%s is refused while host changes are off", b.ExtensionName())
		}
	}
}
