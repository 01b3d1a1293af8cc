package inventory

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// maxAgentVersionLen caps the agent version a report may set.
const maxAgentVersionLen = 64

// agentVersion is the report's agent version as stored: printable, capped.
func agentVersion(r wire.Report) string {
	return wire.CleanReported(r.AgentVersion, maxAgentVersionLen)
}

// handleProperties stores the inventory an agent reported.
func (s *Service) handleProperties(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var p wire.MachineProperties
	if err := capability.DecodeReport(r, &p); err != nil {
		return err
	}
	props, err := wire.EncodeProperties(p)
	if err != nil {
		return refusal.Invalid("properties."+wire.FieldOf(err), "%v", err)
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
	cfg, err := wire.EncodeAgentConfig(c)
	if err != nil {
		return refusal.Invalid("agentConfig."+wire.FieldOf(err), "%v", err)
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
	found, err := s.applied.Call(ctx, store.AppliedGeneration{MachineID: m.ID, Generation: ap.Generation, AgentVersion: agentVersion(r), At: at})
	if err == nil && !found {
		err = fmt.Errorf("machine %s: %w", m.ID, store.ErrNotFound)
	}
	return err
}

// ActLocalConfigChanged names the activity entry of a local configuration
// changed outside corral-agent config.
const ActLocalConfigChanged = "Corral.HybridCompute/machines/localConfiguration/changedOutsideAgent/action"

// handleLocalConfigChanged records, in the machine's name, that its agent
// found the local configuration changed outside `corral-agent config` (by
// hand, a script, or a command run as root — possibly from this control
// plane). The configuration itself arrives as an agentConfig report.
func (s *Service) handleLocalConfigChanged(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	var c wire.LocalConfigChanged
	if err := capability.DecodeReport(r, &c); err != nil {
		return err
	}
	if s.outcomes == nil {
		return nil
	}
	msg := "the agent found its local configuration changed outside corral-agent config: " + wire.CleanReported(c.Detail, 512) +
		". Full mode lets whoever may run commands on this machine rewrite it; see docs/security.md"
	return s.outcomes.RecordOutcome(ctx, capability.Outcome{
		Origin: capability.Origin{CallerID: m.ID, Caller: m.Name, CallerType: wire.PrincipalMachine},
		Action: ActLocalConfigChanged, Scope: m.ResourceID().String(), Result: wire.ResultFailed, Message: msg, At: at,
		ReportID: r.ID, // an event: delivered twice, recorded once
	})
}
