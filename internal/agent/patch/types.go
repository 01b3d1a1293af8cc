package patch

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Classification is how important an update is, as the package manager's
// metadata says.
type Classification string

// The classifications, in order of importance. apt has no severity in its
// metadata: on apt an update is Security or Other, never Critical.
const (
	Critical Classification = "Critical"
	Security Classification = "Security"
	Other    Classification = "Other"
)

// Classifications lists every valid classification, most important first.
var classifications = []Classification{Critical, Security, Other}

// ErrUnknownClassification is returned for a classification name that is
// none of Critical, Security, Other.
var ErrUnknownClassification = errors.New("unknown classification")

// ErrBadSelection is returned for a deployment selection that cannot be
// used (no classification, a malformed pattern).
var ErrBadSelection = errors.New("bad selection")

// ErrBadDeployment is returned for a deployment without an id, a journal
// directory or a deadline.
var ErrBadDeployment = errors.New("bad deployment")

// ParseClassification reads a classification name, case-insensitively.
func ParseClassification(s string) (Classification, error) {
	for _, c := range classifications {
		if strings.EqualFold(strings.TrimSpace(s), string(c)) {
			return c, nil
		}
	}
	return "", fmt.Errorf("%w %q (want Critical, Security or Other)", ErrUnknownClassification, s)
}

// rank orders classifications, most important first.
func (c Classification) rank() int {
	if i := slices.Index(classifications, c); i >= 0 {
		return i
	}
	return len(classifications)
}

// Kind names a package manager.
type Kind string

// The supported package managers.
const (
	Apt    Kind = "apt"
	Dnf    Kind = "dnf"
	Zypper Kind = "zypper"
)

// Update is one pending update.
type Update struct {
	Name             string         `json:"name"`
	Arch             string         `json:"arch,omitempty"`
	InstalledVersion string         `json:"installedVersion"`
	CandidateVersion string         `json:"candidateVersion"`
	Source           string         `json:"source"` // repository or suite the candidate comes from
	Classification   Classification `json:"classification"`
	// Advisories names the advisories (dnf, zypper) the update fixes.
	Advisories []string `json:"advisories,omitempty"`
	// RebootRequired: installing it needs a reboot (kernel, libc, init class).
	RebootRequired bool `json:"rebootRequired"`
}

// Assessment is the pending updates of a machine at one moment.
type Assessment struct {
	Manager Kind     `json:"manager"`
	Updates []Update `json:"updates"`
	// RebootPending: the machine already waits for a reboot (an earlier
	// install asked for one).
	RebootPending bool `json:"rebootPending"`
	// Warnings are the manager's own warnings from the refresh.
	Warnings []string  `json:"warnings,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// Count returns how many pending updates have classification c.
func (a Assessment) Count(c Classification) int {
	n := 0
	for _, u := range a.Updates {
		if u.Classification == c {
			n++
		}
	}
	return n
}

// Selection says which pending updates a deployment installs: those of the
// given classifications whose name matches an Include pattern (when there
// is any) and no Exclude pattern. Patterns are shell globs (path.Match) on
// the package name; Exclude wins.
type Selection struct {
	Classifications []Classification `json:"classifications"`
	Include         []string         `json:"include,omitempty"`
	Exclude         []string         `json:"exclude,omitempty"`
}

// Validate checks the selection: at least one known classification and
// well-formed patterns.
func (s Selection) Validate() error {
	if len(s.Classifications) == 0 {
		return fmt.Errorf("%w: no classification (want Critical, Security and/or Other)", ErrBadSelection)
	}
	for _, c := range s.Classifications {
		if _, err := ParseClassification(string(c)); err != nil || c.rank() == len(classifications) {
			return fmt.Errorf("%w %q (want Critical, Security or Other)", ErrUnknownClassification, c)
		}
	}
	for _, p := range slices.Concat(s.Include, s.Exclude) {
		if strings.TrimSpace(p) == "" {
			return fmt.Errorf("%w: empty name pattern", ErrBadSelection)
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%w: name pattern %q: %w", ErrBadSelection, p, err)
		}
	}
	return nil
}

// status says whether u is selected, and if not, why.
func (s Selection) status(u Update) PackageStatus {
	for _, p := range s.Exclude {
		if ok, _ := path.Match(p, u.Name); ok {
			return Excluded
		}
	}
	if !slices.Contains(s.Classifications, u.Classification) {
		return NotSelected
	}
	if len(s.Include) == 0 {
		return Pending
	}
	for _, p := range s.Include {
		if ok, _ := path.Match(p, u.Name); ok {
			return Pending
		}
	}
	return NotSelected
}

// PackageStatus is what became of one pending update in a deployment.
type PackageStatus string

// Package results.
const (
	Installed   PackageStatus = "Installed"
	Failed      PackageStatus = "Failed"
	NotStarted  PackageStatus = "NotStarted"  // selected, but the window closed first
	NotSelected PackageStatus = "NotSelected" // classification or include patterns left it out
	Excluded    PackageStatus = "Excluded"    // an exclude pattern matched
	Pending     PackageStatus = "Pending"     // selected, not yet tried (journal only)
)

// PackageResult is one update's outcome.
type PackageResult struct {
	Name           string         `json:"name"`
	Arch           string         `json:"arch,omitempty"`
	Classification Classification `json:"classification,omitempty"`
	Status         PackageStatus  `json:"status"`
	BeforeVersion  string         `json:"beforeVersion,omitempty"`
	AfterVersion   string         `json:"afterVersion,omitempty"`
	// Message is the manager's own error for a failure; for an install it
	// notes when the package came in as another's dependency.
	Message string `json:"message,omitempty"`
	// Output is the manager's whole output of a failed install, capped.
	Output   string    `json:"output,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// Status is a deployment's overall outcome.
type Status string

// Deployment outcomes.
const (
	RunSucceeded Status = "Succeeded"
	RunFailed    Status = "Failed"
)

// Reason says why a deployment failed.
type Reason string

// Failure reasons.
const (
	ReasonNone                      Reason = ""
	ReasonMaintenanceWindowExceeded Reason = "MaintenanceWindowExceeded"
	ReasonInstallFailed             Reason = "InstallFailed"
	ReasonRefreshFailed             Reason = "RefreshFailed"
	ReasonRepairFailed              Reason = "RepairFailed"
	ReasonAssessmentFailed          Reason = "AssessmentFailed"
	ReasonCanceled                  Reason = "Canceled"
)

// Deployment is a request to install a selection of the pending updates.
type Deployment struct {
	// ID names the run in the journal and the result.
	ID        string
	Selection Selection
	// Deadline is the end of the maintenance window: no install starts
	// when it would not end before Deadline-Reserve.
	Deadline time.Time
	// Reserve is time kept free at the end of the window (for the reboot).
	Reserve time.Duration
	// InstallEstimate is the least time one install is assumed to take;
	// the longest install seen so far in the run counts when longer.
	InstallEstimate time.Duration
	// JournalDir is where the run's journal lives (owned by the caller,
	// one directory per machine; created if missing).
	JournalDir string
	// Progress, when set, is told the journal each time it is saved (the
	// package being installed, the results so far); it gets a copy and
	// must return quickly.
	Progress func(Journal)
}

// Recovery is what a deployment found and repaired from an earlier run.
type Recovery struct {
	// Interrupted: the previous run never finished (the agent died).
	Interrupted bool `json:"interrupted"`
	// Previous is the journal of that run, when there was one.
	Previous *Journal `json:"previous,omitempty"`
	// Killed counts leftover processes of that run that were killed.
	Killed int `json:"killed,omitempty"`
	// Broken is the manager's report of half-done packages before the
	// repair (dpkg --audit), empty when there were none.
	Broken string `json:"broken,omitempty"`
	// Output is the repair command's output (dpkg --configure -a), capped.
	Output string `json:"output,omitempty"`
}

// DeploymentResult is a deployment's outcome.
type DeploymentResult struct {
	ID       string          `json:"id"`
	Manager  Kind            `json:"manager"`
	Status   Status          `json:"status"`
	Reason   Reason          `json:"reason,omitempty"`
	Message  string          `json:"message,omitempty"`
	Packages []PackageResult `json:"packages"`
	// RebootRequired: the machine needs a reboot after this run.
	RebootRequired bool      `json:"rebootRequired"`
	Recovery       Recovery  `json:"recovery"`
	Started        time.Time `json:"started"`
	Finished       time.Time `json:"finished"`
}
