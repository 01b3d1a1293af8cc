package wire

import "time"

// Update management (DESIGN §7): the agent feature "updates" behind the
// first-party extension Corral/PatchManagement, its slice of the desired
// state, its reports, and the REST types of assessments, runs and
// schedules.

// FeatureUpdates is the agent feature's name and its key in
// DesiredState.Features.
const FeatureUpdates = "updates"

// Report kinds of the updates feature.
const (
	// ReportUpdateAssessment carries an assessment's result (Body:
	// UpdateAssessmentResult).
	ReportUpdateAssessment = "updateAssessment"
	// ReportUpdateDeployment carries a deployment's progress and its final
	// result on the machine (Body: UpdateDeploymentReport).
	ReportUpdateDeployment = "updateDeployment"
	// ReportUpdateReboot says what became of the reboot a deployment
	// started, once the agent runs again (Body: UpdateRebootReport).
	ReportUpdateReboot = "updateReboot"
)

// Update classifications, most important first. apt has no severity in
// its metadata: on apt an update is Security or Other.
const (
	UpdateCritical = "Critical"
	UpdateSecurity = "Security"
	UpdateOther    = "Other"
)

// UpdateClassifications lists every classification, most important first.
var UpdateClassifications = []string{UpdateCritical, UpdateSecurity, UpdateOther}

// Reboot settings of a deployment.
const (
	RebootIfRequired = "IfRequired"
	RebootNever      = "Never"
	RebootAlways     = "Always"
)

// RebootSettings lists every reboot setting.
var RebootSettings = []string{RebootIfRequired, RebootNever, RebootAlways}

// Statuses of an update run and of one machine in it. A run is
// InProgress until every machine has a final status, then Succeeded,
// CompletedWithWarnings (a reboot that was needed but not allowed, a post
// script that failed) or Failed; Halted when a wave broke the disruption
// budget. A machine is Pending until its agent starts, then InProgress;
// NotStarted when the run halted or the window closed before it was sent.
const (
	UpdatePending               = "Pending"
	UpdateInProgress            = "InProgress"
	UpdateSucceeded             = "Succeeded"
	UpdateCompletedWithWarnings = "CompletedWithWarnings"
	UpdateFailed                = "Failed"
	UpdateHalted                = "Halted"
	UpdateNotStarted            = "NotStarted"
)

// Reasons an update run or a machine in it failed (the engine's reasons
// and the agent's and the server's own).
const (
	ReasonMaintenanceWindowExceeded = "MaintenanceWindowExceeded"
	ReasonInstallFailed             = "InstallFailed"
	ReasonRefreshFailed             = "RefreshFailed"
	ReasonRepairFailed              = "RepairFailed"
	ReasonAssessmentFailed          = "AssessmentFailed"
	ReasonCanceled                  = "Canceled"
	// ReasonBlocked: the local configuration refused Corral/PatchManagement
	// (or Corral/RunCommand for a pre/post script).
	ReasonBlocked = "Blocked"
	// ReasonHostChangesOff: trial mode or corral dev refused the change.
	ReasonHostChangesOff   = "HostChangesOff"
	ReasonUnsupportedOS    = "UnsupportedOS"
	ReasonPreScriptFailed  = "PreScriptFailed"
	ReasonPostScriptFailed = "PostScriptFailed"
	ReasonRebootFailed     = "RebootFailed"
	// ReasonInterrupted: the agent stopped in the middle of the deployment.
	ReasonInterrupted = "Interrupted"
	// ReasonNoResult: the machine started but never reported a result.
	ReasonNoResult = "NoResult"
	// ReasonDisruptionBudgetExceeded: a wave failed on more machines than
	// the run's budget allows; the rest of the run was not started.
	ReasonDisruptionBudgetExceeded = "DisruptionBudgetExceeded"
)

// Reboot states of a machine in a run.
const (
	RebootNotNeeded = "NotNeeded"
	// RebootRequiredNotAllowed: the machine needs a reboot the run's
	// setting did not allow (a warning).
	RebootRequiredNotAllowed = "RequiredNotAllowed"
	RebootStarted            = "Started"
	RebootPerformed          = "Performed"
	RebootFailedState        = "Failed"
)

// Package results in a deployment.
const (
	PackageInstalled   = "Installed"
	PackageFailed      = "Failed"
	PackageNotStarted  = "NotStarted"
	PackageNotSelected = "NotSelected"
	PackageExcluded    = "Excluded"
)

// Assessment states and triggers.
const (
	AssessmentPending     = "Pending"
	AssessmentSucceeded   = "Succeeded"
	AssessmentFailed      = "Failed"
	AssessmentNotAssessed = "NotAssessed"

	TriggerOnDemand = "OnDemand"
	TriggerPeriodic = "Periodic"
	TriggerSchedule = "Schedule"
)

// Maintenance windows, assessment intervals and other bounds.
const (
	MinUpdateWindow           = 60 * time.Minute
	MaxUpdateWindow           = 235 * time.Minute
	DefaultUpdateWindow       = MaxUpdateWindow
	DefaultAssessmentInterval = 24 * time.Hour
	MinAssessmentInterval     = time.Minute
	MaxUpdateScriptBytes      = 64 << 10
	MaxUpdatePatterns         = 64
	MaxUpdatesPerAssessment   = 10000
)

// UpdatesDesired is the updates slice of a machine's desired state.
type UpdatesDesired struct {
	// AssessmentInterval is how often the agent assesses by itself
	// (0: DefaultAssessmentInterval).
	AssessmentInterval Duration `json:"assessmentInterval,omitempty"`
	// Assessments are on-demand requests not yet answered.
	Assessments []DesiredUpdateAssessment `json:"assessments,omitempty"`
	// Deployments are deployments sent to this machine not yet finished.
	Deployments []DesiredUpdateDeployment `json:"deployments,omitempty"`
}

// DesiredUpdateAssessment is one assessment request.
type DesiredUpdateAssessment struct {
	ID string `json:"id"`
}

// UpdateDeploymentSettings say what a deployment installs and how.
type UpdateDeploymentSettings struct {
	Classifications []string `json:"classifications"`
	Include         []string `json:"include,omitempty"`
	Exclude         []string `json:"exclude,omitempty"`
	Reboot          string   `json:"reboot"`
	// Window is the maintenance window (60–235 minutes).
	Window Duration `json:"window"`
	// PreScript and PostScript run with /bin/sh before and after the
	// installs, like run commands (the Corral/RunCommand lock-down applies).
	PreScript  string `json:"preScript,omitempty"`
	PostScript string `json:"postScript,omitempty"`
}

// DesiredUpdateDeployment is one deployment for the machine: the run's
// settings and the end of its window.
type DesiredUpdateDeployment struct {
	// ID is the run's id.
	ID string `json:"id"`
	UpdateDeploymentSettings
	// Deadline is the end of the run's maintenance window (the server's
	// clock): no install starts that would not end before it, and a
	// deployment that reaches the machine after it does not start.
	Deadline time.Time `json:"deadline"`
}

// PendingUpdate is one update the package manager would install.
type PendingUpdate struct {
	Name             string   `json:"name"`
	Arch             string   `json:"arch,omitempty"`
	InstalledVersion string   `json:"installedVersion"`
	CandidateVersion string   `json:"candidateVersion"`
	Source           string   `json:"source"`
	Classification   string   `json:"classification"`
	Advisories       []string `json:"advisories,omitempty"`
	RebootRequired   bool     `json:"rebootRequired"`
}

// UpdateAssessmentResult is the body of ReportUpdateAssessment.
type UpdateAssessmentResult struct {
	// ID is the request's id; for a periodic assessment the agent's own
	// unique key ("periodic-...").
	ID      string `json:"id"`
	Trigger string `json:"trigger"` // OnDemand or Periodic
	State   string `json:"state"`   // Succeeded or Failed
	// Reason is set when the agent refused (Blocked, HostChangesOff,
	// UnsupportedOS) or the manager failed (RefreshFailed, AssessmentFailed).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Manager string `json:"manager,omitempty"`
	// Refreshed: the package lists were refreshed first (false in trial
	// mode and corral dev: the lists as last fetched).
	Refreshed     bool            `json:"refreshed"`
	RebootPending bool            `json:"rebootPending"`
	Warnings      []string        `json:"warnings,omitempty"`
	Updates       []PendingUpdate `json:"updates"`
	StartedAt     time.Time       `json:"startedAt"`
	FinishedAt    time.Time       `json:"finishedAt"`
}

// UpdatePackageResult is what became of one update in a deployment.
type UpdatePackageResult struct {
	Name           string    `json:"name"`
	Arch           string    `json:"arch,omitempty"`
	Classification string    `json:"classification,omitempty"`
	Status         string    `json:"status"`
	BeforeVersion  string    `json:"beforeVersion,omitempty"`
	AfterVersion   string    `json:"afterVersion,omitempty"`
	Message        string    `json:"message,omitempty"`
	StartedAt      time.Time `json:"startedAt,omitzero"`
	FinishedAt     time.Time `json:"finishedAt,omitzero"`
}

// UpdateScriptResult is a pre or post script's outcome.
type UpdateScriptResult struct {
	ExitCode int    `json:"exitCode"`
	Output   string `json:"output,omitempty"`
	Message  string `json:"message,omitempty"`
}

// UpdateDeploymentReport is the body of ReportUpdateDeployment: progress
// (State InProgress, Current the package being installed) and the final
// result of one machine in a run.
type UpdateDeploymentReport struct {
	ID      string `json:"id"`
	State   string `json:"state"` // InProgress, Succeeded, CompletedWithWarnings, Failed
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Manager string `json:"manager,omitempty"`
	// Current is the package being installed (progress only).
	Current        string                `json:"current,omitempty"`
	Packages       []UpdatePackageResult `json:"packages"`
	RebootRequired bool                  `json:"rebootRequired"`
	// Reboot is NotNeeded, RequiredNotAllowed, Started or Failed.
	Reboot string `json:"reboot,omitempty"`
	// Recovery says what was found and repaired of an earlier deployment
	// the agent did not finish.
	Recovery   string              `json:"recovery,omitempty"`
	PreScript  *UpdateScriptResult `json:"preScript,omitempty"`
	PostScript *UpdateScriptResult `json:"postScript,omitempty"`
	StartedAt  time.Time           `json:"startedAt,omitzero"`
	FinishedAt time.Time           `json:"finishedAt,omitzero"`
}

// UpdateRebootReport is the body of ReportUpdateReboot.
type UpdateRebootReport struct {
	ID      string    `json:"id"`    // the run's id
	State   string    `json:"state"` // Performed or Failed
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// UpdateTargets names the machines an operation is for: resource ids of
// machines, or every machine at or below a scope (a subscription or a
// resource group), optionally only those with a tag ("KEY=VALUE").
type UpdateTargets struct {
	Machines []string `json:"machines,omitempty"`
	Scope    string   `json:"scope,omitempty"`
	Tag      string   `json:"tag,omitempty"`
}

// UpdateAssessmentCreate is the body of POST .../updateAssessments.
type UpdateAssessmentCreate struct {
	UpdateTargets
}

// UpdateAssessmentBatch is one assessment request made of many machines,
// with how far it got.
type UpdateAssessmentBatch struct {
	ID        string    `json:"id"`
	Scope     string    `json:"scope"`
	Machines  int       `json:"machines"`
	Pending   int       `json:"pending"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
	// Failures names machines whose assessment failed (at most 100).
	Failures []UpdateAssessment `json:"failures,omitempty"`
}

// UpdateAssessment is one machine's assessment in the history.
type UpdateAssessment struct {
	ID            string    `json:"id"`
	MachineID     string    `json:"machineId"` // resource id
	BatchID       string    `json:"batchId,omitempty"`
	Trigger       string    `json:"trigger"`
	State         string    `json:"state"`
	Reason        string    `json:"reason,omitempty"`
	Message       string    `json:"message,omitempty"`
	Manager       string    `json:"manager,omitempty"`
	Refreshed     bool      `json:"refreshed"`
	Critical      int       `json:"critical"`
	Security      int       `json:"security"`
	Other         int       `json:"other"`
	RebootPending bool      `json:"rebootPending"`
	RequestedAt   time.Time `json:"requestedAt,omitzero"`
	RequestedBy   string    `json:"requestedBy,omitempty"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	FinishedAt    time.Time `json:"finishedAt,omitzero"`
}

// UpdateSummary is a machine's update status on the inventory: the counts
// of its last assessment, or why there is none.
type UpdateSummary struct {
	MachineID     string    `json:"machineId"` // resource id
	Name          string    `json:"name"`
	ResourceGroup string    `json:"resourceGroup"`
	State         string    `json:"state"` // NotAssessed, Pending, Succeeded, Failed
	Reason        string    `json:"reason,omitempty"`
	Message       string    `json:"message,omitempty"`
	Manager       string    `json:"manager,omitempty"`
	Critical      int       `json:"critical"`
	Security      int       `json:"security"`
	Other         int       `json:"other"`
	RebootPending bool      `json:"rebootPending"`
	AssessedAt    time.Time `json:"lastAssessedAt,omitzero"`
}

// MachineUpdates is a machine's pending updates as last assessed.
type MachineUpdates struct {
	UpdateSummary
	Updates []PendingUpdate `json:"updates"`
}

// UpdateWave is one ring of a rollout: the machines at or below a scope,
// or a percentage of all the run's machines.
type UpdateWave struct {
	Scope   string `json:"scope,omitempty"`
	Percent int    `json:"percent,omitempty"`
}

// UpdateRollout splits a run into waves; the run halts when more than
// MaxFailedPercent of a wave's machines failed.
type UpdateRollout struct {
	Waves            []UpdateWave `json:"waves"`
	MaxFailedPercent int          `json:"maxFailedPercent"`
}

// UpdateRunCreate is the body of POST .../updateRuns: a deployment now.
type UpdateRunCreate struct {
	UpdateTargets
	UpdateDeploymentSettings
	Rollout *UpdateRollout `json:"rollout,omitempty"`
}

// UpdateRunMachine is one machine of a run with its result.
type UpdateRunMachine struct {
	MachineID      string                `json:"machineId"` // resource id
	Name           string                `json:"name"`
	ResourceGroup  string                `json:"resourceGroup"`
	Wave           int                   `json:"wave"`
	Status         string                `json:"status"`
	Reason         string                `json:"reason,omitempty"`
	Message        string                `json:"message,omitempty"`
	Current        string                `json:"current,omitempty"`
	RebootRequired bool                  `json:"rebootRequired"`
	Reboot         string                `json:"reboot,omitempty"`
	Recovery       string                `json:"recovery,omitempty"`
	PreScript      *UpdateScriptResult   `json:"preScript,omitempty"`
	PostScript     *UpdateScriptResult   `json:"postScript,omitempty"`
	Packages       []UpdatePackageResult `json:"packages"`
	StartedAt      time.Time             `json:"startedAt,omitzero"`
	FinishedAt     time.Time             `json:"finishedAt,omitzero"`
}

// UpdateRunWave is one wave of a run.
type UpdateRunWave struct {
	Index     int    `json:"index"`
	Machines  int    `json:"machines"`
	Status    string `json:"status"` // NotStarted, InProgress, Succeeded, Failed, Halted
	Failed    int    `json:"failed"`
	Succeeded int    `json:"succeeded"`
}

// UpdateRunCounts counts a run's machines by status.
type UpdateRunCounts struct {
	Pending               int `json:"pending"`
	InProgress            int `json:"inProgress"`
	Succeeded             int `json:"succeeded"`
	CompletedWithWarnings int `json:"completedWithWarnings"`
	Failed                int `json:"failed"`
	NotStarted            int `json:"notStarted"`
}

// UpdateRun is one deployment across machines.
type UpdateRun struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	Scope          string `json:"scope"`
	UpdateTargets
	UpdateDeploymentSettings
	Rollout     *UpdateRollout  `json:"rollout,omitempty"`
	Status      string          `json:"status"`
	Reason      string          `json:"reason,omitempty"`
	Message     string          `json:"message,omitempty"`
	Trigger     string          `json:"trigger"`
	Schedule    string          `json:"schedule,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	CreatedBy   string          `json:"createdBy,omitempty"`
	StartedAt   time.Time       `json:"startedAt"`
	Deadline    time.Time       `json:"deadline"`
	FinishedAt  time.Time       `json:"finishedAt,omitzero"`
	CurrentWave int             `json:"currentWave"`
	Waves       []UpdateRunWave `json:"waves"`
	Counts      UpdateRunCounts `json:"counts"`
	// Machines are the run's machines with their results (GET of one run;
	// lists leave them out).
	Machines []UpdateRunMachine `json:"machines,omitempty"`
}

// Schedule kinds.
const (
	ScheduleDeployment = "Deployment"
	ScheduleAssessment = "Assessment"
)

// UpdateScheduleCreate is the body of PUT .../updateSchedules/{name}: a
// cron expression in a time zone, or a one-time At.
type UpdateScheduleCreate struct {
	Kind string `json:"kind"` // Deployment (default) or Assessment
	UpdateTargets
	Cron     string    `json:"cron,omitempty"`
	TimeZone string    `json:"timeZone,omitempty"`
	At       time.Time `json:"at,omitzero"`
	// Deployment settings (Kind Deployment).
	UpdateDeploymentSettings
	Rollout *UpdateRollout `json:"rollout,omitempty"`
}

// UpdateSchedule is a stored schedule.
type UpdateSchedule struct {
	ID             string `json:"id"` // resource id
	Name           string `json:"name"`
	SubscriptionID string `json:"subscriptionId"`
	Scope          string `json:"scope"`
	UpdateScheduleCreate
	CreatedAt   time.Time `json:"createdAt"`
	CreatedBy   string    `json:"createdBy,omitempty"`
	LastFiredAt time.Time `json:"lastFiredAt,omitzero"`
	LastRunID   string    `json:"lastRunId,omitempty"`
	NextFireAt  time.Time `json:"nextFireAt,omitzero"`
}
