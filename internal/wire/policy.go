package wire

import (
	"encoding/json"
	"time"
)

// FeatureGuestConfiguration is the agent feature that evaluates machine
// configurations (guest rules) inside the OS: its folder
// STATE/features/guestConfiguration/ and its key in DesiredState.Features.
const FeatureGuestConfiguration = "guestConfiguration"

// Guest configuration assignment types, as Azure spells them.
const (
	AssignmentTypeAudit               = "Audit"
	AssignmentTypeApplyAndMonitor     = "ApplyAndMonitor"
	AssignmentTypeApplyAndAutoCorrect = "ApplyAndAutoCorrect"
)

// Compliance states of a rule, a machine or an assignment.
const (
	ComplianceCompliant    = "Compliant"
	ComplianceNonCompliant = "NonCompliant"
	ComplianceExempt       = "Exempt"
	ComplianceUnknown      = "Unknown"
)

// Exemption categories.
const (
	ExemptionWaiver    = "Waiver"
	ExemptionMitigated = "Mitigated"
)

// Policy types of a definition.
const (
	PolicyTypeBuiltIn = "BuiltIn"
	PolicyTypeCustom  = "Custom"
)

// Remediation states.
const (
	RemediationApplied           = "Applied"
	RemediationRollbackRequested = "RollbackRequested"
	RemediationRolledBack        = "RolledBack"
	RemediationRollbackFailed    = "RollbackFailed"
)

// Evaluation triggers an agent reports beyond TriggerPeriodic and
// TriggerOnDemand.
const (
	TriggerAssignment = "AssignmentChange"
	TriggerFileChange = "FileChange"
)

// Report kinds of the guest configuration feature.
const (
	// ReportGuestCompliance: one assignment's rule results on a machine
	// (GuestComplianceReport); superseded per assignment.
	ReportGuestCompliance = "guestCompliance"
	// ReportGuestRemediation: a remediation an apply mode made
	// (GuestRemediationReport).
	ReportGuestRemediation = "guestRemediation"
	// ReportGuestRollback: what became of a requested rollback
	// (GuestRollbackReport).
	ReportGuestRollback = "guestRollback"
)

// GuestConfigurationDesired is the guest configuration slice of a machine's
// desired state: the machine configurations assigned to it, rollbacks asked
// for, and the newest on-demand evaluation request that covers it.
type GuestConfigurationDesired struct {
	Assignments []GuestAssignment `json:"assignments"`
	Rollbacks   []GuestRollback   `json:"rollbacks,omitempty"`
	// EvaluationRequest is the id of the newest on-demand evaluation of a
	// scope holding the machine: a new id makes the agent evaluate now.
	EvaluationRequest string `json:"evaluationRequest,omitempty"`
}

// GuestAssignment is one policy assignment's machine configuration, as the
// agent evaluates it. Configuration names a built-in machine configuration
// the agent carries (the agent never runs rules it was sent).
type GuestAssignment struct {
	// ID is the assignment's resource id.
	ID             string `json:"id"`
	Name           string `json:"name"`
	Definition     string `json:"definition"`
	Configuration  string `json:"configuration"`
	Version        string `json:"version,omitempty"`
	AssignmentType string `json:"assignmentType"`
	// Rules, when set, limits the configuration to these rule ids.
	Rules []string `json:"rules,omitempty"`
}

// GuestRollback asks the agent to undo one remediation.
type GuestRollback struct {
	ID    string `json:"id"`
	Force bool   `json:"force,omitempty"`
	// RequestedAt tells a new request for the same remediation (after a
	// refusal) from the one already tried.
	RequestedAt time.Time `json:"requestedAt"`
}

// GuestRuleResult is one rule's verdict with evidence in words.
type GuestRuleResult struct {
	Rule            string `json:"rule"`
	Title           string `json:"title,omitempty"`
	Severity        string `json:"severity,omitempty"`
	ComplianceState string `json:"complianceState"`
	Evidence        string `json:"evidence"`
	SSGRuleID       string `json:"ssgRuleId,omitempty"`
}

// GuestComplianceReport is ReportGuestCompliance's body.
type GuestComplianceReport struct {
	Assignment     string `json:"assignment"`
	Configuration  string `json:"configuration"`
	AssignmentType string `json:"assignmentType"`
	Trigger        string `json:"trigger"`
	// EvaluationRequest is the on-demand request this evaluation answers
	// (the newest the agent had seen).
	EvaluationRequest string `json:"evaluationRequest,omitempty"`
	// Reason says why every rule is Unknown (the local configuration turned
	// guest configuration off), empty otherwise.
	Reason      string            `json:"reason,omitempty"`
	EvaluatedAt time.Time         `json:"evaluatedAt"`
	Rules       []GuestRuleResult `json:"rules"`
}

// GuestFileChange is one file a remediation changed: metadata only (the
// backup itself stays on the machine).
type GuestFileChange struct {
	Path           string `json:"path"`
	ModeBefore     string `json:"modeBefore,omitempty"`
	ModeAfter      string `json:"modeAfter,omitempty"`
	OwnerBefore    string `json:"ownerBefore,omitempty"`
	OwnerAfter     string `json:"ownerAfter,omitempty"`
	ContentChanged bool   `json:"contentChanged,omitempty"`
	Created        bool   `json:"created,omitempty"`
}

// GuestRemediationReport is ReportGuestRemediation's body.
type GuestRemediationReport struct {
	ID             string            `json:"id"`
	Assignment     string            `json:"assignment"`
	Rule           string            `json:"rule"`
	Result         string            `json:"result"` // ResultSucceeded or ResultFailed
	Message        string            `json:"message,omitempty"`
	EvidenceBefore string            `json:"evidenceBefore,omitempty"`
	EvidenceAfter  string            `json:"evidenceAfter,omitempty"`
	Files          []GuestFileChange `json:"files,omitempty"`
	At             time.Time         `json:"at"`
}

// GuestRollbackReport is ReportGuestRollback's body.
type GuestRollbackReport struct {
	ID      string    `json:"id"`
	Result  string    `json:"result"` // ResultSucceeded or ResultFailed
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// PolicyDefinition is a policy definition, built in or custom.
type PolicyDefinition struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName,omitempty"`
	Description string `json:"description,omitempty"`
	PolicyType  string `json:"policyType"`
	Mode        string `json:"mode"`
	// Effect is the effect with the parameters' defaults.
	Effect string `json:"effect"`
	// GuestConfiguration names the machine configuration the definition
	// evaluates inside machines, if any.
	GuestConfiguration string `json:"guestConfiguration,omitempty"`
	// Rules counts the machine configuration's guest rules.
	Rules      int             `json:"rules,omitempty"`
	Definition json.RawMessage `json:"definition,omitempty"`
	CreatedAt  *time.Time      `json:"createdAt,omitempty"`
	CreatedBy  string          `json:"createdBy,omitempty"`
}

// PolicyAssignmentCreate is the body that assigns a definition at a scope.
type PolicyAssignmentCreate struct {
	Definition string `json:"definition"`
	// Scope is a subscription or resource group id.
	Scope string `json:"scope"`
	// Parameters in Azure's {"name": {"value": V}} form or plain {"name": V}.
	Parameters           json.RawMessage `json:"parameters,omitempty"`
	NonComplianceMessage string          `json:"nonComplianceMessage,omitempty"`
	// AssignmentType for machine configurations (default: the
	// definition's, else Audit).
	AssignmentType string   `json:"assignmentType,omitempty"`
	NotScopes      []string `json:"notScopes,omitempty"`
	Description    string   `json:"description,omitempty"`
}

// PolicyAssignment is a definition assigned at a scope.
type PolicyAssignment struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	Scope                string          `json:"scope"`
	Definition           string          `json:"definition"`
	Effect               string          `json:"effect"`
	Parameters           json.RawMessage `json:"parameters,omitempty"`
	NonComplianceMessage string          `json:"nonComplianceMessage,omitempty"`
	AssignmentType       string          `json:"assignmentType,omitempty"`
	NotScopes            []string        `json:"notScopes,omitempty"`
	Description          string          `json:"description,omitempty"`
	CreatedAt            time.Time       `json:"createdAt"`
	CreatedBy            string          `json:"createdBy"`
}

// PolicyExemptionCreate is the body that exempts a scope from an assignment.
type PolicyExemptionCreate struct {
	Assignment string `json:"assignment"`
	// Scope is a subscription, resource group or machine id at or below the
	// assignment's scope.
	Scope       string     `json:"scope"`
	Category    string     `json:"category"` // Waiver or Mitigated
	ExpiresOn   *time.Time `json:"expiresOn,omitempty"`
	Description string     `json:"description,omitempty"`
}

// PolicyExemption exempts a scope from an assignment until it expires.
type PolicyExemption struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Assignment  string     `json:"assignment"`
	Scope       string     `json:"scope"`
	Category    string     `json:"category"`
	ExpiresOn   *time.Time `json:"expiresOn,omitempty"`
	Description string     `json:"description,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	CreatedBy   string     `json:"createdBy"`
}

// PolicyState is one assignment × machine × rule verdict (for a definition
// the server evaluates itself, Rule is the definition's name).
type PolicyState struct {
	Assignment           string    `json:"assignment"`
	Definition           string    `json:"definition"`
	Machine              string    `json:"machine"` // the machine's resource id
	MachineID            string    `json:"machineId"`
	Rule                 string    `json:"rule"`
	Title                string    `json:"title,omitempty"`
	Severity             string    `json:"severity,omitempty"`
	ComplianceState      string    `json:"complianceState"`
	Evidence             string    `json:"evidence"`
	NonComplianceMessage string    `json:"nonComplianceMessage,omitempty"`
	Timestamp            time.Time `json:"timestamp"`
	SSGRuleID            string    `json:"ssgRuleId,omitempty"`
	// Exemption names the exemption that makes the state Exempt.
	Exemption string `json:"exemption,omitempty"`
}

// PolicyStateChange is one entry of a rule's compliance history.
type PolicyStateChange struct {
	ComplianceState string    `json:"complianceState"`
	Evidence        string    `json:"evidence"`
	Timestamp       time.Time `json:"timestamp"`
}

// PolicyComplianceSummary rolls compliance up per assignment under a scope:
// machines counted by their state for the assignment (NonCompliant if any
// rule is, Unknown if any is and none is NonCompliant).
type PolicyComplianceSummary struct {
	Assignment      string `json:"assignment"`
	Definition      string `json:"definition"`
	Scope           string `json:"scope"`
	ComplianceState string `json:"complianceState"`
	Compliant       int    `json:"compliant"`
	NonCompliant    int    `json:"nonCompliant"`
	Exempt          int    `json:"exempt"`
	Unknown         int    `json:"unknown"`
	// NotEvaluated counts machines in scope with no result yet.
	NotEvaluated int `json:"notEvaluated"`
}

// PolicyEvaluationCreate asks for an on-demand evaluation of a scope.
type PolicyEvaluationCreate struct {
	Scope string `json:"scope"`
}

// PolicyEvaluation is an on-demand evaluation and how far it got.
type PolicyEvaluation struct {
	ID          string    `json:"id"`
	Scope       string    `json:"scope"`
	RequestedAt time.Time `json:"requestedAt"`
	RequestedBy string    `json:"requestedBy"`
	// Expected counts assignment × machine pairs in scope; Evaluated those
	// evaluated since the request.
	Expected  int  `json:"expected"`
	Evaluated int  `json:"evaluated"`
	Done      bool `json:"done"`
}

// PolicyRemediation is a change an apply mode made on a machine.
type PolicyRemediation struct {
	ID                  string            `json:"id"`
	Assignment          string            `json:"assignment"`
	Machine             string            `json:"machine"`
	MachineID           string            `json:"machineId"`
	Rule                string            `json:"rule"`
	State               string            `json:"state"`
	Result              string            `json:"result"`
	Message             string            `json:"message,omitempty"`
	EvidenceBefore      string            `json:"evidenceBefore,omitempty"`
	EvidenceAfter       string            `json:"evidenceAfter,omitempty"`
	Files               []GuestFileChange `json:"files,omitempty"`
	CreatedAt           time.Time         `json:"createdAt"`
	RollbackRequestedAt *time.Time        `json:"rollbackRequestedAt,omitempty"`
	RollbackRequestedBy string            `json:"rollbackRequestedBy,omitempty"`
	Force               bool              `json:"force,omitempty"`
	UpdatedAt           time.Time         `json:"updatedAt"`
}

// PolicyRollbackCreate asks for a remediation to be undone. Force restores
// over files changed since the remediation.
type PolicyRollbackCreate struct {
	Force bool `json:"force,omitempty"`
}
