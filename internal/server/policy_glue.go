package server

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/server/inventory"
	policyctx "github.com/corralhq/corral/internal/server/policy"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// policyResources gives the policy context what definitions see of a
// machine (inventory's view, the extension context's extensions) and the
// extensions path that deployIfNotExists installs through: the same
// catalog, sealing, generation and lock-down as any extension.
type policyResources struct {
	inv *inventory.Service
	ext *extensions.Service
}

var _ policyctx.Resources = policyResources{}

func (p policyResources) ToWireMachine(m store.Machine) wire.Machine { return p.inv.ToWireMachine(m) }

func (p policyResources) ListExtensions(ctx context.Context, m resource.MachineRef) ([]wire.MachineExtension, error) {
	return p.ext.ListExtensions(ctx, m)
}

func (p policyResources) DeployExtension(ctx context.Context, m resource.MachineRef, name string, d policy.ExtensionDeployment, by string) error {
	if cur, err := p.ext.GetExtension(ctx, m, name); err == nil && cur.State != wire.ExtDeleting {
		return nil // already there (or on its way)
	} else if err != nil && !errors.Is(err, refusal.ErrNotFound) {
		return err
	}
	var settings json.RawMessage
	if len(d.Settings) > 0 {
		settings, _ = json.Marshal(d.Settings)
	}
	_, err := p.ext.SetExtension(ctx, m, name, wire.MachineExtensionSet{Publisher: d.Publisher, Type: d.Type, Version: d.Version, Settings: settings}, by)
	return err
}

func (p policyResources) SetMachineTags(ctx context.Context, m resource.MachineRef, tags map[string]string) error {
	_, err := p.inv.SetMachineTags(ctx, m, tags)
	return err
}
