package scan_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/scan"
)

// engine loads ndb/hdb text (no built-in signature).
func engine(t testing.TB, format scan.Format, sigs string) *scan.Engine {
	t.Helper()
	b := scan.NewBuilder(true)
	if err := b.Add("test", format, strings.NewReader(sigs)); err != nil {
		t.Fatal(err)
	}
	return scan.New(b.Build(), scan.Options{})
}

func TestBodySignatures(t *testing.T) {
	t.Parallel()
	pad := bytes.Repeat([]byte("."), 100)
	tests := []struct {
		name, sig string
		data      []byte
		want      bool
	}{
		{"plain", "0:*:414243444546", []byte("xxABCDEFyy"), true},
		{"plain absent", "0:*:414243444546", []byte("xxABCDEyy"), false},
		{"short anchor", "0:*:4142", []byte("zAB"), true},
		{"long anchor at every alignment 0", "0:*:6162636465666768", []byte("abcdefgh"), true},
		{"alignment 1", "0:*:6162636465666768", []byte("-abcdefgh"), true},
		{"alignment 2", "0:*:6162636465666768", []byte("--abcdefgh"), true},
		{"alignment 3", "0:*:6162636465666768", []byte("---abcdefgh--"), true},
		{"wildcard bytes", "0:*:41424344??4647", []byte("ABCDxFG"), true},
		{"wildcard bytes mismatch", "0:*:41424344??4647", []byte("ABCDxFH"), false},
		{"nibble high fixed", "0:*:414243444?", []byte("ABCDO"), true},
		{"nibble high fixed mismatch", "0:*:414243444?", []byte("ABCDP"), false},
		{"nibble low fixed", "0:*:41424344?1", []byte("ABCDQ"), true},
		{"star", "0:*:41424344*58595a5b", append(append([]byte("ABCD"), pad...), "XYZ["...), true},
		{"star order", "0:*:41424344*58595a5b", []byte("XYZ[ABCD"), false},
		{"range in", "0:*:41424344{2-4}58595a5b", []byte("ABCD..XYZ["), true},
		{"range out", "0:*:41424344{2-4}58595a5b", []byte("ABCD.....XYZ["), false},
		{"range exact", "0:*:41424344{3}58595a5b", []byte("ABCD...XYZ["), true},
		{"range exact short", "0:*:41424344{3}58595a5b", []byte("ABCD..XYZ["), false},
		{"range at least", "0:*:41424344{5-}58595a5b", []byte("ABCD.......XYZ["), true},
		{"range at least short", "0:*:41424344{5-}58595a5b", []byte("ABCD...XYZ["), false},
		{"range at most", "0:*:41424344{-2}58595a5b", []byte("ABCDXYZ["), true},
		{"bracket range", "0:*:41424344[1-2]58595a5b", []byte("ABCD.XYZ["), true},
		{"alternative", "0:*:41424344(45|4647)48", []byte("ABCDFGH"), true},
		{"alternative other", "0:*:41424344(45|4647)48", []byte("ABCDEH"), true},
		{"alternative none", "0:*:41424344(45|4647)48", []byte("ABCDXH"), false},
		{"alternative left of anchor", "0:*:(61|62)41424344", []byte("bABCD"), true},
		{"gap left of anchor", "0:*:7a7a{1-3}4142434445464748", []byte("zz..ABCDEFGH"), true},
		{"gap left too far", "0:*:7a7a{1-3}4142434445464748", []byte("zz....ABCDEFGH"), false},
		{"offset 0", "0:0:41424344", []byte("ABCDxx"), true},
		{"offset 0 not at 0", "0:0:41424344", []byte("xABCD"), false},
		{"offset n", "0:2:41424344", []byte("xxABCD"), true},
		{"offset n,shift", "0:2,3:41424344", []byte("xxxxxABCD"), true},
		{"offset n,shift past", "0:2,3:41424344", []byte("xxxxxxABCD"), false},
		{"offset EOF", "0:EOF-4:41424344", []byte("xxxxABCD"), true},
		{"offset EOF wrong", "0:EOF-5:41424344", []byte("xxxxABCD"), false},
		{"offset EOF shift", "0:EOF-6,2:41424344", []byte("xxxxABCD"), true},
		{"offset with left part", "0:1:7a{1}41424344", []byte("xz.ABCD"), true},
		{"offset with left part wrong", "0:0:7a{1}41424344", []byte("xz.ABCD"), false},
		{"uppercase hex", "0:*:4A4B4C4D", []byte("JKLM"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engine(t, scan.FormatNDB, "Test.Sig:"+tt.sig+"\n")
			if st := e.DB().Stats(); st.BodySignatures != 1 {
				t.Fatalf("loaded %+v, want one body signature", st)
			}
			r := e.ScanBytes("f", tt.data)
			if got := r.Infected(); got != tt.want {
				t.Errorf("%s on %q: got %v, want %v", tt.sig, tt.data, got, tt.want)
			}
		})
	}
}

func TestHashSignatures(t *testing.T) {
	t.Parallel()
	data := []byte("a file with a known hash\n")
	sigs := "" +
		"b5de8e6bf7a8a27e6ef0f5b1ec9e5f3b:25:Wrong.MD5\n" +
		md5hex(data) + ":25:Test.MD5\n"
	e := engine(t, scan.FormatHDB, sigs)
	if r := e.ScanBytes("f", data); !r.Infected() || r.Findings[0].Signature != "Test.MD5" {
		t.Errorf("md5: %+v", r)
	}
	// Same digest, other size: not a match (as in ClamAV).
	e = engine(t, scan.FormatHDB, md5hex(data)+":26:Test.MD5\n")
	if r := e.ScanBytes("f", data); r.Infected() {
		t.Errorf("size mismatch matched: %+v", r)
	}
	e = engine(t, scan.FormatHSB, sha1hex(data)+":*:Test.SHA1\n"+sha256hex(data)+":25:Test.SHA256\n")
	if r := e.ScanBytes("f", data); !r.Infected() {
		t.Errorf("sha1/sha256: %+v", r)
	}
	e = engine(t, scan.FormatHSB, sha256hex(data)+":25:Test.SHA256\n")
	r := e.ScanBytes("f", data)
	if !r.Infected() || r.Findings[0].Signature != "Test.SHA256" || r.Findings[0].SHA256 != sha256hex(data) {
		t.Errorf("sha256: %+v", r)
	}
}

func TestBuiltinEICAR(t *testing.T) {
	t.Parallel()
	db, err := scan.LoadFiles(false)
	if err != nil {
		t.Fatal(err)
	}
	e := scan.New(db, scan.Options{})
	r := e.ScanBytes("eicar.com", append(scan.EICAR(), '\n'))
	if !r.Infected() || r.Findings[0].Signature != scan.EICARName {
		t.Errorf("EICAR not detected: %+v", r)
	}
	if r := e.ScanBytes("clean", []byte("nothing to see")); r.Infected() {
		t.Errorf("clean file detected: %+v", r)
	}
	db, _ = scan.LoadFiles(true)
	if r := scan.New(db, scan.Options{}).ScanBytes("eicar.com", scan.EICAR()); r.Infected() {
		t.Errorf("EICAR detected with the built-in signature off: %+v", r)
	}
}

func TestMalformedSignatureFilesLoadNothing(t *testing.T) {
	t.Parallel()
	good := "Good.One:0:*:41424344454647\nGood.Two:0:*:51525354555657\n"
	tests := []struct {
		name   string
		format scan.Format
		text   string
		line   int
	}{
		{"truncated hex", scan.FormatNDB, good + "Cut:0:*:4142434", 3},
		{"truncated line", scan.FormatNDB, good + "Cut:0:*", 3},
		{"bad hex", scan.FormatNDB, "Bad:0:*:41zz4344\n" + good, 1},
		{"bad offset", scan.FormatNDB, good + "Bad:0:here:41424344\n", 3},
		{"unterminated range", scan.FormatNDB, good + "Bad:0:*:4142{2-3\n", 3},
		{"reversed range", scan.FormatNDB, good + "Bad:0:*:4142{4-2}4344\n", 3},
		{"leading star", scan.FormatNDB, good + "Bad:0:*:*41424344\n", 3},
		{"empty alternative", scan.FormatNDB, good + "Bad:0:*:4142(|43)4445\n", 3},
		{"no name", scan.FormatNDB, good + ":0:*:41424344\n", 3},
		{"truncated md5", scan.FormatHDB, "44d88612fea8a8f36de82e1278abb02f:68:Ok\n44d88612fea8a8f36de82e12", 2},
		{"bad size", scan.FormatHDB, "44d88612fea8a8f36de82e1278abb02f:sixty:Bad\n", 1},
		{"bad digest length", scan.FormatHSB, "44d88612fea8:68:Bad\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := scan.NewBuilder(true)
			if err := b.Add("good.ndb", scan.FormatNDB, strings.NewReader("Kept:0:*:6b6570746b657074\n")); err != nil {
				t.Fatal(err)
			}
			err := b.Add("bad.db", tt.format, strings.NewReader(tt.text))
			var pe *scan.ParseError
			if !errors.As(err, &pe) || pe.Line != tt.line || pe.File != "bad.db" {
				t.Fatalf("got %v, want a parse error at bad.db:%d", err, tt.line)
			}
			if !strings.Contains(err.Error(), "bad.db:") || !strings.Contains(err.Error(), "nothing loaded") {
				t.Errorf("error %q does not name the file and say nothing was loaded", err)
			}
			st := b.Build().Stats()
			if st.Total() != 1 || len(st.Files) != 1 {
				t.Errorf("after the bad file: %+v, want only the good file's one signature", st)
			}
		})
	}
}

func TestUnsupportedLinesAreCounted(t *testing.T) {
	t.Parallel()
	text := "" +
		"Ok:0:*:41424344\n" +
		"PE.Only:1:*:41424344\n" +
		"HTML.Only:3:*:41424344\n" +
		"EP.Offset:0:EP+10:41424344\n" +
		"Negated:0:*:4142!(43|44)4546\n" +
		"Boundary:0:*:(B)41424344\n" +
		"No.Anchor:0:*:41??42??43\n"
	b := scan.NewBuilder(true)
	if err := b.Add("u.ndb", scan.FormatNDB, strings.NewReader(text)); err != nil {
		t.Fatal(err)
	}
	st := b.Build().Stats()
	if st.BodySignatures != 1 || st.Unsupported != 6 || len(st.UnsupportedLines) != 6 {
		t.Fatalf("stats %+v, want 1 loaded and 6 unsupported", st)
	}
	for i, u := range st.UnsupportedLines {
		if u.File != "u.ndb" || u.Line != i+2 || u.Reason == "" {
			t.Errorf("unsupported line %d: %+v", i, u)
		}
	}
}

func TestFindsEveryPatternAmongMany(t *testing.T) {
	t.Parallel()
	// 3,000 patterns of each tier; each planted once in its own object.
	var sigs strings.Builder
	var pats [][]byte
	for i := range 3000 {
		for _, n := range []int{2, 5, 12} {
			p := []byte{byte(i), byte(i >> 8), byte(n), 0xA5, 0x5A, 0x3C, 0xC3, 0x11, 0x22, 0x33, 0x44, 0x55}[:n]
			if n == 2 {
				p = []byte{byte(i%250 + 1), 0xEE} // 2-byte patterns collide often: fine
			}
			pats = append(pats, p)
			sigs.WriteString("P" + strings.Repeat("x", n) + hexs(p) + ":0:*:" + hexs(p) + "\n")
		}
	}
	e := engine(t, scan.FormatNDB, sigs.String())
	filler := bytes.Repeat([]byte{0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70}, 200)
	for i, p := range pats {
		if i%97 != 0 {
			continue
		}
		for shift := range 4 {
			data := append(append(append([]byte{}, filler[:100+shift]...), p...), filler...)
			if r := e.ScanBytes("f", data); !r.Infected() {
				t.Fatalf("pattern %x at offset %d not found", p, 100+shift)
			}
		}
	}
	if r := e.ScanBytes("f", filler); r.Infected() {
		t.Errorf("filler detected: %+v", r.Findings)
	}
}
