package ociimage

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Media types and annotations of the OCI image specification v1.1.
const (
	MediaTypeIndex     = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest  = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig    = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	// AnnotationRefName names an image inside a layout (skopeo's
	// oci:DIR:REF, podman load's image name).
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// Entry is one file or directory of a layer.
type Entry struct {
	// Path is slash-separated and relative to the image's root: "etc/passwd".
	Path string
	// Mode is the permission bits, optionally fs.ModeSticky, fs.ModeSetuid
	// or fs.ModeSetgid, plus fs.ModeDir for a directory. Other file types
	// (symlinks, devices) are refused.
	Mode     fs.FileMode
	UID, GID int
	// Data is a regular file's content; empty for a directory.
	Data []byte
}

// Layer is one file-system layer.
type Layer struct {
	Entries []Entry
	// CreatedBy is the layer's line in the image history (`podman history`).
	CreatedBy string
}

// Config is how a container of the image runs by default (the "config"
// object of the image configuration).
type Config struct {
	User         string   // "65532:65532"
	Env          []string // "KEY=value"
	Entrypoint   []string
	Cmd          []string
	WorkingDir   string
	ExposedPorts []string // "8443/tcp"
	Volumes      []string // "/var/lib/corral"
	Labels       map[string]string
	StopSignal   string // "SIGTERM"
}

// Image is everything an image is built from.
type Image struct {
	OS, Architecture, Variant string // "linux", "amd64" or "arm64", "" or "v8"
	// Created is the image's creation time and the modification time of
	// every file in it: for a reproducible image, the source's time
	// (SOURCE_DATE_EPOCH, the commit time), never the clock.
	Created time.Time
	Config  Config
	// Layers are applied in order, the first one at the bottom.
	Layers []Layer
	// Annotations go on the manifest (org.opencontainers.image.*).
	Annotations map[string]string
	// RefName, when set, names the image in the layout's index
	// (AnnotationRefName) and in the archive's Docker manifest.json
	// (RepoTags): "corral:2026.11.0".
	RefName string
}

// validate reports every problem of img, naming paths.
func (img Image) validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if img.OS == "" || img.Architecture == "" {
		bad("the image needs an OS and an architecture (got %q/%q)", img.OS, img.Architecture)
	}
	if img.Created.Unix() < 0 {
		bad("the creation time %s is before 1970 (set it from SOURCE_DATE_EPOCH or the commit time)", img.Created.UTC().Format(time.RFC3339))
	}
	if len(img.Layers) == 0 {
		bad("the image has no layer")
	}
	dirs := map[string]bool{"": true} // the root exists in every image
	for i, l := range img.Layers {
		seen := map[string]bool{}
		entries := slices.Clone(l.Entries)
		slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
		for _, e := range entries {
			where := fmt.Sprintf("layer %d: %q", i+1, e.Path)
			switch {
			case e.Path == "" || e.Path == "." || strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path ||
				e.Path == ".." || strings.HasPrefix(e.Path, "../"):
				bad("%s: a path must be clean and relative to the image root (like \"etc/passwd\")", where)
				continue
			case !utf8.ValidString(e.Path) || strings.ContainsFunc(e.Path, func(r rune) bool { return r < 0x20 || r > 0x7e }):
				bad("%s: only printable ASCII paths are supported", where)
				continue
			case seen[e.Path]:
				bad("%s: given twice", where)
				continue
			}
			seen[e.Path] = true
			if e.Mode.Type() != 0 && e.Mode.Type() != fs.ModeDir {
				bad("%s: mode %s: only regular files and directories are supported", where, e.Mode)
			}
			if e.Mode&^(fs.ModeDir|fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid) != 0 {
				bad("%s: mode %s has bits a layer cannot carry", where, e.Mode)
			}
			if e.Mode.IsDir() && len(e.Data) > 0 {
				bad("%s: a directory cannot have data", where)
			}
			if e.UID < 0 || e.GID < 0 || e.UID > maxID || e.GID > maxID {
				bad("%s: owner %d:%d is out of range 0..%d", where, e.UID, e.GID, maxID)
			}
			if parent := path.Dir(e.Path); parent != "." && !dirs[parent] {
				bad("%s: its directory %q is not in this layer or one below", where, parent)
			}
			if e.Mode.IsDir() {
				dirs[e.Path] = true
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid image: %s", strings.Join(problems, "; "))
	}
	return nil
}

// maxID is the largest owner id a ustar header holds (7 octal digits).
const maxID = 1<<21 - 1
