package realtime_test

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
	"github.com/corralhq/corral/internal/scan/realtime"
)

// TestMain lets the benchmarks run the test binary as a separate writer
// process (the watcher never holds its own process's opens).
func TestMain(m *testing.M) {
	if spec := os.Getenv("CORRAL_RT_WRITER"); spec != "" {
		dir, n, _ := strings.Cut(spec, ":")
		count, _ := strconv.Atoi(n)
		data := []byte(strings.Repeat("clean small file content\n", 160)) // 4000 bytes
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
	os.Exit(m.Run())
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkEICARLatency writes the EICAR file 100 times into a watched
// directory and measures close -> quarantined (the detection is reported
// after the file has been moved).
//
//	go test -run '^$' -bench EICARLatency -benchtime 1x ./internal/scan/realtime/
func BenchmarkEICARLatency(b *testing.B) {
	dir := sandbox(b)
	if dir == "" {
		return
	}
	for _, mode := range []string{realtime.ModeFanotify, realtime.ModeInotify} {
		b.Run(mode, func(b *testing.B) { eicarLatency(b, dir, mode) })
	}
}

func eicarLatency(b *testing.B, dir, mode string) {
	{
		got := make(chan time.Time, 1)
		_, _, q := start(b, dir, realtime.Config{Action: realtime.ActionQuarantine, Mode: mode,
			OnDetection: func(realtime.Detection) { got <- time.Now() }})
		var lat []time.Duration
		for i := range 100 {
			p := filepath.Join(dir, "watched", fmt.Sprintf("eicar-%s-%d.com", mode, i))
			if err := os.WriteFile(p, scan.EICAR(), 0o644); err != nil {
				b.Fatal(err)
			}
			closed := time.Now()
			select {
			case t := <-got:
				lat = append(lat, t.Sub(closed))
			case <-time.After(5 * time.Second):
				b.Fatalf("%s not quarantined", p)
			}
			if _, err := os.Lstat(p); err == nil {
				b.Fatalf("%s still there after its detection", p)
			}
		}
		if recs, _ := q.List(); len(recs) < 100 {
			b.Fatalf("%d in quarantine", len(recs))
		}
		fmt.Printf("EICAR written -> quarantined (%s, 100 writes): p50 %v  p99 %v  max %v\n", mode,
			percentile(lat, 0.5).Round(time.Microsecond), percentile(lat, 0.99).Round(time.Microsecond), slices.Max(lat).Round(time.Microsecond))
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), mode+"-p99-µs")
	}
}

// BenchmarkWriteCost10k times another process writing 10,000 files of 4 KB
// into the watched directory without protection, with scans after writes
// and with blocking, and how long the watcher needs to have scanned them
// all.
//
//	go test -run '^$' -bench WriteCost -benchtime 1x ./internal/scan/realtime/
func BenchmarkWriteCost10k(b *testing.B) {
	dir := sandbox(b)
	if dir == "" {
		return
	}
	const n = 10_000
	writer := func(sub string) time.Duration {
		d := filepath.Join(dir, "watched", sub)
		os.MkdirAll(d, 0o755)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "CORRAL_RT_WRITER="+d+":"+strconv.Itoa(n))
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("writer: %v", err)
		}
		ns, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		return time.Duration(ns)
	}
	base := writer("none")
	fmt.Printf("10,000 files of 4 KB written by another process: no protection %v\n", base.Round(time.Millisecond))
	for _, c := range []struct {
		name string
		cfg  realtime.Config
	}{
		{"scan after write", realtime.Config{Action: realtime.ActionQuarantine}},
		{"scan after write + blocking", realtime.Config{Action: realtime.ActionQuarantine, Block: true}},
	} {
		b.Run(strings.ReplaceAll(c.name, " ", "-"), func(b *testing.B) {
			writeCost(b, dir, c.name, c.cfg, base, writer)
		})
	}
}

func writeCost(b *testing.B, dir, name string, cfg realtime.Config, base time.Duration, writer func(string) time.Duration) {
	const n = 10_000
	c := struct {
		name string
		cfg  realtime.Config
	}{name, cfg}
	{
		w, _, _ := start(b, dir, c.cfg)
		before := w.Stats().Scanned
		began := time.Now()
		took := writer(strings.ReplaceAll(c.name, " ", "-"))
		var drained time.Duration
		for w.Stats().Scanned+w.Stats().CacheHits-before < n && time.Since(began) < time.Minute {
			time.Sleep(time.Millisecond)
		}
		drained = time.Since(began)
		st := w.Stats()
		fmt.Printf("  %-28s %v (+%.0f%%); all scanned %v after the first write; stats %+v\n", c.name+":", took.Round(time.Millisecond),
			100*(took.Seconds()/base.Seconds()-1), drained.Round(time.Millisecond), st)
		b.ReportMetric(100*(took.Seconds()/base.Seconds()-1), strings.ReplaceAll(c.name, " ", "-")+"-%")
	}
}
