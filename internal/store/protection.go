package store

import (
	"context"
	"time"
)

// ProtectionScope is endpoint protection enabled on a scope (a
// subscription or resource group): every machine in it gets the
// Corral/EndpointProtection extension with Settings. Scope is the resource
// path as the caller gave it; it is unique case-insensitively.
type ProtectionScope struct {
	Scope    string
	Settings []byte // JSON wire.ProtectionSettings
	Schedule []byte // JSON wire.ProtectionSchedule, nil for none
	// Machines is how many machines the last change installed it on.
	Machines  int
	CreatedAt time.Time
	CreatedBy string
	UpdatedAt time.Time
	UpdatedBy string
}

// SignatureSet is one signed signature set. Versions grow by one with each
// import. Set is the signed file; lists and Latest leave it nil.
type SignatureSet struct {
	Version   int64
	Header    []byte // JSON sigset.Header (what was signed)
	Set       []byte
	Size      int64
	SHA256    string // hex of Set
	CreatedAt time.Time
	CreatedBy string
}

// Alert is one detection reported by a machine. (MachineID, DetectionID) is
// unique: a detection reported twice is one alert. Alerts outlive their
// machine (no foreign key): MachineResource and MachineName say where it
// was.
type Alert struct {
	ID              string // time-ordered, made by the caller
	MachineID       string
	MachineResource string // resource id of the machine, for scope filters
	MachineName     string
	DetectionID     string
	Path            string
	Member          string
	SHA256          string
	Signature       string
	Action          string
	Error           string
	Source          string
	ScanID          string
	Process         string
	PID             int
	QuarantineID    string
	Time            time.Time // when the machine detected it
	State           string    // wire.AlertActive or wire.AlertAcknowledged
	AcknowledgedAt  time.Time
	AcknowledgedBy  string
	ReceivedAt      time.Time
}

// AlertFilter selects alerts, newest first (by Time, then ID). Empty fields
// match everything.
type AlertFilter struct {
	// ScopePrefix matches the machine's resource id at or below it.
	ScopePrefix string
	// MachineName matches case-insensitively.
	MachineName string
	State       string
	// Page.After is the ID of the last alert of the previous page.
	Page Page
}

// ProtectionScan is an on-demand or scheduled scan of a machine.
type ProtectionScan struct {
	ID        string // unique per machine, time-ordered
	MachineID string
	Type      string
	Paths     []string
	State     string // wire.ScanPending, ...
	Message   string
	Scheduled bool
	Files     int64
	Bytes     int64
	Infected  int64
	Errors    int64
	// Origin is who asked (capability.Origin, encoded).
	Origin     []byte
	CreatedAt  time.Time
	CreatedBy  string
	StartedAt  time.Time
	FinishedAt time.Time
	UpdatedAt  time.Time
}

// ScanFilter selects a machine's scans, newest first.
type ScanFilter struct {
	MachineID  string
	Unfinished bool // Pending and Running only
	// Page.After is the ID of the last scan of the previous page.
	Page Page
}

// ScanUpdate is a machine's report on a scan.
type ScanUpdate struct {
	State      string
	Message    string
	Files      int64
	Bytes      int64
	Infected   int64
	Errors     int64
	StartedAt  time.Time // zero: unchanged
	FinishedAt time.Time // zero: unchanged
	At         time.Time
}

// ProtectionRestore is a quarantine restore requested from the server.
type ProtectionRestore struct {
	ID           string
	MachineID    string
	QuarantineID string
	NoExclusion  bool
	Force        bool
	State        string
	Message      string
	Path         string
	Origin       []byte
	CreatedAt    time.Time
	CreatedBy    string
	FinishedAt   time.Time
}

// MachineProtection is what a machine last reported about its protection:
// its status and its quarantine, each a JSON document the store does not
// interpret (nil: never reported).
type MachineProtection struct {
	MachineID    string
	Status       []byte // JSON wire.ProtectionStatus
	StatusAt     time.Time
	Quarantine   []byte // JSON []wire.QuarantineEntry
	QuarantineAt time.Time
}

// Protection stores endpoint protection: enabled scopes, signature sets,
// alerts, scans, restores and each machine's reported status. Scans,
// restores and machine status go with their machine; alerts stay.
type Protection interface {
	// PutProtectionScope creates or replaces the scope's row (matched
	// case-insensitively; CreatedAt/By of an existing row are kept) and
	// reports whether it was created.
	PutProtectionScope(ctx context.Context, s ProtectionScope) (bool, error)
	// GetProtectionScope: ErrNotFound if protection is not enabled there.
	GetProtectionScope(ctx context.Context, scope string) (ProtectionScope, error)
	// DeleteProtectionScope: ErrNotFound if it is not enabled.
	DeleteProtectionScope(ctx context.Context, scope string) error
	// ListProtectionScopes returns every enabled scope, by scope.
	ListProtectionScopes(ctx context.Context) ([]ProtectionScope, error)

	// CreateSignatureSet stores s: ErrConflict if its version exists.
	CreateSignatureSet(ctx context.Context, s SignatureSet) error
	// LatestSignatureSet returns the highest version without its Set;
	// ErrNotFound if none was imported.
	LatestSignatureSet(ctx context.Context) (SignatureSet, error)
	// GetSignatureSet returns one version with its Set.
	GetSignatureSet(ctx context.Context, version int64) (SignatureSet, error)
	// ListSignatureSets returns sets newest first without their Set, at
	// most p.Limit; p.After is a version (as decimal) of the previous page.
	ListSignatureSets(ctx context.Context, p Page) ([]SignatureSet, error)

	// CreateAlert inserts a unless its (MachineID, DetectionID) exists, and
	// reports whether it did.
	CreateAlert(ctx context.Context, a Alert) (bool, error)
	GetAlert(ctx context.Context, id string) (Alert, error)
	ListAlerts(ctx context.Context, f AlertFilter) ([]Alert, error)
	// AcknowledgeAlert moves an Active alert to Acknowledged and reports
	// whether it changed it (false: it was acknowledged already).
	// ErrNotFound if there is no such alert.
	AcknowledgeAlert(ctx context.Context, id, by string, at time.Time) (bool, error)
	// CountActiveAlerts returns machine id -> active alerts, for ids.
	CountActiveAlerts(ctx context.Context, machineIDs []string) (map[string]int, error)

	// CreateScan inserts s and bumps its machine's generation in one
	// transaction, returning the new generation: ErrNotFound if the
	// machine is gone, ErrConflict if the id exists.
	CreateScan(ctx context.Context, s ProtectionScan) (int64, error)
	// RecordScan inserts a scan the machine started itself (scheduled),
	// without changing the generation: ErrConflict if the id exists.
	RecordScan(ctx context.Context, s ProtectionScan) error
	GetScan(ctx context.Context, machineID, id string) (ProtectionScan, error)
	ListScans(ctx context.Context, f ScanFilter) ([]ProtectionScan, error)
	// ListUnfinishedScansOf and ListUnfinishedRestoresOf list the Pending
	// and Running scans or restores of several machines at once, each
	// machine's together, newest first and at most perMachine of them.
	ListUnfinishedScansOf(ctx context.Context, machineIDs []string, perMachine int) ([]ProtectionScan, error)
	ListUnfinishedRestoresOf(ctx context.Context, machineIDs []string, perMachine int) ([]ProtectionRestore, error)
	// UpdateScan applies a report unless the scan is already finished, and
	// reports whether it did; ErrNotFound if there is no such scan.
	UpdateScan(ctx context.Context, machineID, id string, u ScanUpdate) (bool, error)

	// CreateRestore inserts r and bumps the machine's generation, as
	// CreateScan.
	CreateRestore(ctx context.Context, r ProtectionRestore) (int64, error)
	GetRestore(ctx context.Context, machineID, id string) (ProtectionRestore, error)
	// ListRestores returns a machine's restores newest first (unfinished
	// only if asked).
	ListRestores(ctx context.Context, machineID string, unfinished bool, p Page) ([]ProtectionRestore, error)
	// FinishRestore records a restore's outcome once and reports whether it
	// did; ErrNotFound if there is no such restore.
	FinishRestore(ctx context.Context, machineID, id, state, message, path string, at time.Time) (bool, error)

	// PutMachineProtection records what the machine reported: non-nil
	// Status and Quarantine replace the stored ones (with their times).
	// ErrNotFound if the machine is gone.
	PutMachineProtection(ctx context.Context, p MachineProtection) error
	// GetMachineProtection: ErrNotFound if the machine never reported.
	GetMachineProtection(ctx context.Context, machineID string) (MachineProtection, error)
	// ListMachineProtection returns what is stored for ids (missing ones
	// are left out); nil ids means every machine that ever reported.
	ListMachineProtection(ctx context.Context, machineIDs []string) (map[string]MachineProtection, error)
}
