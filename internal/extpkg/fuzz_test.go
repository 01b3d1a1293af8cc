package extpkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/corralhq/corral/internal/wire"
)

// The fuzz targets of package archives, manifests, catalogs and publisher
// keys: everything here reads what a publisher (or anyone who can reach
// the control plane or an agent's cache) hands over. docs/security.md,
// "Fuzzing", says how to run them.

// fuzzEntries turns fuzz data into tar entries: each entry is a type byte,
// a name length and name, and a size byte (the body is that many 'x').
// The fuzzer then explores names, types, order and sizes instead of tar
// and gzip checksums.
func fuzzEntries(data []byte) []tar.Header {
	var hs []tar.Header
	types := []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeFifo, tar.TypeReg, tar.TypeReg}
	for len(data) >= 3 && len(hs) < 32 {
		typ, n := types[int(data[0])%len(types)], int(data[1])%64
		data = data[2:]
		if n > len(data) {
			n = len(data)
		}
		name := string(data[:n])
		data = data[n:]
		var size int64
		if len(data) > 0 {
			size, data = int64(data[0]), data[1:]
		}
		h := tar.Header{Name: name, Typeflag: typ, Mode: 0o755, ModTime: time.Unix(0, 0)}
		switch typ {
		case tar.TypeReg:
			h.Size = size
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = "/etc/passwd"
		}
		hs = append(hs, h)
	}
	return hs
}

func tarGz(hs []tar.Header) ([]byte, bool) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range hs {
		if tw.WriteHeader(&h) != nil {
			return nil, false // a header tar cannot write (e.g. a NUL in the name)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes(), true
}

func entrySeed(entries ...[3]string) []byte {
	var b []byte
	for _, e := range entries {
		t := map[string]byte{"reg": 0, "dir": 1, "symlink": 2, "link": 3, "char": 4, "fifo": 5}[e[0]]
		b = append(b, t, byte(len(e[1])))
		b = append(b, e[1]...)
		b = append(b, byte(len(e[2])))
	}
	return b
}

var fuzzLimits = Limits{MaxBytes: 2048, MaxFiles: 16}

// FuzzUnpack: Check (on the control plane) and Unpack (on the agent) agree
// on every archive: what Check accepts unpacks, what it refuses does not;
// an unpack writes only regular files and directories, all inside its
// directory, within the limits, and leaves nothing behind when it fails.
func FuzzUnpack(f *testing.F) {
	for _, s := range [][]byte{
		entrySeed([3]string{"reg", "manifest.json", "xx"}, [3]string{"dir", "lib/", ""}, [3]string{"reg", "lib/a.sh", "x"}),
		entrySeed([3]string{"reg", "../evil", "x"}), entrySeed([3]string{"reg", "a/../../evil", "x"}), entrySeed([3]string{"reg", "/etc/evil", "x"}),
		entrySeed([3]string{"symlink", "l", ""}), entrySeed([3]string{"link", "l", ""}), entrySeed([3]string{"char", "c", ""}),
		entrySeed([3]string{"reg", "a", "x"}, [3]string{"reg", "./a", "x"}),
		entrySeed([3]string{"reg", "a", "x"}, [3]string{"reg", "a/b", "x"}),
		entrySeed([3]string{"reg", "a/b", "x"}, [3]string{"reg", "a", "x"}),
		entrySeed([3]string{"reg", "a", "x"}, [3]string{"dir", "a", ""}),
		entrySeed([3]string{"dir", "./", ""}, [3]string{"dir", ".", ""}, [3]string{"reg", "a\\b", "x"}),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		archive, ok := tarGz(fuzzEntries(data))
		if !ok {
			return
		}
		checkErr := Check(archive, fuzzLimits)
		parent := t.TempDir()
		dir := filepath.Join(parent, "pkg")
		unpackErr := Unpack(bytes.NewReader(archive), dir, fuzzLimits)
		if (checkErr == nil) != (unpackErr == nil) {
			t.Fatalf("Check and Unpack disagree on %+v: Check %v, Unpack %v", fuzzEntries(data), checkErr, unpackErr)
		}
		if checkErr != nil && !errors.Is(checkErr, ErrBadArchive) {
			t.Fatalf("Check refused with %v, not ErrBadArchive", checkErr)
		}
		if unpackErr != nil {
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a failed unpack left %s behind", dir)
			}
		}
		var total int64
		files := 0
		filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			if p == parent {
				return nil
			}
			if p != dir && !strings.HasPrefix(p, dir+string(filepath.Separator)) {
				t.Fatalf("unpack wrote %s, outside %s", p, dir)
			}
			fi, _ := d.Info()
			if !d.IsDir() && !fi.Mode().IsRegular() {
				t.Fatalf("unpack wrote %s of mode %v", p, fi.Mode())
			}
			if fi.Mode().IsRegular() {
				total += fi.Size()
				files++
			}
			return nil
		})
		if total > fuzzLimits.MaxBytes || files > fuzzLimits.MaxFiles {
			t.Fatalf("unpacked %d files of %d bytes, beyond the limits", files, total)
		}
	})
}

// FuzzArchiveBytes: any bytes, compressed as an archive's tar stream,
// meet Check, Unpack and ReadManifest without a panic, and Check and Unpack
// agree on them.
func FuzzArchiveBytes(f *testing.F) {
	good, _ := BuildArchive(manifest(), File{Name: "install.sh", Body: []byte("#!/bin/sh\n"), Mode: 0o755})
	zr, _ := gzip.NewReader(bytes.NewReader(good))
	var raw bytes.Buffer
	raw.ReadFrom(zr)
	f.Add(raw.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, tarBytes []byte) {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		gz.Write(tarBytes)
		gz.Close()
		archive := buf.Bytes()
		checkErr := Check(archive, fuzzLimits)
		unpackErr := Unpack(bytes.NewReader(archive), filepath.Join(t.TempDir(), "pkg"), fuzzLimits)
		if (checkErr == nil) != (unpackErr == nil) {
			t.Fatalf("Check and Unpack disagree: Check %v, Unpack %v", checkErr, unpackErr)
		}
		if m, err := ReadManifest(archive); err == nil {
			if err := ValidateManifest(m); err != nil {
				t.Fatalf("ReadManifest accepted an invalid manifest: %v", err)
			}
		}
	})
}

// FuzzManifest: a manifest.json that ReadManifest accepts is one JSON
// value, passes ValidateManifest, and packs into an archive that reads
// back as the same manifest.
func FuzzManifest(f *testing.F) {
	good, _ := json.Marshal(manifest())
	f.Add(good)
	f.Add([]byte(`{"publisher":"Acme","type":"Monitor","version":"1.2.3","handlers":{"install":"./i","enable":"./e"},"timeouts":{"install":"5m"}}`))
	f.Add([]byte(`{"publisher":"Acme","type":"Monitor","version":"1.2.3","handlers":{"install":"./i","enable":"./e"}} trailing`))
	f.Add([]byte(`{"publisher":"Acme","type":"Monitor","version":"01.2.3","handlers":{"install":"./i","enable":"./e"}}`))
	f.Add([]byte(`{"publisher":"Acme","type":"Monitor","version":"1.2.3","handlers":{"install":"\u0000","enable":"./e"},"arch":["mips"]}`))
	f.Fuzz(func(t *testing.T, mj []byte) {
		archive, err := BuildArchive(nil, File{Name: wire.ManifestFile, Body: mj})
		if err != nil {
			t.Fatal(err)
		}
		m, err := ReadManifest(archive)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) && !errors.Is(err, ErrBadArchive) {
				t.Fatalf("refused with %v, not ErrBadManifest", err)
			}
			return
		}
		if !json.Valid(mj) {
			t.Fatalf("manifest %q accepted but is not one JSON value", mj)
		}
		if err := ValidateManifest(m); err != nil {
			t.Fatalf("accepted manifest is invalid: %v", err)
		}
		for _, h := range []string{m.Handlers.Install, m.Handlers.Enable, m.Handlers.Disable, m.Handlers.Update, m.Handlers.Uninstall} {
			if strings.ContainsRune(h, 0) || len(h) > 4096 {
				t.Fatalf("accepted handler %q", h)
			}
		}
		for h := range m.Timeouts {
			if d := HandlerTimeout(m, h); d <= 0 || d > wire.MaxHandlerTimeout {
				t.Fatalf("handler %s timeout %v", h, d)
			}
		}
		repacked, err := BuildArchive(&m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ReadManifest(repacked)
		if err != nil || !cmp.Equal(back, m, cmpopts.EquateEmpty()) { // "os":[] packs as nothing
			t.Fatalf("manifest %+v repacks as %+v (%v)", m, back, err)
		}
	})
}

// FuzzVerifyCatalog: a catalog verifies only with its signature, and a
// verified catalog is the expected publisher's, with well-formed entries,
// that signs and verifies again as the same catalog.
func FuzzVerifyCatalog(f *testing.F) {
	seed, _ := json.Marshal(wire.Catalog{Publisher: "Acme", Serial: 3, IssuedAt: time.Unix(1e9, 0).UTC(), ExpiresAt: time.Unix(2e9, 0).UTC(),
		Packages: []wire.CatalogEntry{{Type: "Monitor", Version: "1.2.3", Digest: Digest([]byte("x")), Size: 10}}})
	f.Add(seed, false)
	f.Add(seed, true)
	f.Add([]byte(`{"publisher":"Acme","packages":[{"type":"M","version":"1.0.0","digest":"sha256:00","size":1}]}`), false)
	f.Add([]byte(`{"publisher":"Acme","packages":[]} {}`), false)
	f.Add([]byte(`{"publisher":"Other"}`), false)
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, cj []byte, tamper bool) {
		sc := wire.SignedCatalog{Catalog: cj, Signature: ed25519.Sign(priv, cj)}
		if tamper {
			sc.Signature[0] ^= 1
		}
		c, err := VerifyCatalog(pub, "Acme", sc)
		if tamper {
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("a tampered signature gave %v", err)
			}
			return
		}
		if err != nil {
			return
		}
		if !json.Valid(cj) {
			t.Fatalf("catalog %q accepted but is not one JSON value", cj)
		}
		if c.Publisher != "Acme" {
			t.Fatalf("catalog of %q accepted for Acme", c.Publisher)
		}
		for _, e := range c.Packages {
			if !ValidName(e.Type) || !ValidVersion(e.Version) || !ValidDigest(e.Digest) || e.Size <= 0 {
				t.Fatalf("malformed entry %+v accepted", e)
			}
		}
		resigned, err := SignCatalog(priv, c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := VerifyCatalog(pub, "Acme", resigned)
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("catalog %+v re-signed reads back as %+v (%v)", c, back, err)
		}
	})
}

// FuzzPublicKey: a key ParsePublicKey accepts is 32 bytes and its written
// form reads back as the same key; versions compare as numbers.
func FuzzPublicKey(f *testing.F) {
	f.Add("ed25519:"+strings.Repeat("A", 43)+"=", "1.2.3", "1.10.0")
	f.Add(strings.Repeat("A", 43)+"=", "0.0.0", "0.0.0")
	f.Add(" ed25519:AAAA ", "999999.0.1", "1.0")
	f.Fuzz(func(t *testing.T, s, va, vb string) {
		if b, err := ParsePublicKey(s); err == nil {
			if len(b) != ed25519.PublicKeySize {
				t.Fatalf("key %q parsed to %d bytes", s, len(b))
			}
			if back, err := ParsePublicKey(FormatPublicKey(b)); err != nil || !bytes.Equal(back, b) {
				t.Fatalf("key %x written as %s reads back as %x (%v)", b, FormatPublicKey(b), back, err)
			}
		}
		if ValidVersion(va) && ValidVersion(vb) {
			ab, ba := CompareVersions(va, vb), CompareVersions(vb, va)
			if ab != -ba || (ab == 0) != (va == vb) {
				t.Fatalf("CompareVersions(%s, %s) = %d, reversed %d", va, vb, ab, ba)
			}
		}
	})
}
