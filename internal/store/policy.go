package store

import (
	"context"
	"time"
)

// PolicyDefinition record: a custom policy definition (built-ins live in the
// binary). Document is the definition as given; the other fields are what
// the context read from it, for lists.
type PolicyDefinition struct {
	Name               string // unique case-insensitively
	DisplayName        string
	Description        string
	Mode               string
	Effect             string
	GuestConfiguration string
	Document           []byte
	CreatedAt          time.Time
	CreatedBy          string
}

// PolicyAssignment record. Names are unique case-insensitively across the
// store; Scope is a subscription or resource group id.
type PolicyAssignment struct {
	Name                 string
	Scope                string
	Definition           string
	Parameters           []byte // JSON, as given
	NonComplianceMessage string
	AssignmentType       string
	NotScopes            []string
	Description          string
	CreatedAt            time.Time
	CreatedBy            string
}

// PolicyExemption record.
type PolicyExemption struct {
	Name        string // unique case-insensitively
	Assignment  string
	Scope       string
	Category    string
	ExpiresAt   time.Time // zero: never
	Description string
	CreatedAt   time.Time
	CreatedBy   string
}

// PolicyMachineStatus record: one assignment's verdict on one machine as of
// its last evaluation.
type PolicyMachineStatus struct {
	Assignment        string
	MachineID         string
	MachineScope      string // the machine's resource id
	Definition        string
	ComplianceState   string
	Reason            string
	EvaluationRequest string
	EvaluatedAt       time.Time
}

// PolicyRuleState record: one assignment × machine × rule verdict.
type PolicyRuleState struct {
	Assignment      string
	MachineID       string
	MachineScope    string
	Definition      string
	Rule            string
	Title           string
	Severity        string
	ComplianceState string
	Evidence        string
	SSGRuleID       string
	Timestamp       time.Time
}

// PolicyStateChange record: a rule's state when it changed.
type PolicyStateChange struct {
	ComplianceState string
	Evidence        string
	Timestamp       time.Time
}

// PolicyStateFilter selects rule states or machine statuses. Empty fields
// match everything.
type PolicyStateFilter struct {
	ScopePrefix string // the machine's resource id at or below it
	MachineID   string
	Assignment  string // case-insensitive
	// Page.After is the opaque key of the last item of the previous page
	// (PolicyStateKey).
	Page Page
}

// PolicyStateKey is the paging key of a rule state.
func PolicyStateKey(s PolicyRuleState) string {
	return s.Assignment + "\x1f" + s.MachineID + "\x1f" + s.Rule
}

// PolicyRemediation record: a change an apply mode made on a machine.
type PolicyRemediation struct {
	ID                  string // made by the agent
	Assignment          string
	MachineID           string
	MachineScope        string
	Rule                string
	State               string // wire.Remediation*
	Result              string // the apply's result
	Message             string
	EvidenceBefore      string
	EvidenceAfter       string
	Files               []byte // JSON []wire.GuestFileChange
	CreatedAt           time.Time
	RollbackRequestedAt time.Time
	RollbackRequestedBy string
	Force               bool
	Origin              []byte
	UpdatedAt           time.Time
}

// PolicyRemediationFilter selects remediations, newest first (by id).
type PolicyRemediationFilter struct {
	ScopePrefix string
	MachineID   string
	State       string
	Page        Page // Page.After is an id
}

// PolicyEvaluation record: an on-demand evaluation of a scope.
type PolicyEvaluation struct {
	ID          string // time-ordered
	Scope       string
	RequestedAt time.Time
	RequestedBy string
}

// Policy is the policy context's persistence.
type Policy interface {
	CreatePolicyDefinition(ctx context.Context, d PolicyDefinition) error // ErrConflict
	GetPolicyDefinition(ctx context.Context, name string) (PolicyDefinition, error)
	// ListPolicyDefinitions lists by lower-cased name; Page.After is one.
	ListPolicyDefinitions(ctx context.Context, p Page) ([]PolicyDefinition, error)
	// DeletePolicyDefinition refuses (ErrNotEmpty) while an assignment uses it.
	DeletePolicyDefinition(ctx context.Context, name string) error

	// CreatePolicyAssignment: ErrConflict for a taken name, ErrNotFound when
	// the definition is not stored and builtIn is false.
	CreatePolicyAssignment(ctx context.Context, a PolicyAssignment, builtIn bool) error
	GetPolicyAssignment(ctx context.Context, name string) (PolicyAssignment, error)
	// ListPolicyAssignments lists assignments at or below scopePrefix ("" or
	// "/" for all) by lower-cased name; Page.After is one.
	ListPolicyAssignments(ctx context.Context, scopePrefix string, p Page) ([]PolicyAssignment, error)
	// PolicyAssignmentsAt returns the assignments whose scope is one of
	// scopes (a machine's ancestors), any casing.
	PolicyAssignmentsAt(ctx context.Context, scopes []string) ([]PolicyAssignment, error)
	// DeletePolicyAssignment deletes it with its exemptions, states,
	// history and remediation records.
	DeletePolicyAssignment(ctx context.Context, name string) error

	CreatePolicyExemption(ctx context.Context, e PolicyExemption) error // ErrConflict; ErrNotFound without the assignment
	GetPolicyExemption(ctx context.Context, name string) (PolicyExemption, error)
	// ListPolicyExemptions lists an assignment's exemptions ("" for all).
	ListPolicyExemptions(ctx context.Context, assignment string) ([]PolicyExemption, error)
	DeletePolicyExemption(ctx context.Context, name string) error

	// PutPolicyStates records one evaluation of an assignment on a machine
	// in one transaction: the machine's status, and its rule states
	// replacing the previous ones; a rule whose state changed (or is new)
	// gets a history entry.
	PutPolicyStates(ctx context.Context, st PolicyMachineStatus, rules []PolicyRuleState) error
	// ListPolicyStates lists rule states ordered by PolicyStateKey.
	ListPolicyStates(ctx context.Context, f PolicyStateFilter) ([]PolicyRuleState, error)
	// ListPolicyMachineStatus lists machine statuses (all of them, no page).
	ListPolicyMachineStatus(ctx context.Context, f PolicyStateFilter) ([]PolicyMachineStatus, error)
	// PolicyStateHistory lists a rule's changes, newest first.
	PolicyStateHistory(ctx context.Context, assignment, machineID, rule string, limit int) ([]PolicyStateChange, error)

	// PutPolicyRemediation inserts a remediation; one already stored (a
	// report delivered twice) is left as it is (false).
	PutPolicyRemediation(ctx context.Context, r PolicyRemediation) (bool, error)
	GetPolicyRemediation(ctx context.Context, id string) (PolicyRemediation, error)
	ListPolicyRemediations(ctx context.Context, f PolicyRemediationFilter) ([]PolicyRemediation, error)
	// UpdatePolicyRemediation replaces the mutable fields (State, Message,
	// RollbackRequestedAt/By, Force, Origin, UpdatedAt) of r.ID.
	UpdatePolicyRemediation(ctx context.Context, r PolicyRemediation) error

	CreatePolicyEvaluation(ctx context.Context, e PolicyEvaluation) error
	GetPolicyEvaluation(ctx context.Context, id string) (PolicyEvaluation, error)
	// LatestPolicyEvaluation returns the newest evaluation whose scope is
	// one of scopes (ErrNotFound if none).
	LatestPolicyEvaluation(ctx context.Context, scopes []string) (PolicyEvaluation, error)
}
