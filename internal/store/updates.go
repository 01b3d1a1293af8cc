package store

import (
	"context"
	"time"
)

// UpdateAssessment record: one assessment of one machine, requested (on
// demand, by a schedule) or made by the agent on its own (periodic). IDs
// are the caller's, time-ordered: lists are newest first by id. A periodic
// assessment's id is the agent's key, prefixed by the machine id.
type UpdateAssessment struct {
	ID            string
	MachineID     string
	BatchID       string // the request it belongs to ("" for periodic)
	Trigger       string // wire.TriggerOnDemand, TriggerSchedule, TriggerPeriodic
	State         string // wire.AssessmentPending, AssessmentSucceeded, AssessmentFailed
	Reason        string
	Message       string
	Manager       string
	Refreshed     bool
	Critical      int
	Security      int
	Other         int
	RebootPending bool
	Origin        []byte // capability.Origin of the request
	RequestedAt   time.Time
	RequestedBy   string
	StartedAt     time.Time
	FinishedAt    time.Time
}

// MachineUpdateStatus record: a machine's update status, created when an
// assessment or a deployment first targets the machine (the machine is
// then enrolled: its agent assesses periodically) and replaced by every
// newer assessment result. Updates is the JSON list of pending updates
// ([]wire.PendingUpdate) of the last successful assessment.
type MachineUpdateStatus struct {
	MachineID string
	// Subscription, ResourceGroup and Name are the machine's, filled by
	// reads (never written).
	Subscription  string
	ResourceGroup string
	Name          string
	AssessmentID  string
	State         string // wire.AssessmentNotAssessed, AssessmentPending, ...
	Reason        string
	Message       string
	Manager       string
	Refreshed     bool
	Critical      int
	Security      int
	Other         int
	RebootPending bool
	Updates       []byte
	AssessedAt    time.Time // when the last result was taken (zero: never)
	EnrolledAt    time.Time
	UpdatedAt     time.Time
}

// UpdateAssessmentFilter selects assessments: of one machine or of one
// batch. Newest first; Page.After is the id of the last one of the
// previous page.
type UpdateAssessmentFilter struct {
	MachineID string
	BatchID   string
	State     string
	Page      Page
}

// UpdateStatusFilter selects machine update statuses in a subscription
// (and resource group), optionally only the machines MachineIDs. Ordered
// by (resource group, name) lower-cased; Page.After is "rg/name".
type UpdateStatusFilter struct {
	Subscription  string
	ResourceGroup string
	MachineIDs    []string
	Page          Page
}

// UpdateRun record: one deployment across machines. Targets, Settings and
// Rollout are the JSON of wire.UpdateTargets, UpdateDeploymentSettings and
// UpdateRollout (nil: one wave), stored verbatim.
type UpdateRun struct {
	ID           string
	Subscription string
	Scope        string
	Targets      []byte
	Settings     []byte
	Rollout      []byte
	Waves        int
	CurrentWave  int
	Status       string // wire.UpdateInProgress, ...
	Reason       string
	Message      string
	Trigger      string // wire.TriggerOnDemand or TriggerSchedule
	Schedule     string // the schedule's name
	Origin       []byte
	CreatedAt    time.Time
	CreatedBy    string
	StartedAt    time.Time // start of the maintenance window
	Deadline     time.Time // its end
	FinishedAt   time.Time
	UpdatedAt    time.Time
}

// UpdateRunMachine record: one machine of a run. A machine of the first
// wave is Dispatched (in its desired state) when the run is created; a
// later wave's when the wave before it is done. Scripts is the JSON of
// {"preScript":..., "postScript":...}; Packages of []wire.UpdatePackageResult.
type UpdateRunMachine struct {
	RunID     string
	MachineID string
	// Subscription, ResourceGroup and Name are the machine's, filled by
	// reads.
	Subscription   string
	ResourceGroup  string
	Name           string
	Wave           int
	Dispatched     bool
	Status         string
	Reason         string
	Message        string
	Current        string
	RebootRequired bool
	Reboot         string
	Recovery       string
	Scripts        []byte
	Packages       []byte
	StartedAt      time.Time
	FinishedAt     time.Time
	UpdatedAt      time.Time
}

// UpdateDispatch is a deployment sent to a machine and not yet finished
// there: the run and the machine's row of it.
type UpdateDispatch struct {
	Run     UpdateRun
	Machine UpdateRunMachine
}

// UpdateRunFilter selects runs of a subscription, or the runs a machine
// took part in, or a schedule's runs. Unfinished selects InProgress runs
// (of every subscription when Subscription is empty). Newest first;
// Page.After is the id of the last run of the previous page.
type UpdateRunFilter struct {
	Subscription string
	MachineID    string
	Schedule     string
	Unfinished   bool
	Page         Page
}

// UpdateRunChange is a change of a run's status, applied only while the
// run is in one of the From statuses.
type UpdateRunChange struct {
	From        []string
	Status      string
	Reason      string
	Message     string
	CurrentWave int
	FinishedAt  time.Time
	At          time.Time
}

// UpdateRunMachineClose closes machines of a run that have not finished:
// those in one of the Statuses (dispatched or not, per Dispatched: nil =
// either), in waves >= FromWave, and — when StartedBefore is set — that
// started before it. They get Status, Reason and Message.
type UpdateRunMachineClose struct {
	Statuses      []string
	Dispatched    *bool
	FromWave      int
	StartedBefore time.Time
	Status        string
	Reason        string
	Message       string
	At            time.Time
}

// UpdateSchedule record. Targets, Settings and Rollout as in UpdateRun.
// Window is the maintenance window (a fire is still due while it is open).
type UpdateSchedule struct {
	ID           string
	Subscription string
	Name         string // unique per subscription, case-insensitively
	Kind         string // wire.ScheduleDeployment or ScheduleAssessment
	Scope        string
	Targets      []byte
	Cron         string
	TimeZone     string
	At           time.Time
	Window       time.Duration
	Settings     []byte
	Rollout      []byte
	Origin       []byte
	CreatedAt    time.Time
	CreatedBy    string
	LastFiredAt  time.Time
	LastRunID    string
}

// UpdateScheduleFilter selects schedules of a subscription ("" = all,
// for the scheduler), ordered by name; Page.After is a name.
type UpdateScheduleFilter struct {
	Subscription string
	Page         Page
}

// UpdateFire is what one fire of a schedule creates: a run with its
// machines, or assessment requests.
type UpdateFire struct {
	ScheduleID  string
	Previous    time.Time // the schedule's LastFiredAt as read
	Fired       time.Time
	RunID       string // LastRunID after the fire
	Run         *UpdateRun
	Machines    []UpdateRunMachine
	Assessments []UpdateAssessment
	At          time.Time
}

// Updates stores update management: assessments and machine update
// statuses, runs with their machines, and schedules. Every method that
// changes what a machine's agent must do (a request, a dispatch, a
// closed deployment) bumps the machine's generation in the same
// transaction and returns machine id -> new generation.
type Updates interface {
	// CreateUpdateAssessments inserts assessment requests (State Pending)
	// and enrolls their machines (a status row in State Pending, or the
	// existing row set Pending), in one transaction. Machines that do not
	// exist are skipped (left out of the map).
	CreateUpdateAssessments(ctx context.Context, as []UpdateAssessment, at time.Time) (map[string]int64, error)
	// ListPendingUpdateAssessments lists a machine's requests not yet
	// answered, oldest first, at most limit.
	ListPendingUpdateAssessments(ctx context.Context, machineID string, limit int) ([]UpdateAssessment, error)
	// RecordUpdateAssessment stores a result: a request (a.ID known and
	// Pending) becomes final; an unknown a.ID of Trigger Periodic is
	// inserted. The machine's status takes the result unless it holds a
	// newer one (AssessedAt after a.FinishedAt); updates is the JSON list
	// for a successful result. It returns whether a was applied (false: a
	// request already final, or an unknown non-periodic id).
	RecordUpdateAssessment(ctx context.Context, a UpdateAssessment, updates []byte, at time.Time) (bool, error)
	GetUpdateAssessment(ctx context.Context, id string) (UpdateAssessment, error)
	ListUpdateAssessments(ctx context.Context, f UpdateAssessmentFilter) ([]UpdateAssessment, error)
	// CountUpdateAssessments counts a batch's assessments by state.
	CountUpdateAssessments(ctx context.Context, batchID string) (map[string]int, error)
	// ExpireUpdateAssessments fails requests still Pending that were
	// requested before `before`, with message; machine statuses still
	// Pending because of them become Failed too. It returns how many.
	ExpireUpdateAssessments(ctx context.Context, before time.Time, message string, at time.Time) (int, error)

	// GetMachineUpdateStatus: ErrNotFound for a machine never enrolled.
	GetMachineUpdateStatus(ctx context.Context, machineID string) (MachineUpdateStatus, error)
	// MachinesEnrolledForUpdates returns which of machineIDs have an update
	// status (were ever enrolled), in no particular order.
	MachinesEnrolledForUpdates(ctx context.Context, machineIDs []string) ([]string, error)
	// ListMachineUpdateStatuses leaves Updates nil.
	ListMachineUpdateStatuses(ctx context.Context, f UpdateStatusFilter) ([]MachineUpdateStatus, error)

	// CreateUpdateRun inserts the run and its machines, enrolls the
	// machines and bumps the generation of those Dispatched, in one
	// transaction. ErrConflict if the id exists; machines that do not
	// exist are an ErrNotFound (nothing stored).
	CreateUpdateRun(ctx context.Context, r UpdateRun, ms []UpdateRunMachine) (map[string]int64, error)
	GetUpdateRun(ctx context.Context, id string) (UpdateRun, error)
	ListUpdateRuns(ctx context.Context, f UpdateRunFilter) ([]UpdateRun, error)
	// ListUpdateRunMachines lists a run's machines by resource group and
	// name; Page.After is "rg/name".
	ListUpdateRunMachines(ctx context.Context, runID string, p Page) ([]UpdateRunMachine, error)
	GetUpdateRunMachine(ctx context.Context, runID, machineID string) (UpdateRunMachine, error)
	// ListUpdateDispatches lists a machine's dispatched deployments whose
	// machine status is Pending or InProgress, oldest run first.
	ListUpdateDispatches(ctx context.Context, machineID string) ([]UpdateDispatch, error)
	// ReportUpdateRunMachine applies an agent's report to its row unless
	// the row is already final (Succeeded, CompletedWithWarnings, Failed,
	// NotStarted); StartedAt is kept once set. It returns whether it
	// applied. ErrNotFound for an unknown row.
	ReportUpdateRunMachine(ctx context.Context, m UpdateRunMachine) (bool, error)
	// SetUpdateRunMachineReboot records what became of a reboot (only
	// while Reboot is Started).
	SetUpdateRunMachineReboot(ctx context.Context, runID, machineID, reboot, message string, at time.Time) (bool, error)
	// CountUpdateRunMachines counts a run's machines: wave -> status -> n.
	CountUpdateRunMachines(ctx context.Context, runID string) (map[int]map[string]int, error)
	// DispatchUpdateWave marks a wave's machines dispatched (those not
	// yet) and bumps their generations.
	DispatchUpdateWave(ctx context.Context, runID string, wave int, at time.Time) (map[string]int64, error)
	// CloseUpdateRunMachines closes unfinished machines of a run (see
	// UpdateRunMachineClose) and bumps the generations of those that were
	// dispatched (the deployment leaves their desired state).
	CloseUpdateRunMachines(ctx context.Context, runID string, c UpdateRunMachineClose) (map[string]int64, error)
	// ChangeUpdateRun applies c if the run's status is one of c.From and
	// returns whether it did.
	ChangeUpdateRun(ctx context.Context, runID string, c UpdateRunChange) (bool, error)

	// CreateUpdateSchedule: ErrConflict if the subscription has a
	// schedule of that name (any casing).
	CreateUpdateSchedule(ctx context.Context, s UpdateSchedule) error
	GetUpdateSchedule(ctx context.Context, sub, name string) (UpdateSchedule, error)
	ListUpdateSchedules(ctx context.Context, f UpdateScheduleFilter) ([]UpdateSchedule, error)
	DeleteUpdateSchedule(ctx context.Context, sub, name string) error
	// FireUpdateSchedule records a fire and creates what it starts, in
	// one transaction, only if the schedule's LastFiredAt still equals
	// f.Previous: ErrConflict when another fire won (nothing stored),
	// ErrNotFound when the schedule was deleted.
	FireUpdateSchedule(ctx context.Context, f UpdateFire) (map[string]int64, error)
}
