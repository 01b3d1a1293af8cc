package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/store"
)

// nilIfEmpty stores empty documents as NULL.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// versionKey zero-pads MAJOR.MINOR.PATCH so versions sort numerically as
// text. Parts that are not numbers sort first.
func versionKey(v string) string {
	parts := strings.SplitN(v, ".", 3)
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			n = 0
		}
		parts[i] = fmt.Sprintf("%06d", n)
	}
	return strings.Join(parts, ".")
}

// publisherName returns the stored name of a publisher (any casing).
func (s *Store) publisherName(ctx context.Context, db querier, name string) (string, error) {
	var stored string
	err := db.QueryRowContext(ctx, s.q(`SELECT name FROM publishers WHERE lower(name) = lower(?)`), name).Scan(&stored)
	if err != nil {
		return "", fmt.Errorf("publisher %q: %w", name, s.mapErr(err))
	}
	return stored, nil
}

func (s *Store) CreatePublisher(ctx context.Context, p store.Publisher) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO publishers (name, public_key, created_at, created_by) VALUES (?, ?, ?, ?)`,
		p.Name, p.PublicKey, micros(p.CreatedAt), p.CreatedBy)
	if err != nil {
		return fmt.Errorf("create publisher %q: %w", p.Name, err)
	}
	return nil
}

func scanPublisher(r scanner) (store.Publisher, error) {
	var p store.Publisher
	var created int64
	err := r.Scan(&p.Name, &p.PublicKey, &created, &p.CreatedBy)
	p.CreatedAt = fromMicros(created)
	return p, err
}

func (s *Store) GetPublisher(ctx context.Context, name string) (store.Publisher, error) {
	p, err := scanPublisher(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT name, public_key, created_at, created_by
		FROM publishers WHERE lower(name) = lower(?)`), name))
	if err != nil {
		return p, fmt.Errorf("get publisher %q: %w", name, s.mapErr(err))
	}
	return p, nil
}

func (s *Store) ListPublishers(ctx context.Context) ([]store.Publisher, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, `SELECT name, public_key, created_at, created_by FROM publishers ORDER BY lower(name)`)
	ps, err := collect(rows, err, scanPublisher)
	if err != nil {
		return nil, fmt.Errorf("list publishers: %w", s.mapErr(err))
	}
	return ps, nil
}

// CreatePackage stores the package under the publisher's stored name.
func (s *Store) CreatePackage(ctx context.Context, p store.Package) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		pub, err := s.publisherName(ctx, tx, p.Publisher)
		if err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `INSERT INTO packages (publisher, type, version, version_key, digest, size, manifest, archive,
			published_at, published_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			pub, p.Type, p.Version, versionKey(p.Version), p.Digest, p.Size, p.Manifest, p.Archive, micros(p.PublishedAt), p.PublishedBy)
		return err
	})
	if err != nil {
		return fmt.Errorf("create package %s/%s %s: %w", p.Publisher, p.Type, p.Version, err)
	}
	return nil
}

const packageCols = `publisher, type, version, digest, size, manifest, published_at, published_by`

func scanPackage(r scanner) (store.Package, error) {
	var p store.Package
	var published int64
	err := r.Scan(&p.Publisher, &p.Type, &p.Version, &p.Digest, &p.Size, &p.Manifest, &published, &p.PublishedBy)
	p.PublishedAt = fromMicros(published)
	return p, err
}

func (s *Store) GetPackage(ctx context.Context, publisher, typ, version string) (store.Package, error) {
	p, err := scanPackage(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+packageCols+` FROM packages
		WHERE lower(publisher) = lower(?) AND lower(type) = lower(?) AND version_key = ?`), publisher, typ, versionKey(version)))
	if err != nil {
		return p, fmt.Errorf("get package %s/%s %s: %w", publisher, typ, version, s.mapErr(err))
	}
	return p, nil
}

func (s *Store) GetPackageArchive(ctx context.Context, digest string) ([]byte, error) {
	var b []byte
	err := s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT archive FROM packages WHERE digest = ?`), digest).Scan(&b)
	if err != nil {
		return nil, fmt.Errorf("get package %s: %w", digest, s.mapErr(err))
	}
	return b, nil
}

// ListPackages pages by (lower(publisher), lower(type), version_key).
func (s *Store) ListPackages(ctx context.Context, f store.PackageFilter) ([]store.Package, error) {
	var w where
	if f.Publisher != "" {
		w.add(`lower(publisher) = lower(?)`, f.Publisher)
	}
	if f.Type != "" {
		w.add(`lower(type) = lower(?)`, f.Type)
	}
	if f.Page.After != "" {
		parts := strings.SplitN(f.Page.After, "/", 3)
		for len(parts) < 3 {
			parts = append(parts, "")
		}
		pub, typ, vk := parts[0], parts[1], versionKey(parts[2])
		if parts[2] == "" {
			vk = ""
		}
		w.add(`(lower(publisher) > lower(?) OR (lower(publisher) = lower(?) AND (lower(type) > lower(?)
			OR (lower(type) = lower(?) AND version_key > ?))))`, pub, pub, typ, typ, vk)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+packageCols+` FROM packages`+w.String()+`
		ORDER BY lower(publisher), lower(type), version_key LIMIT ?`), append(w.args, limit(f.Page))...)
	ps, err := collect(rows, err, scanPackage)
	if err != nil {
		return nil, fmt.Errorf("list packages: %w", s.mapErr(err))
	}
	return ps, nil
}

// PutCatalog upserts under the condition that the serial grows; the
// condition sits in the statement, so concurrent uploads cannot both win.
func (s *Store) PutCatalog(ctx context.Context, c store.Catalog) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		pub, err := s.publisherName(ctx, tx, c.Publisher)
		if err != nil {
			return err
		}
		n, err := s.exec(ctx, tx, `INSERT INTO catalogs (publisher, serial, catalog, signature, uploaded_at, uploaded_by)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (publisher) DO UPDATE SET serial = excluded.serial, catalog = excluded.catalog,
				signature = excluded.signature, uploaded_at = excluded.uploaded_at, uploaded_by = excluded.uploaded_by
			WHERE catalogs.serial < excluded.serial`,
			pub, c.Serial, c.Catalog, c.Signature, micros(c.UploadedAt), c.UploadedBy)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: serial %d is not greater than the current catalog's", store.ErrConflict, c.Serial)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put catalog of %q: %w", c.Publisher, err)
	}
	return nil
}

func (s *Store) GetCatalog(ctx context.Context, publisher string) (store.Catalog, error) {
	var c store.Catalog
	var uploaded int64
	err := s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT publisher, serial, catalog, signature, uploaded_at, uploaded_by
		FROM catalogs WHERE lower(publisher) = lower(?)`), publisher).
		Scan(&c.Publisher, &c.Serial, &c.Catalog, &c.Signature, &uploaded, &c.UploadedBy)
	if err != nil {
		return c, fmt.Errorf("get catalog of %q: %w", publisher, s.mapErr(err))
	}
	c.UploadedAt = fromMicros(uploaded)
	return c, nil
}
