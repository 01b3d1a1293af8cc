package store

import (
	"context"
	"time"
)

// JITPolicy record: the JIT policy at one scope ("/", a subscription, a
// resource group or a machine id). Scopes are unique case-insensitively and
// stored as the caller gave them (the context passes stored names).
type JITPolicy struct {
	Scope           string
	Ports           []string // canonical "22/tcp"
	AllowedSources  []string // canonical CIDR ranges
	MaxDuration     time.Duration
	RequireApproval bool
	UpdatedAt       time.Time
	UpdatedBy       string
}

// JITGrant record: a JIT request and, once approved, the grant. MachineScope
// is the machine's resource id (for scope filters).
type JITGrant struct {
	ID            string // time-ordered, made by the caller
	MachineID     string
	MachineScope  string
	Port          string // canonical "22/tcp"
	Source        string // canonical address
	Duration      time.Duration
	Justification string
	State         string // wire.JITPending ...
	Message       string
	RequestedByID string
	RequestedBy   string
	RequestedAt   time.Time
	ApprovedByID  string
	ApprovedBy    string
	ApprovedAt    time.Time
	ExpiresAt     time.Time // zero until approved
	AppliedAt     time.Time
	RevokedBy     string
	RevokedAt     time.Time
	// Origin is the request's capability.Origin, so the machine's outcome is
	// logged in the requester's name.
	Origin    []byte
	UpdatedAt time.Time
}

// JITGrantUpdate moves a grant to State; zero fields are left as they are.
type JITGrantUpdate struct {
	State        string
	Message      string
	ApprovedByID string
	ApprovedBy   string
	ApprovedAt   time.Time
	ExpiresAt    time.Time
	AppliedAt    time.Time
	RevokedBy    string
	RevokedAt    time.Time
	At           time.Time
}

// JITGrantFilter selects grants, newest first (by id). Empty fields match
// everything.
type JITGrantFilter struct {
	ScopePrefix string   // the machine's resource id at or below it
	MachineID   string   // exact
	States      []string // any of them
	// OpenAt, when set, keeps grants that are approved or applied and
	// expire after it (what the machine should hold at that time).
	OpenAt time.Time
	Page   Page // Page.After is an id
}

// MachineAccess record: what a machine's access feature last reported.
type MachineAccess struct {
	MachineID  string
	JITState   string
	JITMessage string
	SSHState   string
	SSHMessage string
	AdminUser  string
	User       string
	HostKeys   []string
	ReportedAt time.Time
}

// SSHCertificate record: one certificate the SSH user CA issued.
type SSHCertificate struct {
	ID          string
	MachineID   string
	CallerID    string
	Caller      string
	Kind        string // wire.SSHLoginAdmin or wire.SSHLoginUser
	Login       string // the local account
	Principal   string
	Serial      string // decimal
	IssuedAt    time.Time
	ValidBefore time.Time
}

// SSHSession record: one relayed connection to a machine's port. Replica is
// the URL of the server replica splicing it; ending it from another replica
// sets EndRequestedAt and tells that one.
type SSHSession struct {
	ID               string
	MachineID        string
	MachineScope     string
	Port             int
	CallerID         string
	Caller           string
	SourceIP         string
	CertificateID    string
	Login            string
	Replica          string
	StartedAt        time.Time
	EndedAt          time.Time // zero while active
	BytesToMachine   int64
	BytesFromMachine int64
	EndRequestedAt   time.Time
	EndRequestedBy   string
	EndReason        string
	UpdatedAt        time.Time // the holding replica refreshes it while the session runs
}

// SSHSessionFilter selects sessions, newest first (by id).
type SSHSessionFilter struct {
	ScopePrefix string
	MachineID   string
	// Active keeps sessions not ended.
	Active bool
	Page   Page
}

// Access stores the secure-access context: JIT policies and grants, what
// machines report about their access feature, SSH certificates issued and
// relayed sessions.
type Access interface {
	// PutJITPolicy creates or replaces the policy at p.Scope (matched
	// case-insensitively) and reports whether it was created.
	PutJITPolicy(ctx context.Context, p JITPolicy) (created bool, err error)
	// GetJITPolicy: ErrNotFound when the scope has none.
	GetJITPolicy(ctx context.Context, scope string) (JITPolicy, error)
	// ListJITPolicies returns the policies at or below scopePrefix ("" or
	// "/": all), ordered by scope.
	ListJITPolicies(ctx context.Context, scopePrefix string) ([]JITPolicy, error)
	// JITPoliciesAt returns the policies at exactly these scopes (a
	// machine's ancestors), in no particular order.
	JITPoliciesAt(ctx context.Context, scopes []string) ([]JITPolicy, error)
	// DeleteJITPolicy: ErrNotFound when the scope has none.
	DeleteJITPolicy(ctx context.Context, scope string) error
	// MachineIDsInScope lists the ids of the machines at or below a scope:
	// sub "" means every machine; rg "" every machine of sub; name "" every
	// machine of the group (all compared case-insensitively).
	MachineIDsInScope(ctx context.Context, sub, rg, name string) ([]string, error)

	// CreateJITGrant: ErrConflict on a duplicate id, ErrNotFound when the
	// machine is missing.
	CreateJITGrant(ctx context.Context, g JITGrant) error
	GetJITGrant(ctx context.Context, id string) (JITGrant, error)
	ListJITGrants(ctx context.Context, f JITGrantFilter) ([]JITGrant, error)
	// TransitionJITGrant applies u if the grant's state is one of from and
	// reports whether it did (false: another writer moved it first).
	// ErrNotFound for an unknown id.
	TransitionJITGrant(ctx context.Context, id string, from []string, u JITGrantUpdate) (bool, error)

	// PutMachineAccess replaces what the machine reported.
	PutMachineAccess(ctx context.Context, a MachineAccess) error
	// GetMachineAccess: ErrNotFound when the machine never reported.
	GetMachineAccess(ctx context.Context, machineID string) (MachineAccess, error)

	// CreateSSHCertificate records an issued certificate.
	CreateSSHCertificate(ctx context.Context, c SSHCertificate) error
	GetSSHCertificate(ctx context.Context, id string) (SSHCertificate, error)

	// CreateSSHSession records a session that starts.
	CreateSSHSession(ctx context.Context, s SSHSession) error
	GetSSHSession(ctx context.Context, id string) (SSHSession, error)
	ListSSHSessions(ctx context.Context, f SSHSessionFilter) ([]SSHSession, error)
	// UpdateSSHSessionBytes records the bytes so far of an active session
	// (and refreshes UpdatedAt); nothing happens once it ended.
	UpdateSSHSessionBytes(ctx context.Context, id string, toMachine, fromMachine int64, at time.Time) error
	// EndSSHSession records the end of an active session; false if it had
	// ended already.
	EndSSHSession(ctx context.Context, id string, at time.Time, reason string, toMachine, fromMachine int64) (bool, error)
	// RequestSSHSessionEnd marks an active session to be ended; false if it
	// had ended or was marked already.
	RequestSSHSessionEnd(ctx context.Context, id, by string, at time.Time) (bool, error)
}
