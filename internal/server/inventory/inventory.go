// Package inventory is the control plane's inventory context: subscriptions,
// resource groups and machines — their tags, status and what their agents
// report about them (properties, agent configuration, the generation they
// applied). It is the first part of every desired state (resource id and
// tags) and takes the core agent reports (wire.ReportProperties,
// ReportAgentConfig, ReportApplied).
//
// Changing a machine's tags bumps its generation in the same store write
// and pushes a sync; deleting a machine tells its agent goodbye.
//
// Refusals the caller can act on are *refusal.Error; any other error is
// internal. The Service is safe for concurrent use; it holds no state of
// its own.
package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/batch"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Store is what the context needs from persistence.
type Store interface {
	store.Subscriptions
	store.ResourceGroups
	GetMachine(ctx context.Context, sub, rg, name string) (store.Machine, error)
	GetMachineByID(ctx context.Context, id string) (store.Machine, error)
	GetMachinesForAgent(ctx context.Context, ids []string) ([]store.Machine, error)
	ListMachines(ctx context.Context, f store.MachineFilter) ([]store.Machine, error)
	UpdateMachineTags(ctx context.Context, id string, tags map[string]string, at time.Time) (int64, error)
	UpdateMachineReport(ctx context.Context, id string, r store.MachineReport) error
	RecordAppliedGenerations(ctx context.Context, rs []store.AppliedGeneration) ([]bool, error)
	DeleteMachine(ctx context.Context, id string) error
}

// Service implements the inventory context.
type Service struct {
	store  Store
	notify push.Notifier
	clock  func() time.Time
	log    *slog.Logger
	// supportWindow is how long after its release an agent version is supported.
	supportWindow time.Duration
	// outcomes records what agents report in the activity log (nil: not
	// recorded).
	outcomes capability.Outcomes
	// gate is the policy context's say on machine changes (nil: none).
	gate PolicyGate
	// forAgents reads the machines of agent requests made at the same
	// time together (MachineForAgent).
	forAgents *batch.Queue[string, *store.Machine]
	// applied records the applied generations that agents report at the
	// same time together: every agent reports after every sync.
	applied *batch.Queue[store.AppliedGeneration, bool]
}

// PolicyGate is what the context asks the policy context about a machine
// change: AdmitMachine returns the tags the machine gets (append and
// modify assignments may add some) or the refusal of a deny assignment;
// MachineChanged re-evaluates the server's definitions after the change.
type PolicyGate interface {
	AdmitMachine(ctx context.Context, m store.Machine) (map[string]string, error)
	MachineChanged(ctx context.Context, m store.Machine)
}

// GatePolicy makes tag changes pass the policy gate. Call it at assembly.
func (s *Service) GatePolicy(g PolicyGate) { s.gate = g }

// LogOutcomes makes the context record agent observations that belong in
// the activity log (a local configuration changed outside
// corral-agent config) through o.
func (s *Service) LogOutcomes(o capability.Outcomes) { s.outcomes = o }

var (
	_ capability.Registrant         = (*Service)(nil)
	_ capability.DesiredContributor = (*Service)(nil)
)

// New returns a Service. clock is the injected time source; supportWindow
// is how long after its release an agent version counts as supported.
func New(st Store, n push.Notifier, clock func() time.Time, log *slog.Logger, supportWindow time.Duration) *Service {
	s := &Service{store: st, notify: n, clock: clock, log: log, supportWindow: supportWindow}
	s.forAgents = &batch.Queue[string, *store.Machine]{Max: maxAgentBatch, Do: s.machinesForAgents, Shared: store.Unavailable}
	s.applied = &batch.Queue[store.AppliedGeneration, bool]{Max: maxAgentBatch, Do: st.RecordAppliedGenerations, Shared: store.Unavailable}
	return s
}

func (s *Service) now() time.Time { return s.clock().UTC() }

// Register adds the inventory's part of the desired state and its report
// handlers.
func (s *Service) Register(r *capability.Registry) {
	r.AddContributor("inventory", s)
	r.AddReportHandler(wire.ReportProperties, capability.ReportHandlerFunc(s.handleProperties))
	r.AddReportHandler(wire.ReportAgentConfig, capability.ReportHandlerFunc(s.handleAgentConfig))
	r.AddReportHandler(wire.ReportApplied, capability.ReportHandlerFunc(s.handleApplied))
	r.AddReportHandler(wire.ReportLocalConfigChanged, capability.ReportHandlerFunc(s.handleLocalConfigChanged))
}

// ContributeDesired writes each machine's resource id and tags.
func (s *Service) ContributeDesired(_ context.Context, batch []capability.Desired) error {
	for _, d := range batch {
		d.State.ResourceID, d.State.Tags = d.Machine.ResourceID().String(), d.Machine.Tags
	}
	return nil
}

func checkName(kind, target, name string) error {
	if err := resource.CheckName(kind, name); err != nil {
		return refusal.Invalid(target, "%v", err)
	}
	return nil
}

func checkTags(tags map[string]string) error {
	if err := resource.CheckTags(tags); err != nil {
		return refusal.Invalid("tags", "%v", err)
	}
	return nil
}

// canonical finds v among allowed, case-insensitively.
func canonical(v string, allowed []string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, true
		}
	}
	return "", false
}

// notFoundAs turns store.ErrNotFound into a refusal with a specific message.
func notFoundAs(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return refusal.NotFound(format, args...)
	}
	return err
}

// ToWireMachine is the API view of a machine at now.
func (s *Service) ToWireMachine(m store.Machine) wire.Machine {
	out := wire.Machine{
		ID: m.ResourceID().String(), Name: m.Name, SubscriptionID: m.Subscription,
		ResourceGroup: m.ResourceGroup, MachineID: m.ID, Tags: m.Tags, Status: m.Status, LastHeartbeat: m.LastHeartbeat,
		AgentVersion: m.AgentVersion, CreatedAt: m.CreatedAt, CreatedBy: m.CreatedBy, CertificateNotAfter: m.CertNotAfter,
	}
	out.AgentSupported = AgentVersionSupported(m.AgentVersion, s.now(), s.supportWindow)
	// Documents over the limits (stored before the limits existed) are left
	// out rather than sent to every reader of a list.
	if len(m.Properties) > 0 && len(m.Properties) <= wire.MaxPropertiesBytes {
		_ = json.Unmarshal(m.Properties, &out.Properties) // written by us from a validated report
	}
	if len(m.AgentConfig) > 0 && len(m.AgentConfig) <= wire.MaxAgentConfigBytes {
		var c wire.AgentConfig
		if json.Unmarshal(m.AgentConfig, &c) == nil {
			out.AgentConfig = &c
		}
	}
	return out
}

// AgentVersionSupported reports whether a calendar version "YYYY.MM.N" was
// released less than window before now. Corral versions are calendar
// versions so that support can be judged without a release catalog.
func AgentVersionSupported(version string, now time.Time, window time.Duration) bool {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	y, err1 := strconv.Atoi(parts[0])
	mo, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || mo < 1 || mo > 12 {
		return false
	}
	released := time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, time.UTC)
	return now.Sub(released) < window
}
