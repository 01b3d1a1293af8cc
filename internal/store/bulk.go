package store

import (
	"context"
	"time"
)

// BulkOperation record: one request that changed an extension or started a
// run on many machines at once. ID is made by the caller; Machines is how
// many machines the request selected.
type BulkOperation struct {
	ID           string
	Subscription string
	Scope        string
	Tag          string // "KEY=VALUE" or ""
	Kind         string // wire.BulkExtensionSet, ...
	// Name is the extension's name (extension kinds) or the run's name on
	// each machine (runCommand).
	Name      string
	Publisher string
	Type      string
	Version   string
	Machines  int
	CreatedAt time.Time
	CreatedBy string
}

// BulkMachine is one machine of a bulk operation as recorded when the
// operation was made. SeqNo is the extension seqNo it set (extensionSet)
// or the delete generation (extensionDelete). State is a result fixed
// then (a refusal, or nothing to do) with its Message; "" means the result
// is the machine's extension or run as the agent reports it.
type BulkMachine struct {
	MachineID string
	SeqNo     int64
	State     string
	Message   string
}

// BulkTarget is what a bulk operation must know of one machine before it
// changes it: its extension of the operation's name (if HasExtension), how
// many extensions it has, its unfinished runs, and whether a run of the
// operation's name exists.
type BulkTarget struct {
	Extension      MachineExtension
	HasExtension   bool
	Extensions     int
	UnfinishedRuns int
	HasRun         bool
}

// BulkExtensionPut is one machine's extension as a bulk set writes it:
// inserted when ExpectSeqNo is 0 (SeqNo is then taken as the machine's
// generation + 1), else replacing the row whose SeqNo is ExpectSeqNo.
type BulkExtensionPut struct {
	Extension   MachineExtension
	ExpectSeqNo int64
}

// BulkApplied is what one bulk write did: the new generation of each
// machine it changed, and the machines it did not change because they
// changed meanwhile (the caller decides again for those).
type BulkApplied struct {
	Generations map[string]int64
	Conflicts   []string
}

// BulkMachineResult is one machine of a bulk operation with what its
// extension or run of the operation's name holds now.
type BulkMachineResult struct {
	BulkMachine
	// MachineFound is false once the machine was deleted.
	MachineFound  bool
	Subscription  string
	ResourceGroup string
	MachineName   string

	ExtensionFound bool
	ExtSeqNo       int64
	ExtDeleting    bool
	ExtDeleteGen   int64
	ExtState       string
	ExtMessage     string
	RunFound       bool
	RunState       string
	RunMessage     string
	RunExitCode    *int
}

// Fixed results bulk writes record for machines with nothing to do.
const (
	BulkDroppedMessage    = "removed before the agent acted on the extension"
	BulkNotPresentMessage = "the extension is not on the machine"
)

// BulkOperations stores bulk operations. Every write of many machines is
// done in transactions of at most BulkChunk machines; within one, the
// machines' rows, their generations and the operation's records of them
// change together.
type BulkOperations interface {
	// CreateBulkOperation: ErrConflict if the id exists.
	CreateBulkOperation(ctx context.Context, op BulkOperation) error
	// GetBulkOperation: ErrNotFound unless op id lies in subscription sub
	// (compared case-insensitively).
	GetBulkOperation(ctx context.Context, sub, id string) (BulkOperation, error)
	// ListBulkOperations lists a subscription's operations, newest first;
	// Page.After is the id of the last of the previous page.
	ListBulkOperations(ctx context.Context, sub string, p Page) ([]BulkOperation, error)
	// BulkTargets reads the machines ids (at most BulkChunk) for an
	// operation on name; machines that do not exist are left out.
	BulkTargets(ctx context.Context, ids []string, name string) (map[string]BulkTarget, error)
	// BulkSetExtensions writes puts (at most BulkChunk) and records the
	// machines changed, plus fixed, as machines of operation opID.
	BulkSetExtensions(ctx context.Context, opID string, puts []BulkExtensionPut, fixed []BulkMachine, at time.Time) (BulkApplied, error)
	// BulkDeleteExtensions asks for the removal of extension name from
	// each machine of ids (at most BulkChunk), as MarkMachineExtensionDeleting,
	// except that a row the agent never reported on is dropped at once
	// (fixed Succeeded, BulkDroppedMessage) and a machine without it is
	// fixed Succeeded with BulkNotPresentMessage. Each machine is recorded
	// with SeqNo = its delete generation, plus fixed.
	BulkDeleteExtensions(ctx context.Context, opID, name string, ids []string, fixed []BulkMachine, by string, origin []byte, at time.Time) (BulkApplied, error)
	// BulkCreateRunCommands inserts rcs (at most BulkChunk); a run whose
	// name is taken on its machine is a conflict.
	BulkCreateRunCommands(ctx context.Context, opID string, rcs []RunCommand, fixed []BulkMachine, at time.Time) (BulkApplied, error)
	// ScanBulkMachines calls fn for the operation's machines after machine
	// id after, in machine id order, until fn returns false.
	ScanBulkMachines(ctx context.Context, opID, after string, fn func(BulkMachineResult) bool) error
}

// BulkChunk is the most machines one bulk write takes.
const BulkChunk = 500
