package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
)

// WriteLayout writes the image as an OCI image layout in dir (created if
// missing; it must be empty so that no other image's blobs are mixed in).
// `skopeo copy oci:DIR:REF ...` and `podman pull oci:DIR` read it.
func (b *Built) WriteLayout(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("write image layout: %s is not empty", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write image layout: %w", err)
	}
	for _, p := range b.sortedPaths() {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("write image layout: %w", err)
		}
		if err := os.WriteFile(full, b.files[p], 0o644); err != nil {
			return fmt.Errorf("write image layout: %w", err)
		}
	}
	return nil
}

// WriteArchive writes the image layout as one tar stream (an
// "oci-archive", with Docker's manifest.json beside index.json): `podman
// load -i`, `skopeo copy oci-archive:FILE ...` and `docker load -i` read it.
// Its entries are sorted, owned by 0:0 and dated Image.Created, so the
// archive is as reproducible as the image.
func (b *Built) WriteArchive(w io.Writer) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, p := range b.sortedPaths() {
		for _, d := range parents(p) {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: b.created, Format: tar.FormatUSTAR}); err != nil {
				return fmt.Errorf("write image archive: %w", err)
			}
		}
		data := b.files[p]
		if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: b.created, Format: tar.FormatUSTAR}); err != nil {
			return fmt.Errorf("write image archive: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("write image archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	return nil
}

// parents are p's directories, outermost first: "blobs/sha256/x" ->
// ["blobs", "blobs/sha256"].
func parents(p string) []string {
	var out []string
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}
