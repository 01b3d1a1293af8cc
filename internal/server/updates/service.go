// Package updates is the control plane's update-management context
// (DESIGN §7): assessments of machines' pending updates through their own
// package manager, deployments (runs) to machines, a scope or a tag with
// classifications, name patterns, reboot setting, maintenance window and
// pre/post scripts, rollouts in waves with a disruption budget, one-time and
// cron schedules, and each machine's update status for the inventory.
//
// The agent side is the "updates" feature behind the first-party extension
// Corral/PatchManagement: the first operation that targets a machine
// switches the extension on through the extension context (an interface,
// Extensions) and enrolls the machine, whose desired state from then on
// carries the updates slice (periodic assessment interval, unanswered
// assessment requests, deployments sent to it and not finished).
//
// Replicas: nothing another replica needs is kept in memory. Schedules
// fire from the store (last fire recorded with a compare-and-set in the
// same transaction as the run it starts) under a PostgreSQL advisory lock
// (RunScheduler's lock), and a server restarted within a window catches up
// from the store. Runs advance (next wave, halt, window closed, final
// status) in the same loop; a machine's final report only hurries it.
//
// Refusals the caller can act on are *refusal.Error; any other error is
// internal. The Service is safe for concurrent use.
package updates

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// ExtensionName is the name the first-party extension gets on a machine.
const ExtensionName = "PatchManagement"

// Store is what the context needs from persistence.
type Store interface {
	store.Updates
	GetMachine(ctx context.Context, sub, rg, name string) (store.Machine, error)
	GetMachineByID(ctx context.Context, id string) (store.Machine, error)
	ListMachines(ctx context.Context, f store.MachineFilter) ([]store.Machine, error)
}

// Extensions switches a first-party extension on for machines (the
// extension context implements it): each install is an ordinary extension
// operation, refused on the machine if its lock-down blocks it.
// EnsureExtension returns the machines it bumped (machine id -> new
// generation) without pushing their syncs.
type Extensions interface {
	EnsureExtension(ctx context.Context, ms []store.Machine, publisher, typ, name, by string) (map[string]int64, error)
}

// Settings tune the context; zero values take the defaults.
type Settings struct {
	// AssessmentInterval is how often enrolled agents assess by themselves
	// (default wire.DefaultAssessmentInterval).
	AssessmentInterval time.Duration
	// Tick is how often the scheduler looks for due schedules and advances
	// runs (default 10 s).
	Tick time.Duration
	// AssessmentTimeout fails a request no agent answered (default 24 h).
	AssessmentTimeout time.Duration
	// ResultGrace is how long after a run's window a started machine may
	// still report before it is failed with NoResult (default 30 min: the
	// last install may run past the deadline; it is never killed).
	ResultGrace time.Duration
}

func (s Settings) withDefaults() Settings {
	if s.AssessmentInterval <= 0 {
		s.AssessmentInterval = wire.DefaultAssessmentInterval
	}
	if s.Tick <= 0 {
		s.Tick = 10 * time.Second
	}
	if s.AssessmentTimeout <= 0 {
		s.AssessmentTimeout = 24 * time.Hour
	}
	if s.ResultGrace <= 0 {
		s.ResultGrace = 30 * time.Minute
	}
	return s
}

// Service implements the updates context.
type Service struct {
	store    Store
	ext      Extensions
	syncer   *capability.Syncer
	clock    func() time.Time
	log      *slog.Logger
	newID    func() string
	outcomes capability.Outcomes
	settings Settings
	// kick asks this replica's scheduler loop to advance a run soon (a
	// machine of it just finished); dropped when the loop is busy.
	kick chan string
}

// New returns a Service. clock is the injected time source.
func New(st Store, ext Extensions, syncer *capability.Syncer, clock func() time.Time, log *slog.Logger, settings Settings) *Service {
	return &Service{store: st, ext: ext, syncer: syncer, clock: clock, log: log, settings: settings.withDefaults(),
		newID: func() string { return uuid.Must(uuid.NewV7()).String() }, kick: make(chan string, 64)}
}

// LogOutcomes makes the Service log the outcome of every assessment and
// deployment a machine finishes, and of every run, in the activity log in
// the requester's name. Call it at assembly.
func (s *Service) LogOutcomes(o capability.Outcomes) { s.outcomes = o }

func (s *Service) now() time.Time { return s.clock().UTC() }

// outcome logs one outcome; failing to log it is logged, never fatal.
func (s *Service) outcome(ctx context.Context, o capability.Outcome) {
	if s.outcomes == nil {
		return
	}
	if o.At.IsZero() {
		o.At = s.now()
	}
	if err := s.outcomes.RecordOutcome(ctx, o); err != nil {
		s.log.ErrorContext(ctx, "record an update outcome in the activity log", "scope", o.Scope, "err", err)
	}
}

// announce pushes a sync for generations the store bumped.
func (s *Service) announce(ctx context.Context, gens map[string]int64) {
	if s.syncer != nil && len(gens) > 0 {
		s.syncer.Announce(ctx, gens)
	}
}

// enroll switches Corral/PatchManagement on for machines not yet enrolled
// (no update status), in by's name, and returns the generations that bumped
// (to announce with the operation's own). A failure to ask for the install
// is logged and left to the operation: the agent decides by its own
// lock-down whatever the extension's record says.
func (s *Service) enroll(ctx context.Context, ms []store.Machine, by string) (map[string]int64, error) {
	if s.ext == nil {
		return nil, nil
	}
	enrolled := map[string]bool{}
	for chunk := range slices.Chunk(ms, MaxListedMachines) {
		ids := make([]string, len(chunk))
		for i, m := range chunk {
			ids[i] = m.ID
		}
		sts, err := s.store.ListMachineUpdateStatuses(ctx, store.UpdateStatusFilter{Subscription: chunk[0].Subscription, MachineIDs: ids,
			Page: store.Page{Limit: store.MaxPageSize}})
		if err != nil {
			return nil, err
		}
		for _, st := range sts {
			enrolled[st.MachineID] = true
		}
	}
	var todo []store.Machine
	for _, m := range ms {
		if !enrolled[m.ID] {
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	gens, err := s.ext.EnsureExtension(ctx, todo, wire.PublisherCorral, "PatchManagement", ExtensionName, by)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.log.WarnContext(ctx, "could not switch on Corral/PatchManagement", "machines", len(todo), "err", err)
	}
	return gens, nil
}

// merge adds b's generations to a, keeping the higher of each.
func merge(a, b map[string]int64) map[string]int64 {
	if a == nil {
		a = map[string]int64{}
	}
	for id, g := range b {
		if g > a[id] {
			a[id] = g
		}
	}
	return a
}
