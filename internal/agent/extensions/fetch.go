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
	"time"

	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/wire"
)

// noteKeys remembers the signing keys the desired state presents, by
// lower-cased publisher. Nothing is pinned here: a key is pinned only when
// an allowed install of the publisher's extension starts (publishers.Store).
func (m *Manager) noteKeys(keys []wire.PublisherKey) {
	m.presented = map[string][]byte{}
	for _, k := range keys {
		if !isFirstParty(k.Name) {
			m.presented[strings.ToLower(k.Name)] = k.PublicKey
		}
	}
}

// verifiedCatalog returns publisher's current catalog, verified with the
// key the agent trusts for it (pinning the presented key on first use only
// when pinIfNew), fresh and not older than one seen before.
func (m *Manager) verifiedCatalog(ctx context.Context, publisher string, pinIfNew bool) (wire.Catalog, error) {
	now := m.now()
	key, err := m.pins.Resolve(m.env.Config(), publisher, m.presented[strings.ToLower(publisher)], pinIfNew, now)
	if err != nil {
		return wire.Catalog{}, err
	}
	sc, err := m.catalog(ctx, publisher)
	if err != nil {
		return wire.Catalog{}, fmt.Errorf("download the catalog of %s: %w", publisher, err)
	}
	cat, err := extpkg.VerifyCatalog(key, publisher, sc)
	if err != nil {
		return cat, fmt.Errorf("catalog of %s refused: %w", publisher, err)
	}
	if err := extpkg.CheckFresh(cat, now); err != nil {
		return cat, fmt.Errorf("catalog refused: %w", err)
	}
	if err := m.pins.SeeSerial(publisher, cat.Serial); err != nil {
		return cat, err
	}
	if b, err := json.Marshal(sc); err == nil {
		m.keep(m.catalogPath(publisher), b)
	}
	return cat, nil
}

// stillListed checks, before an installed package's update or enable
// handlers run again, that the publisher's current catalog still lists it:
// a version the publisher withdrew gets no more runs.
func (m *Manager) stillListed(ctx context.Context, rec *record) error {
	cat, err := m.verifiedCatalog(ctx, rec.Publisher, false)
	if err != nil {
		return err
	}
	e, ok := extpkg.Find(cat, rec.Type, rec.Version)
	if !ok || e.Digest != rec.Digest {
		return fmt.Errorf("%s/%s %s is no longer in its publisher's signed catalog (withdrawn); install another version", rec.Publisher, rec.Type, rec.Version)
	}
	return nil
}

func (m *Manager) now() time.Time {
	if m.env.Clock != nil {
		return m.env.Clock()
	}
	return time.Now()
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
	cat, err := m.verifiedCatalog(ctx, d.Publisher, true)
	if err != nil {
		return man, "", err
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
