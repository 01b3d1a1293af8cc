package main

import (
	"io/fs"
	"time"

	"github.com/corralhq/corral/internal/ociimage"
)

// The image's conventions, also written down in docs/container.md.
const (
	// uid and gid of the user "corral" the server runs as (distroless's
	// "nonroot" number, so volume ownership carries over between images).
	serverUID = 65532
	dataDir   = "/var/lib/corral"
	// The default --listen port: above 1024, so no CAP_NET_BIND_SERVICE.
	serverPort = "8443/tcp"
)

// imageSpec is what varies between builds of the server image.
type imageSpec struct {
	Binary, License  []byte
	Arch             string
	Version          string
	Revision, Source string
	Created          time.Time
	RefName          string
}

// serverImage is the image of `corral server`: one layer on an empty base.
func serverImage(s imageSpec) ociimage.Image {
	dir := func(p string, mode fs.FileMode) ociimage.Entry {
		return ociimage.Entry{Path: p, Mode: fs.ModeDir | mode}
	}
	file := func(p string, mode fs.FileMode, data string) ociimage.Entry {
		return ociimage.Entry{Path: p, Mode: mode, Data: []byte(data)}
	}
	entries := []ociimage.Entry{
		{Path: "corral", Mode: 0o755, Data: s.Binary},
		dir("etc", 0o755),
		// Names for the ids, for `ps`, `ls -n` and Go's os/user; no login shell exists.
		file("etc/passwd", 0o644, "root:x:0:0:root:/root:/sbin/nologin\n"+
			"corral:x:65532:65532:Corral control plane:/var/lib/corral:/sbin/nologin\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"),
		file("etc/group", 0o644, "root:x:0:\ncorral:x:65532:\nnogroup:x:65534:\n"),
		// Go's resolver reads /etc/hosts before DNS only when told so (a
		// PostgreSQL host given with --add-host or a compose network).
		file("etc/nsswitch.conf", 0o644, "hosts: files dns\n"),
		// The server writes uploads (signature sets) to a private temporary
		// directory; with --read-only, mount a tmpfs here.
		dir("tmp", fs.ModeSticky|0o777),
		dir("usr", 0o755), dir("usr/share", 0o755), dir("usr/share/doc", 0o755), dir("usr/share/doc/corral", 0o755),
		dir("var", 0o755), dir("var/lib", 0o755),
		// The data volume: the CA, keys, server certificate and the SQLite
		// store. 0700 like the server creates it; a new named volume copies
		// this owner and mode.
		{Path: "var/lib/corral", Mode: fs.ModeDir | 0o700, UID: serverUID, GID: serverUID},
	}
	if len(s.License) > 0 {
		entries = append(entries, ociimage.Entry{Path: "usr/share/doc/corral/LICENSE", Mode: 0o644, Data: s.License})
	}
	created := s.Created.UTC().Format(time.RFC3339)
	labels := map[string]string{
		"org.opencontainers.image.title":         "corral server",
		"org.opencontainers.image.description":   "Corral control plane: REST API, web UI, OAuth2 token endpoint and the agent endpoint on one TLS listener",
		"org.opencontainers.image.version":       s.Version,
		"org.opencontainers.image.created":       created,
		"org.opencontainers.image.source":        s.Source,
		"org.opencontainers.image.url":           s.Source,
		"org.opencontainers.image.documentation": s.Source + "/blob/main/docs/container.md",
		"org.opencontainers.image.licenses":      "Apache-2.0",
	}
	if s.Revision != "" {
		labels["org.opencontainers.image.revision"] = s.Revision
	}
	return ociimage.Image{
		OS: "linux", Architecture: s.Arch, Created: s.Created, RefName: s.RefName,
		Config: ociimage.Config{
			User:         "65532:65532",
			Env:          []string{"CORRAL_DATA_DIR=" + dataDir},
			Entrypoint:   []string{"/corral", "server"},
			WorkingDir:   dataDir,
			ExposedPorts: []string{serverPort},
			Volumes:      []string{dataDir},
			Labels:       labels,
			StopSignal:   "SIGTERM",
		},
		Annotations: labels,
		Layers: []ociimage.Layer{{Entries: entries,
			CreatedBy: "packaging/image: corral " + s.Version + " (static, CGO_ENABLED=0), user corral 65532, data volume " + dataDir}},
	}
}
