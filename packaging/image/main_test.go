package main

import (
	"bytes"
	"debug/buildinfo"
	"io/fs"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/ociimage"
)

func info(path string, settings ...string) *buildinfo.BuildInfo {
	bi := &debug.BuildInfo{Path: path}
	for i := 0; i+1 < len(settings); i += 2 {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
	}
	return bi
}

func TestCheckBinary(t *testing.T) {
	const corral = "github.com/corralhq/corral/cmd/corral"
	tests := []struct {
		name string
		bi   *buildinfo.BuildInfo
		want string // error substring; "" = accepted
	}{
		{"static with time zones", info(corral, "GOOS", "linux", "GOARCH", "arm64", "CGO_ENABLED", "0", "-tags", "timetzdata"), ""},
		{"among other tags", info(corral, "GOOS", "linux", "GOARCH", "amd64", "CGO_ENABLED", "0", "-tags", "netgo,timetzdata"), ""},
		{"cgo", info(corral, "GOOS", "linux", "GOARCH", "amd64", "CGO_ENABLED", "1", "-tags", "timetzdata"), "not static: build it with CGO_ENABLED=0"},
		{"cgo unset", info(corral, "GOOS", "linux", "GOARCH", "amd64", "-tags", "timetzdata"), "not static"},
		{"no time zones", info(corral, "GOOS", "linux", "GOARCH", "amd64", "CGO_ENABLED", "0"), "-tags timetzdata"},
		{"a tag that only contains the name", info(corral, "GOOS", "linux", "GOARCH", "amd64", "CGO_ENABLED", "0", "-tags", "notimetzdata"), "-tags timetzdata"},
		{"another OS", info(corral, "GOOS", "darwin", "GOARCH", "arm64", "CGO_ENABLED", "0", "-tags", "timetzdata"), `GOOS="darwin"`},
		{"another program", info("github.com/corralhq/corral/cmd/corral-agent", "GOOS", "linux", "GOARCH", "amd64", "CGO_ENABLED", "0", "-tags", "timetzdata"), "not github.com/corralhq/corral/cmd/corral"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arch, err := checkBinary(tt.bi)
			switch {
			case tt.want == "" && (err != nil || arch == ""):
				t.Errorf("got %q, %v; want accepted", arch, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// The server image: its files, owners and modes, and how it runs.
func TestServerImage(t *testing.T) {
	created := time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)
	img := serverImage(imageSpec{Binary: []byte("ELF"), License: []byte("Apache"), Arch: "amd64", Version: "2026.11.0",
		Revision: "0123456789abcdef0123456789abcdef01234567", Source: "https://github.com/corralhq/corral", Created: created, RefName: "corral:2026.11.0"})
	if _, err := ociimage.Build(img); err != nil {
		t.Fatal(err)
	}
	type file struct {
		Mode     fs.FileMode
		UID, GID int
	}
	got := map[string]file{}
	var passwd, group string
	for _, e := range img.Layers[0].Entries {
		got[e.Path] = file{e.Mode, e.UID, e.GID}
		switch e.Path {
		case "etc/passwd":
			passwd = string(e.Data)
		case "etc/group":
			group = string(e.Data)
		}
	}
	want := map[string]file{
		"corral": {0o755, 0, 0}, "etc": {fs.ModeDir | 0o755, 0, 0}, "etc/passwd": {0o644, 0, 0}, "etc/group": {0o644, 0, 0},
		"etc/nsswitch.conf": {0o644, 0, 0}, "tmp": {fs.ModeDir | fs.ModeSticky | 0o777, 0, 0},
		"usr": {fs.ModeDir | 0o755, 0, 0}, "usr/share": {fs.ModeDir | 0o755, 0, 0}, "usr/share/doc": {fs.ModeDir | 0o755, 0, 0},
		"usr/share/doc/corral": {fs.ModeDir | 0o755, 0, 0}, "usr/share/doc/corral/LICENSE": {0o644, 0, 0},
		"var": {fs.ModeDir | 0o755, 0, 0}, "var/lib": {fs.ModeDir | 0o755, 0, 0}, "var/lib/corral": {fs.ModeDir | 0o700, 65532, 65532},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("image files (-want +got):\n%s", d)
	}
	if !strings.Contains(passwd, "\ncorral:x:65532:65532:") || !strings.Contains(group, "\ncorral:x:65532:\n") {
		t.Errorf("user database:\n%s\n%s", passwd, group)
	}
	c := img.Config
	if c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != "/corral server" || len(c.Cmd) != 0 ||
		strings.Join(c.Volumes, ",") != "/var/lib/corral" || strings.Join(c.ExposedPorts, ",") != "8443/tcp" ||
		strings.Join(c.Env, ",") != "CORRAL_DATA_DIR=/var/lib/corral" || c.StopSignal != "SIGTERM" {
		t.Errorf("run config %+v", c)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  "2026.11.0",
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.source":   "https://github.com/corralhq/corral",
		"org.opencontainers.image.created":  "2026-11-02T09:30:00Z",
		"org.opencontainers.image.licenses": "Apache-2.0",
	} {
		if c.Labels[k] != v || img.Annotations[k] != v {
			t.Errorf("label %s = %q, annotation %q; want %q", k, c.Labels[k], img.Annotations[k], v)
		}
	}
}

// Bad invocations say what is missing and write nothing.
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  string // SOURCE_DATE_EPOCH
		want string
	}{
		{"no binary", []string{"--version", "1", "--archive", dir + "/a.tar"}, "1", "--binary, --version and --archive or --layout are required"},
		{"no output", []string{"--binary", self, "--version", "1"}, "1", "are required"},
		{"no time", []string{"--binary", self, "--version", "1", "--archive", dir + "/a.tar"}, "", "give --created or SOURCE_DATE_EPOCH"},
		{"bad time", []string{"--binary", self, "--version", "1", "--archive", dir + "/a.tar"}, "yesterday", `image time "yesterday": want Unix seconds`},
		{"missing binary", []string{"--binary", dir + "/none", "--version", "1", "--archive", dir + "/a.tar"}, "1", "no such file"},
		// This test binary is no static corral.
		{"not corral", []string{"--binary", self, "--version", "1", "--archive", dir + "/a.tar"}, "1", "not github.com/corralhq/corral/cmd/corral"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.env)
			var out bytes.Buffer
			err := run(tt.args, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("a refused run wrote %v", entries)
			}
		})
	}
}
