package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"
)

// Descriptor points at a blob (image-spec "descriptor").
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform is the OS and architecture a manifest is for.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// LayerInfo describes a built layer.
type LayerInfo struct {
	Descriptor // the compressed blob
	// DiffID is the digest of the uncompressed tar (the config's rootfs).
	DiffID string
	// UncompressedSize is the tar's size in bytes.
	UncompressedSize int64
}

// Built is a built image: its blobs, ready to be written.
type Built struct {
	// Manifest is the descriptor of the image manifest; its digest is the
	// image's digest (what `skopeo inspect` and registries show).
	Manifest Descriptor
	// Config is the descriptor of the image configuration; its digest is
	// the image ID podman and docker show.
	Config Descriptor
	Layers []LayerInfo
	// files are the layout's files by slash path ("index.json",
	// "blobs/sha256/HEX").
	files   map[string][]byte
	created time.Time
}

// Build builds img in memory. It fails, naming the problem, when img is
// invalid (see Image and Entry).
func Build(img Image) (*Built, error) {
	if err := img.validate(); err != nil {
		return nil, err
	}
	created := img.Created.UTC().Truncate(time.Second)
	b := &Built{files: map[string][]byte{}, created: created}
	var diffIDs []string
	var history []historyEntry
	for i, l := range img.Layers {
		info, blob, err := buildLayer(l, created)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		b.addBlob(blob)
		b.Layers = append(b.Layers, info)
		diffIDs = append(diffIDs, info.DiffID)
		history = append(history, historyEntry{Created: created, CreatedBy: l.CreatedBy})
	}

	c := img.Config
	cfg, err := json.Marshal(imageConfig{
		Created: created, Architecture: img.Architecture, OS: img.OS, Variant: img.Variant,
		Config: runConfig{
			User: c.User, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir,
			ExposedPorts: set(c.ExposedPorts), Volumes: set(c.Volumes), Labels: c.Labels, StopSignal: c.StopSignal,
		},
		RootFS:  rootFS{Type: "layers", DiffIDs: diffIDs},
		History: history,
	})
	if err != nil {
		return nil, fmt.Errorf("encode the image configuration: %w", err)
	}
	b.Config = Descriptor{MediaType: MediaTypeConfig, Digest: b.addBlob(cfg), Size: int64(len(cfg))}

	layers := make([]Descriptor, len(b.Layers))
	for i, l := range b.Layers {
		layers[i] = l.Descriptor
	}
	man, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: b.Config, Layers: layers,
		Annotations: img.Annotations})
	if err != nil {
		return nil, fmt.Errorf("encode the manifest: %w", err)
	}
	b.Manifest = Descriptor{MediaType: MediaTypeManifest, Digest: b.addBlob(man), Size: int64(len(man)),
		Platform: &Platform{Architecture: img.Architecture, OS: img.OS, Variant: img.Variant}}
	if img.RefName != "" {
		b.Manifest.Annotations = map[string]string{AnnotationRefName: img.RefName}
	}

	index, err := json.Marshal(index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{b.Manifest}})
	if err != nil {
		return nil, fmt.Errorf("encode the index: %w", err)
	}
	b.files["index.json"] = index
	b.files["oci-layout"] = []byte(`{"imageLayoutVersion":"1.0.0"}`)
	// What `docker save` writes beside the OCI layout, so that docker's
	// classic loader (which ignores index.json) takes the archive too.
	dm := dockerManifest{Config: blobPath(b.Config.Digest)}
	if img.RefName != "" {
		dm.RepoTags = []string{img.RefName}
	}
	for _, l := range b.Layers {
		dm.Layers = append(dm.Layers, blobPath(l.Digest))
	}
	if b.files["manifest.json"], err = json.Marshal([]dockerManifest{dm}); err != nil {
		return nil, fmt.Errorf("encode manifest.json: %w", err)
	}
	return b, nil
}

// CompressedSize is what the image weighs on disk and on the wire: its
// layers, config and manifest.
func (b *Built) CompressedSize() int64 {
	n := b.Config.Size + b.Manifest.Size
	for _, l := range b.Layers {
		n += l.Size
	}
	return n
}

// UncompressedSize is the size of the layers' tar streams: about what the
// image takes once unpacked.
func (b *Built) UncompressedSize() int64 {
	var n int64
	for _, l := range b.Layers {
		n += l.UncompressedSize
	}
	return n
}

// addBlob stores a blob under its digest and returns the digest.
func (b *Built) addBlob(p []byte) string {
	sum := sha256.Sum256(p)
	d := "sha256:" + hex.EncodeToString(sum[:])
	b.files[blobPath(d)] = p
	return d
}

func blobPath(digest string) string { return "blobs/" + strings.Replace(digest, ":", "/", 1) }

// buildLayer writes l's entries, sorted by path, as a gzip-compressed tar.
func buildLayer(l Layer, created time.Time) (LayerInfo, []byte, error) {
	var blob bytes.Buffer
	zw, err := gzip.NewWriterLevel(&blob, gzip.BestCompression)
	if err != nil {
		return LayerInfo{}, nil, err
	}
	diff := sha256.New()
	count := &countingWriter{}
	tw := tar.NewWriter(io.MultiWriter(zw, diff, count))
	entries := slices.Clone(l.Entries)
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	for _, e := range entries {
		if err := tw.WriteHeader(tarHeader(e, created)); err != nil {
			return LayerInfo{}, nil, fmt.Errorf("%q: %w", e.Path, err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			return LayerInfo{}, nil, fmt.Errorf("%q: %w", e.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return LayerInfo{}, nil, err
	}
	if err := zw.Close(); err != nil {
		return LayerInfo{}, nil, err
	}
	p := blob.Bytes()
	sum := sha256.Sum256(p)
	return LayerInfo{
		Descriptor:       Descriptor{MediaType: MediaTypeLayerGzip, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(p))},
		DiffID:           digestOf(diff),
		UncompressedSize: count.n,
	}, p, nil
}

// tarHeader is e's ustar header: numeric owners, no user or group names,
// every time the image's.
func tarHeader(e Entry, created time.Time) *tar.Header {
	h := &tar.Header{Name: e.Path, Typeflag: tar.TypeReg, Size: int64(len(e.Data)), Uid: e.UID, Gid: e.GID,
		Mode: int64(e.Mode.Perm()), ModTime: created, Format: tar.FormatUSTAR}
	if e.Mode.IsDir() {
		h.Name += "/"
		h.Typeflag = tar.TypeDir
		h.Size = 0
	}
	for bit, tarBit := range map[fs.FileMode]int64{fs.ModeSetuid: 0o4000, fs.ModeSetgid: 0o2000, fs.ModeSticky: 0o1000} {
		if e.Mode&bit != 0 {
			h.Mode |= tarBit
		}
	}
	return h
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// set turns a list into the {"item":{}} objects of the image config.
func set(items []string) map[string]struct{} {
	if len(items) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(items))
	for _, it := range items {
		m[it] = struct{}{}
	}
	return m
}

// sortedPaths are the layout's files in the order they are written.
func (b *Built) sortedPaths() []string { return slices.Sorted(maps.Keys(b.files)) }

// The JSON documents of the image specification (encoding/json sorts map
// keys, so they encode the same way every time).
type (
	imageConfig struct {
		Created      time.Time      `json:"created"`
		Architecture string         `json:"architecture"`
		OS           string         `json:"os"`
		Variant      string         `json:"variant,omitempty"`
		Config       runConfig      `json:"config"`
		RootFS       rootFS         `json:"rootfs"`
		History      []historyEntry `json:"history,omitempty"`
	}
	runConfig struct {
		User         string              `json:"User,omitempty"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
		Env          []string            `json:"Env,omitempty"`
		Entrypoint   []string            `json:"Entrypoint,omitempty"`
		Cmd          []string            `json:"Cmd,omitempty"`
		Volumes      map[string]struct{} `json:"Volumes,omitempty"`
		WorkingDir   string              `json:"WorkingDir,omitempty"`
		Labels       map[string]string   `json:"Labels,omitempty"`
		StopSignal   string              `json:"StopSignal,omitempty"`
	}
	rootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	}
	historyEntry struct {
		Created   time.Time `json:"created"`
		CreatedBy string    `json:"created_by,omitempty"`
	}
	manifest struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Config        Descriptor        `json:"config"`
		Layers        []Descriptor      `json:"layers"`
		Annotations   map[string]string `json:"annotations,omitempty"`
	}
	index struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []Descriptor `json:"manifests"`
	}
	dockerManifest struct {
		Config   string
		RepoTags []string `json:",omitempty"`
		Layers   []string
	}
)
