// Package store defines Corral's persistence contract: narrow interfaces per
// bounded context, the records they hold, and sentinel errors callers branch
// on. Implementations live in subpackages (sqlstore with its sqlite and
// postgres dialects) and must pass the conformance suite in storetest.
//
// The store never calls time.Now() and never makes IDs: callers pass both, so
// expiry and ordering are testable with an injected clock.
//
// All methods are safe for concurrent use.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/corralhq/corral/internal/resource"
)

// Sentinel errors. Implementations wrap them with %w.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a record with the same key already exists, or an
	// optimistic-concurrency check failed.
	ErrConflict = errors.New("conflict")
	// ErrNotEmpty: a scope still holds children (e.g. a resource group with machines).
	ErrNotEmpty = errors.New("not empty")
	// ErrFull: the backend has no space left to write (SQLite's
	// SQLITE_FULL, PostgreSQL's disk_full). Nothing was written; writes
	// work again once space is freed.
	ErrFull = errors.New("the store has no space left to write")
	// ErrUnavailable: the backend cannot be reached (PostgreSQL down,
	// restarting or the connection to it lost). The operation may or may
	// not have been applied when the connection broke mid-way; retrying
	// later is the answer, and readiness reports the same.
	ErrUnavailable = errors.New("the store cannot be reached")
	// ErrInvalidData: the backend cannot keep a value as given (PostgreSQL's
	// data exceptions, e.g. a NUL character in text). Retrying the same
	// write fails the same way.
	ErrInvalidData = errors.New("the store cannot keep a value as given")
)

// Unavailable reports whether err says the store cannot be reached: such an
// error would fail every key of a batch alike (batch.Queue's Shared).
func Unavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// Store is everything the control plane persists.
type Store interface {
	Subscriptions
	ResourceGroups
	Machines
	Identities
	Authorization
	Activity
	ExtensionCatalog
	MachineExtensions
	RunCommands
	BulkOperations
	Protection
	Updates
	Access
	Policy
	// Ping checks the backend is reachable (readiness).
	Ping(ctx context.Context) error
	// ProbeWrite proves the backend can still write: it replaces one small
	// row (a few KiB, so that a full disk shows) stamped with at. It fails
	// with ErrFull when there is no space left.
	ProbeWrite(ctx context.Context, at time.Time) error
	// MarkBootstrapped records, once, that first-start bootstrap happened:
	// true if this call set the marker, false if it was set before (by
	// this or another replica).
	MarkBootstrapped(ctx context.Context, at time.Time) (bool, error)
	// BootstrapUser sets the bootstrap marker and creates u with its
	// grants, in one transaction: false (and nothing stored) if the marker
	// was set before, so the first user is made once in the life of a
	// store; ErrConflict as CreateUser.
	BootstrapUser(ctx context.Context, u User, grants []RoleAssignment, at time.Time) (bool, error)
	// Snapshot runs fn with a context in which every read through this
	// store sees one consistent snapshot (a read-only transaction), as a
	// machine's desired state is assembled: no half of a concurrent change,
	// and one transaction's cost instead of one per query. fn must only
	// read (a write through the store still goes to the write pool, and
	// the snapshot would not see it). A Snapshot inside another runs in
	// the outer one.
	Snapshot(ctx context.Context, fn func(ctx context.Context) error) error
	// Close releases the backend. Calls after Close fail.
	Close() error
}

// Page asks for one page of a list ordered by the list's key.
// After is the exclusive lower bound (the last key of the previous page);
// Limit <= 0 means the implementation default (100); the maximum is
// MaxPageSize+1, so that a caller serving pages of MaxPageSize can ask for
// one more item to learn whether another page follows (FetchPage).
type Page struct {
	After string
	Limit int
}

// Page sizes: Limit <= 0 asks for DefaultPageSize; a store answers at most
// MaxStoreLimit items however many are asked for. MaxPageSize is the largest
// page the API serves.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
	MaxStoreLimit   = MaxPageSize + 1
)

// PageOf is one page of a list and the key of the next page ("" on the
// last), as contexts return it.
type PageOf[T any] struct {
	Items []T
	After string
}

// FetchPage reads one page of at most p.Limit items through list, asking it
// for one more to learn whether a page follows; after is then the key (by
// key) of the page's last item, else "". list receives p with Limit raised
// by one. It is the one place the "one more" rule is written, for every
// context that serves paged lists.
func FetchPage[R any](p Page, list func(Page) ([]R, error), key func(R) string) (items []R, after string, err error) {
	size := p.Limit
	switch {
	case size <= 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	p.Limit = size + 1
	rs, err := list(p)
	if err != nil {
		return nil, "", err
	}
	if len(rs) > size {
		rs = rs[:size]
		after = key(rs[size-1])
	}
	return rs, after, nil
}

// MaxPageBytes bounds the records of one page of a list whose records are
// large (machines with their reported documents, run commands with their
// output): TrimPage cuts a page there, whatever its item count, so a list
// answer stays a few megabytes however much each record holds.
const MaxPageBytes = 8 << 20

// TrimPage keeps the longest prefix of items whose sizes add up to at most
// budget (the first item always, however large), and returns the next-page
// key: key of the last item kept when it cut, else after unchanged.
func TrimPage[R any](items []R, after string, key func(R) string, size func(R) int, budget int) ([]R, string) {
	total := 0
	for i, it := range items {
		total += size(it)
		if total > budget && i > 0 {
			return items[:i], key(items[i-1])
		}
	}
	return items, after
}

// Subscription record.
type Subscription struct {
	Name        string
	DisplayName string
	CreatedAt   time.Time
	CreatedBy   string
}

// Subscriptions stores the top-level scopes. Names are case-insensitive
// unique, like resource group names.
type Subscriptions interface {
	CreateSubscription(ctx context.Context, s Subscription) error // ErrConflict if it exists
	GetSubscription(ctx context.Context, name string) (Subscription, error)
	ListSubscriptions(ctx context.Context) ([]Subscription, error)
}

// ResourceGroup record.
type ResourceGroup struct {
	Subscription string
	Name         string
	Tags         map[string]string
	CreatedAt    time.Time
	CreatedBy    string
}

// ResourceGroups stores resource groups. Names are case-insensitive unique
// within a subscription (stored as given, compared lower-cased). A group
// records its subscription's stored name, whatever casing the caller used;
// machines likewise record their parents' stored names.
type ResourceGroups interface {
	CreateResourceGroup(ctx context.Context, g ResourceGroup) error // ErrNotFound if the subscription is missing, ErrConflict if it exists
	GetResourceGroup(ctx context.Context, sub, name string) (ResourceGroup, error)
	// ListResourceGroups orders by name; Page.After is a name.
	ListResourceGroups(ctx context.Context, sub string, p Page) ([]ResourceGroup, error)
	// DeleteResourceGroup removes an empty group and, in the same
	// transaction, every role assignment at its scope or below it: a group
	// re-created under the same name starts with no grants. ErrNotEmpty
	// while it holds machines.
	DeleteResourceGroup(ctx context.Context, sub, name string) error
}

// Machine record. Properties, AgentConfig and Cloud are stored as JSON
// documents the store does not interpret, except for the indexed columns
// (Environment, OSName) used by filters.
type Machine struct {
	ID            string // machine UUID, unique
	Subscription  string
	ResourceGroup string
	Name          string
	Tags          map[string]string
	Status        string // wire.StatusConnected...
	LastHeartbeat time.Time
	AgentVersion  string
	Environment   string
	OSName        string
	Properties    []byte // JSON wire.MachineProperties
	AgentConfig   []byte // JSON wire.AgentConfig
	// CertSerial is the decimal serial of the one client certificate the
	// machine may present; renewal replaces it atomically.
	CertSerial   string
	CertNotAfter time.Time
	// Generation increases with every change of desired state.
	Generation int64
	// AppliedGeneration is the generation the agent last reported applied.
	AppliedGeneration int64
	// SealingKey is the machine's X25519 public key that protected
	// extension settings are sealed to (nil for agents older than protocol
	// version 2). It is set at connect.
	SealingKey []byte
	CreatedAt  time.Time
	CreatedBy  string
	// CreatedByID is the principal id that onboarded the machine (quotas
	// count by it; CreatedBy is its display name).
	CreatedByID string
	UpdatedAt   time.Time
}

// ResourceID is the machine's resource id.
func (m Machine) ResourceID() resource.ID {
	return resource.Machine(m.Subscription, m.ResourceGroup, m.Name)
}

// MachineFilter selects machines. Empty fields match everything. Subscription
// is required; ResourceGroup narrows to one group.
type MachineFilter struct {
	Subscription  string
	ResourceGroup string
	Environment   string // exact (callers pass the canonical spelling)
	Status        string // exact
	OSName        string // exact, case-insensitive
	NameContains  string // case-insensitive substring
	TagKey        string // machines having this tag key ...
	TagValue      string // ... with this value when non-empty
	Page          Page   // ordered by (resource group, name) lower-cased; After = "rg/name"
	// WithoutInventory leaves Properties and AgentConfig nil (a bulk
	// operation's selection reads thousands of machines for their ids
	// and keys).
	WithoutInventory bool
}

// Heartbeat is one machine's liveness signal, written in batches.
type Heartbeat struct {
	MachineID    string
	At           time.Time
	AgentVersion string
}

// Machines stores machine resources.
type Machines interface {
	// CreateMachine inserts m. ErrNotFound if the resource group is missing,
	// ErrConflict if a machine of that name exists in the group (unless
	// replaceExpired and the existing one is Expired: then it is replaced).
	CreateMachine(ctx context.Context, m Machine, replaceExpired bool) error
	GetMachine(ctx context.Context, sub, rg, name string) (Machine, error)
	GetMachineByID(ctx context.Context, id string) (Machine, error)
	// GetMachinesForAgent reads machines by id without their inventory
	// (Properties and AgentConfig nil), in no particular order, leaving
	// out those that do not exist: what authenticating the requests of
	// their agents needs (those of agents that ask at the same time read
	// together), without copying kilobytes per request.
	GetMachinesForAgent(ctx context.Context, ids []string) ([]Machine, error)
	ListMachines(ctx context.Context, f MachineFilter) ([]Machine, error)
	// CountMachinesByStatus is used by metrics: status -> count, all subscriptions.
	CountMachinesByStatus(ctx context.Context) (map[string]int, error)
	// CountMachinesCreatedBy counts the machines principalID onboarded
	// that still exist and were created at or after since (zero: all).
	CountMachinesCreatedBy(ctx context.Context, principalID string, since time.Time) (int, error)
	// UpdateMachineTags replaces the tags and bumps Generation; returns the new generation.
	UpdateMachineTags(ctx context.Context, id string, tags map[string]string, at time.Time) (int64, error)
	// BumpGenerations increments the Generation of every machine in ids
	// (and sets its UpdatedAt to at) in one transaction, and returns
	// machine id -> new generation. Unknown ids are left out of the map;
	// an id given twice is bumped once. A context whose slice of the
	// desired state lives outside the machine and extension tables calls
	// it after changing that slice, then pushes a sync.
	BumpGenerations(ctx context.Context, ids []string, at time.Time) (map[string]int64, error)
	// UpdateMachineReport stores what the agent reported. Nil slices leave a field unchanged.
	UpdateMachineReport(ctx context.Context, id string, r MachineReport) error
	// RecordAppliedGenerations stores agents' reports that they applied
	// a desired state, in one transaction: AppliedGeneration (unless 0),
	// AgentVersion (unless "") and UpdatedAt. It says of each report
	// whether its machine exists; of two on one machine the later holds.
	// Every agent reports after every sync: after a fleet-wide change,
	// one statement for many is what keeps the store up.
	RecordAppliedGenerations(ctx context.Context, rs []AppliedGeneration) ([]bool, error)
	// UpdateMachineCert records a renewed certificate for the machine.
	UpdateMachineCert(ctx context.Context, id, serial string, notAfter, at time.Time) error
	// RecordHeartbeats applies a batch in one transaction: LastHeartbeat and
	// status Connected (unless Expired). Unknown ids are ignored.
	// LastHeartbeat never moves backwards, so batches may land out of order.
	RecordHeartbeats(ctx context.Context, hs []Heartbeat) error
	// MarkStale moves Connected machines whose LastHeartbeat is before
	// disconnectedBefore to Disconnected, and any non-Expired machine whose
	// LastHeartbeat is before expiredBefore to Expired. It returns the ids
	// whose status changed.
	MarkStale(ctx context.Context, disconnectedBefore, expiredBefore time.Time) ([]string, error)
	// DeleteMachine removes the machine with its extensions, run commands
	// and the role assignments at its scope or below, in one transaction.
	DeleteMachine(ctx context.Context, id string) error
}

// MachineReport is a partial update of agent-reported fields.
// AppliedGeneration is an agent's report that it applied its machine's
// desired state of Generation.
type AppliedGeneration struct {
	MachineID    string
	Generation   int64  // 0 = unchanged
	AgentVersion string // "" = unchanged
	At           time.Time
}

type MachineReport struct {
	AgentVersion      string // "" = unchanged
	Environment       string // "" = unchanged
	OSName            string // "" = unchanged
	Properties        []byte // nil = unchanged
	AgentConfig       []byte // nil = unchanged
	AppliedGeneration int64  // 0 = unchanged
	At                time.Time
}

// User record. PasswordHash is an encoded argon2id hash.
type User struct {
	ID           string
	Name         string // unique, case-insensitive
	PasswordHash string
	Disabled     bool
	// MustChangePassword: the user may sign in only to change the
	// password (set for a generated or reset password on request).
	MustChangePassword bool
	// SessionsValidAfter: access tokens issued before it no longer hold
	// (a password change or a disable ends every session).
	SessionsValidAfter time.Time
	CreatedAt          time.Time
}

// ServicePrincipal record. SecretHash is a hash of the high-entropy secret.
type ServicePrincipal struct {
	ClientID    string // UUID; also the principal id
	DisplayName string
	SecretHash  string
	ExpiresAt   time.Time
	CreatedAt   time.Time
	CreatedBy   string
}

// APIToken record. Hash is a hash of the random token; the token itself is
// never stored.
type APIToken struct {
	ID          string
	Name        string
	PrincipalID string
	Hash        string // unique
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// DeviceCode record (RFC 8628). DeviceCodeHash is a hash of the device code
// the agent polls with; UserCode is what the operator approves.
type DeviceCode struct {
	UserCode       string // unique, upper-case
	DeviceCodeHash string // unique
	Subscription   string
	ResourceGroup  string
	MachineName    string
	SourceIP       string
	ExpiresAt      time.Time
	ApprovedBy     string // principal id; "" while pending
	ApprovedAt     time.Time
	Consumed       bool
	CreatedAt      time.Time
}

// Identities stores users, service principals, API tokens and device codes.
type Identities interface {
	// CreateUser inserts u and the role assignments grants (of u), in one
	// transaction: ErrConflict on a duplicate name (or assignment), and
	// then nothing is stored.
	CreateUser(ctx context.Context, u User, grants ...RoleAssignment) error
	GetUser(ctx context.Context, id string) (User, error)
	GetUserByName(ctx context.Context, name string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// SetUserPassword replaces the password hash, sets MustChangePassword
	// and moves SessionsValidAfter to at. ErrNotFound for an unknown id.
	SetUserPassword(ctx context.Context, id, hash string, mustChange bool, at time.Time) error
	// SetUserDisabled disables or enables the user; disabling also moves
	// SessionsValidAfter to at. ErrNotFound for an unknown id.
	SetUserDisabled(ctx context.Context, id string, disabled bool, at time.Time) error
	// DeleteUser removes the user with its API tokens and role
	// assignments, in one transaction: nothing it held outlives it.
	// ErrNotFound (and nothing changes) if there is no such user.
	DeleteUser(ctx context.Context, id string) error

	CreateServicePrincipal(ctx context.Context, sp ServicePrincipal) error
	GetServicePrincipal(ctx context.Context, clientID string) (ServicePrincipal, error)
	ListServicePrincipals(ctx context.Context) ([]ServicePrincipal, error)
	// DeleteServicePrincipal removes the service principal with its API
	// tokens and role assignments, in one transaction. ErrNotFound (and
	// nothing changes) if there is no such service principal.
	DeleteServicePrincipal(ctx context.Context, clientID string) error

	CreateAPIToken(ctx context.Context, t APIToken) error
	GetAPITokenByHash(ctx context.Context, hash string) (APIToken, error)
	ListAPITokens(ctx context.Context, principalID string) ([]APIToken, error)
	DeleteAPIToken(ctx context.Context, id string) error

	CreateDeviceCode(ctx context.Context, d DeviceCode) error
	GetDeviceCodeByUserCode(ctx context.Context, userCode string) (DeviceCode, error)
	GetDeviceCodeByHash(ctx context.Context, hash string) (DeviceCode, error)
	ListPendingDeviceCodes(ctx context.Context, now time.Time) ([]DeviceCode, error)
	// ApproveDeviceCode sets ApprovedBy/At if the code is pending and not
	// expired at `at`; ErrNotFound otherwise.
	ApproveDeviceCode(ctx context.Context, userCode, approvedBy string, at time.Time) error
	// ConsumeDeviceCode marks an approved code used, exactly once: a second
	// call returns ErrConflict, as does a code not yet approved; an unknown
	// code is ErrNotFound. Expiry is the caller's check.
	ConsumeDeviceCode(ctx context.Context, hash string) error
	// CountPendingDeviceCodes counts codes neither approved, consumed nor
	// expired at now.
	CountPendingDeviceCodes(ctx context.Context, now time.Time) (int, error)
	// DeleteExpiredDeviceCodes removes every code that expired before
	// before (approved, consumed or not) and returns how many.
	DeleteExpiredDeviceCodes(ctx context.Context, before time.Time) (int, error)
}

// RoleDefinition record (custom roles; built-ins live in code).
type RoleDefinition struct {
	ID               string
	Name             string // unique, case-insensitive
	Description      string
	Actions          []string
	NotActions       []string
	AssignableScopes []string
	CreatedAt        time.Time
	CreatedBy        string
}

// RoleAssignment record.
type RoleAssignment struct {
	ID            string
	PrincipalID   string
	PrincipalType string
	RoleID        string
	Scope         string // "/" or a resource id prefix, lower-cased on compare
	CreatedAt     time.Time
	CreatedBy     string
}

// RoleAssignmentFilter selects assignments; empty fields match all.
type RoleAssignmentFilter struct {
	PrincipalID string
	RoleID      string
	// ScopePrefix matches assignments at this scope or below it.
	ScopePrefix string
}

// Authorization stores custom roles and role assignments.
type Authorization interface {
	CreateRoleDefinition(ctx context.Context, r RoleDefinition) error // ErrConflict on duplicate id or name
	GetRoleDefinition(ctx context.Context, id string) (RoleDefinition, error)
	ListRoleDefinitions(ctx context.Context) ([]RoleDefinition, error)
	UpdateRoleDefinition(ctx context.Context, r RoleDefinition) error
	DeleteRoleDefinition(ctx context.Context, id string) error // ErrNotEmpty while assigned

	// CreateRoleAssignment: ErrConflict if the same principal/role/scope exists.
	CreateRoleAssignment(ctx context.Context, a RoleAssignment) error
	GetRoleAssignment(ctx context.Context, id string) (RoleAssignment, error)
	ListRoleAssignments(ctx context.Context, f RoleAssignmentFilter) ([]RoleAssignment, error)
	DeleteRoleAssignment(ctx context.Context, id string) error
}

// ActivityEntry record. Append-only: there is no update, and the only
// delete is retention's PurgeActivity of the oldest entries.
type ActivityEntry struct {
	ID            string // sortable (time-ordered) unique id, made by the caller
	Time          time.Time
	CallerID      string
	Caller        string
	CallerType    string
	Action        string
	Scope         string
	Result        string
	Status        int
	Message       string
	CorrelationID string
	SourceIP      string
	Method        string
	Path          string
	// Seq, PrevHash and Hash are set when the entry is sealed into the
	// chain (SealActivity); zero before.
	Seq      int64
	PrevHash string
	Hash     string
}

// ActivityFilter selects entries, newest first. ScopePrefix matches the
// scope and everything below it.
type ActivityFilter struct {
	ScopePrefix string
	CallerID    string // principal id or caller display name
	Action      string // exact, or a prefix ending in "*"
	Result      string
	From, To    time.Time // zero = unbounded; From inclusive, To exclusive
	Page        Page      // After = the last entry id of the previous page (ids sort by time)
	// Ascending lists oldest first (After is then an exclusive lower bound).
	Ascending bool
}

// Activity stores the activity log.
type Activity interface {
	AppendActivity(ctx context.Context, entries ...ActivityEntry) error
	ListActivity(ctx context.Context, f ActivityFilter) ([]ActivityEntry, error)
	// ListActivityBefore returns up to limit (at most MaxStoreLimit) of the
	// oldest entries whose Time is before before, oldest first, for
	// retention to export them before PurgeActivity.
	ListActivityBefore(ctx context.Context, before time.Time, limit int) ([]ActivityEntry, error)
	// PurgeActivity deletes the entries whose id is at most throughID and
	// whose Time is before before — the prefix ListActivityBefore returned
	// and retention exported — and returns how many. It is the activity
	// log's only delete.
	PurgeActivity(ctx context.Context, throughID string, before time.Time) (int, error)
	// SealActivity gives up to limit unsealed entries, oldest id first,
	// their place in the chain: Seq after the head, PrevHash the head's
	// hash, Hash = hash(prev, seq, entry); it moves the head and returns how
	// many it sealed. Sealers on several replicas at once are serialized
	// (the head is locked for the transaction), so Seq has no gaps or
	// repeats. Sealing sets only those three columns: an entry's content is
	// never updated.
	SealActivity(ctx context.Context, limit int, hash func(prev string, seq int64, e ActivityEntry) string) (int, error)
	// ActivityChain returns the chain's base (what the oldest kept entry
	// follows: Seq 0, "" until retention purges) and head (the last sealed).
	ActivityChain(ctx context.Context) (base, head ChainLink, err error)
	// ListActivityChain returns up to limit sealed entries with Seq >
	// afterSeq, in Seq order.
	ListActivityChain(ctx context.Context, afterSeq int64, limit int) ([]ActivityEntry, error)
}

// ChainLink is a position of the activity chain.
type ChainLink struct {
	Seq  int64
	Hash string
}
