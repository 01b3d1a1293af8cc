package scan_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/scan"
)

var plainHex = regexp.MustCompile(`^([0-9a-f]{2}){2,64}$`)

// FuzzSignatureLine: a ClamAV signature line (uploaded by an administrator
// into a signature set) is refused or normalized to a canonical line that
// normalizes to itself and loads; the loaded signature scans any data
// without a panic, and a plain hex body signature matches exactly the data
// holding its bytes.
func FuzzSignatureLine(f *testing.F) {
	for _, s := range []struct {
		f    uint8
		line string
	}{
		{3, "Test.Sig:0:*:414243444546"}, {3, "T:0:*:41424344??4647"}, {3, "T:0:*:41424344*58595a5b"}, {3, "T:0:*:41424344{2-4}58595a5b"},
		{3, "T:0:*:41424344{5-}58595a5b"}, {3, "T:0:*:41424344(45|4647)48"}, {3, "T:0:EOF-6,2:41424344"}, {3, "T:0:2,3:41424344"},
		{3, "T:0:*:414243444?:51:255"}, {3, "T:1:*:4142"}, {3, "T:0:*:41424344[1-2]58595a5b"}, {3, "T:0:*:!(41)42"},
		{1, "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature"}, {2, strings.Repeat("a", 64) + ":*:T"}, {2, strings.Repeat("b", 40) + ":12:T:73"},
	} {
		f.Add(s.f, s.line, []byte("xxABCDEFyy"))
	}
	f.Fuzz(func(t *testing.T, fm uint8, line string, data []byte) {
		format := scan.Format(int(fm)%3 + 1)
		canon, out, err := scan.NormalizeLine(format, line)
		if err != nil {
			return
		}
		again, out2, err := scan.NormalizeLine(out, canon)
		if err != nil || again != canon || out2 != out {
			t.Fatalf("%q normalizes to %q (%v), then to %q (%v, %v)", line, canon, out, again, out2, err)
		}
		b := scan.NewBuilder(true)
		if err := b.Add("fuzz", out, strings.NewReader(canon+"\n")); err != nil {
			t.Fatalf("canonical line %q does not load: %v", canon, err)
		}
		e := scan.New(b.Build(), scan.Options{AllMatches: true})
		r := e.ScanBytes("f", data)
		parts := strings.Split(canon, ":")
		if out == scan.FormatNDB && parts[2] == "*" && plainHex.MatchString(parts[3]) {
			lit, _ := hex.DecodeString(parts[3])
			if want := bytes.Contains(data, lit); r.Infected() != want {
				t.Fatalf("signature %q on %q: infected %v, want %v", canon, data, r.Infected(), want)
			}
		}
	})
}

// FuzzScanBytes: the scanner opens archives it finds in files (zip, tar,
// gzip) — content anyone who can write a file on the machine controls. It
// scans any bytes without a panic, and finds the EICAR test file at the
// start of the data.
func FuzzScanBytes(f *testing.F) {
	eicar := scan.EICAR()
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, _ := zw.Create("a/eicar.com")
	w.Write(eicar)
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: "stored", Method: zip.Store})
	w.Write([]byte("hello"))
	zw.Close()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "e", Size: int64(len(eicar)), Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Write(eicar)
	tw.Close()
	var gb bytes.Buffer
	gz := gzip.NewWriter(&gb)
	gz.Write(tb.Bytes())
	gz.Close()
	for _, s := range [][]byte{eicar, zb.Bytes(), tb.Bytes(), gb.Bytes(), []byte("PK\x03\x04"), []byte("\x1f\x8b\x08"), {}} {
		f.Add(s)
	}
	e := scan.New(scan.NewBuilder(false).Build(), scan.Options{Limits: scan.Limits{MaxMemberBytes: 1 << 20, MaxTotalBytes: 4 << 20}})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := e.ScanBytes("f", data)
		if bytes.HasPrefix(data, eicar) && !r.Infected() { // the built-in signature is at offset 0, as ClamAV's
			t.Fatalf("EICAR in %q not found: %+v", data, r)
		}
	})
}
