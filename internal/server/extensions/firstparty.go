package extensions

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// systemCaller is who first-party packages are published by.
const systemCaller = "system"

// FirstParty are the extensions the control plane publishes itself under
// publisher "Corral". Their handlers are built into corral-agent
// ("builtin:..."), but they travel as ordinary packages: manifest, digest,
// signed catalog.
var FirstParty = []wire.ExtensionManifest{
	{
		Publisher: wire.PublisherCorral, Type: "RunCommand", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "builtin:runcommand", Enable: "builtin:runcommand"},
		OS:       []string{"linux"},
	},
	{
		Publisher: wire.PublisherCorral, Type: wire.ProtectionExtensionType, Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "builtin:endpointprotection", Enable: "builtin:endpointprotection",
			Disable: "builtin:endpointprotection", Update: "builtin:endpointprotection", Uninstall: "builtin:endpointprotection"},
		OS: []string{"linux"},
	},
	{
		Publisher: wire.PublisherCorral, Type: "PatchManagement", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "builtin:patchmanagement", Enable: "builtin:patchmanagement"},
		OS:       []string{"linux"},
	},
}

// firstPartyReadme is packed beside the manifest so the archive documents
// itself when someone opens it.
const firstPartyReadme = `This is a first-party Corral extension. Its handlers are built into
corral-agent ("builtin:" commands in manifest.json); the package exists so
that it is installed through the same signed catalog, digest check and local
lock-down lists as any other extension.
`

// EnsureFirstParty registers publisher "Corral" with key's public half and
// publishes and lists every FirstParty package that is missing. It is
// idempotent and safe to run on every start of every replica; replicas must
// share the key. A registered Corral key that differs from key is an error:
// agents pin the first key they see.
func (s *Service) EnsureFirstParty(ctx context.Context, key ed25519.PrivateKey) error {
	pubKey := key.Public().(ed25519.PublicKey)
	_, _, err := s.CreatePublisher(ctx, wire.PublisherCorral, pubKey, systemCaller)
	if errors.Is(err, refusal.ErrConflict) {
		return fmt.Errorf("the extension signing key does not match the key publisher %q was registered with; give every replica the same --extension-signing-key", wire.PublisherCorral)
	}
	if err != nil {
		return fmt.Errorf("register publisher %s: %w", wire.PublisherCorral, err)
	}
	var want []wire.CatalogEntry
	for _, man := range FirstParty {
		p, err := s.store.GetPackage(ctx, man.Publisher, man.Type, man.Version)
		if errors.Is(err, store.ErrNotFound) {
			archive, err := extpkg.BuildArchive(&man, extpkg.File{Name: "README", Body: []byte(firstPartyReadme)})
			if err != nil {
				return err
			}
			if _, _, err := s.PublishPackage(ctx, man.Publisher, archive, systemCaller); err != nil && !errors.Is(err, refusal.ErrConflict) {
				return fmt.Errorf("publish %s/%s %s: %w", man.Publisher, man.Type, man.Version, err)
			}
			p, err = s.store.GetPackage(ctx, man.Publisher, man.Type, man.Version)
			if err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		want = append(want, wire.CatalogEntry{Type: p.Type, Version: p.Version, Digest: p.Digest, Size: p.Size})
	}
	for range maxSetAttempts {
		cur, _, ok, err := s.currentCatalog(ctx, wire.PublisherCorral)
		if err != nil {
			return err
		}
		next := wire.Catalog{Publisher: wire.PublisherCorral, Serial: cur.Serial + 1, IssuedAt: s.now(), ExpiresAt: s.now().Add(wire.MaxCatalogValidity)}
		if ok {
			next.Packages = slices.Clone(cur.Packages)
		}
		changed := false
		for _, w := range want {
			i := slices.IndexFunc(next.Packages, func(e wire.CatalogEntry) bool {
				return strings.EqualFold(e.Type, w.Type) && e.Version == w.Version
			})
			switch {
			case i < 0:
				next.Packages = append(next.Packages, w)
				changed = true
			case next.Packages[i] != w:
				next.Packages[i] = w
				changed = true
			}
		}
		if !changed {
			return nil
		}
		sc, err := extpkg.SignCatalog(key, next)
		if err != nil {
			return err
		}
		_, err = s.PutCatalog(ctx, wire.PublisherCorral, sc, systemCaller)
		if errors.Is(err, refusal.ErrConflict) {
			continue // another replica signed one meanwhile; look again
		}
		if err != nil {
			return fmt.Errorf("list first-party packages: %w", err)
		}
		return nil
	}
	return errors.New("could not update the first-party catalog: it kept changing concurrently")
}
