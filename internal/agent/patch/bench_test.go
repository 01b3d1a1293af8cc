package patch_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/patch"
	"github.com/corralhq/corral/internal/testutil"
)

// benchTree is a realistic machine for the assessment benchmark: a
// debootstrap bookworm tree whose apt knows the whole bookworm main index
// (63,000+ packages, as a real machine does) plus a security suite that
// offers an upgrade of every installed package and of 12 more: about 100
// pending updates. The lists are fetched once before timing.
func benchTree(b *testing.B) (*testutil.AptTree, int) {
	b.Helper()
	tree := testutil.NewAptTree(b)
	main := testutil.NewAptRepo(b, testutil.AptSuite{Suite: "bookworm", Origin: "Debian", Packages: tree.DebianPackages})
	var extra []string
	var oldDebs []testutil.Deb
	for i := range 12 {
		oldDebs = append(oldDebs, testutil.Deb{Name: fmt.Sprintf("corral-extra%02d", i), Version: "1.0"})
	}
	dir := b.TempDir()
	for _, d := range oldDebs {
		extra = append(extra, testutil.BuildDeb(b, dir, d))
	}
	tree.Install(b, extra...)
	out, err := exec.Command("dpkg-query", "--admindir="+tree.Root+"/var/lib/dpkg", "-W", "-f=${Package}\t${Architecture}\t${Version}\n").Output()
	if err != nil {
		b.Fatal(err)
	}
	var ups []testutil.Deb
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "\t")
		ups = append(ups, testutil.Deb{Name: f[0], Arch: f[1], Version: f[2] + "+corral1"})
	}
	sec := testutil.NewAptRepo(b, testutil.AptSuite{Suite: "bookworm-security", Origin: "Debian", Label: "Debian-Security", Debs: ups})
	tree.UseRepos(b, main, sec)
	tree.Apt(b, "apt-get", "update")
	return tree, len(ups)
}

// maxRSS is the peak resident memory of a finished command, in MiB.
func maxRSS(cmd *exec.Cmd) float64 {
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024
	}
	return 0
}

func selfMaxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

// BenchmarkAptAssessment: go test -run '^$' -bench AptAssessment -benchtime 5x ./internal/agent/patch/
func BenchmarkAptAssessment(b *testing.B) {
	if os.Getenv("CORRAL_TEST_STRICT") == "" && os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	tree, n := benchTree(b)
	m, err := patch.New(tree.Root, patch.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Logf("%d pending updates offered on a tree with the full bookworm index", n)

	b.Run("assess-with-refresh", func(b *testing.B) {
		b.ReportAllocs()
		var got int
		start := time.Now()
		for b.Loop() {
			a, err := m.Assess(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got = len(a.Updates)
		}
		b.ReportMetric(float64(got), "updates")
		b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "wall-ms/op")
		b.ReportMetric(float64(selfMaxRSS())/1024, "agent-process-maxrss-MB")
	})
	b.Run("assess-cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.AssessCached(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The reference: the package manager alone listing the same updates.
	for _, ref := range [][]string{{"apt", "list", "--upgradable"}, {"apt-get", "update"}, {"apt-cache", "policy"}} {
		b.Run("reference-"+strings.Join(ref, "-"), func(b *testing.B) {
			var rss float64
			for b.Loop() {
				cmd := exec.Command(ref[0], ref[1:]...)
				cmd.Env = append(os.Environ(), "APT_CONFIG="+tree.Config)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v\n%s", err, out)
				}
				rss = max(rss, maxRSS(cmd))
			}
			b.ReportMetric(rss, "maxrss-MB")
		})
	}
}
