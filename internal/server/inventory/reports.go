package inventory

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// maxAgentVersionLen caps the agent version a report may set.
const maxAgentVersionLen = 64

func agentVersion(r wire.Report) string {
	if len(r.AgentVersion) > maxAgentVersionLen {
		return r.AgentVersion[:maxAgentVersionLen]
	}
	return r.AgentVersion
}

// handleProperties stores the inventory an agent reported.
func (s *Service) handleProperties(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var p wire.MachineProperties
	if err := capability.DecodeReport(r, &p); err != nil {
		return err
	}
	if field, err := p.Check(); err != nil {
		return refusal.Invalid("properties."+field, "%v", err)
	}
	props, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.store.UpdateMachineReport(ctx, m.ID, store.MachineReport{AgentVersion: agentVersion(r), Properties: props,
		Environment: p.Environment, OSName: strings.ToLower(p.OSName), At: at})
}

// handleAgentConfig stores the local configuration the agent reported.
func (s *Service) handleAgentConfig(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var c wire.AgentConfig
	if err := capability.DecodeReport(r, &c); err != nil {
		return err
	}
	cfg, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.store.UpdateMachineReport(ctx, m.ID, store.MachineReport{AgentVersion: agentVersion(r), AgentConfig: cfg, At: at})
}

// handleApplied records the desired-state generation the agent applied.
func (s *Service) handleApplied(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var ap wire.AppliedState
	if err := capability.DecodeReport(r, &ap); err != nil {
		return err
	}
	if ap.Generation < 0 {
		return refusal.Invalid("reports.body", "applied report with a negative generation")
	}
	return s.store.UpdateMachineReport(ctx, m.ID, store.MachineReport{AgentVersion: agentVersion(r), AppliedGeneration: ap.Generation, At: at})
}
