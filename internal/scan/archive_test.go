package scan_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/scan"
)

func builtin(t testing.TB, opt scan.Options) *scan.Engine {
	t.Helper()
	db, err := scan.LoadFiles(false)
	if err != nil {
		t.Fatal(err)
	}
	return scan.New(db, opt)
}

func TestArchivesAreScannedInside(t *testing.T) {
	t.Parallel()
	e := builtin(t, scan.Options{})
	ei := scan.EICAR()
	clean := []byte("just text\n")
	inner := zipOf(t, zip.Deflate, member{"docs/readme.txt", clean}, member{"bin/eicar.com", ei})
	tests := []struct {
		name, member string
		data         []byte
	}{
		{"zip", "bin/eicar.com", inner},
		{"stored zip", "e.com", zipOf(t, zip.Store, member{"e.com", ei})},
		{"tar", "a/b/e.com", tarOf(t, member{"a/clean", clean}, member{"a/b/e.com", ei})},
		{"tar.gz", "x/e.com", gzipOf(t, tarOf(t, member{"x/e.com", ei}))},
		{"gz", "(gzip)", gzipOf(t, ei)},
		{"zip in tar.gz", "pkg/inner.zip!bin/eicar.com", gzipOf(t, tarOf(t, member{"pkg/inner.zip", inner}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.ScanBytes("f", tt.data)
			if !r.Infected() {
				t.Fatalf("nothing found: %+v", r)
			}
			f := r.Findings[0]
			if f.Member != tt.member || f.Signature != scan.EICARName || f.Kind != scan.KindSignature {
				t.Errorf("finding %+v, want member %q", f, tt.member)
			}
			if f.MemberSHA256 != sha256hex(ei) || f.SHA256 != sha256hex(tt.data) {
				t.Errorf("hashes: member %s file %s", f.MemberSHA256, f.SHA256)
			}
		})
	}
	if r := e.ScanBytes("clean.zip", zipOf(t, zip.Deflate, member{"a", clean})); r.Infected() {
		t.Errorf("clean zip: %+v", r)
	}
}

func TestDecompressionBombIsReportedNotFollowed(t *testing.T) {
	t.Parallel()
	e := builtin(t, scan.Options{})
	zeros := make([]byte, 200<<20) // 200 MiB of zeros: ~200 KiB compressed, ratio ~1000
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	w, _ := zw.Create("zeros.bin")
	w.Write(zeros)
	w, _ = zw.Create("eicar.com") // after the bomb: a bomb ends the scan of the file
	w.Write(scan.EICAR())
	zw.Close()
	var g bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&g, gzip.BestCompression)
	gw.Write(zeros)
	gw.Close()
	for name, data := range map[string][]byte{"zip": z.Bytes(), "gzip": g.Bytes()} {
		t.Run(name, func(t *testing.T) {
			r := e.ScanBytes("bomb", data)
			if len(r.Findings) != 1 || r.Findings[0].Kind != scan.KindBomb || r.Findings[0].Signature != scan.BombName {
				t.Fatalf("findings %+v, want one bomb", r.Findings)
			}
			if len(r.Notes) == 0 || !strings.Contains(r.Notes[0], "decompression bomb, not followed") {
				t.Fatalf("notes %q", r.Notes)
			}
			// Not followed: it stopped soon after the ratio limit, far from 200 MiB.
			var after int64
			for _, f := range strings.Fields(r.Notes[0]) {
				if n, ok := parseInt(f); ok {
					after = n
				}
			}
			if after == 0 || after > 20<<20 {
				t.Errorf("read %d bytes of the bomb before stopping (note %q)", after, r.Notes[0])
			}
		})
	}
}

func parseInt(s string) (int64, bool) {
	var n int64
	if s == "" {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func TestArchiveLimits(t *testing.T) {
	t.Parallel()
	ei := scan.EICAR()
	nested := zipOf(t, zip.Deflate, member{"e.com", ei})
	for range 3 {
		nested = zipOf(t, zip.Deflate, member{"n.zip", nested})
	}
	e := builtin(t, scan.Options{Limits: scan.Limits{MaxDepth: 2}})
	r := e.ScanBytes("deep.zip", nested)
	if r.Infected() || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "nested deeper than 2 levels") {
		t.Errorf("depth limit: %+v", r)
	}
	if r := builtin(t, scan.Options{}).ScanBytes("deep.zip", nested); !r.Infected() || r.Findings[0].Member != "n.zip!n.zip!n.zip!e.com" {
		t.Errorf("default depth: %+v", r)
	}
	var ms []member
	for i := range 20 {
		ms = append(ms, member{strings.Repeat("m", i+1), []byte("clean")})
	}
	ms = append(ms, member{"late.com", ei})
	r = builtin(t, scan.Options{Limits: scan.Limits{MaxMembers: 10}}).ScanBytes("many.zip", zipOf(t, zip.Deflate, ms...))
	if r.Infected() || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "more than 10 members") {
		t.Errorf("member limit: %+v", r)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 57600) // 900 KiB: compresses ~300:1 but under the ratio floor
	r = builtin(t, scan.Options{Limits: scan.Limits{MaxTotalBytes: 3 << 20}}).ScanBytes("big.zip",
		zipOf(t, zip.Deflate, member{"a", big}, member{"b", big}, member{"c", big}, member{"d", big}, member{"e.com", ei}))
	if r.Infected() || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "in total") {
		t.Errorf("total limit: %+v", r)
	}
}
