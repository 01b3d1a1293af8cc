// Package extpkg is the extension package format shared by the CLI (which
// packs, signs and publishes), the control plane (which checks what it is
// given) and the agent (which verifies before it unpacks anything):
//
//   - a package is a gzip-compressed tar archive with manifest.json at its
//     root (wire.ExtensionManifest);
//   - its digest is "sha256:" + hex of the archive bytes;
//   - a publisher signs a catalog of digests with ed25519 (wire.SignedCatalog);
//   - Unpack extracts only regular files and directories, inside the target,
//     within size and file-count limits; anything else aborts the unpack.
//
// Nothing here trusts its input: every function fails closed.
package extpkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// Errors callers branch on.
var (
	ErrBadSignature = errors.New("catalog signature does not verify with the publisher's key")
	ErrBadArchive   = errors.New("unsafe or malformed package archive")
	ErrBadManifest  = errors.New("invalid extension manifest")
)

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	versionRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$`)
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// ValidName reports whether s is a valid publisher or type name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidVersion reports whether s is MAJOR.MINOR.PATCH.
func ValidVersion(s string) bool { return versionRE.MatchString(s) }

// ValidDigest reports whether s is "sha256:" + 64 lower-case hex digits.
func ValidDigest(s string) bool { return digestRE.MatchString(s) }

// CompareVersions orders MAJOR.MINOR.PATCH versions numerically.
func CompareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < 3 && i < len(pa) && i < len(pb); i++ {
		var x, y int
		fmt.Sscan(pa[i], &x)
		fmt.Sscan(pb[i], &y)
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Digest is "sha256:" + hex of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ValidateManifest checks a manifest's names, version, handlers, platforms
// and timeouts.
func ValidateManifest(m wire.ExtensionManifest) error {
	var errs []error
	if !ValidName(m.Publisher) {
		errs = append(errs, fmt.Errorf("publisher %q is not a valid name", m.Publisher))
	}
	if !ValidName(m.Type) {
		errs = append(errs, fmt.Errorf("type %q is not a valid name", m.Type))
	}
	if !ValidVersion(m.Version) {
		errs = append(errs, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH", m.Version))
	}
	if strings.TrimSpace(m.Handlers.Install) == "" || strings.TrimSpace(m.Handlers.Enable) == "" {
		errs = append(errs, errors.New("handlers.install and handlers.enable are required"))
	}
	for _, h := range []string{m.Handlers.Install, m.Handlers.Enable, m.Handlers.Disable, m.Handlers.Update, m.Handlers.Uninstall} {
		if len(h) > 4096 || strings.ContainsRune(h, 0) {
			errs = append(errs, errors.New("a handler command is too long or contains NUL"))
		}
	}
	for _, o := range m.OS {
		if o != "linux" {
			errs = append(errs, fmt.Errorf("os %q is not supported (linux)", o))
		}
	}
	for _, a := range m.Arch {
		if !slices.Contains([]string{"amd64", "arm64", "386", "arm", "ppc64le", "s390x", "riscv64"}, a) {
			errs = append(errs, fmt.Errorf("arch %q is unknown", a))
		}
	}
	for k, d := range m.Timeouts {
		if !slices.Contains([]string{wire.HandlerInstall, wire.HandlerEnable, wire.HandlerDisable, wire.HandlerUpdate, wire.HandlerUninstall}, k) {
			errs = append(errs, fmt.Errorf("timeouts.%s is not a handler", k))
		}
		if time.Duration(d) <= 0 || time.Duration(d) > wire.MaxHandlerTimeout {
			errs = append(errs, fmt.Errorf("timeouts.%s must be between 1s and %s", k, wire.MaxHandlerTimeout))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	return nil
}

// Supports reports whether the manifest runs on goos/goarch.
func Supports(m wire.ExtensionManifest, goos, goarch string) bool {
	return (len(m.OS) == 0 || slices.Contains(m.OS, goos)) && (len(m.Arch) == 0 || slices.Contains(m.Arch, goarch))
}

// HandlerTimeout is the manifest's timeout for handler h.
func HandlerTimeout(m wire.ExtensionManifest, h string) time.Duration {
	if d, ok := m.Timeouts[h]; ok && d > 0 {
		return min(time.Duration(d), wire.MaxHandlerTimeout)
	}
	return wire.DefaultHandlerTimeout
}

// ReadManifest finds manifest.json at the root of a package archive and
// validates it. It reads at most the archive's first MaxPackageFiles entries.
func ReadManifest(archive []byte) (wire.ExtensionManifest, error) {
	var m wire.ExtensionManifest
	if len(archive) > wire.MaxPackageBytes {
		return m, fmt.Errorf("%w: the archive is larger than %d bytes", ErrBadArchive, wire.MaxPackageBytes)
	}
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return m, fmt.Errorf("%w: not a gzip archive: %v", ErrBadArchive, err)
	}
	tr := tar.NewReader(gz)
	for range wire.MaxPackageFiles {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		if path.Clean(strings.TrimPrefix(h.Name, "./")) != wire.ManifestFile || h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 64<<10+1))
		if err != nil {
			return m, fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		if len(b) > 64<<10 {
			return m, fmt.Errorf("%w: manifest.json is larger than 64 KiB", ErrBadManifest)
		}
		if err := wire.DecodeStrict(b, &m); err != nil {
			return m, fmt.Errorf("%w: manifest.json: %v", ErrBadManifest, err)
		}
		return m, ValidateManifest(m)
	}
	return m, fmt.Errorf("%w: no manifest.json at the archive root", ErrBadManifest)
}

// SignCatalog encodes c and signs the bytes.
func SignCatalog(priv ed25519.PrivateKey, c wire.Catalog) (wire.SignedCatalog, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return wire.SignedCatalog{}, err
	}
	return wire.SignedCatalog{Catalog: b, Signature: ed25519.Sign(priv, b)}, nil
}

// VerifyCatalog checks the signature with pub and only then parses the
// catalog; publisher names the expected signer.
func VerifyCatalog(pub []byte, publisher string, sc wire.SignedCatalog) (wire.Catalog, error) {
	var c wire.Catalog
	if len(pub) != ed25519.PublicKeySize {
		return c, fmt.Errorf("publisher %s has no valid ed25519 key", publisher)
	}
	if !ed25519.Verify(ed25519.PublicKey(pub), sc.Catalog, sc.Signature) {
		return c, ErrBadSignature
	}
	if err := wire.DecodeStrict(sc.Catalog, &c); err != nil {
		return c, fmt.Errorf("catalog: %w", err)
	}
	if c.Publisher != publisher {
		return c, fmt.Errorf("the catalog is for publisher %q, not %q", c.Publisher, publisher)
	}
	for _, e := range c.Packages {
		if !ValidName(e.Type) || !ValidVersion(e.Version) || !ValidDigest(e.Digest) || e.Size <= 0 {
			return c, fmt.Errorf("catalog entry %s/%s %s is malformed", publisher, e.Type, e.Version)
		}
	}
	return c, nil
}

// FormatPublicKey is how a publisher's key is written for people and for
// the agent's local configuration: "ed25519:" and the standard base64 of
// the 32-byte key.
func FormatPublicKey(pub []byte) string { return "ed25519:" + base64.StdEncoding.EncodeToString(pub) }

// ParsePublicKey reads a key written by FormatPublicKey (or its bare
// base64).
func ParsePublicKey(s string) ([]byte, error) {
	b64 := strings.TrimPrefix(strings.TrimSpace(s), "ed25519:")
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%q is not an ed25519 public key (ed25519:BASE64 of 32 bytes)", s)
	}
	return b, nil
}

// ErrCatalogExpired is wrapped by CheckFresh's refusals.
var ErrCatalogExpired = errors.New("catalog expired")

// CheckFresh refuses a catalog without an expiry, or one expired at now
// (with wire.CatalogClockSkew of tolerance).
func CheckFresh(c wire.Catalog, now time.Time) error {
	if c.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: the catalog of %s (serial %d) carries no expiry; the publisher must sign it again", ErrCatalogExpired, c.Publisher, c.Serial)
	}
	if now.After(c.ExpiresAt.Add(wire.CatalogClockSkew)) {
		return fmt.Errorf("%w: the catalog of %s (serial %d) expired at %s; the publisher must sign it again", ErrCatalogExpired, c.Publisher, c.Serial, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// Find returns the catalog entry of type/version.
func Find(c wire.Catalog, typ, version string) (wire.CatalogEntry, bool) {
	for _, e := range c.Packages {
		if strings.EqualFold(e.Type, typ) && e.Version == version {
			return e, true
		}
	}
	return wire.CatalogEntry{}, false
}

// Limits bound an unpack.
type Limits struct {
	MaxBytes int64
	MaxFiles int
}

// DefaultLimits are the wire limits.
var DefaultLimits = Limits{MaxBytes: wire.MaxUnpackedBytes, MaxFiles: wire.MaxPackageFiles}

// walker applies the archive rules to each entry in turn.
type walker struct {
	lim   Limits
	total int64
	files int
	// isDir records each name seen so far and whether it is a directory
	// (named, or implied by a deeper entry), so that Check refuses what
	// Unpack cannot write: a name twice as a file, or as both a file and a
	// directory ("a" then "a/b").
	isDir map[string]bool
}

// claim records clean as a file or a directory, with its parents as
// directories, refusing a clash with what came before.
func (w *walker) claim(clean string, dir bool, name string) error {
	if w.isDir == nil {
		w.isDir = map[string]bool{}
	}
	for i := range len(clean) {
		if clean[i] != '/' {
			continue
		}
		if d, seen := w.isDir[clean[:i]]; seen && !d {
			return fmt.Errorf("%w: entry %q is inside %q, which is a file", ErrBadArchive, name, clean[:i])
		}
		w.isDir[clean[:i]] = true
	}
	d, seen := w.isDir[clean]
	switch {
	case seen && !dir && !d:
		return fmt.Errorf("%w: entry %q appears twice", ErrBadArchive, name)
	case seen && dir != d:
		return fmt.Errorf("%w: entry %q is both a file and a directory", ErrBadArchive, name)
	}
	w.isDir[clean] = dir
	return nil
}

// entry checks one header and returns its clean relative name ("" for
// the root directory entry, which is skipped).
func (w *walker) entry(h *tar.Header) (string, error) {
	w.files++
	if w.files > w.lim.MaxFiles {
		return "", fmt.Errorf("%w: more than %d entries", ErrBadArchive, w.lim.MaxFiles)
	}
	name := strings.TrimPrefix(h.Name, "./")
	clean := path.Clean(name)
	if name == "" || clean == "." && h.Typeflag == tar.TypeDir {
		return "", nil
	}
	if path.IsAbs(name) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: entry %q leaves the package directory", ErrBadArchive, h.Name)
	}
	switch h.Typeflag {
	case tar.TypeDir:
	case tar.TypeReg:
		if h.Size < 0 || w.total+h.Size > w.lim.MaxBytes {
			return "", fmt.Errorf("%w: unpacked size exceeds %d bytes", ErrBadArchive, w.lim.MaxBytes)
		}
		w.total += h.Size
	default:
		return "", fmt.Errorf("%w: entry %q is a link or special file (type %q)", ErrBadArchive, h.Name, h.Typeflag)
	}
	if err := w.claim(clean, h.Typeflag == tar.TypeDir, h.Name); err != nil {
		return "", err
	}
	return clean, nil
}

// Check applies Unpack's rules to an archive without writing anything, so
// the control plane refuses a hostile package when it is published.
func Check(archive []byte, lim Limits) error {
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return fmt.Errorf("%w: not a gzip archive", ErrBadArchive)
	}
	tr := tar.NewReader(gz)
	w := &walker{lim: lim}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		if _, err := w.entry(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if n, err := io.Copy(io.Discard, io.LimitReader(tr, h.Size+1)); err != nil || n != h.Size {
				return fmt.Errorf("%w: entry %q is truncated", ErrBadArchive, h.Name)
			}
		}
	}
}

// Unpack extracts a package archive into dir, which must not exist yet (it
// is created 0700). Only regular files and directories are accepted; names
// must be relative, clean and stay inside dir; symlinks, hard links,
// devices and FIFOs abort the unpack, as do the size and file-count limits.
// On error dir is removed.
func Unpack(archive io.Reader, dir string, lim Limits) (err error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	gz, err := gzip.NewReader(archive)
	if err != nil {
		return fmt.Errorf("%w: not a gzip archive", ErrBadArchive)
	}
	tr := tar.NewReader(gz)
	w := &walker{lim: lim}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		clean, err := w.entry(h)
		if err != nil || clean == "" {
			if err != nil {
				return err
			}
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(clean))
		if !strings.HasPrefix(target, dir+string(filepath.Separator)) {
			return fmt.Errorf("%w: entry %q leaves the package directory", ErrBadArchive, h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		// O_EXCL: a second entry of the same name cannot replace a file,
		// and nothing can have planted a link at target.
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&0o755|0o600)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		n, err := io.Copy(f, io.LimitReader(tr, h.Size+1))
		cerr := f.Close()
		if err != nil || cerr != nil {
			return errors.Join(err, cerr)
		}
		if n != h.Size {
			return fmt.Errorf("%w: entry %q is truncated", ErrBadArchive, h.Name)
		}
	}
}

// File is one entry of BuildArchive.
type File struct {
	Name string
	Body []byte
	Mode int64 // default 0644
}

// BuildArchive packs files into a package archive (tests, `corral extension
// pack`). The manifest is added first when given.
func BuildArchive(manifest *wire.ExtensionManifest, files ...File) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if manifest != nil {
		b, err := json.MarshalIndent(manifest, "", "  ")
		if err != nil {
			return nil, err
		}
		files = append([]File{{Name: wire.ManifestFile, Body: b}}, files...)
	}
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.Name, Mode: mode, Size: int64(len(f.Body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// CheckHandlerFiles refuses a manifest whose handlers name files the package
// does not hold, or holds without the execute bit. A handler command names a
// package file when its first word is a relative path ("./run.sh install",
// "bin/tool") — that file must exist and be executable — or when it runs a
// shell on one ("sh setup.sh") — that file must exist. Bare command names
// (true, python3) and absolute paths are the machine's and are not checked.
// files maps the package's file names (slash-separated, relative) to modes.
func CheckHandlerFiles(m wire.ExtensionManifest, files map[string]int64) error {
	var errs []error
	for _, h := range []struct{ name, cmd string }{
		{wire.HandlerInstall, m.Handlers.Install}, {wire.HandlerEnable, m.Handlers.Enable}, {wire.HandlerDisable, m.Handlers.Disable},
		{wire.HandlerUpdate, m.Handlers.Update}, {wire.HandlerUninstall, m.Handlers.Uninstall},
	} {
		words := strings.Fields(h.cmd)
		if len(words) == 0 {
			continue
		}
		first, needExec := words[0], true
		if slices.Contains([]string{"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/bash"}, first) && len(words) > 1 && !strings.HasPrefix(words[1], "-") {
			first, needExec = words[1], false
		}
		if path.IsAbs(first) || !strings.Contains(first, "/") && needExec {
			continue // the machine's own command
		}
		name := path.Clean(strings.TrimPrefix(first, "./"))
		mode, ok := files[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("handlers.%s runs %s, which is not in the package", h.name, first))
		case needExec && mode&0o111 == 0:
			errs = append(errs, fmt.Errorf("handlers.%s runs %s, which is not executable (chmod +x it)", h.name, first))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	return nil
}
