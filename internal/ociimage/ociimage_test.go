package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var created = time.Date(2026, 11, 2, 9, 30, 15, 0, time.UTC)

func sample() Image {
	return Image{
		OS: "linux", Architecture: "amd64", Created: created.Add(400 * time.Millisecond), RefName: "corral:2026.11.0",
		Config: Config{User: "65532:65532", Env: []string{"CORRAL_DATA_DIR=/var/lib/corral"}, Entrypoint: []string{"/corral", "server"},
			ExposedPorts: []string{"8443/tcp"}, Volumes: []string{"/var/lib/corral"}, Labels: map[string]string{"org.opencontainers.image.version": "2026.11.0"},
			StopSignal: "SIGTERM"},
		Annotations: map[string]string{"org.opencontainers.image.revision": "abc"},
		Layers: []Layer{{CreatedBy: "test", Entries: []Entry{
			{Path: "var/lib/corral", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
			{Path: "corral", Mode: 0o755, Data: []byte("\x7fELF binary")},
			{Path: "etc", Mode: fs.ModeDir | 0o755},
			{Path: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\n")},
			{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "var", Mode: fs.ModeDir | 0o755},
			{Path: "var/lib", Mode: fs.ModeDir | 0o755},
		}}},
	}
}

func archive(t *testing.T, img Image) (*Built, []byte) {
	t.Helper()
	b, err := Build(img)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := b.WriteArchive(&buf); err != nil {
		t.Fatal(err)
	}
	return b, buf.Bytes()
}

// The same image gives the same bytes, whatever the order of its entries;
// another creation time gives another digest.
func TestBuildIsReproducible(t *testing.T) {
	b1, a1 := archive(t, sample())
	shuffled := sample()
	slices.Reverse(shuffled.Layers[0].Entries)
	b2, a2 := archive(t, shuffled)
	if !bytes.Equal(a1, a2) || b1.Manifest.Digest != b2.Manifest.Digest {
		t.Errorf("two builds differ: %s vs %s", b1.Manifest.Digest, b2.Manifest.Digest)
	}
	later := sample()
	later.Created = created.Add(time.Second)
	if b3, _ := archive(t, later); b3.Manifest.Digest == b1.Manifest.Digest || b3.Layers[0].DiffID == b1.Layers[0].DiffID {
		t.Errorf("another creation time kept the digest %s", b3.Manifest.Digest)
	}
}

// readTar returns the headers and contents of a tar stream, in order.
func readTar(t *testing.T, r io.Reader) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(r)
	var hdrs []*tar.Header
	data := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		data[h.Name], _ = io.ReadAll(tr)
	}
}

func sha(p []byte) string {
	s := sha256.Sum256(p)
	return "sha256:" + hex.EncodeToString(s[:])
}

// The archive, read back as a client would: every blob is named by its
// digest, the index points at the manifest, the manifest at the config and
// the layer, the config at the layer's uncompressed digest, and the layer
// holds the entries sorted, with the given owners and modes and the image's
// time.
func TestArchiveReadsBack(t *testing.T) {
	b, a := archive(t, sample())
	hdrs, files := readTar(t, bytes.NewReader(a))
	var names []string
	for _, h := range hdrs {
		names = append(names, h.Name)
		if !h.ModTime.Equal(created) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("archive entry %s: mtime %s owner %d:%d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
	}
	if !slices.IsSorted(names) || names[0] != "blobs/" || names[1] != "blobs/sha256/" {
		t.Errorf("archive entries: %v", names)
	}
	for name, p := range files {
		if hexd, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && hexd != "" && sha(p) != "sha256:"+hexd {
			t.Errorf("blob %s holds content of digest %s", name, sha(p))
		}
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %s", files["oci-layout"])
	}

	var idx index
	mustJSON(t, files["index.json"], &idx)
	want := index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{{MediaType: MediaTypeManifest, Digest: b.Manifest.Digest,
		Size: int64(len(files[blobPath(b.Manifest.Digest)])), Platform: &Platform{Architecture: "amd64", OS: "linux"},
		Annotations: map[string]string{AnnotationRefName: "corral:2026.11.0"}}}}
	if d := cmp.Diff(want, idx); d != "" {
		t.Errorf("index.json (-want +got):\n%s", d)
	}
	var man manifest
	mustJSON(t, files[blobPath(b.Manifest.Digest)], &man)
	if man.Config.Digest != b.Config.Digest || man.Config.Size != int64(len(files[blobPath(b.Config.Digest)])) ||
		len(man.Layers) != 1 || man.Layers[0].MediaType != MediaTypeLayerGzip || man.Annotations["org.opencontainers.image.revision"] != "abc" {
		t.Errorf("manifest %+v", man)
	}
	layerBlob := files[blobPath(man.Layers[0].Digest)]
	if int64(len(layerBlob)) != man.Layers[0].Size {
		t.Errorf("layer size %d, manifest says %d", len(layerBlob), man.Layers[0].Size)
	}
	zr, err := gzip.NewReader(bytes.NewReader(layerBlob))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header carries time %s name %q", zr.ModTime, zr.Name)
	}
	layerTar, _ := io.ReadAll(zr)

	var cfg imageConfig
	mustJSON(t, files[blobPath(b.Config.Digest)], &cfg)
	if !cfg.Created.Equal(created) || cfg.Config.User != "65532:65532" || cfg.Config.Entrypoint[1] != "server" ||
		cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != sha(layerTar) ||
		b.Layers[0].UncompressedSize != int64(len(layerTar)) {
		t.Errorf("config %+v (layer tar %s, %d bytes)", cfg, sha(layerTar), len(layerTar))
	}
	if _, ok := cfg.Config.Volumes["/var/lib/corral"]; !ok {
		t.Errorf("volumes %v", cfg.Config.Volumes)
	}
	if _, ok := cfg.Config.ExposedPorts["8443/tcp"]; !ok {
		t.Errorf("exposed ports %v", cfg.Config.ExposedPorts)
	}

	type entry struct {
		Name     string
		Type     byte
		Mode     int64
		Uid, Gid int
		Uname    string
		Data     string
	}
	lh, ld := readTar(t, bytes.NewReader(layerTar))
	var got []entry
	for _, h := range lh {
		if !h.ModTime.Equal(created) || h.Format != tar.FormatUSTAR {
			t.Errorf("layer entry %s: mtime %s format %s", h.Name, h.ModTime, h.Format)
		}
		got = append(got, entry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, string(ld[h.Name])})
	}
	wantEntries := []entry{
		{"corral", tar.TypeReg, 0o755, 0, 0, "", "\x7fELF binary"},
		{"etc/", tar.TypeDir, 0o755, 0, 0, "", ""},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, "", "root:x:0:0:root:/root:/sbin/nologin\n"},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, "", ""},
		{"var/", tar.TypeDir, 0o755, 0, 0, "", ""},
		{"var/lib/", tar.TypeDir, 0o755, 0, 0, "", ""},
		{"var/lib/corral/", tar.TypeDir, 0o700, 65532, 65532, "", ""},
	}
	if d := cmp.Diff(wantEntries, got); d != "" {
		t.Errorf("layer entries (-want +got):\n%s", d)
	}

	var dm []dockerManifest
	mustJSON(t, files["manifest.json"], &dm)
	if d := cmp.Diff([]dockerManifest{{Config: blobPath(b.Config.Digest), RepoTags: []string{"corral:2026.11.0"},
		Layers: []string{blobPath(b.Layers[0].Digest)}}}, dm); d != "" {
		t.Errorf("manifest.json (-want +got):\n%s", d)
	}
	if b.CompressedSize() != int64(len(layerBlob))+b.Config.Size+b.Manifest.Size || b.UncompressedSize() != int64(len(layerTar)) {
		t.Errorf("sizes %d %d", b.CompressedSize(), b.UncompressedSize())
	}
}

func mustJSON(t *testing.T, p []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(p, v); err != nil {
		t.Fatalf("%v in %s", err, p)
	}
}

// The layout directory holds the same files as the archive.
func TestWriteLayout(t *testing.T) {
	b, a := archive(t, sample())
	dir := filepath.Join(t.TempDir(), "layout")
	if err := b.WriteLayout(dir); err != nil {
		t.Fatal(err)
	}
	_, files := readTar(t, bytes.NewReader(a))
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got, _ := os.ReadFile(p)
		if !bytes.Equal(got, files[filepath.ToSlash(rel)]) {
			t.Errorf("%s differs from the archive's", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 { // oci-layout, index.json, manifest.json, 3 blobs
		t.Errorf("layout has %d files", n)
	}
	// A directory that already holds something is left alone.
	if err := b.WriteLayout(dir); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("second write into %s: %v", dir, err)
	}
}

func TestBuildRefusesBadImages(t *testing.T) {
	with := func(change func(*Image)) Image {
		img := sample()
		change(&img)
		return img
	}
	add := func(e Entry) func(*Image) {
		return func(img *Image) { img.Layers[0].Entries = append(img.Layers[0].Entries, e) }
	}
	tests := []struct {
		name string
		img  Image
		want string
	}{
		{"absolute path", with(add(Entry{Path: "/etc/group", Mode: 0o644})), `"/etc/group": a path must be clean and relative`},
		{"unclean path", with(add(Entry{Path: "etc//group", Mode: 0o644})), `"etc//group": a path must be clean`},
		{"parent escape", with(add(Entry{Path: "../x", Mode: 0o644})), `"../x": a path must be clean`},
		{"dot", with(add(Entry{Path: ".", Mode: fs.ModeDir | 0o755})), `".": a path must be clean`},
		{"twice", with(add(Entry{Path: "etc/passwd", Mode: 0o600})), `"etc/passwd": given twice`},
		{"no parent", with(add(Entry{Path: "usr/bin/x", Mode: 0o755})), `"usr/bin/x": its directory "usr/bin" is not in this layer`},
		{"parent is a file", with(add(Entry{Path: "corral/x", Mode: 0o755})), `"corral/x": its directory "corral" is not`},
		{"symlink", with(add(Entry{Path: "bin", Mode: fs.ModeSymlink | 0o777})), `"bin": mode Lrwxrwxrwx: only regular files and directories`},
		{"directory with data", with(add(Entry{Path: "opt", Mode: fs.ModeDir | 0o755, Data: []byte("x")})), `"opt": a directory cannot have data`},
		{"negative owner", with(add(Entry{Path: "etc/group", Mode: 0o644, UID: -1})), `"etc/group": owner -1:0 is out of range`},
		{"control character", with(add(Entry{Path: "etc/a\nb", Mode: 0o644})), `only printable ASCII paths`},
		{"no time", with(func(img *Image) { img.Created = time.Time{} }), "before 1970"},
		{"no platform", with(func(img *Image) { img.Architecture = "" }), "needs an OS and an architecture"},
		{"no layer", with(func(img *Image) { img.Layers = nil }), "has no layer"},
		{"long name", with(add(Entry{Path: strings.Repeat("n", 120), Mode: 0o644})), "cannot encode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.img)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %s", err, tt.want)
			}
		})
	}
}

// A later layer may use directories of an earlier one.
func TestLayersStack(t *testing.T) {
	img := sample()
	img.Layers = append(img.Layers, Layer{Entries: []Entry{{Path: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\n")}}})
	b, err := Build(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Layers) != 2 {
		t.Errorf("%d layers", len(b.Layers))
	}
}
