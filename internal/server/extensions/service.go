// Package extensions is the control plane's extension context: publishers
// and their ed25519 keys, uploaded packages, signed catalogs, the extensions
// and run commands desired on each machine, the desired state the agent
// reconciles toward, and the agent's reports back.
//
// Trust (docs/adr/0004-extensions.md): an Owner registers a publisher's
// public key; the publisher signs a catalog of package digests; the server
// accepts a catalog only if the signature verifies with the registered key,
// its serial grows and every entry names an uploaded package with that
// digest. Agents receive the keys in their desired state, pin them, and
// verify the catalog and the package digest themselves before unpacking.
//
// Protected settings are sealed to the machine's X25519 key (HPKE, package
// sealing) as soon as they arrive; the plaintext is never stored, logged or
// returned, and is cleared from the request buffer after sealing.
//
// Every change of a machine's desired set (set, delete, a new run) bumps
// the machine's generation in the same store transaction and pushes a sync
// to its agent through the Notifier.
//
// Refusals the caller can act on are *refusal.Error; any other error is
// internal.
//
// The Service is safe for concurrent use; it holds no state of its own
// beyond the agents' reports waiting to be written together.
package extensions

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/batch"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
)

// Store is what the context needs from persistence.
type Store interface {
	store.ExtensionCatalog
	store.MachineExtensions
	store.RunCommands
	store.BulkOperations
	ListMachines(ctx context.Context, f store.MachineFilter) ([]store.Machine, error)
	GetMachine(ctx context.Context, sub, rg, name string) (store.Machine, error)
	GetMachineByID(ctx context.Context, id string) (store.Machine, error)
}

// Service implements the extension context.
type Service struct {
	store    Store
	notify   push.Notifier
	clock    func() time.Time
	log      *slog.Logger
	newID    func() string
	outcomes capability.Outcomes
	// bulkLimit lowers wire.MaxBulkMachines in tests (0: the constant).
	bulkLimit int
	// reports applies the extension reports of agents reporting at the
	// same time together (ApplyExtensionReport).
	reports *batch.Queue[store.ExtensionReportOn, bool]
	// dropped drops the deleted extensions of the machines whose agents
	// report a desired state applied at the same time together
	// (AppliedGeneration): every agent does after every sync.
	dropped *batch.Queue[store.AppliedGeneration, []string]
}

// maxReportBatch bounds the extension reports applied together: after a
// fleet-wide change, one transaction and one statement per table for 64
// agents' reports instead of four statements each.
const maxReportBatch = 64

// LogOutcomes makes the Service log the outcome of every operation a
// machine reports finished (an install refused locally, a run that failed)
// in the activity log, in the requester's name. Call it at assembly.
func (s *Service) LogOutcomes(o capability.Outcomes) { s.outcomes = o }

// outcome logs one outcome; failing to log it is logged, never fatal to the
// agent's report (which must not be retried forever for it).
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

// New returns a Service. clock is the injected time source.
func New(st Store, n push.Notifier, clock func() time.Time, log *slog.Logger) *Service {
	s := &Service{store: st, notify: n, clock: clock, log: log,
		newID: func() string { return uuid.Must(uuid.NewV7()).String() }}
	s.reports = &batch.Queue[store.ExtensionReportOn, bool]{Max: maxReportBatch, Do: st.ReportMachineExtensions, Shared: store.Unavailable}
	s.dropped = &batch.Queue[store.AppliedGeneration, []string]{Max: maxReportBatch, Do: st.DropDeletedExtensions, Shared: store.Unavailable}
	return s
}

func (s *Service) now() time.Time { return s.clock().UTC() }

// resourceNameRE is the rule for extension and run-command names: the
// resource name rule of the API.
var resourceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func validResourceName(kind, name string) error {
	if !resourceNameRE.MatchString(name) {
		return refusal.Invalid("name", "%s name %q is not valid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", kind, name)
	}
	return nil
}

// machine resolves a machine reference.
func (s *Service) machine(ctx context.Context, ref resource.MachineRef) (store.Machine, error) {
	m, err := s.store.GetMachine(ctx, ref.Subscription, ref.ResourceGroup, ref.Name)
	if errors.Is(err, store.ErrNotFound) {
		return m, refusal.NotFound("machine %q was not found in resource group %q", ref.Name, ref.ResourceGroup)
	}
	return m, err
}
