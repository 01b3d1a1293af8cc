package protection

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/sigset"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// PublicKey is the key agents verify signature sets with.
func (s *Service) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

func toSignatureSet(ss store.SignatureSet, pub ed25519.PublicKey) wire.SignatureSet {
	var h sigset.Header
	_ = json.Unmarshal(ss.Header, &h)
	return wire.SignatureSet{Version: uint64(ss.Version), HashSignatures: h.HashSignatures, BodySignatures: h.BodySignatures,
		Unsupported: h.Unsupported, Sources: h.Sources, Size: ss.Size, SHA256: ss.SHA256, CreatedAt: ss.CreatedAt, CreatedBy: ss.CreatedBy,
		PublicKey: extpkg.FormatPublicKey(pub)}
}

// maxImportAttempts bounds retries of an import that lost the race for a
// version number to another replica.
const maxImportAttempts = 5

// Import builds a signed signature set from ClamAV signature files (paths
// on this server whose base names say their format: .hdb, .hsb or .ndb),
// stores it as the next version and moves every protected machine to a new
// generation so that it downloads the set. A malformed line refuses the
// whole import (file and line in the message), nothing stored.
func (s *Service) Import(ctx context.Context, files []string, by string) (wire.SignatureSet, error) {
	if len(files) == 0 {
		return wire.SignatureSet{}, refusal.Invalid("files", "no signature files given: give .hdb, .hsb or .ndb files")
	}
	for _, f := range files {
		if _, err := scan.FormatOf(f); err != nil {
			return wire.SignatureSet{}, refusal.Invalid("files", "%s: %v", filepath.Base(f), err)
		}
	}
	for range maxImportAttempts {
		version := int64(1)
		latest, err := s.store.LatestSignatureSet(ctx)
		switch {
		case err == nil:
			version = latest.Version + 1
		case !errors.Is(err, store.ErrNotFound):
			return wire.SignatureSet{}, err
		}
		now := s.now()
		set, h, unsupported, err := sigset.Build(s.key, uint64(version), now, files...)
		if err != nil {
			var pe *scan.ParseError
			if errors.As(err, &pe) {
				return wire.SignatureSet{}, refusal.Invalid("files", "%s line %d: %v; nothing was imported", filepath.Base(pe.File), pe.Line, pe.Err)
			}
			return wire.SignatureSet{}, refusal.Invalid("files", "%v; nothing was imported", err)
		}
		if h.Total() == 0 {
			return wire.SignatureSet{}, refusal.Invalid("files", "the files hold no signature this scanner can use (%d lines unsupported); nothing was imported", h.Unsupported)
		}
		if int64(len(set)) > wire.MaxSignatureSetBytes {
			return wire.SignatureSet{}, refusal.Invalid("files", "the signed set would be %d bytes, more than the %d agents accept", len(set), wire.MaxSignatureSetBytes)
		}
		hj, _ := json.Marshal(h)
		sum := sha256.Sum256(set)
		row := store.SignatureSet{Version: version, Header: hj, Set: set, Size: int64(len(set)), SHA256: hex.EncodeToString(sum[:]),
			CreatedAt: now, CreatedBy: by}
		err = s.store.CreateSignatureSet(ctx, row)
		if errors.Is(err, store.ErrConflict) {
			continue // another replica imported this version meanwhile
		}
		if err != nil {
			return wire.SignatureSet{}, err
		}
		out := toSignatureSet(row, s.PublicKey())
		for _, u := range unsupported[:min(20, len(unsupported))] {
			out.UnsupportedLines = append(out.UnsupportedLines, fmt.Sprintf("%s:%d: %s", filepath.Base(u.File), u.Line, u.Reason))
		}
		n, err := s.announceSignatures(ctx)
		if err != nil {
			return out, err
		}
		s.log.InfoContext(ctx, "signature set imported", "version", version, "hash", h.HashSignatures, "body", h.BodySignatures,
			"unsupported", h.Unsupported, "machines", n, "by", by)
		return out, nil
	}
	return wire.SignatureSet{}, refusal.Conflict("signature sets are being imported concurrently; try again")
}

// announceSignatures moves every protected machine (under a protected
// scope, or that ever reported a protection status) to a new generation.
func (s *Service) announceSignatures(ctx context.Context) (int, error) {
	seen := map[string]bool{}
	var ids []string
	scopes, err := s.store.ListProtectionScopes(ctx)
	if err != nil {
		return 0, err
	}
	for _, p := range scopes {
		id, err := parseScope(p.Scope)
		if err != nil {
			continue
		}
		ms, err := s.machinesUnder(ctx, id)
		if err != nil {
			return 0, err
		}
		for _, m := range ms {
			if !seen[m.ID] {
				seen[m.ID] = true
				ids = append(ids, m.ID)
			}
		}
	}
	reported, err := s.store.ListMachineProtection(ctx, nil)
	if err != nil {
		return 0, err
	}
	for id := range reported {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 1000)]
		ids = ids[len(batch):]
		if _, err := s.syncer.DesiredChanged(ctx, batch, s.now()); err != nil {
			return 0, err
		}
	}
	return len(seen), nil
}

// ListSignatureSets returns imported sets, newest first.
func (s *Service) ListSignatureSets(ctx context.Context, p store.Page) (store.PageOf[wire.SignatureSet], error) {
	rows, after, err := store.FetchPage(p, func(p store.Page) ([]store.SignatureSet, error) { return s.store.ListSignatureSets(ctx, p) },
		func(ss store.SignatureSet) string { return strconv.FormatInt(ss.Version, 10) })
	if err != nil {
		return store.PageOf[wire.SignatureSet]{}, err
	}
	out := store.PageOf[wire.SignatureSet]{Items: []wire.SignatureSet{}, After: after}
	for _, r := range rows {
		out.Items = append(out.Items, toSignatureSet(r, s.PublicKey()))
	}
	return out, nil
}

// SignatureSetForMachine returns the signed set of a version for an agent.
// Sets are not secret (every protected machine gets them); any machine may
// download one.
func (s *Service) SignatureSetForMachine(ctx context.Context, version string) ([]byte, error) {
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil || v <= 0 {
		return nil, refusal.Invalid("version", "signature set version %q is not a positive number", version)
	}
	ss, err := s.store.GetSignatureSet(ctx, v)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refusal.NotFound("signature set %d does not exist", v)
	}
	return ss.Set, err
}
