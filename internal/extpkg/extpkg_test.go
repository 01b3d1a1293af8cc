package extpkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

func manifest() *wire.ExtensionManifest {
	return &wire.ExtensionManifest{Publisher: "Acme", Type: "Monitor", Version: "1.2.3",
		Handlers: wire.ExtensionHandlers{Install: "./install.sh", Enable: "./enable.sh"}, OS: []string{"linux"}}
}

// rawArchive writes tar headers as given, for hostile archives.
func rawArchive(t *testing.T, hdrs ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range hdrs {
		body := bytes.Repeat([]byte("x"), int(h.Size))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestUnpackRefusesHostileArchives(t *testing.T) {
	t.Parallel()
	reg := func(name string, size int64) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o644}
	}
	tests := []struct {
		name string
		arc  []byte
		lim  Limits
	}{
		{"dot-dot", rawArchive(t, reg("../evil", 1)), DefaultLimits},
		{"nested dot-dot", rawArchive(t, reg("a/../../evil", 1)), DefaultLimits},
		{"absolute", rawArchive(t, reg("/etc/evil", 1)), DefaultLimits},
		{"symlink", rawArchive(t, tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), DefaultLimits},
		{"hard link", rawArchive(t, tar.Header{Name: "link", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}), DefaultLimits},
		{"device", rawArchive(t, tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}), DefaultLimits},
		{"duplicate", rawArchive(t, reg("a", 1), reg("a", 1)), DefaultLimits},
		{"oversized", rawArchive(t, reg("big", 2048)), Limits{MaxBytes: 1024, MaxFiles: 10}},
		{"too many files", rawArchive(t, reg("a", 1), reg("b", 1), reg("c", 1)), Limits{MaxBytes: 1024, MaxFiles: 2}},
		{"not gzip", []byte("PK\x03\x04 zip"), DefaultLimits},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := Check(tt.arc, tt.lim); !errors.Is(err, ErrBadArchive) {
				t.Errorf("Check = %v, want ErrBadArchive", err)
			}
			parent := t.TempDir()
			dir := filepath.Join(parent, "pkg")
			err := Unpack(bytes.NewReader(tt.arc), dir, tt.lim)
			if !errors.Is(err, ErrBadArchive) {
				t.Fatalf("Unpack = %v, want ErrBadArchive", err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Error("the package directory was left behind")
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); !os.IsNotExist(err) {
				t.Error("a file was written outside the package directory")
			}
		})
	}
}

func TestUnpackAndReadManifest(t *testing.T) {
	t.Parallel()
	arc, err := BuildArchive(manifest(), File{Name: "install.sh", Body: []byte("#!/bin/sh\n"), Mode: 0o755}, File{Name: "lib/x", Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(arc)
	if err != nil || m.Type != "Monitor" {
		t.Fatalf("ReadManifest = %+v, %v", m, err)
	}
	if err := Check(arc, DefaultLimits); err != nil {
		t.Errorf("Check of a good archive: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "pkg")
	if err := Unpack(bytes.NewReader(arc), dir, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "install.sh"))
	if err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("install.sh: %v %v", fi, err)
	}
}

func TestManifestValidation(t *testing.T) {
	t.Parallel()
	bad := []func(m *wire.ExtensionManifest){
		func(m *wire.ExtensionManifest) { m.Publisher = "Ac me" },
		func(m *wire.ExtensionManifest) { m.Version = "1.2" },
		func(m *wire.ExtensionManifest) { m.Handlers.Enable = "" },
		func(m *wire.ExtensionManifest) { m.OS = []string{"windows"} },
		func(m *wire.ExtensionManifest) {
			m.Timeouts = map[string]wire.Duration{"install": wire.Duration(3 * time.Hour)}
		},
		func(m *wire.ExtensionManifest) {
			m.Timeouts = map[string]wire.Duration{"frobnicate": wire.Duration(time.Second)}
		},
	}
	for i, change := range bad {
		m := manifest()
		change(m)
		if err := ValidateManifest(*m); !errors.Is(err, ErrBadManifest) {
			t.Errorf("case %d: %v, want ErrBadManifest", i, err)
		}
	}
	arc, _ := BuildArchive(nil, File{Name: "install.sh"})
	if _, err := ReadManifest(arc); !errors.Is(err, ErrBadManifest) {
		t.Errorf("archive without manifest: %v", err)
	}
}

func TestCatalogSignature(t *testing.T) {
	t.Parallel()
	pub, priv, _ := ed25519.GenerateKey(nil)
	c := wire.Catalog{Publisher: "Acme", Serial: 3, Packages: []wire.CatalogEntry{{Type: "Monitor", Version: "1.2.3", Digest: Digest([]byte("a")), Size: 1}}}
	sc, err := SignCatalog(priv, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyCatalog(pub, "Acme", sc)
	if err != nil || got.Serial != 3 {
		t.Fatalf("VerifyCatalog = %+v, %v", got, err)
	}
	if _, ok := Find(got, "monitor", "1.2.3"); !ok {
		t.Error("Find missed the entry")
	}
	tampered := sc
	tampered.Catalog = bytes.Replace(sc.Catalog, []byte(`"serial":3`), []byte(`"serial":4`), 1)
	if _, err := VerifyCatalog(pub, "Acme", tampered); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered catalog: %v", err)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	if _, err := VerifyCatalog(otherPub, "Acme", sc); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := VerifyCatalog(pub, "Other", sc); err == nil || !strings.Contains(err.Error(), "publisher") {
		t.Errorf("wrong publisher: %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{{"1.2.3", "1.2.3", 0}, {"1.10.0", "1.9.9", 1}, {"0.9.0", "1.0.0", -1}} {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestCheckHandlerFiles(t *testing.T) {
	t.Parallel()
	files := map[string]int64{"handler.sh": 0o755, "bin/tool": 0o755, "setup.sh": 0o644, "data/x.json": 0o644}
	man := func(install string) wire.ExtensionManifest {
		return wire.ExtensionManifest{Handlers: wire.ExtensionHandlers{Install: install, Enable: "true"}}
	}
	tests := []struct {
		install, want string
	}{
		{"./handler.sh install", ""},
		{"bin/tool --install", ""},
		{"sh setup.sh", ""},
		{"true", ""},
		{"/usr/bin/env python3 x.py", ""},
		{"./missing.sh", "not in the package"},
		{"./setup.sh", "not executable"},
		{"bash ./nothere.sh", "not in the package"},
		{"./bin/../handler.sh", ""},
	}
	for _, tt := range tests {
		err := CheckHandlerFiles(man(tt.install), files)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.install, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: %v, want %q", tt.install, err, tt.want)
		}
	}
}
