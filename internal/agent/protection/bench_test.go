package protection

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/wire"
)

// writeFiles is the writer process of the write-cost benchmark: n files
// of 4 KB into dir; it prints how long that took in nanoseconds.
func writeFiles(spec string) {
	dir, n, _ := strings.Cut(spec, ":")
	count, _ := strconv.Atoi(n)
	data := []byte(strings.Repeat("clean small file content\n", 160))
	began := time.Now()
	for i := range count {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d.txt", i)), data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Println(time.Since(began).Nanoseconds())
	os.Exit(0)
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkDaemon measures endpoint protection as the agent runs it: the
// daemon is a process of its own under the supervisor, detections travel
// through the spool to the feature. It times 100 EICAR writes from close
// until the file is gone and until the feature has handed the detection
// to the outbox, and the cost real-time protection adds to another
// process writing 10,000 files of 4 KB.
//
//	go test -run '^$' -bench Daemon -benchtime 1x ./internal/agent/protection/   # as root
func BenchmarkDaemon(b *testing.B) {
	root := sandbox(b)
	if root == "" {
		return
	}
	// The quarantine lives in the agent's state directory: on the disk
	// (another filesystem than the tmpfs written to: copy, fsync, verify)
	// and, for comparison, on the same tmpfs (a rename).
	onTmpfs := filepath.Join(root, "state")
	if err := os.Mkdir(onTmpfs, 0o700); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, state string }{{"state-on-disk", b.TempDir()}, {"state-on-tmpfs", onTmpfs}} {
		fmt.Printf("daemon, %s:\n", c.name)
		daemonBench(b, root, c.state)
	}
}

func daemonBench(b *testing.B, root, state string) {
	h := newHarnessIn(b, root, state)
	h.enable(realtimeOn)
	h.waitStatus("running", func(s wire.ProtectionStatus) bool { return running(s) && s.RealtimeEnabled })
	var gone, reported []time.Duration
	for i := range 100 {
		p := filepath.Join(root, "watched", fmt.Sprintf("eicar-%d-%d.com", len(state), i))
		before := len(h.detections())
		if err := os.WriteFile(p, scan.EICAR(), 0o644); err != nil {
			b.Fatal(err)
		}
		closed := time.Now()
		var g time.Duration
		for time.Since(closed) < 10*time.Second {
			if g == 0 {
				if _, err := os.Lstat(p); err != nil {
					g = time.Since(closed)
				}
			}
			if len(h.detections()) > before {
				reported = append(reported, time.Since(closed))
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		if g == 0 {
			if _, err := os.Lstat(p); err == nil {
				b.Fatalf("%s not quarantined", p)
			}
			g = time.Since(closed)
		}
		gone = append(gone, g)
	}
	if len(reported) != 100 {
		b.Fatalf("%d detections reported", len(reported))
	}
	fmt.Printf("  EICAR written -> quarantined (100 writes): p50 %v  p99 %v;  -> detection in the agent's outbox: p50 %v  p99 %v\n",
		pct(gone, .5).Round(time.Microsecond), pct(gone, .99).Round(time.Microsecond),
		pct(reported, .5).Round(time.Microsecond), pct(reported, .99).Round(time.Microsecond))
	b.ReportMetric(float64(pct(gone, .99).Microseconds()), "quarantined-p99-µs")

	const n = 10_000
	writer := func(sub string) time.Duration {
		d := filepath.Join(root, sub)
		os.RemoveAll(d)
		os.MkdirAll(d, 0o755)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "CORRAL_TEST_WRITER="+d+":"+strconv.Itoa(n))
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("writer: %v", err)
		}
		ns, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		return time.Duration(ns)
	}
	watched := writer("watched/bulk")
	if _, err := h.handler(wire.HandlerDisable, ""); err != nil {
		b.Fatal(err)
	}
	base := writer("unwatched")
	fmt.Printf("  10,000 files of 4 KB written by another process: protection off %v, real time on (scan after write, quarantine) %v (+%.0f%%)\n",
		base.Round(time.Millisecond), watched.Round(time.Millisecond), 100*(watched.Seconds()/base.Seconds()-1))
}
