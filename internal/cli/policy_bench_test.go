package cli

import (
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/policy/guest"
	"github.com/corralhq/corral/internal/testutil"
)

const helperEnv = "CORRAL_POLICY_TEST_HELPER"

// TestPolicyTestHelperProcess is `corral policy test` in a child process,
// for BenchmarkPolicyTestVsOpenSCAP to measure the command's wall time and
// peak memory the way it measures oscap-chroot's. It does nothing unless
// the benchmark sets CORRAL_POLICY_TEST_HELPER (arguments separated by \x1f).
func TestPolicyTestHelperProcess(t *testing.T) {
	args := os.Getenv(helperEnv)
	if args == "" {
		return
	}
	root := NewRootCommand("bench")
	root.SetArgs(strings.Split(args, "\x1f"))
	root.SetOut(io.Discard)
	os.Exit(ExitCode(root.Execute()))
}

// BenchmarkPolicyTestVsOpenSCAP runs, side by side on the same Debian
// server tree, oscap-chroot with the SSG rules the baseline maps and
// `corral policy test` with the whole baseline (a superset: 170 rules), and
// reports wall time and peak RSS of both processes, plus the in-process
// evaluation time and allocations (the agent's cost per evaluation).
//
//	go test -run '^$' -bench PolicyTestVsOpenSCAP -benchtime 3x ./internal/cli/
func BenchmarkPolicyTestVsOpenSCAP(b *testing.B) {
	testutil.NeedRoot(b)
	testutil.NeedTool(b, "oscap-chroot")
	needSSGContent(b)
	root := testutil.DebianRoot(b, "openssh-server", "auditd", "cron")
	writeIn(b, root, "etc/debian_version", "11.7\n", 0o644)
	rules, baseline := baselineSSGRules(b)
	ssgOnly := &guest.Configuration{Name: "ssg-mapped", Rules: rules}
	dir := b.TempDir()
	tailoring := writeTailoring(b, dir, rules)
	env := guest.NewEnv(root)

	var oscapTime, cliTime, evalAll, evalSSG time.Duration
	var oscapRSS, cliRSS int64
	var allocAll uint64
	const inProcessRuns = 20
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, d, rss := runOscap(b, root, dir, tailoring)
		oscapTime += d
		oscapRSS = max(oscapRSS, rss)

		cmd := exec.Command(os.Args[0], "-test.run=^TestPolicyTestHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join([]string{"policy", "test", "--definition", "linux-security-baseline", "--root", root, "-o", "json"}, "\x1f"))
		start := time.Now()
		err := cmd.Run()
		cliTime += time.Since(start)
		if code := ExitCode(err); err != nil && code != 1 {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				b.Fatalf("corral policy test: %v", err)
			}
		}
		cliRSS = max(cliRSS, maxRSS(cmd.ProcessState))

		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		start = time.Now()
		for j := 0; j < inProcessRuns; j++ {
			baseline.Evaluate(context.Background(), env)
		}
		evalAll += time.Since(start) / inProcessRuns
		runtime.ReadMemStats(&ms1)
		allocAll += (ms1.TotalAlloc - ms0.TotalAlloc) / inProcessRuns
		start = time.Now()
		for j := 0; j < inProcessRuns; j++ {
			ssgOnly.Evaluate(context.Background(), env)
		}
		evalSSG += time.Since(start) / inProcessRuns
	}
	n := time.Duration(b.N)
	b.ReportMetric((oscapTime/n).Seconds()*1000, "oscap-ms/run")
	b.ReportMetric((cliTime/n).Seconds()*1000, "corral-cli-ms/run")
	b.ReportMetric(float64(oscapTime)/float64(cliTime), "x-faster")
	b.ReportMetric((evalAll/n).Seconds()*1000, "eval-170-rules-ms")
	b.ReportMetric((evalSSG/n).Seconds()*1000, "eval-84-ssg-rules-ms")
	b.ReportMetric(float64(allocAll/uint64(b.N))/1024, "eval-alloc-KiB")
	b.ReportMetric(float64(oscapRSS)/(1<<20), "oscap-maxrss-MiB")
	b.ReportMetric(float64(cliRSS)/(1<<20), "corral-maxrss-MiB")
	b.Logf("%d SSG rules in oscap-chroot vs %d baseline rules in corral policy test", len(rules), len(baseline.Rules))
}
