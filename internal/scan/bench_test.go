package scan_test

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/testutil"
)

// buildAgent builds corral-agent into dir.
func buildAgent(b testing.TB, dir string) string {
	b.Helper()
	bin := filepath.Join(dir, "corral-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/corral-agent")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs a command and returns its wall time, peak RSS and output.
func run(b testing.TB, name string, args ...string) (time.Duration, int64, []byte) {
	b.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
		b.Fatalf("%s: %v", name, err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return took, ru.Maxrss << 10, out.Bytes()
}

type benchCorpus struct {
	dir, sigs string
	bytes     int64
	files     int
	planted   []string
}

// makeCorpus writes >= 200 MiB of mixed files (random binary, text, copies
// of the system's executables, zip and tar.gz archives) and 100,000 hash +
// 10,000 body signatures, 50 of each planted.
func makeCorpus(b testing.TB, dir string) benchCorpus {
	b.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	c := benchCorpus{dir: filepath.Join(dir, "corpus"), sigs: filepath.Join(dir, "sigs")}
	os.MkdirAll(c.sigs, 0o755)
	write := func(rel string, data []byte) string {
		p := filepath.Join(c.dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		c.bytes += int64(len(data))
		c.files++
		return p
	}
	randBytes := func(n int) []byte {
		out := make([]byte, n)
		for i := 0; i+8 <= n; i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				out[i+k] = byte(v >> (8 * k))
			}
		}
		return out
	}
	words := strings.Fields("the quick brown fox jumps over lazy dog server agent config install package update " +
		"kernel module network interface address route table policy rule audit scan file path owner mode error")
	text := func(n int) []byte {
		var buf bytes.Buffer
		for buf.Len() < n {
			buf.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(12) == 0 {
				buf.WriteString(".\n")
			} else {
				buf.WriteByte(' ')
			}
		}
		return buf.Bytes()[:n]
	}
	size := func() int { return int(2048*math.Exp(rng.Float64()*math.Log(1536))) + rng.IntN(2048) } // 2 KiB .. 3 MiB, log-uniform
	const target = 210 << 20
	// Executables from the system: real ELF data.
	bins, _ := filepath.Glob("/usr/bin/*")
	var exeBytes int64
	for _, p := range bins {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 8<<20 || exeBytes > 50<<20 {
			continue
		}
		data, err := os.ReadFile(p)
		if err == nil {
			write("bin/"+filepath.Base(p), data)
			exeBytes += int64(len(data))
		}
	}
	var hdb, ndb bytes.Buffer
	nHash, nBody := 0, 0
	for i := 0; c.bytes < target; i++ {
		var data []byte
		rel := ""
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			data, rel = randBytes(size()), fmt.Sprintf("data/%03d/f%d.bin", i%50, i)
		case 5, 6, 7:
			data, rel = text(size()), fmt.Sprintf("text/%03d/f%d.txt", i%50, i)
		case 8:
			var zb bytes.Buffer
			zw := zip.NewWriter(&zb)
			for k := range 5 {
				w, _ := zw.Create(fmt.Sprintf("doc%d.txt", k))
				w.Write(text(size() / 4))
			}
			zw.Close()
			data, rel = zb.Bytes(), fmt.Sprintf("arch/a%d.zip", i)
		case 9:
			var tb bytes.Buffer
			tw := tar.NewWriter(&tb)
			for k := range 4 {
				d := randBytes(size() / 4)
				tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("x/%d.bin", k), Mode: 0o644, Size: int64(len(d))})
				tw.Write(d)
			}
			tw.Close()
			var gb bytes.Buffer
			gw := gzip.NewWriter(&gb)
			gw.Write(tb.Bytes())
			gw.Close()
			data, rel = gb.Bytes(), fmt.Sprintf("arch/t%d.tar.gz", i)
		}
		switch {
		case nHash < 50 && i%13 == 0:
			s := md5.Sum(data)
			fmt.Fprintf(&hdb, "%s:%d:Bench.Hash-%d\n", hex.EncodeToString(s[:]), len(data), nHash)
			nHash++
			c.planted = append(c.planted, filepath.Join(c.dir, rel))
		case nBody < 50 && i%13 == 6 && len(data) > 1000 && i%10 < 8:
			p := randBytes(16)
			copy(data[rng.IntN(len(data)-16):], p)
			fmt.Fprintf(&ndb, "Bench.Body-%d:0:*:%s\n", nBody, hex.EncodeToString(p))
			nBody++
			c.planted = append(c.planted, filepath.Join(c.dir, rel))
		}
		write(rel, data)
	}
	for i := nHash; i < 100_000; i++ {
		fmt.Fprintf(&hdb, "%s:%d:Decoy.Hash-%d\n", hex.EncodeToString(randBytes(16)), 1024+rng.IntN(4<<20), i)
	}
	for i := nBody; i < 10_000; i++ {
		fmt.Fprintf(&ndb, "Decoy.Body-%d:0:*:%s\n", i, hex.EncodeToString(randBytes(16)))
	}
	os.WriteFile(filepath.Join(c.sigs, "bench.hdb"), hdb.Bytes(), 0o644)
	os.WriteFile(filepath.Join(c.sigs, "bench.ndb"), ndb.Bytes(), 0o644)
	slices.Sort(c.planted)
	if keep := os.Getenv("CORRAL_BENCH_KEEP"); keep != "" { // for profiling by hand
		exec.Command("cp", "-a", c.dir, c.sigs, keep).Run()
	}
	return c
}

func infectedOfClamscan(out []byte) []string {
	var found []string
	for _, l := range strings.Split(string(out), "\n") {
		if p, _, ok := strings.Cut(l, ": "); ok && strings.HasSuffix(l, " FOUND") {
			found = append(found, p)
		}
	}
	slices.Sort(found)
	return found
}

func infectedOfAgent(b testing.TB, out []byte) []string {
	var rep struct{ Findings []scan.Finding }
	if err := json.Unmarshal(out, &rep); err != nil {
		b.Fatalf("corral-agent output: %v", err)
	}
	var found []string
	for _, f := range rep.Findings {
		found = append(found, f.Path)
	}
	slices.Sort(found)
	return slices.Compact(found)
}

// BenchmarkThroughputVsClamscan scans >= 200 MiB of mixed files with
// 100,000 hash + 10,000 body signatures with clamscan and with
// corral-agent scan (both as processes, page cache warm) and prints MB/s,
// peak memory and whether they found the same files.
//
//	go test -run '^$' -bench ThroughputVsClamscan -benchtime 1x ./internal/scan/
func BenchmarkThroughputVsClamscan(b *testing.B) {
	clamscan := testutil.NeedTool(b, "clamscan")
	dir := b.TempDir()
	agent := buildAgent(b, dir)
	c := makeCorpus(b, dir)
	filepath.Walk(c.dir, func(p string, fi os.FileInfo, err error) error { // warm the page cache
		if err == nil && fi.Mode().IsRegular() {
			f, _ := os.Open(p)
			io.Copy(io.Discard, f)
			f.Close()
		}
		return nil
	})
	mb := float64(c.bytes) / 1e6
	b.ResetTimer()
	for range b.N {
		ct, crss, cout := run(b, clamscan, "--no-summary", "-i", "-r", "-d", c.sigs, c.dir)
		at, arss, aout := run(b, agent, "--state-dir", filepath.Join(dir, "state"), "scan", "--no-builtin", "--signatures", c.sigs, "-o", "json", c.dir)
		cl, ag := infectedOfClamscan(cout), infectedOfAgent(b, aout)
		same := cmp.Equal(cl, ag)
		fmt.Printf("corpus: %d files, %.1f MB (%.1f MiB); signatures: 100000 hash + 10000 body; %d cores\n",
			c.files, mb, float64(c.bytes)/(1<<20), runtime.NumCPU())
		fmt.Printf("  clamscan      %6.2f s  %7.1f MB/s  peak RSS %6.1f MiB  infected %d\n", ct.Seconds(), mb/ct.Seconds(), float64(crss)/(1<<20), len(cl))
		fmt.Printf("  corral-agent  %6.2f s  %7.1f MB/s  peak RSS %6.1f MiB  infected %d\n", at.Seconds(), mb/at.Seconds(), float64(arss)/(1<<20), len(ag))
		fmt.Printf("  speed-up %.1fx; same infected files: %v; planted found: %v\n", ct.Seconds()/at.Seconds(), same, cmp.Equal(c.planted, ag))
		if !same {
			b.Errorf("detections differ (-clamscan +corral-agent):\n%s", cmp.Diff(cl, ag))
		}
		b.ReportMetric(mb/at.Seconds(), "MB/s")
		b.ReportMetric(mb/ct.Seconds(), "clamscan-MB/s")
	}
}

// BenchmarkInProcessThroughput is the engine alone on the same corpus
// (no process start, no signature load).
func BenchmarkInProcessThroughput(b *testing.B) {
	dir := b.TempDir()
	c := makeCorpus(b, dir)
	db, err := scan.LoadFiles(true, filepath.Join(c.sigs, "bench.hdb"), filepath.Join(c.sigs, "bench.ndb"))
	if err != nil {
		b.Fatal(err)
	}
	e := scan.New(db, scan.Options{})
	b.SetBytes(c.bytes)
	b.ResetTimer()
	for range b.N {
		n := 0
		e.Scan(b.Context(), []string{c.dir}, func(r scan.FileResult) {
			if r.Infected() {
				n++
			}
		})
		if n != len(c.planted) {
			b.Fatalf("found %d, planted %d", n, len(c.planted))
		}
	}
}

// writeSigs writes n signature lines: hdb MD5 for all but nHSB SHA-256 and
// nNDB body lines.
func writeSigs(b testing.TB, dir string, nHDB, nHSB, nNDB int) []string {
	b.Helper()
	rng := rand.New(rand.NewPCG(3, 5))
	hexN := func(n int) string {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		return hex.EncodeToString(buf)
	}
	var files []string
	for _, s := range []struct {
		name string
		n    int
		line func(i int) string
	}{
		{"m.hdb", nHDB, func(i int) string {
			return fmt.Sprintf("%s:%d:Win.Trojan.Agent-%d-0\n", hexN(16), 1000+rng.IntN(1<<22), i)
		}},
		{"m.hsb", nHSB, func(i int) string {
			return fmt.Sprintf("%s:%d:Unix.Malware.Kaiji-%d-0\n", hexN(32), 1000+rng.IntN(1<<22), i)
		}},
		{"m.ndb", nNDB, func(i int) string {
			h := hexN(20)
			switch i % 4 {
			case 1:
				h = h[:12] + "??" + h[14:]
			case 2:
				h = h[:16] + "{4-12}" + h[16:]
			case 3:
				h = h[:20] + "*" + h[20:]
			}
			return fmt.Sprintf("Win.Exploit.Generic-%d-0:0:*:%s\n", i, h)
		}},
	} {
		if s.n == 0 {
			continue
		}
		p := filepath.Join(dir, s.name)
		f, _ := os.Create(p)
		w := bufio.NewWriter(f)
		for i := range s.n {
			w.WriteString(s.line(i))
		}
		w.Flush()
		f.Close()
		files = append(files, p)
	}
	return files
}

// BenchmarkLoad1M loads one million signatures and prints the load time,
// the heap the DB keeps and corral-agent's peak RSS loading them.
//
//	go test -run '^$' -bench Load1M -benchtime 1x ./internal/scan/
func BenchmarkLoad1M(b *testing.B) {
	dir := b.TempDir()
	agent := buildAgent(b, dir)
	for _, mix := range []struct {
		name            string
		hdb, hsb, bodyN int
	}{{"1M-md5", 1_000_000, 0, 0}, {"800k-md5+100k-sha256+100k-body", 800_000, 100_000, 100_000}} {
		b.Run(mix.name, func(b *testing.B) {
			sd := filepath.Join(dir, mix.name)
			os.MkdirAll(sd, 0o755)
			files := writeSigs(b, sd, mix.hdb, mix.hsb, mix.bodyN)
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			var db *scan.DB
			var took time.Duration
			for range b.N {
				began := time.Now()
				var err error
				db, err = scan.LoadFiles(true, files...)
				if err != nil {
					b.Fatal(err)
				}
				took = time.Since(began)
			}
			runtime.GC()
			runtime.ReadMemStats(&ms1)
			kept := float64(ms1.HeapAlloc-ms0.HeapAlloc) / (1 << 20)
			empty := filepath.Join(sd, "empty")
			os.MkdirAll(empty, 0o755)
			args := []string{"--state-dir", filepath.Join(sd, "state"), "scan", "--no-builtin"}
			for _, f := range files {
				args = append(args, "--signatures", f)
			}
			at, rss, _ := run(b, agent, append(args, empty)...)
			fmt.Printf("%s: %d signatures loaded in %v (in process), DB heap %.1f MiB; corral-agent scan of an empty dir: %v, peak RSS %.1f MiB\n",
				mix.name, db.Stats().Total(), took.Round(time.Millisecond), kept, at.Round(time.Millisecond), float64(rss)/(1<<20))
			b.ReportMetric(kept, "heap-MiB")
			runtime.KeepAlive(db)
		})
	}
}
