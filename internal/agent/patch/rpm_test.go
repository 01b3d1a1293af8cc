package patch_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/agent/patch"
	"github.com/corralhq/corral/internal/testutil"
)

// rpmFixture is an rpm tree (RHEL-like or SUSE-like) with a base
// repository of what is installed and an updates repository with
// advisories:
//
//	crit    1.0 → 1.1  Critical (security advisory, severity Critical)
//	bar     1.0 → 2.0  Security (security advisory, severity Important)
//	foo     1.0 → 1.1  Other    (bugfix advisory)
//	plain   1.0 → 1.1  Other    (no advisory)
//	conf-a  1.0 → 2.0  Other    (2.0 conflicts with the installed conf-b)
func rpmFixture(t *testing.T, osRelease string) *testutil.RPMTree {
	t.Helper()
	base := []testutil.RPM{
		{Name: "crit", Version: "1.0"}, {Name: "bar", Version: "1.0"}, {Name: "foo", Version: "1.0"},
		{Name: "plain", Version: "1.0"}, {Name: "conf-a", Version: "1.0"}, {Name: "conf-b", Version: "1.0"},
	}
	upd := []testutil.RPM{
		{Name: "crit", Version: "1.1"}, {Name: "bar", Version: "2.0"}, {Name: "foo", Version: "1.1"},
		{Name: "plain", Version: "1.1"}, {Name: "conf-a", Version: "2.0", Conflicts: []string{"conf-b"}},
	}
	baseRepo := testutil.NewRPMRepo(t, base, nil)
	updRepo := testutil.NewRPMRepo(t, upd, []testutil.Advisory{
		{ID: "CORRAL-2026-0001", Type: "security", Severity: "Critical", Packages: upd[:1]},
		{ID: "CORRAL-2026-0002", Type: "security", Severity: "Important", Packages: upd[1:2]},
		{ID: "CORRAL-2026-0003", Type: "bugfix", Packages: upd[2:3]},
	})
	tree := testutil.NewRPMTree(t, osRelease)
	var files []string
	for _, p := range base {
		files = append(files, filepath.Join(baseRepo.Dir, "Packages", p.NEVRA()+".rpm"))
	}
	tree.Install(t, files...)
	tree.AddRepo(t, "base", baseRepo)
	tree.AddRepo(t, "updates", updRepo)
	return tree
}

var rpmWantClass = map[string]patch.Classification{
	"crit": patch.Critical, "bar": patch.Security, "foo": patch.Other, "plain": patch.Other, "conf-a": patch.Other,
}

func classesOf(a patch.Assessment) map[string]patch.Classification {
	m := map[string]patch.Classification{}
	for _, u := range a.Updates {
		m[u.Name] = u.Classification
	}
	return m
}

func versionsOf(a patch.Assessment) map[string][2]string {
	m := map[string][2]string{}
	for _, u := range a.Updates {
		m[u.Name] = [2]string{u.InstalledVersion, u.CandidateVersion}
	}
	return m
}

var rpmWantVersions = map[string][2]string{
	"crit": {"1.0-1", "1.1-1"}, "bar": {"1.0-1", "2.0-1"}, "foo": {"1.0-1", "1.1-1"},
	"plain": {"1.0-1", "1.1-1"}, "conf-a": {"1.0-1", "2.0-1"},
}

// dnfCheckUpdate is the oracle: `dnf check-update` on the tree, name →
// candidate version-release.
func dnfCheckUpdate(t *testing.T, root string) map[string]string {
	t.Helper()
	cmd := exec.Command("dnf", "-q", "-C", "--installroot="+root, "--releasever=9.4", "check-update")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 100) {
		t.Fatalf("dnf check-update: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			name, _, _ := strings.Cut(f[0], ".")
			m[name] = f[1]
		}
	}
	return m
}

func TestDnf(t *testing.T) {
	t.Parallel()
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "dnf")
	tree := rpmFixture(t, testutil.RHELRelease)
	m := newManager(t, tree.Root)
	if m.Kind() != patch.Dnf {
		t.Fatalf("Kind() = %s, want dnf for a Rocky os-release", m.Kind())
	}
	before := tree.Versions(t)
	a, err := m.Assess(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rpmWantVersions, versionsOf(a)); diff != "" {
		t.Errorf("assessment versions (-want +got):\n%s", diff)
	}
	oracle := map[string]string{}
	for n, v := range versionsOf(a) {
		oracle[n] = v[1]
	}
	if diff := cmp.Diff(dnfCheckUpdate(t, tree.Root), oracle); diff != "" {
		t.Errorf("assessment differs from dnf check-update (-dnf +assessment):\n%s", diff)
	}
	if diff := cmp.Diff(rpmWantClass, classesOf(a)); diff != "" {
		t.Errorf("classifications (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, tree.Versions(t)); diff != "" {
		t.Errorf("the assessment changed packages:\n%s", diff)
	}

	t.Run("conflict", func(t *testing.T) {
		res, err := m.Deploy(context.Background(), patch.Deployment{ID: "c", JournalDir: t.TempDir(), Deadline: time.Now().Add(time.Hour),
			Selection: patch.Selection{Classifications: []patch.Classification{patch.Other}, Include: []string{"conf-*"}}})
		if err != nil {
			t.Fatal(err)
		}
		p := resultOf(res, "conf-a")
		if res.Reason != patch.ReasonInstallFailed || p.Status != patch.Failed || !strings.Contains(p.Message, "conf") {
			t.Errorf("%s %s, conf-a %s %q: want InstallFailed with dnf's message", res.Status, res.Reason, p.Status, p.Message)
		}
		t.Logf("dnf says: %s", p.Message)
		if diff := cmp.Diff(before, tree.Versions(t)); diff != "" {
			t.Errorf("packages changed:\n%s", diff)
		}
	})
	t.Run("critical and security", func(t *testing.T) {
		res, err := m.Deploy(context.Background(), patch.Deployment{ID: "s", JournalDir: t.TempDir(), Deadline: time.Now().Add(time.Hour),
			Selection: patch.Selection{Classifications: []patch.Classification{patch.Critical, patch.Security}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != patch.RunSucceeded {
			t.Fatalf("%s %s %q: %+v", res.Status, res.Reason, res.Message, res.Packages)
		}
		if p := resultOf(res, "crit"); p.Status != patch.Installed || p.BeforeVersion != "1.0-1" || p.AfterVersion != "1.1-1" {
			t.Errorf("crit: %+v", p)
		}
		after, err := m.Assess(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]patch.Classification{"foo": patch.Other, "plain": patch.Other, "conf-a": patch.Other}
		if diff := cmp.Diff(want, classesOf(after)); diff != "" {
			t.Errorf("next assessment (-want +got):\n%s", diff)
		}
	})
	t.Run("broken repository", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "no-such-repo")
		tree.AddRepo(t, "broken", testutil.RPMRepo{Dir: missing})
		defer os.Remove(filepath.Join(tree.Root, "etc/yum.repos.d/broken.repo"))
		_, err := m.Assess(context.Background())
		var me *patch.ManagerError
		if !errors.As(err, &me) || !strings.Contains(me.Message, "broken") {
			t.Fatalf("Assess with a broken repository: %v, want dnf's message naming the repository", err)
		}
		t.Logf("dnf says: %v", err)
	})
}

func TestZypper(t *testing.T) {
	t.Parallel()
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "zypper")
	tree := rpmFixture(t, testutil.SUSERelease)
	m := newManager(t, tree.Root)
	if m.Kind() != patch.Zypper {
		t.Fatalf("Kind() = %s, want zypper for an openSUSE os-release", m.Kind())
	}
	before := tree.Versions(t)
	a, err := m.Assess(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rpmWantVersions, versionsOf(a)); diff != "" {
		t.Errorf("assessment versions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(rpmWantClass, classesOf(a)); diff != "" {
		t.Errorf("classifications (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, tree.Versions(t)); diff != "" {
		t.Errorf("the assessment changed packages:\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(tree.Root, "var/log/zypper.log")); err != nil {
		t.Errorf("zypper's log is not in the tree: %v", err)
	}
	t.Run("conflict", func(t *testing.T) {
		res, err := m.Deploy(context.Background(), patch.Deployment{ID: "c", JournalDir: t.TempDir(), Deadline: time.Now().Add(time.Hour),
			Selection: patch.Selection{Classifications: []patch.Classification{patch.Other}, Include: []string{"conf-*"}}})
		if err != nil {
			t.Fatal(err)
		}
		p := resultOf(res, "conf-a")
		if res.Reason != patch.ReasonInstallFailed || p.Status != patch.Failed || !strings.Contains(p.Message, "conf") {
			t.Errorf("%s %s, conf-a %s %q: want InstallFailed with zypper's message", res.Status, res.Reason, p.Status, p.Message)
		}
		t.Logf("zypper says: %s", p.Message)
		if diff := cmp.Diff(before, tree.Versions(t)); diff != "" {
			t.Errorf("packages changed:\n%s", diff)
		}
	})
	t.Run("critical and security", func(t *testing.T) {
		res, err := m.Deploy(context.Background(), patch.Deployment{ID: "s", JournalDir: t.TempDir(), Deadline: time.Now().Add(time.Hour),
			Selection: patch.Selection{Classifications: []patch.Classification{patch.Critical, patch.Security}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != patch.RunSucceeded {
			t.Fatalf("%s %s %q: %+v", res.Status, res.Reason, res.Message, res.Packages)
		}
		after, err := m.Assess(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]patch.Classification{"foo": patch.Other, "plain": patch.Other, "conf-a": patch.Other}
		if diff := cmp.Diff(want, classesOf(after)); diff != "" {
			t.Errorf("next assessment (-want +got):\n%s", diff)
		}
	})
}

func resultOf(res patch.DeploymentResult, name string) patch.PackageResult {
	i := slices.IndexFunc(res.Packages, func(p patch.PackageResult) bool { return p.Name == name })
	if i < 0 {
		return patch.PackageResult{}
	}
	return res.Packages[i]
}
