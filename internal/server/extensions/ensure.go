package extensions

import (
	"context"

	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// EnsureExtension installs the latest listed version of publisher/typ
// under name on each machine of ms that has no extension of that publisher
// and type (in any state but Deleting) and no extension of that name. It
// is how another context switches on the first-party extension behind a
// capability the first time an operation targets machines: each install
// is an ordinary extension operation (state Creating, a seqNo, the outcome
// in the activity log in by's name), written in bulk so that a scope of
// ten thousand machines takes seconds. It returns machine id -> new
// generation of the machines it asked an install of, and does not push
// their syncs: the caller announces them with its own change (one fetch per
// agent instead of two).
func (s *Service) EnsureExtension(ctx context.Context, ms []store.Machine, publisher, typ, name, by string) (map[string]int64, error) {
	if len(ms) == 0 {
		return map[string]int64{}, nil
	}
	pkg, err := s.resolve(ctx, wire.MachineExtensionSet{Publisher: publisher, Type: typ})
	if err != nil {
		return nil, err
	}
	now := s.now()
	origin := capability.OriginFrom(ctx).Encode()
	es := make([]store.MachineExtension, 0, len(ms))
	for _, m := range ms {
		es = append(es, store.MachineExtension{Origin: origin, MachineID: m.ID, Name: name, Publisher: pkg.publisher, Type: pkg.typ,
			Version: pkg.version, Digest: pkg.digest, State: wire.ExtCreating, CreatedAt: now, CreatedBy: by, UpdatedAt: now, UpdatedBy: by})
	}
	gens, err := s.store.AddMachineExtensions(ctx, es)
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "first-party extension switched on", "extension", pkg.publisher+"/"+pkg.typ, "version", pkg.version,
		"machines", len(gens), "by", by)
	return gens, nil
}
