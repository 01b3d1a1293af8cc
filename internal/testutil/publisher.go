package testutil

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/wire"
)

// Publisher is a test extension publisher: its ed25519 key and the catalog
// it has signed so far, registered and published through the real API.
type Publisher struct {
	Name    string
	Priv    ed25519.PrivateKey
	Pub     ed25519.PublicKey
	Entries []wire.CatalogEntry
	Serial  int64
}

// NewPublisher registers a publisher with a fresh key as the admin.
func (s *API) NewPublisher(t testing.TB, name string) *Publisher {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/publishers/"+name, s.AdminToken(t), wire.PublisherCreate{PublicKey: pub}, nil)
	return &Publisher{Name: name, Priv: priv, Pub: pub}
}

// UploadPackage posts a raw archive as the admin and returns status and body.
func (s *API) UploadPackage(t testing.TB, publisher string, archive []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", s.URL+"/api/v1/publishers/"+publisher+"/packages", bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.AdminToken(t))
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("upload package: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Publish uploads an archive built from man and files and lists it in a
// newly signed catalog.
func (p *Publisher) Publish(t testing.TB, s *API, man wire.ExtensionManifest, files ...extpkg.File) wire.ExtensionPackage {
	t.Helper()
	archive, err := extpkg.BuildArchive(&man, files...)
	if err != nil {
		t.Fatal(err)
	}
	status, b := s.UploadPackage(t, p.Name, archive)
	if status != http.StatusCreated && status != http.StatusOK {
		t.Fatalf("upload %s %s: %d %s", man.Type, man.Version, status, b)
	}
	var pkg wire.ExtensionPackage
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	p.Entries = append(p.Entries, wire.CatalogEntry{Type: man.Type, Version: man.Version, Digest: pkg.Digest, Size: pkg.Size})
	s.MustDo(t, http.StatusOK, "PUT", "/api/v1/publishers/"+p.Name+"/catalog", s.AdminToken(t), p.Sign(t, nil), nil)
	return pkg
}

// Sign signs the next catalog of the publisher's entries (or of entries).
func (p *Publisher) Sign(t testing.TB, entries []wire.CatalogEntry) wire.SignedCatalog {
	t.Helper()
	if entries == nil {
		entries = p.Entries
	}
	p.Serial++
	sc, err := extpkg.SignCatalog(p.Priv, wire.Catalog{Publisher: p.Name, Serial: p.Serial, IssuedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(wire.DefaultCatalogValidity).UTC(), Packages: entries})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}
