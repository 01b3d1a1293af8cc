// Command image assembles the OCI image of `corral server` from a static
// corral binary, with no container engine, base image, registry or network:
// the image is the binary, a user database with the non-root user "corral"
// (65532), an empty data directory owned by it, /tmp and the licence, on an
// empty base. packaging/image/build.sh builds the binary and runs it:
//
//	go run ./packaging/image --binary dist/corral --version 2026.11.0 \
//	    --revision $(git rev-parse HEAD) --archive dist/corral-server.oci.tar
//
// The image's time (every file's modification time, its "created") is
// --created, else $SOURCE_DATE_EPOCH: the same binary and time give the same
// digest. The binary must be a static linux build with embedded time zone
// data (CGO_ENABLED=0, -tags timetzdata): it is refused otherwise, since
// the image has neither a C library nor /usr/share/zoneinfo.
package main

import (
	"bytes"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/ociimage"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	binary := fs.String("binary", "", "the static corral binary (required)")
	license := fs.String("license", "", "licence file to ship as /usr/share/doc/corral/LICENSE")
	version := fs.String("version", "", "image version: label org.opencontainers.image.version and the tag (required)")
	revision := fs.String("revision", "", "source revision (git commit): label org.opencontainers.image.revision")
	source := fs.String("source", "https://github.com/corralhq/corral", "label org.opencontainers.image.source")
	created := fs.String("created", "", "image time in Unix seconds (default $SOURCE_DATE_EPOCH)")
	name := fs.String("name", "corral", "image name; the image is tagged NAME:VERSION")
	archive := fs.String("archive", "", "write the image as an OCI archive (podman load, skopeo copy oci-archive:, docker load)")
	layout := fs.String("layout", "", "write the image as an OCI layout directory (skopeo copy oci:DIR, podman pull oci:DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" || *version == "" || (*archive == "" && *layout == "") {
		return errors.New("--binary, --version and --archive or --layout are required")
	}
	if *created == "" {
		*created = os.Getenv("SOURCE_DATE_EPOCH")
	}
	if *created == "" {
		return errors.New("the image time is not set: give --created or SOURCE_DATE_EPOCH (build.sh uses the commit time)")
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("image time %q: want Unix seconds", *created)
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("%s: %w", *binary, err)
	}
	arch, err := checkBinary(bi)
	if err != nil {
		return fmt.Errorf("%s: %w", *binary, err)
	}
	var lic []byte
	if *license != "" {
		if lic, err = os.ReadFile(*license); err != nil {
			return err
		}
	}
	img := serverImage(imageSpec{
		Binary: bin, License: lic, Arch: arch, Version: *version, Revision: *revision, Source: *source,
		Created: time.Unix(secs, 0).UTC(), RefName: *name + ":" + *version,
	})
	built, err := ociimage.Build(img)
	if err != nil {
		return err
	}
	if *layout != "" {
		if err := built.WriteLayout(*layout); err != nil {
			return err
		}
	}
	if *archive != "" {
		if err := writeArchive(built, *archive); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "image %s (%s/%s)\n", img.RefName, img.OS, arch)
	fmt.Fprintf(out, "digest %s\n", built.Manifest.Digest)
	fmt.Fprintf(out, "id %s\n", strings.TrimPrefix(built.Config.Digest, "sha256:"))
	fmt.Fprintf(out, "size %d bytes compressed, %d bytes uncompressed\n", built.CompressedSize(), built.UncompressedSize())
	return nil
}

// writeArchive writes through a temporary file so that a failed build
// leaves no half archive behind.
func writeArchive(b *ociimage.Built, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".image-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := b.WriteArchive(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// checkBinary refuses a binary that cannot run on an empty base, and
// returns its architecture.
func checkBinary(bi *buildinfo.BuildInfo) (arch string, err error) {
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	var problems []string
	if settings["GOOS"] != "linux" {
		problems = append(problems, fmt.Sprintf("it is built for GOOS=%q, not linux", settings["GOOS"]))
	}
	if settings["CGO_ENABLED"] != "0" {
		problems = append(problems, "it is not static: build it with CGO_ENABLED=0 (the image has no C library)")
	}
	if !strings.Contains(","+settings["-tags"]+",", ",timetzdata,") {
		problems = append(problems, "it has no time zone data: build it with -tags timetzdata (the image has no /usr/share/zoneinfo)")
	}
	if bi.Path != "github.com/corralhq/corral/cmd/corral" {
		problems = append(problems, fmt.Sprintf("it is %s, not github.com/corralhq/corral/cmd/corral", bi.Path))
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return settings["GOARCH"], nil
}
