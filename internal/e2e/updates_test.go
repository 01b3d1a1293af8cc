package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// updatesHost is an agent's host for update management: a private Debian
// tree whose apt sees two local repositories, a normal suite and a
// -security one, and a boot id under the tree's proc/ that the test's
// reboot command changes (a "reboot").
type updatesHost struct {
	tree     *testutil.AptTree
	bootID   string // path of the tree's boot id
	rebootLg string // the reboot command's record of its calls
}

// The packages of the tree: installed at 1.0, offered newer by the repos.
//
//	corral-sec-a, corral-sec-b   1.0 → 1.1  bookworm-security (Security)
//	corral-tool                  1.0 → 2.0  bookworm          (Other)
//	corral-lib                   1.0 → 1.5  bookworm          (Other)
var updatesPackages = []string{"corral-sec-a", "corral-sec-b", "corral-tool", "corral-lib"}

func newUpdatesHost(t *testing.T, installed, offered []testutil.Deb) *updatesHost {
	t.Helper()
	testutil.NeedRoot(t)
	tree := testutil.NewAptTree(t)
	dir := t.TempDir()
	var old []string
	for _, n := range updatesPackages {
		old = append(old, testutil.BuildDeb(t, dir, testutil.Deb{Name: n, Version: "1.0"}))
	}
	for _, d := range installed {
		old = append(old, testutil.BuildDeb(t, dir, d))
	}
	main := slices.Clone(offered)
	tree.Install(t, old...)
	main = append(main, testutil.Deb{Name: "corral-tool", Version: "2.0"}, testutil.Deb{Name: "corral-lib", Version: "1.5"})
	mainRepo := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "bookworm", Origin: "Debian", Debs: main})
	sec := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "bookworm-security", Origin: "Debian", Label: "Debian-Security",
		Debs: []testutil.Deb{{Name: "corral-sec-a", Version: "1.1"}, {Name: "corral-sec-b", Version: "1.1"}}})
	tree.UseRepos(t, mainRepo, sec)
	h := &updatesHost{tree: tree, bootID: filepath.Join(tree.Root, "proc/sys/kernel/random/boot_id"),
		rebootLg: filepath.Join(t.TempDir(), "reboots")}
	if err := os.MkdirAll(filepath.Dir(h.bootID), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.bootID, []byte("boot-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// rebootCommand records its call (the run id) and "reboots": the tree's
// boot id changes, as a real reboot changes the host's.
func (h *updatesHost) rebootCommand() string {
	return fmt.Sprintf(`echo "$CORRAL_UPDATE_RUN_ID" >> %s && echo boot-$$ > %s`, h.rebootLg, h.bootID)
}

// upgradable is what `apt list --upgradable` says on the tree: name ->
// "installed -> candidate".
func (h *updatesHost) upgradable(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range strings.Split(h.tree.Apt(t, "apt", "list", "--upgradable"), "\n") {
		f := strings.Fields(l)
		i := strings.Index(l, "[upgradable from: ")
		if len(f) < 5 || i < 0 {
			continue
		}
		name, _, _ := strings.Cut(f[0], "/")
		out[name] = strings.TrimSuffix(l[i+len("[upgradable from: "):], "]") + " -> " + f[1]
	}
	return out
}

// updatesCluster is a server, a logged-in CLI and one agent on an apt tree.
type updatesCluster struct {
	*cluster
	host        *updatesHost
	state       string
	env         []string
	daemon      *proc
	machineName string
}

func (u *updatesCluster) corral(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, nil, u.env, u.cluster.corral, args...)
}

func (u *updatesCluster) mustCorral(t *testing.T, args ...string) string {
	t.Helper()
	out, err := u.corral(t, args...)
	if err != nil {
		t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (u *updatesCluster) agentArgs(args ...string) []string {
	return append([]string{"--state-dir", u.state, "--root", u.host.tree.Root}, args...)
}

func (u *updatesCluster) startAgent(t *testing.T) {
	t.Helper()
	u.daemon = start(t, nil, u.cluster.agent, u.agentArgs("run")...)
	testutil.Eventually(t, 20*time.Second, func() string {
		if m, _ := u.machine(t, "upd", u.machineName); m.Status != wire.StatusConnected {
			return "status " + m.Status
		}
		return ""
	})
}

func newUpdatesCluster(t *testing.T, c *cluster, h *updatesHost) *updatesCluster {
	t.Helper()
	home := t.TempDir()
	u := &updatesCluster{cluster: c, host: h, state: t.TempDir(), machineName: "web-01",
		env: []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}}
	if out, err := run(t, strings.NewReader(c.api.AdminPassword+"\n"), u.env, c.corral, "login", "--server", c.api.URL, "--username", "admin",
		"--password-stdin", "--ca-file", c.api.CAFile); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	clientID, secret := c.api.OnboardingPrincipal(t, "upd")
	if out, err := run(t, nil, nil, c.agent, u.agentArgs("connect", "--server", c.api.URL, "--subscription-id", "default",
		"--resource-group", "upd", "--service-principal-id", clientID, "--service-principal-secret-file", testutil.WriteSecretFile(t, secret),
		"--ca-file", c.api.CAFile, "--name", u.machineName)...); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	if out, err := run(t, nil, nil, c.agent, u.agentArgs("config", "set", "update.rebootcommand", h.rebootCommand())...); err != nil {
		t.Fatalf("config set update.rebootcommand: %v\n%s", err, out)
	}
	u.startAgent(t)
	return u
}

// pending is `corral update list -o json` as name -> "installed -> candidate"
// and name -> classification.
func (u *updatesCluster) pending(t *testing.T) (versions, classes map[string]string) {
	t.Helper()
	var ups []wire.PendingUpdate
	out := u.mustCorral(t, "update", "list", "--machine", u.machineName, "-o", "json")
	if err := json.Unmarshal([]byte(out), &ups); err != nil {
		t.Fatalf("update list -o json: %v\n%s", err, out)
	}
	versions, classes = map[string]string{}, map[string]string{}
	for _, p := range ups {
		versions[p.Name] = p.InstalledVersion + " -> " + p.CandidateVersion
		classes[p.Name] = p.Classification
		if p.Source == "" {
			t.Errorf("update %s has no source", p.Name)
		}
	}
	return versions, classes
}

func (u *updatesCluster) showRun(t *testing.T, id string) wire.UpdateRun {
	t.Helper()
	var r wire.UpdateRun
	out, _ := u.corral(t, "update", "run", "show", id, "-o", "json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("update run show %s -o json: %v\n%s", id, err, out)
	}
	return r
}

func packagesByName(m wire.UpdateRunMachine) map[string]wire.UpdatePackageResult {
	out := map[string]wire.UpdatePackageResult{}
	for _, p := range m.Packages {
		out[p.Name] = p
	}
	return out
}

// TestUpdatesAssessDeployAndReboot drives update management with the real
// binaries against an agent whose --root is an apt tree with its own
// repositories: the assessment is what apt itself says, a Security-only
// deployment installs just those, a reboot runs the local reboot command
// once and is reported after the agent starts again, and bad input of
// every kind is refused clearly.
func TestUpdatesAssessDeployAndReboot(t *testing.T) {
	testutil.NeedTool(t, "apt-get")
	testutil.NeedTool(t, "dpkg-deb")
	testutil.NeedTool(t, "apt-ftparchive")
	h := newUpdatesHost(t, nil, nil)
	c := startServer(t, "--update-tick", "200ms")
	u := newUpdatesCluster(t, c, h)

	// Bad input, refused before anything is stored or sent.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"update", "deploy", "--machine", "web-01", "--classification", "Security,Bogus", "--reboot", "Never"}, `unknown classification "Bogus"`},
		{[]string{"update", "deploy", "--machine", "web-01", "--classification", "Security", "--reboot", "Never", "--window", "30m"}, "between 60 and 235 minutes"},
		{[]string{"update", "deploy", "--machine", "web-01", "--classification", "Security", "--reboot", "Never", "--window", "236m"}, "between 60 and 235 minutes"},
		{[]string{"update", "deploy", "--machine", "web-01", "--classification", "Security", "--reboot", "Sometimes"}, `invalid --reboot "Sometimes"`},
		{[]string{"update", "deploy", "--scope", "/subscriptions/default/resourceGroups/empty", "--classification", "Security", "--reboot", "Never"}, "has no machines"},
		{[]string{"update", "assess", "--tag", "team=nobody"}, "has no machines"},
		{[]string{"update", "schedule", "create", "--name", "bad", "--machine", "web-01", "--cron", "61 3 * * SUN", "--classification", "Security"}, "bad cron expression"},
		{[]string{"update", "schedule", "create", "--name", "bad", "--machine", "web-01", "--cron", "0 3 * * SUN", "--time-zone", "Mars/Olympus", "--classification", "Security"}, "bad time zone"},
		{[]string{"update", "assess"}, "give --machine M, --scope S or --tag KEY=VALUE"},
	} {
		out, err := u.corral(t, tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("corral %s: %v, want an error with %q:\n%s", strings.Join(tc.args, " "), err, tc.want, out)
		}
	}
	c.api.MustDo(t, 201, "PUT", "/api/v1/subscriptions/default/resourceGroups/empty", c.api.AdminToken(t), wire.ResourceGroupCreate{}, nil)
	if out, err := u.corral(t, "update", "deploy", "--scope", "empty", "--classification", "Security", "--reboot", "Never"); err == nil ||
		!strings.Contains(out, "has no machines") {
		t.Errorf("deploy to a scope without machines: %v\n%s", err, out)
	}
	if out := u.mustCorral(t, "update", "run", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("refused requests left runs: %s", out)
	}

	// The assessment is exactly what apt says on the same tree.
	out := u.mustCorral(t, "update", "assess", "--machine", "web-01", "--wait")
	if !strings.Contains(out, "1 succeeded, 0 failed") {
		t.Errorf("assess --wait:\n%s", out)
	}
	want := h.upgradable(t)
	if len(want) != 4 {
		t.Fatalf("apt list --upgradable on the tree: %v", want)
	}
	got, classes := u.pending(t)
	if !mapsEqual(got, want) {
		t.Errorf("corral update list = %v\napt list --upgradable = %v", got, want)
	}
	wantClasses := map[string]string{"corral-sec-a": "Security", "corral-sec-b": "Security", "corral-tool": "Other", "corral-lib": "Other"}
	if !mapsEqual(classes, wantClasses) {
		t.Errorf("classifications = %v, want %v", classes, wantClasses)
	}
	if out := u.mustCorral(t, "update", "list", "--machine", "web-01", "--name", "SEC"); !strings.Contains(out, "corral-sec-a") || strings.Contains(out, "corral-tool") {
		t.Errorf("update list --name SEC:\n%s", out)
	}
	if out := u.mustCorral(t, "machine", "list"); !strings.Contains(out, "UPDATES C/S/O") || !strings.Contains(out, "0/2/2") {
		t.Errorf("machine list has no update column with 0/2/2:\n%s", out)
	}
	// The first assessment switched Corral/PatchManagement on.
	var exts wire.List[wire.MachineExtension]
	c.api.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/upd/machines/web-01/extensions", c.api.AdminToken(t), nil, &exts)
	if len(exts.Value) != 1 || exts.Value[0].Type != "PatchManagement" {
		t.Errorf("extensions after the first assessment = %+v", exts.Value)
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		c.api.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/upd/machines/web-01/extensions", c.api.AdminToken(t), nil, &exts)
		if len(exts.Value) != 1 || exts.Value[0].State != wire.ExtSucceeded {
			return fmt.Sprintf("extension %+v", exts.Value)
		}
		return ""
	})

	// Security only: just those are installed; the next assessment shows
	// only the others.
	before := h.tree.Versions(t)
	out = u.mustCorral(t, "update", "deploy", "--machine", "web-01", "--classification", "Security", "--reboot", "Never", "--window", "120m", "--wait")
	runID := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	r := u.showRun(t, runID)
	if r.Status != wire.UpdateSucceeded || len(r.Machines) != 1 {
		t.Fatalf("security run %s: %+v\n%s", runID, r, out)
	}
	pk := packagesByName(r.Machines[0])
	for _, n := range []string{"corral-sec-a", "corral-sec-b"} {
		if p := pk[n]; p.Status != wire.PackageInstalled || p.BeforeVersion != "1.0" || p.AfterVersion != "1.1" || p.Classification != "Security" {
			t.Errorf("%s in the security run: %+v", n, p)
		}
	}
	for _, n := range []string{"corral-tool", "corral-lib"} {
		if p := pk[n]; p.Status != wire.PackageNotSelected {
			t.Errorf("%s in the security run: %+v", n, p)
		}
	}
	after := h.tree.Versions(t)
	for name, v := range after {
		wantV := before[name]
		if name == "corral-sec-a" || name == "corral-sec-b" {
			wantV = "1.1"
		}
		if v != wantV {
			t.Errorf("after the security run %s is %s, want %s", name, v, wantV)
		}
	}
	u.mustCorral(t, "update", "assess", "--machine", "web-01", "--wait")
	got, _ = u.pending(t)
	if want := map[string]string{"corral-tool": "1.0 -> 2.0", "corral-lib": "1.0 -> 1.5"}; !mapsEqual(got, want) || !mapsEqual(h.upgradable(t), want) {
		t.Errorf("pending after the security run = %v, want %v", got, want)
	}

	// Reboot Always runs update.rebootcommand once; the agent's next start
	// reports the reboot performed.
	out = u.mustCorral(t, "update", "deploy", "--machine", "web-01", "--classification", "Other", "--include", "corral-tool", "--reboot", "Always", "--wait")
	rebootRun := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	r = u.showRun(t, rebootRun)
	if r.Status != wire.UpdateSucceeded || r.Machines[0].Reboot != wire.RebootStarted || packagesByName(r.Machines[0])["corral-tool"].Status != wire.PackageInstalled ||
		packagesByName(r.Machines[0])["corral-lib"].Status != wire.PackageNotSelected {
		t.Fatalf("reboot run: %+v", r)
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		b, _ := os.ReadFile(h.rebootLg)
		if strings.TrimSpace(string(b)) != rebootRun {
			return fmt.Sprintf("reboot calls %q", b)
		}
		return ""
	})
	u.daemon.stop(t)
	u.startAgent(t)
	testutil.Eventually(t, 15*time.Second, func() string {
		r := u.showRun(t, rebootRun)
		if r.Machines[0].Reboot != wire.RebootPerformed {
			return "reboot " + r.Machines[0].Reboot + ": " + r.Machines[0].Message
		}
		return ""
	})
	if b, _ := os.ReadFile(h.rebootLg); strings.Count(string(b), "\n") != 1 {
		t.Errorf("the reboot command ran %d times:\n%s", strings.Count(string(b), "\n"), b)
	}

	// Outcomes of the operations are in the activity log, in the admin's name.
	var acts wire.List[wire.ActivityEntry]
	c.api.MustDo(t, 200, "GET", "/api/v1/activityLogs?scope=/subscriptions/default/resourceGroups/upd/machines/web-01", c.api.AdminToken(t), nil, &acts)
	var assessed, deployed, rebooted bool
	for _, e := range acts.Value {
		switch {
		case e.Action == "Corral.Updates/assessments/action" && e.Caller == "admin" && strings.Contains(e.Message, "0 critical, 2 security, 2 other"):
			assessed = true
		case e.Action == "Corral.Updates/updateRuns/write" && e.Caller == "admin" && strings.Contains(e.Message, runID) && strings.Contains(e.Message, "2 installed"):
			deployed = true
		case strings.Contains(e.Message, "reboot after update run "+rebootRun) && e.Result == wire.ResultSucceeded:
			rebooted = true
		}
	}
	if !assessed || !deployed || !rebooted {
		t.Errorf("activity outcomes: assessed %v deployed %v rebooted %v: %+v", assessed, deployed, rebooted, acts.Value)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestUpdatesBrokenRepositoryAndHeldPackages: a repository apt cannot
// read fails the assessment with apt's own message; a held package fails
// its install with the manager's message and stays as it was.
func TestUpdatesBrokenRepositoryAndHeldPackages(t *testing.T) {
	testutil.NeedTool(t, "apt-get")
	h := newUpdatesHost(t, nil, nil)
	h.tree.Hold(t, "corral-lib")
	c := startServer(t, "--update-tick", "200ms")
	u := newUpdatesCluster(t, c, h)

	u.mustCorral(t, "update", "assess", "--machine", "web-01", "--wait")
	out, err := u.corral(t, "update", "deploy", "--machine", "web-01", "--classification", "Other", "--include", "corral-lib", "--reboot", "Never", "--wait")
	if err == nil || !strings.Contains(out, "Failed") {
		t.Errorf("deploy of a held package: %v\n%s", err, out)
	}
	id := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	r := u.showRun(t, id)
	p := packagesByName(r.Machines[0])["corral-lib"]
	if r.Status != wire.UpdateFailed || r.Reason != wire.ReasonInstallFailed || p.Status != wire.PackageFailed || !strings.Contains(p.Message, "Held packages were changed") {
		t.Errorf("held package run: %+v; package %+v", r, p)
	}
	if v := h.tree.Versions(t)["corral-lib"]; v != "1.0" {
		t.Errorf("the held package changed to %s", v)
	}

	missing := filepath.Join(t.TempDir(), "no-such-repo")
	h.tree.AddSource(t, "deb [trusted=yes] file:"+missing+" bookworm main")
	out, err = u.corral(t, "update", "assess", "--machine", "web-01", "--wait")
	if err == nil || !strings.Contains(out, missing) || !strings.Contains(out, "failed on 1 of 1 machines") {
		t.Errorf("assessment with a broken repository: %v, want apt's message naming %s:\n%s", err, missing, out)
	}
	var mu wire.MachineUpdates
	c.api.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/upd/machines/web-01/updates", c.api.AdminToken(t), nil, &mu)
	if mu.State != wire.AssessmentFailed || mu.Reason != wire.ReasonRefreshFailed || len(mu.Updates) != 4 {
		t.Errorf("machine updates after the failed assessment (the last good list kept, with why): %+v", mu)
	}
}

// TestUpdatesAgentKilledMidDeployment: an agent killed while dpkg runs a
// package's maintainer script reports the run interrupted when it starts
// again, and the next deployment repairs the package database first.
func TestUpdatesAgentKilledMidDeployment(t *testing.T) {
	testutil.NeedTool(t, "apt-get")
	// dpkg runs maintainer scripts chrooted into the tree: the marker is
	// the tree's /tmp/postinst-started.
	h := newUpdatesHost(t, []testutil.Deb{{Name: "corral-slow", Version: "1.0"}},
		[]testutil.Deb{{Name: "corral-slow", Version: "2.0", Postinst: "touch /tmp/postinst-started\nsleep 20"}})
	marker := filepath.Join(h.tree.Root, "tmp/postinst-started")
	c := startServer(t, "--update-tick", "200ms")
	u := newUpdatesCluster(t, c, h)
	u.mustCorral(t, "update", "assess", "--machine", "web-01", "--wait")

	id := strings.TrimSpace(u.mustCorral(t, "update", "deploy", "--machine", "web-01", "--classification", "Other",
		"--include", "corral-slow", "--reboot", "Never"))
	testutil.Eventually(t, 60*time.Second, func() string {
		if _, err := os.Stat(marker); err != nil {
			return "the slow postinst has not started"
		}
		return ""
	})
	if err := u.daemon.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-u.daemon.done
	u.startAgent(t)
	testutil.Eventually(t, 20*time.Second, func() string {
		r := u.showRun(t, id)
		if r.Status == wire.UpdateInProgress {
			return "run still InProgress"
		}
		return ""
	})
	r := u.showRun(t, id)
	m := r.Machines[0]
	if r.Status != wire.UpdateFailed || m.Reason != wire.ReasonInterrupted || !strings.Contains(m.Message, "corral-slow was being installed") {
		t.Errorf("interrupted run: %+v", r)
	}
	if p := packagesByName(m)["corral-slow"]; p.Status != wire.PackageFailed || !strings.Contains(p.Message, "interrupted") {
		t.Errorf("the package being installed when the agent died: %+v", p)
	}

	// The next deployment repairs first, then installs.
	out := u.mustCorral(t, "update", "deploy", "--machine", "web-01", "--classification", "Other", "--include", "corral-slow",
		"--include", "corral-tool", "--reboot", "Never", "--wait")
	next := u.showRun(t, strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]))
	if next.Status != wire.UpdateSucceeded || !strings.Contains(next.Machines[0].Recovery, id) {
		t.Errorf("the deployment after the kill: %+v", next)
	}
	if audit := h.tree.Audit(t); audit != "" {
		t.Errorf("dpkg --audit after the repairing deployment:\n%s", audit)
	}
	if v := h.tree.Versions(t); v["corral-slow"] != "2.0" || v["corral-tool"] != "2.0" {
		t.Errorf("versions after the repairing deployment: slow %s tool %s", v["corral-slow"], v["corral-tool"])
	}
}

// TestUpdatesWindowTooShort: a deployment whose maintenance window cannot
// hold the work ends Failed with MaintenanceWindowExceeded, and no install
// starts after the deadline. The window is at least 60 minutes, so the
// control plane runs in the test process with its clock 58m50s behind: the
// run's window ends 70 s after it is created, by the agent's clock. The
// agent and the CLI are the real binaries.
func TestUpdatesWindowTooShort(t *testing.T) {
	testutil.NeedTool(t, "apt-get")
	const behind = 58*time.Minute + 50*time.Second
	h := newUpdatesHost(t, []testutil.Deb{{Name: "corral-a-slow", Version: "1.0"}},
		[]testutil.Deb{{Name: "corral-a-slow", Version: "2.0", Postinst: "sleep 20"}})
	srv := testutil.StartServer(t, func(c *server.Config) {
		c.Clock = func() time.Time { return time.Now().Add(-behind) }
		c.UpdateTick = 200 * time.Millisecond
	})
	corral, agent := binaries(t)
	c := &cluster{corral: corral, agent: agent, api: srv.API, dataDir: srv.DataDir}
	u := newUpdatesCluster(t, c, h)
	u.mustCorral(t, "update", "assess", "--machine", "web-01", "--wait")

	created := time.Now()
	out, err := u.corral(t, "update", "deploy", "--machine", "web-01", "--classification", "Other", "--reboot", "Never", "--window", "60m", "--wait")
	if err == nil {
		t.Fatalf("a deployment too long for its window succeeded:\n%s", out)
	}
	r := u.showRun(t, strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]))
	deadline := r.Deadline // the server's clock is behind: its window ends 70 s from now
	if d := deadline.Sub(created); d < 60*time.Second || d > 80*time.Second {
		t.Fatalf("the run's window ends %s after it was created, want about 70s: %+v", d, r)
	}
	m := r.Machines[0]
	if r.Status != wire.UpdateFailed || r.Reason != wire.ReasonMaintenanceWindowExceeded || m.Reason != wire.ReasonMaintenanceWindowExceeded {
		t.Errorf("run: %s (%s), machine %s (%s): %s", r.Status, r.Reason, m.Status, m.Reason, m.Message)
	}
	pk := packagesByName(m)
	if p := pk["corral-a-slow"]; p.Status != wire.PackageInstalled || !p.StartedAt.Before(deadline) {
		t.Errorf("the first, slow update: %+v (deadline %s)", p, deadline)
	}
	for _, n := range []string{"corral-lib", "corral-tool"} {
		if p := pk[n]; p.Status != wire.PackageNotStarted || !p.StartedAt.IsZero() {
			t.Errorf("%s after the window closed: %+v", n, p)
		}
	}
	if v := h.tree.Versions(t); v["corral-lib"] != "1.0" || v["corral-tool"] != "1.0" || v["corral-a-slow"] != "2.0" {
		t.Errorf("versions: %v", v)
	}
	// dpkg's own log: nothing but the slow update was unpacked.
	log, err := os.ReadFile(filepath.Join(h.tree.Root, "var/log/dpkg.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, " upgrade corral-lib") || strings.Contains(l, " upgrade corral-tool") {
			t.Errorf("dpkg upgraded a package after the window closed: %s", l)
		}
	}
}
