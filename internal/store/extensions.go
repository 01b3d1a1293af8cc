package store

import (
	"context"
	"time"
)

// Publisher record: a registered extension publisher and the ed25519 key its
// catalogs are signed with. Names are unique case-insensitively.
type Publisher struct {
	Name      string
	PublicKey []byte
	CreatedAt time.Time
	CreatedBy string
}

// Package record: one uploaded extension package version. Publisher, Type and
// Version are unique together (publisher and type compared
// case-insensitively); Digest is unique. Archive is the package itself,
// stored as a blob; list and metadata reads leave it nil.
type Package struct {
	Publisher   string // the publisher's stored name
	Type        string
	Version     string // MAJOR.MINOR.PATCH
	Digest      string // "sha256:" + hex of Archive
	Size        int64
	Manifest    []byte // JSON wire.ExtensionManifest, stored verbatim
	Archive     []byte
	PublishedAt time.Time
	PublishedBy string
}

// PackageFilter selects packages. Empty fields match everything; Publisher
// and Type match case-insensitively. Lists are ordered by publisher, type
// (case-insensitively) and version (numerically); Page.After is
// "publisher/type/version" of the last package of the previous page.
type PackageFilter struct {
	Publisher string
	Type      string
	Page      Page
}

// Catalog record: a publisher's current signed catalog, kept as the exact
// bytes the publisher signed.
type Catalog struct {
	Publisher  string // the publisher's stored name
	Serial     int64
	Catalog    []byte // JSON wire.Catalog, verbatim
	Signature  []byte
	UploadedAt time.Time
	UploadedBy string
}

// ExtensionCatalog stores publishers, their packages and signed catalogs.
type ExtensionCatalog interface {
	// CreatePublisher: ErrConflict if the name is taken (any casing).
	CreatePublisher(ctx context.Context, p Publisher) error
	GetPublisher(ctx context.Context, name string) (Publisher, error)
	// ListPublishers orders by name case-insensitively.
	ListPublishers(ctx context.Context) ([]Publisher, error)

	// CreatePackage stores p under its publisher's stored name: ErrNotFound
	// if the publisher is missing, ErrConflict if the publisher/type/version
	// or the digest exists.
	CreatePackage(ctx context.Context, p Package) error
	// GetPackage returns the package without its archive.
	GetPackage(ctx context.Context, publisher, typ, version string) (Package, error)
	// GetPackageArchive returns the archive of the package with digest.
	GetPackageArchive(ctx context.Context, digest string) ([]byte, error)
	// ListPackages returns packages without their archives.
	ListPackages(ctx context.Context, f PackageFilter) ([]Package, error)

	// PutCatalog stores c as its publisher's current catalog if c.Serial is
	// greater than the current one's: ErrConflict otherwise (a replay or a
	// lost race), ErrNotFound if the publisher is missing.
	PutCatalog(ctx context.Context, c Catalog) error
	// GetCatalog returns the publisher's current catalog; ErrNotFound if it
	// has none.
	GetCatalog(ctx context.Context, publisher string) (Catalog, error)
}

// MachineExtension record: an extension desired on a machine and what the
// agent last reported about it. Names are unique per machine,
// case-insensitively. Rows go away with their machine.
type MachineExtension struct {
	MachineID string
	Name      string
	Publisher string
	Type      string
	// Version and Digest are what the machine should run (desired).
	Version string
	Digest  string
	// Settings is the public settings JSON object (nil for none).
	Settings []byte
	// ProtectedSettings is sealed to the machine's sealing key; the store
	// never sees the plaintext.
	ProtectedSettings []byte
	SeqNo             int64
	// Deleting is true once removal was requested: the extension is no
	// longer desired and the row waits for the agent to confirm.
	Deleting bool
	// DeleteGeneration is the machine generation at which removal was
	// requested (0 while not deleting).
	DeleteGeneration int64
	State            string // wire.ExtCreating...
	Message          string
	// ReportedVersion is the version the agent last reported; AgentReported
	// says whether it reported on this extension at all.
	ReportedVersion string
	AgentReported   bool
	CreatedAt       time.Time
	CreatedBy       string
	UpdatedAt       time.Time
	UpdatedBy       string
	// Origin is who asked for the current operation (JSON the caller
	// encodes; nil for none), so its outcome is logged in their name.
	Origin []byte
}

// ExtensionReport is an agent's observation applied to a machine extension.
type ExtensionReport struct {
	Version string
	State   string
	Message string
	At      time.Time
	// Outcome, when set, is asked for the report's activity entry if the
	// report applies (nil: none).
	Outcome ExtensionOutcome
}

// ExtensionReportOn is a report on one extension of one machine.
type ExtensionReportOn struct {
	MachineID, Name string
	SeqNo           int64
	// Remove marks a report on a removal in progress.
	Remove bool
	ExtensionReport
}

// ExtensionOutcome gives, from an extension's row as it was before a
// report applied to it, the activity entry of the report's outcome, or
// false for none. It runs inside the report's transaction, so the state and
// its outcome entry are stored together or not at all (a server killed
// between two writes would otherwise lose the entry for good: the agent's
// second delivery no longer changes anything).
type ExtensionOutcome func(before MachineExtension) (ActivityEntry, bool)

// MachineExtensions stores the extensions of machines. Every change of the
// desired set bumps the machine's Generation in the same transaction and
// returns the new generation.
type MachineExtensions interface {
	// PutMachineExtension inserts e, or replaces the machine's extension of
	// the same name, if that name's current SeqNo is expectSeqNo (0 = the
	// name must not exist): ErrConflict otherwise, so concurrent sets cannot
	// both win. A replaced row keeps its stored Name, CreatedAt/By and
	// AgentReported. ErrNotFound if the machine is missing.
	PutMachineExtension(ctx context.Context, e MachineExtension, expectSeqNo int64) (int64, error)
	// AddMachineExtensions inserts each e (a new extension, SeqNo taken as
	// its machine's generation + 1) unless its machine already has an
	// extension of the same publisher and type that is not being deleted,
	// or one of the same name, and bumps those machines' generations, in
	// transactions of up to 500 machines. Missing machines are skipped. It
	// returns machine id -> new generation of the machines it added to.
	AddMachineExtensions(ctx context.Context, es []MachineExtension) (map[string]int64, error)
	GetMachineExtension(ctx context.Context, machineID, name string) (MachineExtension, error)
	// ListMachineExtensions orders by name case-insensitively.
	ListMachineExtensions(ctx context.Context, machineID string) ([]MachineExtension, error)
	// ListMachineExtensionsOf lists the extensions of several machines at
	// once (their desired states are assembled together): each machine's
	// together, by name case-insensitively; machines in no particular
	// order (so for the lists below).
	ListMachineExtensionsOf(ctx context.Context, machineIDs []string) ([]MachineExtension, error)
	// MarkMachineExtensionDeleting sets Deleting, State Deleting, clears
	// Message, records DeleteGeneration = the new machine generation, and
	// returns it. ErrNotFound if there is no such extension.
	MarkMachineExtensionDeleting(ctx context.Context, machineID, name, by string, origin []byte, at time.Time) (int64, error)
	// DeleteMachineExtension removes the row of an extension the agent never
	// reported on and bumps the generation. ErrConflict (and nothing
	// changes) if the agent has reported on it: it may be on the machine,
	// so it must go through MarkMachineExtensionDeleting. ErrNotFound if
	// there is no such extension.
	DeleteMachineExtension(ctx context.Context, machineID, name string) (int64, error)
	// ReportMachineExtensions applies agents' reports, in order and in one
	// transaction (a report's outcome entry with it), each if its row is
	// in the expected phase: remove reports (Remove) apply only while
	// Deleting and with SeqNo <= the row's; other reports only while not
	// Deleting and with SeqNo == the row's. It sets AgentReported and says
	// of each report whether it applied; an unknown name did not. Agents
	// report together after a fleet-wide change: one transaction and one
	// statement per table for many reports is what keeps the store up.
	ReportMachineExtensions(ctx context.Context, reports []ExtensionReportOn) ([]bool, error)
	// RemoveMachineExtension drops a Deleting row whose removal the agent
	// confirmed (seqNo <= SeqNo), without bumping the generation: the row
	// was no longer desired. It returns whether a row went away; outcome
	// (may be nil) is asked for the removal's activity entry if one did.
	RemoveMachineExtension(ctx context.Context, machineID, name string, seqNo int64, outcome ExtensionOutcome) (bool, error)
	// DropDeletedExtensions removes, for each machine, rows still in
	// state Deleting whose DeleteGeneration <= its applied Generation: the
	// agent applied a desired state without them. It returns the names
	// dropped of each applied's machine, in one transaction for all.
	DropDeletedExtensions(ctx context.Context, applied []AppliedGeneration) ([][]string, error)
}

// RunCommand record: one run of a script or command on a machine. Names are
// unique per machine, case-insensitively. ID is a time-ordered id made by the
// caller; lists are newest first.
type RunCommand struct {
	ID         string
	MachineID  string
	Name       string
	Script     string
	Command    string
	Parameters map[string]string
	RunAsUser  string
	Timeout    time.Duration
	State      string // wire.RunPending...
	ExitCode   *int
	Stdout     string
	Stderr     string
	Message    string
	CreatedAt  time.Time
	CreatedBy  string
	StartedAt  time.Time
	FinishedAt time.Time
	UpdatedAt  time.Time
	// Origin is who asked for the run (JSON; nil for none).
	Origin []byte
	// ProtectedParameters is the JSON object of the run's protected
	// parameters sealed to the machine (package sealing); nil for none.
	// The store keeps it as given and never returns it decrypted.
	ProtectedParameters []byte
}

// RunCommandFilter selects a machine's runs. Page.After is the ID of the
// last run of the previous page (newest first).
type RunCommandFilter struct {
	MachineID string
	// Unfinished selects only Pending and Running runs.
	Unfinished bool
	Page       Page
}

// RunCommandUpdate is an agent's report on a run.
type RunCommandUpdate struct {
	State      string
	ExitCode   *int
	Stdout     string
	Stderr     string
	Message    string
	StartedAt  time.Time // zero = unchanged
	FinishedAt time.Time // zero = unchanged
	At         time.Time
}

// RunCommands stores run commands.
type RunCommands interface {
	// CreateRunCommand inserts rc and bumps the machine's generation,
	// returning it: ErrConflict if the name is taken on the machine,
	// ErrNotFound if the machine is missing.
	CreateRunCommand(ctx context.Context, rc RunCommand) (int64, error)
	GetRunCommand(ctx context.Context, machineID, name string) (RunCommand, error)
	ListRunCommands(ctx context.Context, f RunCommandFilter) ([]RunCommand, error)
	// ListUnfinishedRunCommandsOf lists the Pending and Running runs of
	// several machines at once, each machine's together, newest first and
	// at most perMachine of them.
	ListUnfinishedRunCommandsOf(ctx context.Context, machineIDs []string, perMachine int) ([]RunCommand, error)
	// UpdateRunCommand applies u unless the run is already finished
	// (Succeeded, Failed, TimedOut) or u would move a Running run back to
	// Pending; it returns whether it applied. ErrNotFound for an unknown run.
	UpdateRunCommand(ctx context.Context, machineID, name string, u RunCommandUpdate) (bool, error)
	// ExpireRunCommands fails the runs whose machine did not start them
	// within their timeout (Pending, counted from CreatedAt) or did not
	// report them finished within their timeout plus grace (Running,
	// counted from StartedAt): a run must never start long after it was
	// asked for. It bumps the generation of each machine concerned and
	// returns the runs it failed with those new generations.
	ExpireRunCommands(ctx context.Context, now time.Time, grace time.Duration) (ExpiredRuns, error)
}

// ExpiredRuns is what one ExpireRunCommands failed.
type ExpiredRuns struct {
	// Generations is machine id -> new desired-state generation.
	Generations map[string]int64
	// Runs names each run failed, as [machine id, run name].
	Runs [][2]string
}

// Messages of runs failed by ExpireRunCommands.
const (
	RunNotStartedMessage = "the machine did not start the run within its timeout (it was probably disconnected); it will not run"
	RunNoResultMessage   = "no result came back from the machine within the run's timeout; the agent stopped or lost its connection while the command ran"
)
