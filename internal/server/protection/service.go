// Package protection is the control plane's endpoint-protection context:
// protection enabled on scopes (a subscription or resource group), the
// signed signature sets it distributes, the alerts machines report, on-demand
// scans, quarantine restores and each machine's protection status.
//
// Enabling protection on a scope installs the first-party extension
// Corral/EndpointProtection (instance name EndpointProtection, the name the
// built-in policy deploy-endpoint-protection deploys too) on every machine
// in it, through the extension context (the Extensions interface, given at
// assembly), and on machines that join later: every agent reports its
// properties when it starts, and the handler of that report installs what
// the machine's scope asks for. Each machine's local lock-down still
// decides: a refused install shows on the extension and in the machine's
// protection status.
//
// Signature sets are imported from ClamAV .hdb/.hsb/.ndb files
// (sigset.Build) and signed with the server's signature key, which every
// replica shares like the other keys. The machine's slice of the desired
// state (wire.ProtectionDesired) names the newest set, the public key, the
// machine's unfinished scans and restores and its scope's scan schedule; an
// import, a scan, a restore or a change of a scope's schedule moves the
// machines concerned to a new generation.
//
// Scans, restores, imports and acknowledgements are logged in the activity
// log by the API; what a machine did with a scan or restore is logged as its
// outcome (capability.Outcomes), in the requester's name.
//
// The Service holds no state of its own (replica-safe) and is safe for
// concurrent use. Refusals the caller can act on are *refusal.Error.
package protection

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
)

// Store is what the context needs from persistence.
type Store interface {
	store.Protection
	GetSubscription(ctx context.Context, name string) (store.Subscription, error)
	GetResourceGroup(ctx context.Context, sub, name string) (store.ResourceGroup, error)
	GetMachine(ctx context.Context, sub, rg, name string) (store.Machine, error)
	GetMachineByID(ctx context.Context, id string) (store.Machine, error)
	ListMachines(ctx context.Context, f store.MachineFilter) ([]store.Machine, error)
}

// Extensions is what the context needs from the extension context: the
// Corral/EndpointProtection extension of one machine.
type Extensions interface {
	// EnsureProtection installs the extension with settings, or sets new
	// settings, and reports whether it changed anything (an extension that
	// already has these settings is left alone).
	EnsureProtection(ctx context.Context, m resource.MachineRef, settings json.RawMessage, by string) (bool, error)
	// RemoveProtection removes the extension (nothing if there is none).
	RemoveProtection(ctx context.Context, m resource.MachineRef, by string) error
	// ProtectionExtension returns the extension's state and message, and
	// whether the machine has it at all.
	ProtectionExtension(ctx context.Context, m resource.MachineRef) (state, message string, ok bool, err error)
}

// Service implements the endpoint-protection context.
type Service struct {
	store    Store
	ext      Extensions
	syncer   *capability.Syncer
	key      ed25519.PrivateKey
	clock    func() time.Time
	log      *slog.Logger
	newID    func() string
	outcomes capability.Outcomes
}

// New returns a Service. key signs signature sets.
func New(st Store, ext Extensions, syncer *capability.Syncer, key ed25519.PrivateKey, clock func() time.Time, log *slog.Logger) *Service {
	return &Service{store: st, ext: ext, syncer: syncer, key: key, clock: clock, log: log,
		newID: func() string { return uuid.Must(uuid.NewV7()).String() }}
}

// LogOutcomes makes the Service log what machines did with scans and
// restores in the activity log. Call it at assembly.
func (s *Service) LogOutcomes(o capability.Outcomes) { s.outcomes = o }

func (s *Service) now() time.Time { return s.clock().UTC() }

// outcome logs one outcome; a failure to log it never fails the report.
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

// machine resolves a machine reference.
func (s *Service) machine(ctx context.Context, ref resource.MachineRef) (store.Machine, error) {
	m, err := s.store.GetMachine(ctx, ref.Subscription, ref.ResourceGroup, ref.Name)
	if errors.Is(err, store.ErrNotFound) {
		return m, refusal.NotFound("machine %q was not found in resource group %q", ref.Name, ref.ResourceGroup)
	}
	return m, err
}

func refOf(m store.Machine) resource.MachineRef {
	return resource.MachineRef{Subscription: m.Subscription, ResourceGroup: m.ResourceGroup, Name: m.Name}
}

// machinesUnder lists every machine at or under scope (a subscription or
// resource group id), all pages.
func (s *Service) machinesUnder(ctx context.Context, scope resource.ID) ([]store.Machine, error) {
	f := store.MachineFilter{}
	for _, seg := range scope.Segments() {
		switch seg.Type {
		case resource.Subscriptions:
			f.Subscription = seg.Name
		case resource.ResourceGroups:
			f.ResourceGroup = seg.Name
		}
	}
	var out []store.Machine
	for {
		f.Page.Limit = store.MaxPageSize
		ms, err := s.store.ListMachines(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
		if len(ms) < store.MaxPageSize {
			return out, nil
		}
		last := ms[len(ms)-1]
		f.Page.After = last.ResourceGroup + "/" + last.Name
	}
}
