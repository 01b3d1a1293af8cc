package patch_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/patch"
	"github.com/corralhq/corral/internal/testutil"
)

// TestDeployHelperProcess is the "agent" of TestAptKilledMidDeployment: a
// separate process that runs a deployment until it is killed.
func TestDeployHelperProcess(t *testing.T) {
	root := os.Getenv("CORRAL_PATCH_HELPER_ROOT")
	if root == "" {
		t.Skip("helper process of TestAptKilledMidDeployment")
	}
	m, err := patch.New(root, patch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Deploy(context.Background(), patch.Deployment{
		ID: "run-killed", JournalDir: os.Getenv("CORRAL_PATCH_HELPER_JOURNAL"), Deadline: time.Now().Add(time.Hour),
		Selection: patch.Selection{Classifications: []patch.Classification{patch.Security}},
	})
	t.Fatalf("the deployment was meant to be killed, it ended: %v", err)
}

func TestAptKilledMidDeployment(t *testing.T) {
	t.Parallel()
	f := newAptFixture(t, testutil.AptSuite{Suite: "slow-security", Debs: []testutil.Deb{
		{Name: "aaa-slow", Version: "1.1", Postinst: `touch /aaa-slow-started; sleep "$(cat /etc/aaa-slow-seconds)"`},
	}})
	old := testutil.NewAptRepo(t, testutil.AptSuite{Suite: "x", Debs: []testutil.Deb{{Name: "aaa-slow", Version: "1.0"}}})
	f.tree.Install(t, filepath.Join(old.Dir, "pool", "aaa-slow_1.0_all.deb"))
	seconds := filepath.Join(f.tree.Root, "etc/aaa-slow-seconds")
	if err := os.WriteFile(seconds, []byte("600"), 0o644); err != nil {
		t.Fatal(err)
	}
	journal := t.TempDir()

	agent := exec.Command(os.Args[0], "-test.run=^TestDeployHelperProcess$", "-test.count=1")
	agent.Env = append(os.Environ(), "CORRAL_PATCH_HELPER_ROOT="+f.tree.Root, "CORRAL_PATCH_HELPER_JOURNAL="+journal)
	var out strings.Builder
	agent.Stdout, agent.Stderr = &out, &out
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Should the recovery fail, leave no dpkg or sleep behind.
		if j, _ := patch.LastRun(journal); j != nil && j.PGID > 1 {
			syscall.Kill(-j.PGID, syscall.SIGKILL)
		}
	})
	started := filepath.Join(f.tree.Root, "aaa-slow-started")
	testutil.Eventually(t, 2*time.Minute, func() string {
		if _, err := os.Stat(started); err != nil {
			return "the slow postinst has not started; agent output: " + out.String()
		}
		return ""
	})
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	agent.Wait()

	j, err := patch.LastRun(journal)
	if err != nil || j == nil {
		t.Fatalf("journal after the kill: %v, %v", j, err)
	}
	if j.State != patch.JournalRunning || j.Current != "aaa-slow" {
		t.Fatalf("journal after the kill = %+v, want Running with aaa-slow current", j)
	}
	if a := f.tree.Audit(t); !strings.Contains(a, "aaa-slow") {
		t.Fatalf("dpkg --audit after the kill = %q, want aaa-slow half-configured", a)
	}
	if err := os.WriteFile(seconds, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}

	m := newManager(t, f.tree.Root)
	res, err := m.Deploy(context.Background(), patch.Deployment{
		ID: "run-next", JournalDir: journal, Deadline: time.Now().Add(time.Hour),
		Selection: patch.Selection{Classifications: []patch.Classification{patch.Security}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Recovery
	if !rec.Interrupted || rec.Previous == nil || rec.Previous.ID != "run-killed" || rec.Previous.Current != "aaa-slow" {
		t.Errorf("recovery = %+v, want the interrupted run-killed during aaa-slow", rec)
	}
	if rec.Killed == 0 {
		t.Errorf("no leftover process of the killed run was killed (dpkg was still in its postinst)")
	}
	if !strings.Contains(rec.Broken, "aaa-slow") {
		t.Errorf("recovery.Broken = %q, want dpkg's audit naming aaa-slow", rec.Broken)
	}
	if res.Status != patch.RunSucceeded {
		t.Errorf("the next run: %s %s %q: %+v", res.Status, res.Reason, res.Message, res.Packages)
	}
	if a := f.tree.Audit(t); a != "" {
		t.Errorf("dpkg --audit after the next run = %q, want clean", a)
	}
	v := f.tree.Versions(t)
	if v["aaa-slow"] != "1.1" || v["bar"] != "2.0" || v["lbl"] != "1.1" {
		t.Errorf("versions after the next run: aaa-slow %s bar %s lbl %s, want 1.1 2.0 1.1", v["aaa-slow"], v["bar"], v["lbl"])
	}
	if j, _ := patch.LastRun(journal); j == nil || j.ID != "run-next" || j.State != patch.JournalFinished {
		t.Errorf("journal after the next run = %+v, want run-next Finished", j)
	}
	t.Logf("recovery: killed %d leftover processes; dpkg --audit said: %s", rec.Killed, rec.Broken)
}
