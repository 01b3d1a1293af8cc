// Package policy is the control plane's policy context: policy definitions
// in the Azure Policy language (the built-ins of internal/policy/builtin and
// custom ones), their assignments at a subscription or resource group with
// parameters, a non-compliance message, excluded scopes and, for machine
// configurations, an assignment type; exemptions; compliance per
// assignment × machine × rule with history; the remediations apply modes
// made on machines and their rollback; on-demand evaluations.
//
// Two kinds of definitions meet here. A definition with a machine
// configuration (metadata.guestConfiguration) is evaluated by the agent
// inside the OS: the desired-state slice wire.GuestConfigurationDesired
// lists the machine's configurations and the agent reports each rule's
// verdict with evidence (ReportGuestCompliance). Any other definition is
// evaluated here, on the machine resource (policy.MachineResource), when it
// is assigned, on demand and whenever the machine reports its properties;
// its state has one "rule", the definition's name.
//
// Exemptions are applied when states are read (an expired exemption stops
// counting without anyone touching the store). The Service holds no state
// of its own (replica-safe) and is safe for concurrent use; its refusals
// are *refusal.Error naming the JSON path of the problem.
package policy

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/policy/builtin"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Store is what the context needs from persistence.
type Store interface {
	store.Policy
	GetSubscription(ctx context.Context, name string) (store.Subscription, error)
	GetResourceGroup(ctx context.Context, sub, name string) (store.ResourceGroup, error)
	GetMachine(ctx context.Context, sub, rg, name string) (store.Machine, error)
	GetMachineByID(ctx context.Context, id string) (store.Machine, error)
	ListMachines(ctx context.Context, f store.MachineFilter) ([]store.Machine, error)
	MachineIDsInScope(ctx context.Context, sub, rg, name string) ([]string, error)
}

// Resources is what the context needs from inventory and extensions to
// evaluate a definition on a machine, and to deploy what
// deployIfNotExists asks for through the extensions path.
type Resources interface {
	ToWireMachine(m store.Machine) wire.Machine
	ListExtensions(ctx context.Context, m resource.MachineRef) ([]wire.MachineExtension, error)
	// DeployExtension installs an extension on a machine (the machine's
	// local lock-down still decides on the machine).
	DeployExtension(ctx context.Context, m resource.MachineRef, name string, d policy.ExtensionDeployment, by string) error
	// SetMachineTags replaces an existing machine's tags (modify and
	// append remediation), through the same policy gate as any change.
	SetMachineTags(ctx context.Context, m resource.MachineRef, tags map[string]string) error
}

// Service implements the policy context.
type Service struct {
	store    Store
	res      Resources
	syncer   *capability.Syncer
	catalog  *builtin.Catalog
	clock    func() time.Time
	log      *slog.Logger
	newID    func() string
	outcomes capability.Outcomes
}

// New returns a Service. The built-in catalog is parsed once here (it is
// immutable and part of the binary).
func New(st Store, res Resources, syncer *capability.Syncer, clock func() time.Time, log *slog.Logger) (*Service, error) {
	cat, err := builtin.Load()
	if err != nil {
		return nil, err
	}
	return &Service{store: st, res: res, syncer: syncer, catalog: cat, clock: clock, log: log,
		newID: func() string { return uuid.Must(uuid.NewV7()).String() }}, nil
}

// LogOutcomes makes the Service log what machines did (remediations,
// rollbacks) in the activity log. Call it at assembly.
func (s *Service) LogOutcomes(o capability.Outcomes) { s.outcomes = o }

func (s *Service) now() time.Time { return s.clock().UTC() }

func (s *Service) outcome(ctx context.Context, o capability.Outcome) {
	if s.outcomes == nil {
		return
	}
	if o.At.IsZero() {
		o.At = s.now()
	}
	if err := s.outcomes.RecordOutcome(ctx, o); err != nil {
		s.log.ErrorContext(ctx, "record an operation outcome in the activity log", "scope", o.Scope, "err", err)
	}
}

// Register adds the guest configuration slice and the policy reports to
// the seam.
func (s *Service) Register(r *capability.Registry) {
	r.AddContributor("policy", s)
	r.AddReportHandler(wire.ReportGuestCompliance, capability.ReportHandlerFunc(s.handleCompliance))
	r.AddReportHandler(wire.ReportGuestRemediation, capability.ReportHandlerFunc(s.handleRemediation))
	r.AddReportHandler(wire.ReportGuestRollback, capability.ReportHandlerFunc(s.handleRollback))
	r.AddReportHandler(wire.ReportProperties, capability.ReportHandlerFunc(s.handleProperties))
}

var (
	_ capability.Registrant         = (*Service)(nil)
	_ capability.DesiredContributor = (*Service)(nil)
)

func refOf(m store.Machine) resource.MachineRef {
	return resource.MachineRef{Subscription: m.Subscription, ResourceGroup: m.ResourceGroup, Name: m.Name}
}

// ancestors are the scopes an assignment may sit at that hold m.
func ancestors(m store.Machine) []string {
	return []string{resource.Subscription(m.Subscription).String(), resource.ResourceGroup(m.Subscription, m.ResourceGroup).String()}
}

// resolveScope checks a subscription or resource group scope exists and
// returns it spelled as stored.
func (s *Service) resolveScope(ctx context.Context, target, scope string) (string, error) {
	id, err := resource.ParseScope(scope)
	if err != nil {
		return "", refusal.Invalid(target, "%v", err)
	}
	var sub, rg string
	for _, seg := range id.Segments() {
		switch seg.Type {
		case resource.Subscriptions:
			sub = seg.Name
		case resource.ResourceGroups:
			rg = seg.Name
		default:
			return "", refusal.Invalid(target, "%s: an assignment's scope is a subscription or a resource group", scope)
		}
	}
	if sub == "" {
		return "", refusal.Invalid(target, "%s: an assignment's scope is a subscription or a resource group", scope)
	}
	st, err := s.store.GetSubscription(ctx, sub)
	if errors.Is(err, store.ErrNotFound) {
		return "", refusal.NotFound("%s: subscription %q was not found", target, sub)
	}
	if err != nil {
		return "", err
	}
	if rg == "" {
		return resource.Subscription(st.Name).String(), nil
	}
	g, err := s.store.GetResourceGroup(ctx, st.Name, rg)
	if errors.Is(err, store.ErrNotFound) {
		return "", refusal.NotFound("%s: resource group %q was not found in subscription %q", target, rg, st.Name)
	}
	if err != nil {
		return "", err
	}
	return resource.ResourceGroup(st.Name, g.Name).String(), nil
}

// machinesUnder lists every machine at or under a subscription or resource
// group scope, all pages.
func (s *Service) machinesUnder(ctx context.Context, scope string) ([]store.Machine, error) {
	id, err := resource.ParseScope(scope)
	if err != nil {
		return nil, refusal.Invalid("scope", "%v", err)
	}
	f := store.MachineFilter{}
	for _, seg := range id.Segments() {
		switch seg.Type {
		case resource.Subscriptions:
			f.Subscription = seg.Name
		case resource.ResourceGroups:
			f.ResourceGroup = seg.Name
		case resource.Machines:
			f.NameContains = seg.Name
		}
	}
	var out []store.Machine
	for {
		f.Page.Limit = store.MaxPageSize
		ms, err := s.store.ListMachines(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if f.NameContains == "" || strings.EqualFold(m.Name, f.NameContains) {
				out = append(out, m)
			}
		}
		if len(ms) < store.MaxPageSize {
			return out, nil
		}
		last := ms[len(ms)-1]
		f.Page.After = last.ResourceGroup + "/" + last.Name
	}
}
