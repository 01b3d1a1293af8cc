package extensions

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func toWirePublisher(p store.Publisher) wire.Publisher {
	return wire.Publisher{ID: resource.Publisher(p.Name).String(), Name: p.Name, PublicKey: p.PublicKey, CreatedAt: p.CreatedAt, CreatedBy: p.CreatedBy}
}

func (s *Service) publisher(ctx context.Context, name string) (store.Publisher, error) {
	p, err := s.store.GetPublisher(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return p, refusal.NotFound("publisher %q is not registered", name)
	}
	return p, err
}

// CreatePublisher registers a publisher's ed25519 public key. Registering
// the same key again is a no-op (created = false); a different key for an
// existing name is refused: agents pin the first key they see.
func (s *Service) CreatePublisher(ctx context.Context, name string, publicKey []byte, by string) (wire.Publisher, bool, error) {
	if !extpkg.ValidName(name) {
		return wire.Publisher{}, false, refusal.Invalid("name", "publisher name %q is not valid: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	if len(publicKey) != ed25519.PublicKeySize {
		return wire.Publisher{}, false, refusal.Invalid("publicKey", "publicKey must be a %d-byte ed25519 public key (base64), not %d bytes", ed25519.PublicKeySize, len(publicKey))
	}
	p := store.Publisher{Name: name, PublicKey: publicKey, CreatedAt: s.now(), CreatedBy: by}
	err := s.store.CreatePublisher(ctx, p)
	if errors.Is(err, store.ErrConflict) {
		cur, err := s.publisher(ctx, name)
		if err != nil {
			return wire.Publisher{}, false, err
		}
		if !bytes.Equal(cur.PublicKey, publicKey) {
			return wire.Publisher{}, false, refusal.Conflict("publisher %q is registered with another key; a publisher's key cannot be replaced (agents pin it)", cur.Name)
		}
		return toWirePublisher(cur), false, nil
	}
	if err != nil {
		return wire.Publisher{}, false, err
	}
	s.log.InfoContext(ctx, "publisher registered", "publisher", name, "by", by)
	return toWirePublisher(p), true, nil
}

// GetPublisher returns a registered publisher.
func (s *Service) GetPublisher(ctx context.Context, name string) (wire.Publisher, error) {
	p, err := s.publisher(ctx, name)
	if err != nil {
		return wire.Publisher{}, err
	}
	return toWirePublisher(p), nil
}

// ListPublishers returns every registered publisher by name.
func (s *Service) ListPublishers(ctx context.Context) ([]wire.Publisher, error) {
	ps, err := s.store.ListPublishers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.Publisher, 0, len(ps))
	for _, p := range ps {
		out = append(out, toWirePublisher(p))
	}
	return out, nil
}

func toWirePackage(p store.Package, listed bool) wire.ExtensionPackage {
	out := wire.ExtensionPackage{ID: resource.ExtensionPackage(p.Publisher, p.Type, p.Version).String(), Publisher: p.Publisher, Type: p.Type,
		Version: p.Version, Digest: p.Digest, Size: p.Size, Listed: listed, PublishedAt: p.PublishedAt, PublishedBy: p.PublishedBy}
	_ = json.Unmarshal(p.Manifest, &out.Manifest) // validated and encoded by us at publish time
	return out
}

// PublishPackage stores an uploaded package archive. The manifest must be
// valid and name the publisher of the URL, and the archive must pass the
// agent's unpack rules (extpkg.Check); the digest is computed here.
// Uploading the same archive again is a no-op (created = false); the same
// version with other bytes is refused: versions are immutable.
func (s *Service) PublishPackage(ctx context.Context, publisher string, archive []byte, by string) (wire.ExtensionPackage, bool, error) {
	if len(archive) == 0 {
		return wire.ExtensionPackage{}, false, refusal.Invalid("", "the request body is empty; send the package archive (tar.gz)")
	}
	if len(archive) > wire.MaxPackageBytes {
		return wire.ExtensionPackage{}, false, refusal.Invalid("", "the package is larger than %d bytes", wire.MaxPackageBytes)
	}
	pub, err := s.publisher(ctx, publisher)
	if err != nil {
		return wire.ExtensionPackage{}, false, err
	}
	man, err := extpkg.ReadManifest(archive)
	if err != nil {
		return wire.ExtensionPackage{}, false, refusal.Invalid("manifest", "the package was refused: %v", err)
	}
	// The agent refuses such archives too; refusing them here tells the
	// publisher at once instead of every machine later.
	if err := extpkg.Check(archive, extpkg.DefaultLimits); err != nil {
		return wire.ExtensionPackage{}, false, refusal.Invalid("", "the package was refused: %v", err)
	}
	if !strings.EqualFold(man.Publisher, pub.Name) {
		return wire.ExtensionPackage{}, false, refusal.Invalid("manifest.publisher", "the manifest names publisher %q, not %q", man.Publisher, pub.Name)
	}
	man.Publisher = pub.Name
	manJSON, err := json.Marshal(man)
	if err != nil {
		return wire.ExtensionPackage{}, false, err
	}
	p := store.Package{Publisher: pub.Name, Type: man.Type, Version: man.Version, Digest: extpkg.Digest(archive),
		Size: int64(len(archive)), Manifest: manJSON, Archive: archive, PublishedAt: s.now(), PublishedBy: by}
	err = s.store.CreatePackage(ctx, p)
	if errors.Is(err, store.ErrConflict) {
		cur, gerr := s.store.GetPackage(ctx, pub.Name, man.Type, man.Version)
		switch {
		case gerr == nil && cur.Digest == p.Digest:
			listed, err := s.listed(ctx, cur)
			return toWirePackage(cur, listed), false, err
		case gerr == nil:
			return wire.ExtensionPackage{}, false, refusal.Conflict("%s/%s %s was already published with digest %s; versions are immutable, publish a new version",
				cur.Publisher, cur.Type, cur.Version, cur.Digest)
		case !errors.Is(gerr, store.ErrNotFound):
			return wire.ExtensionPackage{}, false, gerr
		}
		return wire.ExtensionPackage{}, false, refusal.Conflict("a package with digest %s already exists", p.Digest)
	}
	if err != nil {
		return wire.ExtensionPackage{}, false, err
	}
	s.log.InfoContext(ctx, "extension package published", "publisher", p.Publisher, "type", p.Type, "version", p.Version,
		"digest", p.Digest, "size", p.Size, "by", by)
	p.Archive = nil
	listed, err := s.listed(ctx, p)
	return toWirePackage(p, listed), true, err
}

// currentCatalog parses a publisher's stored catalog; ok is false when it
// has none. The stored bytes were verified at upload.
func (s *Service) currentCatalog(ctx context.Context, publisher string) (wire.Catalog, store.Catalog, bool, error) {
	var c wire.Catalog
	rec, err := s.store.GetCatalog(ctx, publisher)
	if errors.Is(err, store.ErrNotFound) {
		return c, rec, false, nil
	}
	if err != nil {
		return c, rec, false, err
	}
	if err := json.Unmarshal(rec.Catalog, &c); err != nil {
		return c, rec, false, fmt.Errorf("stored catalog of %s: %w", publisher, err)
	}
	return c, rec, true, nil
}

func (s *Service) listed(ctx context.Context, p store.Package) (bool, error) {
	c, _, ok, err := s.currentCatalog(ctx, p.Publisher)
	if err != nil || !ok {
		return false, err
	}
	e, found := extpkg.Find(c, p.Type, p.Version)
	return found && e.Digest == p.Digest, nil
}

// PackageFilter selects packages for ListPackages.
type PackageFilter struct {
	Publisher, Type string
	Page            store.Page
}

// ListPackages returns uploaded packages with whether each is listed in its
// publisher's current catalog.
func (s *Service) ListPackages(ctx context.Context, f PackageFilter) ([]wire.ExtensionPackage, error) {
	ps, err := s.store.ListPackages(ctx, store.PackageFilter{Publisher: f.Publisher, Type: f.Type, Page: f.Page})
	if err != nil {
		return nil, err
	}
	catalogs := map[string]*wire.Catalog{}
	out := make([]wire.ExtensionPackage, 0, len(ps))
	for _, p := range ps {
		c, seen := catalogs[p.Publisher]
		if !seen {
			cat, _, ok, err := s.currentCatalog(ctx, p.Publisher)
			if err != nil {
				return nil, err
			}
			if ok {
				c = &cat
			}
			catalogs[p.Publisher] = c
		}
		listed := false
		if c != nil {
			e, found := extpkg.Find(*c, p.Type, p.Version)
			listed = found && e.Digest == p.Digest
		}
		out = append(out, toWirePackage(p, listed))
	}
	return out, nil
}

// PackagePageKey is the paging key of a package (the After of the next page).
func PackagePageKey(p wire.ExtensionPackage) string {
	return p.Publisher + "/" + p.Type + "/" + p.Version
}

// PutCatalog accepts a publisher's signed catalog if the signature verifies
// with the registered key, the serial is greater than the current one's,
// and every entry names an uploaded package of that type and version with
// that digest and size. It returns the parsed catalog.
func (s *Service) PutCatalog(ctx context.Context, publisher string, sc wire.SignedCatalog, by string) (wire.Catalog, error) {
	pub, err := s.publisher(ctx, publisher)
	if err != nil {
		return wire.Catalog{}, err
	}
	c, err := s.verifiedCatalog(ctx, pub, sc)
	if err != nil {
		return c, err
	}
	cur, _, ok, err := s.currentCatalog(ctx, pub.Name)
	if err != nil {
		return c, err
	}
	if ok && c.Serial <= cur.Serial {
		return c, refusal.Conflict("catalog serial %d is not greater than the current catalog's serial %d (an old catalog cannot be replayed)", c.Serial, cur.Serial)
	}
	err = s.store.PutCatalog(ctx, store.Catalog{Publisher: pub.Name, Serial: c.Serial, Catalog: sc.Catalog, Signature: sc.Signature,
		UploadedAt: s.now(), UploadedBy: by})
	if errors.Is(err, store.ErrConflict) {
		return c, refusal.Conflict("catalog serial %d is not greater than the current catalog's serial (a newer catalog was uploaded meanwhile)", c.Serial)
	}
	if err != nil {
		return c, err
	}
	s.log.InfoContext(ctx, "extension catalog updated", "publisher", pub.Name, "serial", c.Serial, "packages", len(c.Packages), "by", by)
	return c, nil
}

// verifiedCatalog checks a signed catalog against the publisher's key and
// the uploaded packages.
func (s *Service) verifiedCatalog(ctx context.Context, pub store.Publisher, sc wire.SignedCatalog) (wire.Catalog, error) {
	if len(sc.Catalog) == 0 || len(sc.Signature) == 0 {
		return wire.Catalog{}, refusal.Invalid("catalog", "catalog and signature are required")
	}
	c, err := extpkg.VerifyCatalog(pub.PublicKey, pub.Name, sc)
	if errors.Is(err, extpkg.ErrBadSignature) {
		return c, refusal.Invalid("signature", "the catalog signature does not verify with the registered key of publisher %q", pub.Name)
	}
	if err != nil {
		return c, refusal.Invalid("catalog", "the catalog was refused: %v", err)
	}
	if c.Serial <= 0 {
		return c, refusal.Invalid("catalog.serial", "the catalog serial must be a positive integer")
	}
	// Agents refuse expired catalogs; one accepted here must be good for them.
	if err := extpkg.CheckFresh(c, s.now()); err != nil {
		return c, refusal.Invalid("catalog.expiresAt", "%v", err)
	}
	if c.ExpiresAt.After(s.now().Add(wire.MaxCatalogValidity + wire.CatalogClockSkew)) {
		return c, refusal.Invalid("catalog.expiresAt", "the catalog expires at %s, more than %s from now; sign it for a shorter time",
			c.ExpiresAt.UTC().Format(time.RFC3339), wire.MaxCatalogValidity)
	}
	seen := map[string]bool{}
	for _, e := range c.Packages {
		key := strings.ToLower(e.Type) + " " + e.Version
		if seen[key] {
			return c, refusal.Invalid("catalog.packages", "the catalog lists %s/%s %s twice", pub.Name, e.Type, e.Version)
		}
		seen[key] = true
		p, err := s.store.GetPackage(ctx, pub.Name, e.Type, e.Version)
		if errors.Is(err, store.ErrNotFound) {
			return c, refusal.Invalid("catalog.packages", "the catalog lists %s/%s %s, which has not been uploaded; upload the package first", pub.Name, e.Type, e.Version)
		}
		if err != nil {
			return c, err
		}
		if p.Digest != e.Digest || p.Size != e.Size {
			return c, refusal.Invalid("catalog.packages", "the catalog lists %s/%s %s with digest %s (%d bytes), but the uploaded package is %s (%d bytes)",
				pub.Name, e.Type, e.Version, e.Digest, e.Size, p.Digest, p.Size)
		}
	}
	return c, nil
}

// GetCatalog returns a publisher's current signed catalog, byte for byte as
// the publisher signed it.
func (s *Service) GetCatalog(ctx context.Context, publisher string) (wire.SignedCatalog, error) {
	pub, err := s.publisher(ctx, publisher)
	if err != nil {
		return wire.SignedCatalog{}, err
	}
	rec, err := s.store.GetCatalog(ctx, pub.Name)
	if errors.Is(err, store.ErrNotFound) {
		return wire.SignedCatalog{}, refusal.NotFound("publisher %q has not uploaded a catalog yet", pub.Name)
	}
	if err != nil {
		return wire.SignedCatalog{}, err
	}
	return wire.SignedCatalog{Catalog: rec.Catalog, Signature: rec.Signature}, nil
}
