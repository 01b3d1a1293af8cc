package patch_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/agent/patch"
	"github.com/corralhq/corral/internal/testutil"
)

// aptFixture is a Debian tree with a normal suite, a "-security" suite and
// a suite that is security by its label only, and these pending updates:
//
//	foo     1.0 → 1.1  Other
//	held    1.0 → 1.1  Other (held in dpkg)
//	conf-a  1.0 → 2.0  Other (2.0 conflicts with the installed conf-b)
//	bar     1.0 → 2.0  Security (-security suite; 2.0 needs the new libdep)
//	lbl     1.0 → 1.1  Security (label "Debian-Security", suite "corral-updates")
type aptFixture struct {
	tree *testutil.AptTree
}

func newAptFixture(t *testing.T, extra ...testutil.AptSuite) aptFixture {
	t.Helper()
	testutil.NeedTool(t, "apt-ftparchive")
	tree := testutil.NewAptTree(t)
	normal := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "bookworm", Debs: []testutil.Deb{
		{Name: "foo", Version: "1.0"}, {Name: "foo", Version: "1.1"},
		{Name: "held", Version: "1.0"}, {Name: "held", Version: "1.1"},
		{Name: "conf-a", Version: "1.0"}, {Name: "conf-a", Version: "2.0", Conflicts: "conf-b"},
		{Name: "conf-b", Version: "1.0"},
		{Name: "bar", Version: "1.0"},
		{Name: "lbl", Version: "1.0"},
	}})
	security := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "bookworm-security", Label: "Corral-Security", Debs: []testutil.Deb{
		{Name: "bar", Version: "2.0", Depends: "libdep (>= 2.0)"},
		{Name: "libdep", Version: "2.0"},
	}})
	label := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "corral-updates", Origin: "Debian", Label: "Debian-Security", Debs: []testutil.Deb{
		{Name: "lbl", Version: "1.1"},
	}})
	repos := []testutil.AptRepo{normal, security, label}
	for _, s := range extra {
		repos = append(repos, testutil.NewAptRepo(t, s))
	}
	var base []string
	for _, n := range []string{"foo_1.0", "held_1.0", "conf-a_1.0", "conf-b_1.0", "bar_1.0", "lbl_1.0"} {
		base = append(base, filepath.Join(normal.Dir, "pool", n+"_all.deb"))
	}
	tree.Install(t, base...)
	tree.Hold(t, "held")
	tree.UseRepos(t, repos...)
	return aptFixture{tree: tree}
}

func newManager(t *testing.T, root string) *patch.Manager {
	t.Helper()
	m, err := patch.New(root, patch.Options{CommandTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// aptListOracle is what `apt list --upgradable` says on the tree:
// name → [installed, candidate].
func aptListOracle(t *testing.T, tree *testutil.AptTree) map[string][2]string {
	t.Helper()
	got := map[string][2]string{}
	for _, l := range strings.Split(tree.Apt(t, "apt", "list", "--upgradable"), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.Contains(l, "[upgradable from:") {
			continue
		}
		name, _, _ := strings.Cut(f[0], "/")
		got[name] = [2]string{strings.TrimSuffix(f[5], "]"), f[1]}
	}
	return got
}

func byName(a patch.Assessment) map[string]patch.Update {
	m := map[string]patch.Update{}
	for _, u := range a.Updates {
		m[u.Name] = u
	}
	return m
}

func TestAptAssessmentMatchesAptList(t *testing.T) {
	t.Parallel()
	f := newAptFixture(t)
	m := newManager(t, f.tree.Root)
	if m.Kind() != patch.Apt {
		t.Fatalf("Kind() = %s, want apt (the tree is Debian)", m.Kind())
	}
	before := f.tree.Versions(t)
	a, err := m.Assess(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The oracle runs after Assess refreshed the lists.
	want := aptListOracle(t, f.tree)
	got := map[string][2]string{}
	for _, u := range a.Updates {
		got[u.Name] = [2]string{u.InstalledVersion, u.CandidateVersion}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("assessment differs from apt list --upgradable (-apt +assessment):\n%s", diff)
	}
	if len(want) != 5 {
		t.Errorf("apt list --upgradable has %d updates, the fixture makes 5: %v", len(want), want)
	}
	class := map[string]patch.Classification{}
	source := map[string]string{}
	for _, u := range a.Updates {
		class[u.Name], source[u.Name] = u.Classification, u.Source
	}
	wantClass := map[string]patch.Classification{
		"foo": patch.Other, "held": patch.Other, "conf-a": patch.Other, "bar": patch.Security, "lbl": patch.Security,
	}
	if diff := cmp.Diff(wantClass, class); diff != "" {
		t.Errorf("classifications (-want +got):\n%s", diff)
	}
	if source["bar"] != "bookworm-security" || source["foo"] != "bookworm" {
		t.Errorf("sources = %v, want bar from bookworm-security, foo from bookworm", source)
	}
	if a.Count(patch.Security) != 2 || a.Count(patch.Other) != 3 || a.Count(patch.Critical) != 0 {
		t.Errorf("counts = %d/%d/%d", a.Count(patch.Critical), a.Count(patch.Security), a.Count(patch.Other))
	}
	// Most important first.
	if a.Updates[0].Classification != patch.Security {
		t.Errorf("first update is %+v, want a Security one first", a.Updates[0])
	}
	// An assessment installs nothing and holds nothing.
	if diff := cmp.Diff(before, f.tree.Versions(t)); diff != "" {
		t.Errorf("the assessment changed installed packages:\n%s", diff)
	}
	if holds := strings.Fields(f.tree.Apt(t, "apt-mark", "showhold")); !slices.Equal(holds, []string{"held"}) {
		t.Errorf("holds after the assessment = %v, want [held]", holds)
	}
}

func TestAptSecurityOnlyDeployment(t *testing.T) {
	t.Parallel()
	f := newAptFixture(t)
	m := newManager(t, f.tree.Root)
	before := f.tree.Versions(t)
	res, err := m.Deploy(context.Background(), patch.Deployment{
		ID: "run-1", Selection: patch.Selection{Classifications: []patch.Classification{patch.Security}},
		Deadline: time.Now().Add(time.Hour), JournalDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != patch.RunSucceeded || res.Reason != patch.ReasonNone {
		t.Fatalf("status %s %s %q, want Succeeded: %+v", res.Status, res.Reason, res.Message, res.Packages)
	}
	got := map[string]patch.PackageResult{}
	for _, p := range res.Packages {
		p.Started, p.Finished = time.Time{}, time.Time{}
		got[p.Name] = p
	}
	want := map[string]patch.PackageResult{
		"bar":    {Name: "bar", Arch: "all", Classification: patch.Security, Status: patch.Installed, BeforeVersion: "1.0", AfterVersion: "2.0"},
		"lbl":    {Name: "lbl", Arch: "all", Classification: patch.Security, Status: patch.Installed, BeforeVersion: "1.0", AfterVersion: "1.1"},
		"libdep": {Name: "libdep", Status: patch.Installed, AfterVersion: "2.0", Message: "installed as a dependency"},
		"foo":    {Name: "foo", Arch: "all", Classification: patch.Other, Status: patch.NotSelected, BeforeVersion: "1.0", AfterVersion: "1.0"},
		"held":   {Name: "held", Arch: "all", Classification: patch.Other, Status: patch.NotSelected, BeforeVersion: "1.0", AfterVersion: "1.0"},
		"conf-a": {Name: "conf-a", Arch: "all", Classification: patch.Other, Status: patch.NotSelected, BeforeVersion: "1.0", AfterVersion: "1.0"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("package results (-want +got):\n%s", diff)
	}
	after := f.tree.Versions(t)
	wantAfter := maps.Clone(before)
	wantAfter["bar"], wantAfter["lbl"], wantAfter["libdep"] = "2.0", "1.1", "2.0"
	if diff := cmp.Diff(wantAfter, after); diff != "" {
		t.Errorf("tree after the deployment (-want +got):\n%s", diff)
	}
	if res.Recovery.Interrupted || res.Recovery.Broken != "" {
		t.Errorf("recovery = %+v on a clean first run", res.Recovery)
	}
	a, err := m.Assess(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range a.Updates {
		names = append(names, u.Name+"/"+string(u.Classification))
	}
	slices.Sort(names)
	if want := []string{"conf-a/Other", "foo/Other", "held/Other"}; !slices.Equal(names, want) {
		t.Errorf("next assessment = %v, want only the others %v", names, want)
	}
}

func TestAptWindowTooShort(t *testing.T) {
	t.Parallel()
	f := newAptFixture(t, testutil.AptSuite{Suite: "slow-security", Debs: []testutil.Deb{
		{Name: "aaa-slow", Version: "1.1", Postinst: "sleep 3"},
	}})
	repo := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "x", Debs: []testutil.Deb{{Name: "aaa-slow", Version: "1.0"}}})
	f.tree.Install(t, filepath.Join(repo.Dir, "pool", "aaa-slow_1.0_all.deb"))
	m := newManager(t, f.tree.Root)
	before := f.tree.Versions(t)
	start := time.Now()
	// The slow install (3 s) starts; after it, the next install would need
	// about as long again, which the window no longer has.
	deadline := start.Add(5 * time.Second)
	res, err := m.Deploy(context.Background(), patch.Deployment{
		ID: "run-window", JournalDir: t.TempDir(), Deadline: deadline,
		Selection: patch.Selection{Classifications: []patch.Classification{patch.Security, patch.Other}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != patch.RunFailed || res.Reason != patch.ReasonMaintenanceWindowExceeded {
		t.Fatalf("status %s reason %s, want Failed MaintenanceWindowExceeded: %+v", res.Status, res.Reason, res.Packages)
	}
	after := f.tree.Versions(t)
	notStarted := 0
	for _, p := range res.Packages {
		if !p.Started.IsZero() && !p.Started.Before(deadline) {
			t.Errorf("%s started at %s, after the deadline %s", p.Name, p.Started, deadline)
		}
		if p.Status == patch.NotStarted {
			notStarted++
			if after[p.Name] != before[p.Name] {
				t.Errorf("%s is NotStarted but changed %s → %s", p.Name, before[p.Name], after[p.Name])
			}
		}
	}
	if notStarted == 0 {
		t.Errorf("no update NotStarted: %+v", res.Packages)
	}
	if !strings.Contains(res.Message, "not started") {
		t.Errorf("message %q does not say what was left", res.Message)
	}
	t.Logf("window %s: %d not started, run took %s", deadline.Sub(start), notStarted, res.Finished.Sub(res.Started).Round(time.Millisecond))
}

func TestAptBadInput(t *testing.T) {
	t.Parallel()
	f := newAptFixture(t)
	m := newManager(t, f.tree.Root)
	dir := filepath.Join(t.TempDir(), "journal")
	ok := patch.Deployment{ID: "r", JournalDir: dir, Deadline: time.Now().Add(time.Hour),
		Selection: patch.Selection{Classifications: []patch.Classification{patch.Security}}}
	for _, tc := range []struct {
		name string
		edit func(*patch.Deployment)
		want error
	}{
		{"unknown classification", func(d *patch.Deployment) { d.Selection.Classifications = []patch.Classification{"Important"} }, patch.ErrUnknownClassification},
		{"no classification", func(d *patch.Deployment) { d.Selection.Classifications = nil }, patch.ErrBadSelection},
		{"bad include pattern", func(d *patch.Deployment) { d.Selection.Include = []string{"lib[abc"} }, patch.ErrBadSelection},
		{"empty exclude pattern", func(d *patch.Deployment) { d.Selection.Exclude = []string{" "} }, patch.ErrBadSelection},
		{"no deadline", func(d *patch.Deployment) { d.Deadline = time.Time{} }, patch.ErrBadDeployment},
		{"no journal", func(d *patch.Deployment) { d.JournalDir = "" }, patch.ErrBadDeployment},
		{"no id", func(d *patch.Deployment) { d.ID = "" }, patch.ErrBadDeployment},
	} {
		d := ok
		tc.edit(&d)
		_, err := m.Deploy(context.Background(), d)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad input started a run (journal dir exists: %v)", err)
	}
	if _, err := patch.ParseClassification("critical"); err != nil {
		t.Errorf("ParseClassification(critical): %v", err)
	}
}

func TestAptBrokenRepository(t *testing.T) {
	t.Parallel()
	f := newAptFixture(t)
	missing := filepath.Join(t.TempDir(), "no-such-repo")
	f.tree.AddSource(t, "deb [trusted=yes] file:"+missing+" bookworm main")
	m := newManager(t, f.tree.Root)
	before := f.tree.Versions(t)
	_, err := m.Assess(context.Background())
	var me *patch.ManagerError
	if !errors.As(err, &me) || !strings.Contains(me.Output, missing) {
		t.Fatalf("Assess with a broken repository: %v, want apt's own message naming %s", err, missing)
	}
	t.Logf("apt says: %v", err)
	res, err := m.Deploy(context.Background(), patch.Deployment{ID: "r", JournalDir: t.TempDir(), Deadline: time.Now().Add(time.Hour),
		Selection: patch.Selection{Classifications: []patch.Classification{patch.Security, patch.Other}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != patch.RunFailed || res.Reason != patch.ReasonRefreshFailed || !strings.Contains(res.Message, missing) {
		t.Errorf("deploy: %s %s %q, want Failed RefreshFailed with apt's message", res.Status, res.Reason, res.Message)
	}
	if diff := cmp.Diff(before, f.tree.Versions(t)); diff != "" {
		t.Errorf("packages changed:\n%s", diff)
	}
}

func TestAptHeldAndConflicting(t *testing.T) {
	t.Parallel()
	f := newAptFixture(t)
	m := newManager(t, f.tree.Root)
	before := f.tree.Versions(t)
	res, err := m.Deploy(context.Background(), patch.Deployment{ID: "r", JournalDir: t.TempDir(), Deadline: time.Now().Add(time.Hour),
		Selection: patch.Selection{Classifications: []patch.Classification{patch.Other}, Include: []string{"held", "conf-*"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != patch.RunFailed || res.Reason != patch.ReasonInstallFailed {
		t.Errorf("status %s %s, want Failed InstallFailed", res.Status, res.Reason)
	}
	msgs := map[string]patch.PackageResult{}
	for _, p := range res.Packages {
		msgs[p.Name] = p
	}
	for name, want := range map[string]string{"held": "Held packages were changed", "conf-a": "remove"} {
		p := msgs[name]
		if p.Status != patch.Failed || !strings.Contains(p.Message, want) || !strings.Contains(p.Message, "E: ") {
			t.Errorf("%s: %s %q, want Failed with apt's message containing %q", name, p.Status, p.Message, want)
		}
		t.Logf("%s: %s", name, p.Message)
	}
	if msgs["foo"].Status != patch.NotSelected {
		t.Errorf("foo: %s, want NotSelected (not included)", msgs["foo"].Status)
	}
	if diff := cmp.Diff(before, f.tree.Versions(t)); diff != "" {
		t.Errorf("packages changed although nothing could be installed:\n%s", diff)
	}
}

func TestAptRebootRequired(t *testing.T) {
	t.Parallel()
	f := newAptFixture(t, testutil.AptSuite{Suite: "kernel-security", Debs: []testutil.Deb{
		{Name: "linux-image-corral", Version: "1.1"},
		{Name: "asks-reboot", Version: "1.1", Postinst: "touch /run/reboot-required"},
	}})
	old := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "x", Debs: []testutil.Deb{
		{Name: "linux-image-corral", Version: "1.0"}, {Name: "asks-reboot", Version: "1.0"},
	}})
	f.tree.Install(t, filepath.Join(old.Dir, "pool", "linux-image-corral_1.0_all.deb"), filepath.Join(old.Dir, "pool", "asks-reboot_1.0_all.deb"))
	m := newManager(t, f.tree.Root)
	a, err := m.Assess(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ups := byName(a)
	if !ups["linux-image-corral"].RebootRequired || ups["foo"].RebootRequired || a.RebootPending {
		t.Errorf("before: kernel RebootRequired %v (want true), foo %v (want false), pending %v (want false)",
			ups["linux-image-corral"].RebootRequired, ups["foo"].RebootRequired, a.RebootPending)
	}
	// Only the package whose postinst asks for a reboot: the flag file says so.
	res, err := m.Deploy(context.Background(), patch.Deployment{ID: "r", JournalDir: t.TempDir(), Deadline: time.Now().Add(time.Hour),
		Selection: patch.Selection{Classifications: []patch.Classification{patch.Security}, Include: []string{"asks-reboot"}}})
	if err != nil || res.Status != patch.RunSucceeded {
		t.Fatalf("%v %s %q", err, res.Status, res.Message)
	}
	if !res.RebootRequired {
		t.Error("RebootRequired = false after a postinst wrote /run/reboot-required")
	}
	if _, err := os.Stat(filepath.Join(f.tree.Root, "run/reboot-required")); err != nil {
		t.Errorf("the postinst's flag is not in the tree: %v", err)
	}
	a, err = m.Assess(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !a.RebootPending {
		t.Error("RebootPending = false after the flag file was written in the tree")
	}
}
