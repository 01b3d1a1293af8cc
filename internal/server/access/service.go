// Package access is the control plane's secure-access context (DESIGN §9):
// just-in-time port openings and SSH logins through the agent.
//
// JIT: a policy at a scope ("/", a subscription, a resource group or a
// machine) names the managed ports, the allowed source ranges and the
// maximum duration; a machine follows the most specific policy above it.
// A user holding jitRequests/write at the machine asks for one port, one
// source address (default: their own address as the server sees it) and a
// duration; when the policy requires approval, another user holding
// jitRequests/approve/action approves it. An approved grant enters the
// machine's desired state with its absolute expiry; the agent opens it in
// its nftables table with a kernel timeout and reports it applied or
// failed, which is logged as the request's outcome in the requester's
// name. Revoking removes it from the desired state.
//
// SSH: the server holds the SSH user CA (package sshca). A caller with a
// login role at a machine gets a short-lived certificate for a public key
// it generated, whose one principal is "admin@MACHINE-ID" (Virtual Machine
// Administrator Login) or "user@MACHINE-ID" (User Login); the agent lists
// exactly those in sshd's principals files when root allows it with
// ssh.manage. Each relayed connection is a session: recorded when it
// starts, its bytes refreshed while it runs, its end (and who ended it)
// recorded when it stops — whichever replica holds it.
//
// Replicas: everything another replica needs is in the store. The only
// in-memory state is the set of sessions this replica splices (to close
// them when asked); a request to end one held elsewhere goes through the
// store and the replica bus.
//
// Refusals the caller can act on are *refusal.Error (and ErrAdminLogin);
// any other error is internal. The Service is safe for concurrent use.
package access

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/server/sshca"
	"github.com/corralhq/corral/internal/store"
)

// Store is what the context needs from persistence.
type Store interface {
	store.Access
	GetSubscription(ctx context.Context, name string) (store.Subscription, error)
	GetResourceGroup(ctx context.Context, sub, name string) (store.ResourceGroup, error)
	GetMachine(ctx context.Context, sub, rg, name string) (store.Machine, error)
	GetMachineByID(ctx context.Context, id string) (store.Machine, error)
}

// Syncer moves machines to a new desired-state generation and pushes the
// sync (capability.Syncer).
type Syncer interface {
	DesiredChanged(ctx context.Context, ids []string, at time.Time) (map[string]int64, error)
}

// SessionBus tells every replica to end a session (replicas.PGBus); each
// one calls EndLocal.
type SessionBus interface {
	EndSession(ctx context.Context, id string)
}

// Caller is who makes a request.
type Caller struct {
	ID   string
	Name string
	// SourceIP is the caller's address as the server sees it.
	SourceIP string
}

// Service implements the access context.
type Service struct {
	store    Store
	sync     Syncer
	ca       *sshca.CA
	clock    func() time.Time
	log      *slog.Logger
	newID    func() string
	outcomes capability.Outcomes

	// SessionRefresh is how often a running session's bytes are written
	// and its end request checked (the backstop of the bus).
	SessionRefresh time.Duration

	mu      sync.Mutex
	replica string
	bus     SessionBus
	live    map[string]*Live
}

// New returns a Service over st, bumping generations through sy, signing
// SSH certificates with ca.
func New(st Store, sy Syncer, ca *sshca.CA, clock func() time.Time, log *slog.Logger) *Service {
	return &Service{store: st, sync: sy, ca: ca, clock: clock, log: log, SessionRefresh: 10 * time.Second,
		newID: func() string { return uuid.Must(uuid.NewV7()).String() }, live: map[string]*Live{}}
}

// LogOutcomes makes the Service log what machines did with grants (applied
// or failed) in the activity log. Call it at assembly.
func (s *Service) LogOutcomes(o capability.Outcomes) { s.outcomes = o }

// Attach names this replica (its URL, recorded with the sessions it holds)
// and the bus that reaches the others (nil with one server). Call it at
// assembly, before serving.
func (s *Service) Attach(replica string, bus SessionBus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replica, s.bus = replica, bus
}

// CA is the SSH user CA.
func (s *Service) CA() *sshca.CA { return s.ca }

func (s *Service) now() time.Time { return s.clock().UTC() }

func (s *Service) outcome(ctx context.Context, o capability.Outcome) {
	if s.outcomes == nil {
		return
	}
	if o.At.IsZero() {
		o.At = s.now()
	}
	if err := s.outcomes.RecordOutcome(ctx, o); err != nil {
		s.log.ErrorContext(ctx, "record an access outcome in the activity log", "scope", o.Scope, "err", err)
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

// cleanText reports whether s is valid UTF-8 without control characters
// (tabs excepted).
func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f })
}

// capText shortens s to at most n bytes on a rune boundary.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ErrAdminLogin is returned when a caller without Virtual Machine
// Administrator Login asks for the administrator account.
var ErrAdminLogin = errors.New("administrator login refused")

func joinProblems(ps []string) string { return strings.Join(ps, "; ") }
