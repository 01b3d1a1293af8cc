package extensions

import (
	"context"
	"errors"
	"strings"

	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// EnsureExtension installs the latest listed version of publisher/typ on
// machine m under name unless the machine already has an extension of
// that publisher and type (under any name, in any state but Deleting). It
// is how another context switches on the first-party extension behind a
// capability the first time an operation targets a machine; the install
// is an ordinary extension operation (state, seqNo, outcome in the
// activity log in by's name). It returns whether it asked for an install.
func (s *Service) EnsureExtension(ctx context.Context, m store.Machine, publisher, typ, name, by string) (bool, error) {
	es, err := s.store.ListMachineExtensions(ctx, m.ID)
	if err != nil {
		return false, err
	}
	for _, e := range es {
		if strings.EqualFold(e.Publisher, publisher) && strings.EqualFold(e.Type, typ) && !e.Deleting {
			return false, nil
		}
	}
	pkg, err := s.resolve(ctx, wire.MachineExtensionSet{Publisher: publisher, Type: typ})
	if err != nil {
		return false, err
	}
	for attempt := range maxSetAttempts {
		_, err := s.trySet(ctx, m, name, pkg, nil, nil, false, by)
		if errors.Is(err, store.ErrConflict) && attempt < maxSetAttempts-1 {
			continue
		}
		if errors.Is(err, refusal.ErrConflict) {
			return false, nil // the name is taken meanwhile: someone set it
		}
		if err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}
