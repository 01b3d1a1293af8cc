package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Endpoint protection (Corral/EndpointProtection): the extension's settings,
// the agent feature's slice of the desired state, its reports, and the REST
// types of the protection API.
const (
	// FeatureProtection is the agent feature's name and its key in
	// DesiredState.Features.
	FeatureProtection = "protection"
	// ProtectionExtensionName is the name of the extension instance that
	// enabling protection installs on a machine (the name the built-in
	// policy deploy-endpoint-protection deploys too).
	ProtectionExtensionName = "EndpointProtection"
	// ProtectionExtensionType is the extension's type under publisher Corral.
	ProtectionExtensionType = "EndpointProtection"
	// PathProtectionSignatures + version: GET the signed signature set of
	// that version (machine certificate).
	PathProtectionSignatures = "/agent/v1/protection/signatures/"
	// MaxSignatureSetBytes bounds one signed signature set.
	MaxSignatureSetBytes = 512 << 20
)

// Actions taken on a detected file, as settings name them.
const (
	ProtectionQuarantine = "quarantine"
	ProtectionDelete     = "delete"
	ProtectionReport     = "report"
)

// Scan types.
const (
	ScanQuick  = "quick"  // common drop locations
	ScanFull   = "full"   // every local filesystem
	ScanCustom = "custom" // the paths given
)

// Scan and restore states.
const (
	ScanPending   = "Pending"
	ScanRunning   = "Running"
	ScanSucceeded = "Succeeded"
	ScanFailed    = "Failed"
)

// Alert states.
const (
	AlertActive       = "Active"
	AlertAcknowledged = "Acknowledged"
)

// What was done with a detected file (ProtectionDetection.Action).
const (
	DetectionQuarantined = "quarantined"
	DetectionDeleted     = "deleted"
	DetectionReported    = "reported"
	DetectionDenied      = "denied"
	// DetectionNotRemoved: the action failed (e.g. the disk is full); the
	// file stays where it was and Error says why.
	DetectionNotRemoved = "not-removed"
)

// ProtectionSettings are the settings of the Corral/EndpointProtection
// extension, exactly as the contract writes them:
//
//	{"realtime":{"enabled":true,"paths":["/"],"block":false},
//	 "action":"quarantine","exclusions":{"paths":[],"extensions":[]}}
//
// Paths are the host's own paths (the agent maps them under its --root).
type ProtectionSettings struct {
	Realtime   ProtectionRealtime   `json:"realtime"`
	Action     string               `json:"action"`
	Exclusions ProtectionExclusions `json:"exclusions"`
}

// ProtectionRealtime is on-access protection.
type ProtectionRealtime struct {
	Enabled bool     `json:"enabled"`
	Paths   []string `json:"paths"`
	// Block denies opening and executing detected files (fanotify only).
	Block bool `json:"block"`
}

// ProtectionExclusions are never scanned.
type ProtectionExclusions struct {
	Paths      []string `json:"paths"`
	Extensions []string `json:"extensions"`
}

// Limits of the settings.
const (
	maxProtectionPaths = 64
	maxProtectionPath  = 4096
)

// DefaultProtectionSettings are what an absent field means: real-time
// protection on "/", no blocking, quarantine, no exclusions.
func DefaultProtectionSettings() ProtectionSettings {
	return ProtectionSettings{Realtime: ProtectionRealtime{Enabled: true, Paths: []string{"/"}}, Action: ProtectionQuarantine,
		Exclusions: ProtectionExclusions{Paths: []string{}, Extensions: []string{}}}
}

// ParseProtectionSettings reads extension settings strictly (unknown
// fields refused), fills absent fields with the defaults and validates.
// Empty or null settings are the defaults.
func ParseProtectionSettings(raw []byte) (ProtectionSettings, error) {
	s := DefaultProtectionSettings()
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return s, nil
	}
	if err := DecodeStrict(t, &s); err != nil {
		return s, fmt.Errorf("endpoint protection settings: %v", err)
	}
	if s.Exclusions.Paths == nil {
		s.Exclusions.Paths = []string{}
	}
	if s.Exclusions.Extensions == nil {
		s.Exclusions.Extensions = []string{}
	}
	if s.Realtime.Paths == nil {
		s.Realtime.Paths = []string{}
	}
	return s, s.Validate()
}

var extensionRE = regexp.MustCompile(`^\.?[A-Za-z0-9_+-]{1,32}$`)

// Validate says what is wrong with s, naming the field.
func (s ProtectionSettings) Validate() error {
	switch s.Action {
	case ProtectionQuarantine, ProtectionDelete, ProtectionReport:
	default:
		return fmt.Errorf("endpoint protection settings: action %q must be quarantine, delete or report", s.Action)
	}
	if s.Realtime.Enabled && len(s.Realtime.Paths) == 0 {
		return errors.New("endpoint protection settings: realtime.paths is empty while realtime.enabled is true")
	}
	if err := checkHostPaths("realtime.paths", s.Realtime.Paths); err != nil {
		return err
	}
	if err := checkHostPaths("exclusions.paths", s.Exclusions.Paths); err != nil {
		return err
	}
	if len(s.Exclusions.Extensions) > maxProtectionPaths {
		return fmt.Errorf("endpoint protection settings: exclusions.extensions holds more than %d entries", maxProtectionPaths)
	}
	for i, e := range s.Exclusions.Extensions {
		if !extensionRE.MatchString(e) {
			return fmt.Errorf("endpoint protection settings: exclusions.extensions[%d] %q is not a file name extension such as \"iso\" or \".log\"", i, e)
		}
	}
	return nil
}

// checkHostPaths checks absolute, clean host paths.
func checkHostPaths(field string, ps []string) error {
	if len(ps) > maxProtectionPaths {
		return fmt.Errorf("endpoint protection settings: %s holds more than %d paths", field, maxProtectionPaths)
	}
	for i, p := range ps {
		if err := CheckHostPath(p); err != nil {
			return fmt.Errorf("endpoint protection settings: %s[%d]: %w", field, i, err)
		}
	}
	return nil
}

// CheckHostPath checks one absolute path on a machine: clean, no "..", no
// control characters, at most 4096 bytes.
func CheckHostPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > maxProtectionPath:
		return fmt.Errorf("path longer than %d bytes", maxProtectionPath)
	case !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("path %q holds control characters", p)
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q is not absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean (write %q)", p, path.Clean(p))
	}
	return nil
}

// Marshal is s as compact JSON (for extension settings).
func (s ProtectionSettings) Marshal() json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// ProtectionDesired is the protection feature's slice of the desired state.
type ProtectionDesired struct {
	// SignatureKey is the ed25519 public key the control plane signs
	// signature sets with. The agent pins it the first time protection is
	// enabled (or uses protection.signaturekey, set by root) and never
	// trusts another one the control plane presents.
	SignatureKey []byte `json:"signatureKey,omitempty"`
	// Signatures is the set the machine should have (none: only the
	// built-in signature).
	Signatures *ProtectionSignatureRef `json:"signatures,omitempty"`
	// Scans are on-demand scans not yet reported finished.
	Scans []ProtectionScanRequest `json:"scans,omitempty"`
	// Restores are quarantine restores not yet reported finished.
	Restores []ProtectionRestoreRequest `json:"restores,omitempty"`
	// Schedule is the recurring scan of the machine's protected scope.
	Schedule *ProtectionSchedule `json:"schedule,omitempty"`
}

// ProtectionSignatureRef names a signature set to download from
// PathProtectionSignatures + Version.
type ProtectionSignatureRef struct {
	Version uint64 `json:"version"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
}

// ProtectionScanRequest is one on-demand scan.
type ProtectionScanRequest struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Paths       []string  `json:"paths,omitempty"` // custom scans
	RequestedAt time.Time `json:"requestedAt"`
}

// ProtectionRestoreRequest puts a quarantined file back.
type ProtectionRestoreRequest struct {
	ID           string `json:"id"`
	QuarantineID string `json:"quarantineId"`
	// NoExclusion restores without excluding the file's SHA-256 from
	// later detections.
	NoExclusion bool `json:"noExclusion,omitempty"`
	// Force replaces a file that now exists at the original path.
	Force       bool      `json:"force,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
}

// ProtectionSchedule is a recurring scan: one of Type every Every.
type ProtectionSchedule struct {
	Type  string   `json:"type"`
	Every Duration `json:"every"`
}

// Validate checks a schedule (at least every hour, at most every 31 days).
func (s ProtectionSchedule) Validate() error {
	if s.Type != ScanQuick && s.Type != ScanFull {
		return fmt.Errorf("scheduled scan type %q must be quick or full", s.Type)
	}
	if d := time.Duration(s.Every); d < time.Hour || d > 31*24*time.Hour {
		return fmt.Errorf("scheduled scans run between every hour and every 31 days, not every %s", d)
	}
	return nil
}

// Protection report kinds.
const (
	ReportProtectionStatus     = "protectionStatus"     // Body: ProtectionStatus
	ReportProtectionDetection  = "protectionDetection"  // Body: ProtectionDetection
	ReportProtectionScan       = "protectionScan"       // Body: ProtectionScanResult
	ReportProtectionQuarantine = "protectionQuarantine" // Body: ProtectionQuarantineReport
	ReportProtectionRestore    = "protectionRestore"    // Body: ProtectionRestoreResult
)

// Protection daemon states (ProtectionStatus.State).
const (
	ProtectionRunning  = "Running"
	ProtectionStopped  = "Stopped"  // not enabled on the machine
	ProtectionRefused  = "Refused"  // enabled, but the local configuration refuses it
	ProtectionStarting = "Starting" // the daemon is (re)starting
	ProtectionFailed   = "Failed"   // the daemon keeps exiting
)

// ProtectionStatus is what a machine's protection is doing.
type ProtectionStatus struct {
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	// EngineVersion is the scanner's (the agent's) version.
	EngineVersion    string `json:"engineVersion,omitempty"`
	SignatureVersion uint64 `json:"signatureVersion"`
	// Signatures counts the loaded signatures, the built-in one included.
	Signatures int `json:"signatures"`
	// SignatureError is why the last signature set was refused (the
	// previous one is kept).
	SignatureError  string `json:"signatureError,omitempty"`
	RealtimeEnabled bool   `json:"realtimeEnabled"`
	// RealtimeMode is fanotify or inotify; RealtimeReason why inotify.
	RealtimeMode   string `json:"realtimeMode,omitempty"`
	RealtimeReason string `json:"realtimeReason,omitempty"`
	Blocking       bool   `json:"blocking"`
	// Action is the action in force (report when host changes are off).
	Action string `json:"action,omitempty"`
	// ReportOnly says why detections are only reported.
	ReportOnly  string                 `json:"reportOnly,omitempty"`
	LastScan    *ProtectionScanSummary `json:"lastScan,omitempty"`
	Quarantined int                    `json:"quarantined"`
	Restarts    int                    `json:"restarts"`
	// Limits says how the daemon's CPU and memory limits are enforced.
	Limits string    `json:"limits,omitempty"`
	At     time.Time `json:"at"`
}

// ProtectionScanSummary is the last finished scan.
type ProtectionScanSummary struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	State      string    `json:"state"`
	Infected   int64     `json:"infected"`
	FinishedAt time.Time `json:"finishedAt"`
}

// ProtectionDetection is one detection on a machine: an alert on the
// server.
type ProtectionDetection struct {
	// ID is unique per machine; a report delivered twice is one alert.
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Path      string    `json:"path"` // the host's path
	Member    string    `json:"member,omitempty"`
	SHA256    string    `json:"sha256"`
	Signature string    `json:"signature"`
	Kind      string    `json:"kind,omitempty"` // signature or bomb
	// Source is realtime or scan; ScanID names the scan.
	Source string `json:"source"`
	ScanID string `json:"scanId,omitempty"`
	// Event is close-write, open or exec (real time).
	Event        string `json:"event,omitempty"`
	Action       string `json:"action"`
	QuarantineID string `json:"quarantineId,omitempty"`
	// Error says why the action failed: the file stays where it was.
	Error   string `json:"error,omitempty"`
	Process string `json:"process,omitempty"`
	PID     int    `json:"pid,omitempty"`
}

// ProtectionScanResult is a scan's progress and result.
type ProtectionScanResult struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Paths      []string  `json:"paths,omitempty"`
	State      string    `json:"state"`
	Message    string    `json:"message,omitempty"`
	Scheduled  bool      `json:"scheduled,omitempty"`
	Files      int64     `json:"files"`
	Bytes      int64     `json:"bytes"`
	Infected   int64     `json:"infected"`
	Errors     int64     `json:"errors"`
	Skipped    int64     `json:"skipped"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// ProtectionQuarantineReport is the machine's whole quarantine (it replaces the
// previous report).
type ProtectionQuarantineReport struct {
	Entries []QuarantineEntry `json:"entries"`
}

// QuarantineEntry is one quarantined file.
type QuarantineEntry struct {
	ID        string    `json:"id"`
	Path      string    `json:"path"`
	SHA256    string    `json:"sha256"`
	Signature string    `json:"signature"`
	Size      int64     `json:"size"`
	UID       int       `json:"uid"`
	GID       int       `json:"gid"`
	Mode      uint32    `json:"mode"`
	Time      time.Time `json:"time"`
}

// ProtectionRestoreResult is the outcome of a restore request.
type ProtectionRestoreResult struct {
	ID           string    `json:"id"`
	QuarantineID string    `json:"quarantineId"`
	State        string    `json:"state"` // Succeeded or Failed
	Message      string    `json:"message,omitempty"`
	Path         string    `json:"path,omitempty"`
	Exclusion    bool      `json:"exclusion,omitempty"`
	FinishedAt   time.Time `json:"finishedAt"`
}

// ---- REST ----

// ProtectionEnable is the body of PUT {scope}/protection: protection on for
// every machine of the scope, now and later.
type ProtectionEnable struct {
	Settings ProtectionSettings `json:"settings"`
	// Schedule, when set, runs a recurring scan on every machine.
	Schedule *ProtectionSchedule `json:"schedule,omitempty"`
}

// ProtectionAssignment is protection enabled on a scope.
type ProtectionAssignment struct {
	ID        string              `json:"id"` // SCOPE/protection
	Scope     string              `json:"scope"`
	Settings  ProtectionSettings  `json:"settings"`
	Schedule  *ProtectionSchedule `json:"schedule,omitempty"`
	Machines  int                 `json:"machines"` // machines it was installed on by the last change
	CreatedAt time.Time           `json:"createdAt"`
	CreatedBy string              `json:"createdBy,omitempty"`
	UpdatedAt time.Time           `json:"updatedAt"`
	UpdatedBy string              `json:"updatedBy,omitempty"`
}

// MachineProtection is a machine's protection as the server knows it.
type MachineProtection struct {
	MachineID string `json:"machineId"` // resource id
	Machine   string `json:"machine"`
	// Scope is the enabled scope that covers the machine ("" if none).
	Scope string `json:"scope,omitempty"`
	// Extension is the state of Corral/EndpointProtection on the machine.
	ExtensionState   string            `json:"extensionState,omitempty"`
	ExtensionMessage string            `json:"extensionMessage,omitempty"`
	Status           *ProtectionStatus `json:"status,omitempty"`
	ActiveAlerts     int               `json:"activeAlerts"`
	UpdatedAt        time.Time         `json:"updatedAt,omitzero"`
}

// Alert is one detection.
type Alert struct {
	ID        string    `json:"id"`
	MachineID string    `json:"machineId"` // resource id of the machine
	Machine   string    `json:"machine"`   // its name
	Path      string    `json:"path"`
	Member    string    `json:"member,omitempty"`
	SHA256    string    `json:"sha256"`
	Signature string    `json:"signature"`
	Action    string    `json:"action"`
	Error     string    `json:"error,omitempty"`
	Source    string    `json:"source"`
	ScanID    string    `json:"scanId,omitempty"`
	Process   string    `json:"process,omitempty"`
	PID       int       `json:"pid,omitempty"`
	Time      time.Time `json:"time"`
	State     string    `json:"state"`
	// QuarantineID names the quarantine entry to restore.
	QuarantineID   string    `json:"quarantineId,omitempty"`
	AcknowledgedAt time.Time `json:"acknowledgedAt,omitzero"`
	AcknowledgedBy string    `json:"acknowledgedBy,omitempty"`
	ReceivedAt     time.Time `json:"receivedAt"`
}

// ScanCreate is the body of POST {machine}/scans.
type ScanCreate struct {
	Type  string   `json:"type"`
	Paths []string `json:"paths,omitempty"`
}

// Scan is an on-demand or scheduled scan of a machine.
type Scan struct {
	ID         string    `json:"id"`
	MachineID  string    `json:"machineId"`
	Machine    string    `json:"machine"`
	Type       string    `json:"type"`
	Paths      []string  `json:"paths,omitempty"`
	State      string    `json:"state"`
	Message    string    `json:"message,omitempty"`
	Scheduled  bool      `json:"scheduled,omitempty"`
	Files      int64     `json:"files"`
	Bytes      int64     `json:"bytes"`
	Infected   int64     `json:"infected"`
	Errors     int64     `json:"errors"`
	CreatedAt  time.Time `json:"createdAt"`
	CreatedBy  string    `json:"createdBy,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// RestoreCreate is the body of POST {machine}/quarantine/{id}/restore.
type RestoreCreate struct {
	NoExclusion bool `json:"noExclusion,omitempty"`
	Force       bool `json:"force,omitempty"`
}

// Restore is a quarantine restore requested from the server.
type Restore struct {
	ID           string    `json:"id"`
	MachineID    string    `json:"machineId"`
	QuarantineID string    `json:"quarantineId"`
	NoExclusion  bool      `json:"noExclusion,omitempty"`
	Force        bool      `json:"force,omitempty"`
	State        string    `json:"state"`
	Message      string    `json:"message,omitempty"`
	Path         string    `json:"path,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	CreatedBy    string    `json:"createdBy,omitempty"`
	FinishedAt   time.Time `json:"finishedAt,omitzero"`
}

// SignatureSet is an imported, signed signature set.
type SignatureSet struct {
	Version        uint64    `json:"version"`
	HashSignatures int       `json:"hashSignatures"`
	BodySignatures int       `json:"bodySignatures"`
	Unsupported    int       `json:"unsupported"`
	Sources        []string  `json:"sources"`
	Size           int64     `json:"size"`
	SHA256         string    `json:"sha256"`
	CreatedAt      time.Time `json:"createdAt"`
	CreatedBy      string    `json:"createdBy,omitempty"`
	// UnsupportedLines are the first lines not shipped, "file:line: reason"
	// (only in the import's answer).
	UnsupportedLines []string `json:"unsupportedLines,omitempty"`
	// PublicKey is the key it is signed with ("ed25519:BASE64").
	PublicKey string `json:"publicKey,omitempty"`
}
