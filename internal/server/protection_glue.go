package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/server/protection"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/wire"
)

// protectionExtensions gives the protection context the one extension it
// manages, Corral/EndpointProtection, through the extension context: the
// same catalog, sealing, generation and lock-down path as any extension.
// The policy context's deploy-endpoint-protection deploys the same
// extension under the same name, so the two meet on one resource.
type protectionExtensions struct{ ext *extensions.Service }

var _ protection.Extensions = protectionExtensions{}

func (p protectionExtensions) EnsureProtection(ctx context.Context, m resource.MachineRef, settings json.RawMessage, by string) (bool, error) {
	cur, err := p.ext.GetExtension(ctx, m, wire.ProtectionExtensionName)
	switch {
	case err == nil && isProtection(cur) && cur.State != wire.ExtDeleting && protection.SameSettings(cur.Settings, settings):
		return false, nil
	case err != nil && !errors.Is(err, refusal.ErrNotFound):
		return false, err
	}
	_, err = p.ext.SetExtension(ctx, m, wire.ProtectionExtensionName, wire.MachineExtensionSet{Publisher: wire.PublisherCorral,
		Type: wire.ProtectionExtensionType, Settings: settings}, by)
	return err == nil, err
}

func (p protectionExtensions) RemoveProtection(ctx context.Context, m resource.MachineRef, by string) error {
	cur, err := p.ext.GetExtension(ctx, m, wire.ProtectionExtensionName)
	if errors.Is(err, refusal.ErrNotFound) || err == nil && (!isProtection(cur) || cur.State == wire.ExtDeleting) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = p.ext.DeleteExtension(ctx, m, wire.ProtectionExtensionName, by)
	if errors.Is(err, refusal.ErrNotFound) {
		return nil
	}
	return err
}

func (p protectionExtensions) ProtectionExtension(ctx context.Context, m resource.MachineRef) (string, string, bool, error) {
	cur, err := p.ext.GetExtension(ctx, m, wire.ProtectionExtensionName)
	if errors.Is(err, refusal.ErrNotFound) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	if !isProtection(cur) || cur.State == wire.ExtDeleting {
		return cur.State, cur.Message, false, nil
	}
	return cur.State, cur.Message, true, nil
}

func isProtection(e wire.MachineExtension) bool {
	return strings.EqualFold(e.Publisher, wire.PublisherCorral) && strings.EqualFold(e.Type, wire.ProtectionExtensionType)
}
