// Package capability is the server side of the feature seam: the one place
// where a machine's desired state is assembled and an agent's reports are
// dispatched, so that a new capability plugs in by registering, not by
// editing the shared handlers.
//
// A server context (inventory, extensions, and later policy, updates,
// endpoint protection, access) takes part by implementing Registrant: at
// assembly it adds
//
//   - DesiredContributors, each writing its part of the desired states of
//     a batch of machines: the agents that ask at the same time (after a
//     fleet-wide change, thousands at once) are answered together, so a
//     contributor reads with one query per table for the batch (the
//     store's ...Of methods), not one per machine. Core fields (resource
//     id, tags) come from inventory; extensions writes Extensions,
//     Publishers and RunCommands; later capabilities write their slice to
//     ds.Features[featureName] with SetFeature. The generation stays one
//     number per machine (store.Machine.Generation): a context that
//     changes its slice for some machines calls Syncer.DesiredChanged,
//     which bumps their generations and pushes a sync.
//   - ReportHandlers, each for the report kinds it owns. Several handlers
//     may take one kind (every context that cares when the agent applied a
//     generation handles wire.ReportApplied); they run in registration
//     order.
//
// Failure: a contributor's error fails the whole desired state (the agent
// retries; it must never apply a partial one). A batch that fails is
// assembled again machine by machine, so one machine's bad row fails only
// its own desired state. A report handler's error
// that wraps refusal.ErrInvalid or store.ErrInvalidData means
// "acknowledged and dropped" — a malformed report, or one the store cannot
// keep (a NUL in PostgreSQL text), is never retried forever — and so does a
// kind no handler took (a newer agent); any other error fails the batch,
// which the agent delivers again, so handlers must tolerate a report
// applied twice.
//
// Concurrency: register everything before the server serves; afterwards
// its contributors and handlers are only read, and the Registry is safe
// for concurrent use (the queue of desired states to assemble has its own
// lock).
package capability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/batch"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// DesiredContributor adds a context's part to the desired states of a
// batch of machines (one or more), reading one snapshot of the store
// through ctx. Contributors must not write fields another context owns.
type DesiredContributor interface {
	ContributeDesired(ctx context.Context, batch []Desired) error
}

// Desired is one machine of a batch and its desired state being
// assembled. Machine is the machine as read when its agent authenticated
// (before the snapshot: the generation is never newer than the rows).
type Desired struct {
	Machine store.Machine
	State   *wire.DesiredState
}

// MachineIDs returns the ids of a batch's machines, in order.
func MachineIDs(batch []Desired) []string {
	ids := make([]string, len(batch))
	for i, d := range batch {
		ids[i] = d.Machine.ID
	}
	return ids
}

// ReportHandler applies one agent report of a kind it registered for. at is
// when the server received the batch.
type ReportHandler interface {
	HandleReport(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error
}

// ReportHandlerFunc adapts a function to ReportHandler.
type ReportHandlerFunc func(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error

// HandleReport implements ReportHandler.
func (f ReportHandlerFunc) HandleReport(ctx context.Context, m store.Machine, r wire.Report, at time.Time) error {
	return f(ctx, m, r, at)
}

// Registrant is a server context that takes part in the seam.
type Registrant interface {
	Register(r *Registry)
}

// MaxReportsPerBatch is the most reports one batch may carry.
const MaxReportsPerBatch = 100

type contributor struct {
	name string
	c    DesiredContributor
}

// Snapshotter runs fn with every store read made through its ctx seeing
// one consistent snapshot (store.Store.Snapshot).
type Snapshotter interface {
	Snapshot(ctx context.Context, fn func(ctx context.Context) error) error
}

// Registry maps the seam to the contexts: who contributes to the desired
// state, and which handlers take each report kind.
type Registry struct {
	log          *slog.Logger
	snap         Snapshotter
	contributors []contributor
	handlers     map[string][]ReportHandler
	batches      *batch.Queue[store.Machine, wire.DesiredState]
}

// NewRegistry returns an empty registry logging dropped reports to log.
// The contributors of a desired state read through one snapshot of snap
// (nil: each read on its own).
func NewRegistry(log *slog.Logger, snap Snapshotter) *Registry {
	r := &Registry{log: log, snap: snap, handlers: map[string][]ReportHandler{}}
	r.initBatches()
	return r
}

// Register lets each registrant add its contributors and handlers, in order.
func (r *Registry) Register(rs ...Registrant) {
	for _, x := range rs {
		x.Register(r)
	}
}

// AddContributor adds c; name says whose part it is (in errors).
// Contributors run in the order added.
func (r *Registry) AddContributor(name string, c DesiredContributor) {
	r.contributors = append(r.contributors, contributor{name: name, c: c})
}

// AddReportHandler makes h take reports of kind, after the handlers
// already added for it.
func (r *Registry) AddReportHandler(kind string, h ReportHandler) {
	r.handlers[kind] = append(r.handlers[kind], h)
}

// Handles reports whether some handler takes reports of kind.
func (r *Registry) Handles(kind string) bool { return len(r.handlers[kind]) > 0 }

// DesiredStates assembles what the agents of ms should reconcile toward:
// each machine's generation, then every contributor's part, all read from
// one snapshot of the store (a change committed meanwhile is in every part
// or in none; the generation it bumps brings the agents back for it).
func (r *Registry) DesiredStates(ctx context.Context, ms []store.Machine) ([]wire.DesiredState, error) {
	dss := make([]wire.DesiredState, len(ms))
	batch := make([]Desired, len(ms))
	for i, m := range ms {
		dss[i].Generation = m.Generation
		batch[i] = Desired{Machine: m, State: &dss[i]}
	}
	contribute := func(ctx context.Context) error {
		for _, c := range r.contributors {
			if err := c.c.ContributeDesired(ctx, batch); err != nil {
				if len(ms) == 1 {
					return fmt.Errorf("%s part of the desired state of machine %s: %w", c.name, ms[0].ID, err)
				}
				return fmt.Errorf("%s part of the desired states of %d machines: %w", c.name, len(ms), err)
			}
		}
		return nil
	}
	var err error
	if r.snap == nil {
		err = contribute(ctx)
	} else {
		err = r.snap.Snapshot(ctx, contribute)
	}
	if err != nil {
		return nil, err
	}
	return dss, nil
}

// ApplyReports applies a batch in order and returns the ids the agent may
// drop from its outbox: every report applied, refused as malformed or of a
// kind nobody handles. A batch that is itself malformed (too many reports,
// a report without an id) is refused whole, before anything is applied.
func (r *Registry) ApplyReports(ctx context.Context, m store.Machine, reports []wire.Report, at time.Time) (wire.ReportAck, error) {
	if len(reports) > MaxReportsPerBatch {
		return wire.ReportAck{}, refusal.Invalid("reports", "at most %d reports per batch", MaxReportsPerBatch)
	}
	for _, rep := range reports {
		if rep.ID == "" {
			return wire.ReportAck{}, refusal.Invalid("reports.id", "every report needs an id")
		}
	}
	ack := wire.ReportAck{Accepted: make([]string, 0, len(reports))}
	for _, rep := range reports {
		hs := r.handlers[rep.Kind]
		if len(hs) == 0 {
			// A newer agent's kind: acknowledged and dropped rather than
			// blocking its outbox.
			r.log.WarnContext(ctx, "unknown report kind dropped", "machine", m.ID, "kind", truncate(rep.Kind, 32))
		}
		for _, h := range hs {
			err := h.HandleReport(ctx, m, rep, at)
			if err == nil {
				continue
			}
			if !errors.Is(err, refusal.ErrInvalid) && !errors.Is(err, store.ErrInvalidData) {
				return wire.ReportAck{}, fmt.Errorf("apply %s report %s: %w", truncate(rep.Kind, 32), truncate(rep.ID, 64), err)
			}
			// Resending it would not help: acknowledged and dropped.
			r.log.WarnContext(ctx, "malformed report dropped", "machine", m.ID, "kind", rep.Kind,
				"report", truncate(rep.ID, 64), "err", err)
			break
		}
		ack.Accepted = append(ack.Accepted, rep.ID)
	}
	return ack, nil
}

// DecodeReport decodes a report's body into v strictly (unknown fields and
// trailing data refused); a malformed body is a refusal.ErrInvalid, so the
// report is dropped.
func DecodeReport(rep wire.Report, v any) error {
	if err := wire.DecodeStrict(rep.Body, v); err != nil {
		return refusal.Invalid("reports.body", "report %s: malformed body: %v", truncate(rep.ID, 64), err)
	}
	return nil
}

// SetFeature writes a capability's slice of the desired state under the
// agent feature's name. Two contributors writing one name is a programming
// error, reported as such.
func SetFeature(ds *wire.DesiredState, name string, v any) error {
	if _, taken := ds.Features[name]; taken {
		return fmt.Errorf("desired state feature %q written twice", name)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode desired state feature %q: %w", name, err)
	}
	if ds.Features == nil {
		ds.Features = map[string]json.RawMessage{}
	}
	ds.Features[name] = b
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// GenerationStore bumps machines' desired-state generation (store.Machines).
type GenerationStore interface {
	BumpGenerations(ctx context.Context, ids []string, at time.Time) (map[string]int64, error)
}

// Syncer tells agents that their desired state changed: the one way a
// context moves machines to a new generation and pushes the sync.
type Syncer struct {
	store  GenerationStore
	notify push.Notifier
}

// NewSyncer returns a Syncer over st and n.
func NewSyncer(st GenerationStore, n push.Notifier) *Syncer { return &Syncer{store: st, notify: n} }

// DesiredChanged bumps the generation of the machines ids, after the
// caller committed a change to their slice of the desired state, and pushes
// a sync to each. It returns machine id -> new generation (unknown ids are
// left out).
func (s *Syncer) DesiredChanged(ctx context.Context, ids []string, at time.Time) (map[string]int64, error) {
	gens, err := s.store.BumpGenerations(ctx, ids, at)
	if err != nil {
		return nil, err
	}
	s.Announce(ctx, gens)
	return gens, nil
}

// Announce pushes a sync for generations a store method already bumped in
// its own transaction (the extension tables do).
func (s *Syncer) Announce(ctx context.Context, gens map[string]int64) {
	push.NotifyAll(ctx, s.notify, gens)
}

// ByMachine groups the rows of a batch's list by their machine, keeping
// their order.
func ByMachine[T any](rows []T, machineID func(T) string) map[string][]T {
	out := map[string][]T{}
	for _, r := range rows {
		id := machineID(r)
		out[id] = append(out[id], r)
	}
	return out
}

// Scopes returns the scopes of every machine of a batch (scopesOf lists
// one machine's), each once whatever its casing, for one query of the
// rows at any of them.
func Scopes(batch []Desired, scopesOf func(store.Machine) []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range batch {
		for _, sc := range scopesOf(d.Machine) {
			if k := strings.ToLower(sc); !seen[k] {
				seen[k] = true
				out = append(out, sc)
			}
		}
	}
	return out
}
