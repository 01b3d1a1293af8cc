package extensions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/wire"
)

// pinPublishers pins each publisher's key on first sight and refuses a
// different key later: a control plane cannot silently swap a publisher.
// Publisher names are case-insensitive (as on the control plane and in the
// local allowlist and blocklist), so "contoso" is the publisher pinned as
// "Contoso", not a new one whose key could be pinned beside it.
func (m *Manager) pinPublishers(keys []wire.PublisherKey) error {
	changed := false
	var errs []error
	for _, k := range keys {
		if isFirstParty(k.Name) {
			continue // first-party code comes with the agent, not a key
		}
		p, ok := m.st.pinned(k.Name)
		switch {
		case !ok:
			m.st.Publishers[k.Name] = &pin{PublicKey: k.PublicKey}
			changed = true
		case !bytes.Equal(p.PublicKey, k.PublicKey):
			errs = append(errs, fmt.Errorf("publisher %s presents a signing key different from the one pinned on this machine", k.Name))
		}
	}
	if changed {
		if err := m.st.save(m.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// catalog downloads a publisher's signed catalog over the machine's
// channel. When the control plane cannot be reached it returns the last
// catalog this agent verified (kept in catalogs/), so an extension removed
// locally can be put back while the server is down; the caller verifies
// either the same way.
func (m *Manager) catalog(ctx context.Context, publisher string) (wire.SignedCatalog, error) {
	var sc wire.SignedCatalog
	err := m.env.ControlPlane.Do(ctx, http.MethodGet, wire.PathCatalogs+url.PathEscape(publisher), nil, &sc)
	var apiErr *wire.APIError
	if err == nil || errors.As(err, &apiErr) || ctx.Err() != nil {
		return sc, err
	}
	b, cerr := os.ReadFile(m.catalogPath(publisher))
	if cerr != nil || json.Unmarshal(b, &sc) != nil {
		return sc, err
	}
	m.log.InfoContext(ctx, "control plane unreachable; using the catalog verified before", "publisher", publisher, "err", err)
	return sc, nil
}

func (m *Manager) catalogPath(publisher string) string {
	return filepath.Join(m.dir, "catalogs", strings.ToLower(publisher)+".json")
}

// archivePath is where a verified package archive is kept for repairs.
func (m *Manager) archivePath(digest string) string {
	return filepath.Join(m.dir, "archives", strings.TrimPrefix(digest, "sha256:")+".tar.gz")
}

// keep writes a verified catalog or archive for later repairs; failing to
// keep one only means a later repair needs the server.
func (m *Manager) keep(path string, b []byte) {
	if err := statedir.MkdirPrivate(filepath.Dir(path)); err == nil {
		err = statedir.WriteFileAtomic(path, b, statedir.PrivateMode)
		if err != nil {
			m.log.Warn("cannot keep a verified download for repairs", "path", path, "err", err)
		}
	}
}

// archive returns the package archive with digest: the verified copy kept
// from an earlier download, or a new download.
func (m *Manager) archive(ctx context.Context, entry wire.CatalogEntry) ([]byte, error) {
	if b, err := os.ReadFile(m.archivePath(entry.Digest)); err == nil && extpkg.Digest(b) == entry.Digest && int64(len(b)) == entry.Size {
		return b, nil
	}
	return m.env.ControlPlane.Download(ctx, wire.PathPackages+url.PathEscape(entry.Digest), wire.MaxPackageBytes)
}

// fetchAndUnpack verifies the whole trust chain and unpacks the package
// into packages/<dir>; an existing, already verified directory is reused.
func (m *Manager) fetchAndUnpack(ctx context.Context, d wire.DesiredExtension) (wire.ExtensionManifest, string, error) {
	var man wire.ExtensionManifest
	if isFirstParty(d.Publisher) {
		return man, "", errNoBuiltin(extName(d.Publisher, d.Type))
	}
	if !extpkg.ValidName(d.Publisher) || !extpkg.ValidName(d.Type) || !extpkg.ValidVersion(d.Version) || !extpkg.ValidDigest(d.Digest) {
		return man, "", fmt.Errorf("the desired state names an invalid package %s/%s %s %s", d.Publisher, d.Type, d.Version, d.Digest)
	}
	p, ok := m.st.pinned(d.Publisher)
	if !ok {
		return man, "", fmt.Errorf("unknown publisher %s: the control plane sent no signing key for it", d.Publisher)
	}
	sc, err := m.catalog(ctx, d.Publisher)
	if err != nil {
		return man, "", fmt.Errorf("download the catalog of %s: %w", d.Publisher, err)
	}
	cat, err := extpkg.VerifyCatalog(p.PublicKey, d.Publisher, sc)
	if err != nil {
		return man, "", fmt.Errorf("catalog of %s refused: %w", d.Publisher, err)
	}
	if b, err := json.Marshal(sc); err == nil {
		m.keep(m.catalogPath(d.Publisher), b)
	}
	if cat.Serial < p.Serial {
		return man, "", fmt.Errorf("catalog of %s refused: serial %d is older than %d already seen (replay)", d.Publisher, cat.Serial, p.Serial)
	}
	if cat.Serial > p.Serial {
		p.Serial = cat.Serial
		if err := m.st.save(m.dir); err != nil {
			return man, "", err
		}
	}
	entry, ok := extpkg.Find(cat, d.Type, d.Version)
	if !ok {
		return man, "", fmt.Errorf("%s/%s %s is not in the publisher's signed catalog", d.Publisher, d.Type, d.Version)
	}
	if entry.Digest != d.Digest {
		return man, "", fmt.Errorf("the desired digest of %s/%s %s does not match the signed catalog", d.Publisher, d.Type, d.Version)
	}
	dirName := strings.ToLower(d.Publisher+"."+d.Type+"-"+d.Version) + "-" + d.Digest[len("sha256:"):len("sha256:")+12]
	dir := filepath.Join(m.dir, "packages", dirName)
	if b, err := os.ReadFile(filepath.Join(dir, ".digest")); err == nil && string(b) == d.Digest {
		man, err := readManifest(dir, d.Name)
		return man, dirName, err
	}
	archive, err := m.archive(ctx, entry)
	if err != nil {
		return man, "", fmt.Errorf("download %s/%s %s: %w", d.Publisher, d.Type, d.Version, err)
	}
	if got := extpkg.Digest(archive); got != entry.Digest || int64(len(archive)) != entry.Size {
		return man, "", fmt.Errorf("package %s/%s %s refused: its digest %s does not match the signed catalog", d.Publisher, d.Type, d.Version, got)
	}
	m.keep(m.archivePath(d.Digest), archive)
	man, err = extpkg.ReadManifest(archive)
	if err != nil {
		return man, "", fmt.Errorf("package %s/%s %s refused: %w", d.Publisher, d.Type, d.Version, err)
	}
	if !strings.EqualFold(man.Publisher, d.Publisher) || !strings.EqualFold(man.Type, d.Type) || man.Version != d.Version {
		return man, "", fmt.Errorf("package refused: its manifest says %s/%s %s, the catalog %s/%s %s", man.Publisher, man.Type, man.Version, d.Publisher, d.Type, d.Version)
	}
	if isFirstParty(man.Publisher) {
		return man, "", errNoBuiltin(extName(man.Publisher, man.Type))
	}
	if !extpkg.Supports(man, runtime.GOOS, runtime.GOARCH) {
		return man, "", fmt.Errorf("%s/%s %s does not support %s/%s", d.Publisher, d.Type, d.Version, runtime.GOOS, runtime.GOARCH)
	}
	os.RemoveAll(dir) // a half-unpacked leftover of a crash
	tmp := dir + ".unpacking"
	os.RemoveAll(tmp)
	if err := extpkg.Unpack(bytes.NewReader(archive), tmp, extpkg.DefaultLimits); err != nil {
		return man, "", fmt.Errorf("package %s/%s %s refused: %w", d.Publisher, d.Type, d.Version, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".digest"), []byte(d.Digest), 0o600); err != nil {
		os.RemoveAll(tmp)
		return man, "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return man, "", err
	}
	return man, dirName, nil
}
