package wire

import (
	"encoding/json"
	"regexp"
	"time"
)

// resourceName is the rule for every resource name the control plane
// hands out (machines, extensions, run commands): the agent applies it to
// names it receives too.
var resourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidResourceName reports whether s follows the resource name rule.
func ValidResourceName(s string) bool { return resourceName.MatchString(s) }

// Extension operation states, exactly as in DESIGN.md §5.
const (
	ExtCreating  = "Creating"
	ExtUpdating  = "Updating"
	ExtDeleting  = "Deleting"
	ExtSucceeded = "Succeeded"
	ExtFailed    = "Failed"
)

// First-party extensions. Their packages are published by the control
// plane itself under publisher "Corral" at first start and go through the
// same catalog, digest and lock-down checks as any other extension.
const (
	PublisherCorral          = "Corral"
	ExtRunCommand            = "Corral/RunCommand"
	ExtPatchManagement       = "Corral/PatchManagement"
	ExtEndpointProtection    = "Corral/EndpointProtection"
	BuiltinHandlerPrefix     = "builtin:" // manifest command handled inside corral-agent
	ManifestFile             = "manifest.json"
	MaxPackageBytes          = 64 << 20 // compressed archive
	MaxUnpackedBytes         = 256 << 20
	MaxPackageFiles          = 4096
	MaxHandlerOutputBytes    = 64 << 10 // stdout and stderr each, kept on the record
	DefaultHandlerTimeout    = 5 * time.Minute
	MaxHandlerTimeout        = 2 * time.Hour
	DefaultRunCommandTimeout = 10 * time.Minute
)

// Handler names of a manifest, in lifecycle order.
const (
	HandlerInstall   = "install"
	HandlerEnable    = "enable"
	HandlerDisable   = "disable"
	HandlerUpdate    = "update"
	HandlerUninstall = "uninstall"
)

// ExtensionManifest is manifest.json at the root of an extension package.
// Commands run with /bin/sh -c in the unpacked package directory, as root,
// with the settings on standard input (see HandlerInput). A command of the
// form "builtin:NAME" is run by corral-agent itself (first-party handlers).
type ExtensionManifest struct {
	Publisher string            `json:"publisher"`
	Type      string            `json:"type"`
	Version   string            `json:"version"` // semantic version: MAJOR.MINOR.PATCH
	Handlers  ExtensionHandlers `json:"handlers"`
	// OS and Arch list where the extension runs ("linux"; "amd64", "arm64");
	// empty means anywhere.
	OS   []string `json:"os,omitempty"`
	Arch []string `json:"arch,omitempty"`
	// Timeouts per handler name; missing = DefaultHandlerTimeout.
	Timeouts map[string]Duration `json:"timeouts,omitempty"`
}

// ExtensionHandlers are the lifecycle commands. Install and Enable are
// required; the others may be empty (nothing to do).
type ExtensionHandlers struct {
	Install   string `json:"install"`
	Enable    string `json:"enable"`
	Disable   string `json:"disable,omitempty"`
	Update    string `json:"update,omitempty"`
	Uninstall string `json:"uninstall,omitempty"`
}

// HandlerInput is written as JSON to a handler's standard input. Protected
// settings appear only here, decrypted in the agent's memory.
type HandlerInput struct {
	Name              string          `json:"name"`
	Operation         string          `json:"operation"` // install, update, upgrade, remove
	Settings          json.RawMessage `json:"settings,omitempty"`
	ProtectedSettings json.RawMessage `json:"protectedSettings,omitempty"`
}

// Catalog is what a publisher signs: the digest of every package it
// publishes. Serial only grows, so an old catalog cannot be replayed.
type Catalog struct {
	Publisher string    `json:"publisher"`
	Serial    int64     `json:"serial"`
	IssuedAt  time.Time `json:"issuedAt"`
	// ExpiresAt bounds how long the signed list stays good: agents refuse
	// an expired catalog, so a withdrawn version cannot be brought back by
	// replaying an old catalog to an agent that lost its state. Publishers
	// re-sign before it passes (corral publisher refresh-catalog).
	ExpiresAt time.Time      `json:"expiresAt,omitzero"`
	Packages  []CatalogEntry `json:"packages"`
}

// Catalog validity bounds: publishers sign for at most MaxCatalogValidity;
// clocks may disagree by CatalogClockSkew.
const (
	DefaultCatalogValidity = 365 * 24 * time.Hour
	MaxCatalogValidity     = 3 * 365 * 24 * time.Hour
	CatalogClockSkew       = 5 * time.Minute
)

// CatalogEntry names one package version and its archive digest.
type CatalogEntry struct {
	Type    string `json:"type"`
	Version string `json:"version"`
	Digest  string `json:"digest"` // "sha256:" + hex of the archive
	Size    int64  `json:"size"`
}

// SignedCatalog carries the exact catalog bytes and the publisher's ed25519
// signature over them. Verifiers parse Catalog only after the signature
// checks out.
type SignedCatalog struct {
	Catalog   []byte `json:"catalog"`   // JSON of Catalog; base64 on the wire
	Signature []byte `json:"signature"` // ed25519 over Catalog; base64 on the wire
}

// Publisher is a registered extension publisher: /publishers/{name}.
type Publisher struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	PublicKey []byte    `json:"publicKey"` // ed25519, 32 bytes; base64 on the wire
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// PublisherCreate is the body of PUT /api/v1/publishers/{name}. The private
// key never leaves the caller.
type PublisherCreate struct {
	PublicKey []byte `json:"publicKey"`
}

// ExtensionPackage is a published package version:
// /publishers/{p}/extensionTypes/{t}/versions/{v}.
type ExtensionPackage struct {
	ID          string            `json:"id"`
	Publisher   string            `json:"publisher"`
	Type        string            `json:"type"`
	Version     string            `json:"version"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Manifest    ExtensionManifest `json:"manifest"`
	Listed      bool              `json:"listed"` // in the publisher's current signed catalog
	PublishedAt time.Time         `json:"publishedAt"`
	PublishedBy string            `json:"publishedBy,omitempty"`
}

// MachineExtension is an extension on a machine:
// /subscriptions/{s}/resourceGroups/{rg}/machines/{m}/extensions/{name}.
type MachineExtension struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	Publisher            string          `json:"publisher"`
	Type                 string          `json:"type"`
	Version              string          `json:"version"`
	Settings             json.RawMessage `json:"settings,omitempty"`
	HasProtectedSettings bool            `json:"hasProtectedSettings"`
	// State is Creating, Updating or Deleting while the agent works on the
	// last request, then Succeeded or Failed with Message from the handler
	// or the agent (e.g. a refusal by the local allowlist).
	State     string    `json:"state"`
	Message   string    `json:"message,omitempty"`
	SeqNo     int64     `json:"seqNo"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy,omitempty"`
}

// MachineExtensionSet is the body of PUT .../extensions/{name}: install,
// reconfigure (new settings: update) or change version (upgrade).
// ProtectedSettings travel in the clear only inside TLS to the server, which
// seals them to the machine at once and stores only the ciphertext.
type MachineExtensionSet struct {
	Publisher         string          `json:"publisher"`
	Type              string          `json:"type"`
	Version           string          `json:"version,omitempty"` // empty = latest listed
	Settings          json.RawMessage `json:"settings,omitempty"`
	ProtectedSettings json.RawMessage `json:"protectedSettings,omitempty"`
}

// DesiredExtension is one extension in a machine's desired state.
type DesiredExtension struct {
	Name      string          `json:"name"`
	Publisher string          `json:"publisher"`
	Type      string          `json:"type"`
	Version   string          `json:"version"`
	Digest    string          `json:"digest"`
	Settings  json.RawMessage `json:"settings,omitempty"`
	// ProtectedSettings is sealed to the machine's sealing key (see Seal
	// in internal/sealing); only the agent can open it.
	ProtectedSettings []byte `json:"protectedSettings,omitempty"`
	// SeqNo grows with every set, so the same settings set twice still
	// runs the update handler once more.
	SeqNo int64 `json:"seqNo"`
}

// PublisherKey tells the agent which key signs a publisher's catalog. The
// agent pins the first key it sees per publisher and refuses a change.
type PublisherKey struct {
	Name      string `json:"name"`
	PublicKey []byte `json:"publicKey"`
}

// ExtensionStatus is the agent's report on one extension (ReportExtension).
type ExtensionStatus struct {
	Name      string `json:"name"`
	Publisher string `json:"publisher"`
	Type      string `json:"type"`
	Version   string `json:"version,omitempty"`
	SeqNo     int64  `json:"seqNo"`
	// Operation is install, update, upgrade or remove.
	Operation string `json:"operation"`
	State     string `json:"state"` // Creating/Updating/Deleting/Succeeded/Failed
	Message   string `json:"message,omitempty"`
	// Removed is true when the extension is gone from the machine (after a
	// successful remove): the server then drops the resource.
	Removed bool `json:"removed,omitempty"`
}

// Run command states.
const (
	RunPending   = "Pending"
	RunRunning   = "Running"
	RunSucceeded = "Succeeded" // exit code 0
	RunFailed    = "Failed"    // non-zero exit, refused, or could not start
	RunTimedOut  = "TimedOut"
)

// RunCommandCreate is the body of PUT .../machines/{m}/runCommands/{name}.
// Exactly one of Script and Command is given.
type RunCommandCreate struct {
	Script     string            `json:"script,omitempty"`  // a script body, run with /bin/sh
	Command    string            `json:"command,omitempty"` // one command line, run with /bin/sh -c
	Parameters map[string]string `json:"parameters,omitempty"`
	RunAsUser  string            `json:"runAsUser,omitempty"` // default root
	Timeout    Duration          `json:"timeout,omitempty"`   // default 10m, at most MaxHandlerTimeout

	// ProtectedParameters are environment variables like Parameters, for
	// secrets: the server seals them to the machine at once and stores only
	// the ciphertext; no API answer returns them, and only the agent can
	// open them, in memory, to hand them to the process. A name may not be
	// in both maps.
	ProtectedParameters map[string]string `json:"protectedParameters,omitempty"`
}

// RunCommand is one run's record:
// .../machines/{m}/runCommands/{name}.
type RunCommand struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Script     string            `json:"script,omitempty"`
	Command    string            `json:"command,omitempty"`
	Parameters map[string]string `json:"parameters,omitempty"`
	RunAsUser  string            `json:"runAsUser,omitempty"`
	Timeout    Duration          `json:"timeout"`
	State      string            `json:"state"`
	ExitCode   *int              `json:"exitCode,omitempty"`
	Stdout     string            `json:"stdout,omitempty"` // capped at MaxHandlerOutputBytes
	Stderr     string            `json:"stderr,omitempty"`
	Message    string            `json:"message,omitempty"` // why it failed to run (e.g. blocked locally)
	CreatedAt  time.Time         `json:"createdAt"`
	CreatedBy  string            `json:"createdBy,omitempty"`
	StartedAt  time.Time         `json:"startedAt,omitzero"`
	FinishedAt time.Time         `json:"finishedAt,omitzero"`

	// HasProtectedParameters says the run has protected parameters; their
	// names and values are never returned.
	HasProtectedParameters bool `json:"hasProtectedParameters,omitempty"`
}

// DesiredRunCommand is a run the agent has yet to report finished.
type DesiredRunCommand struct {
	Name       string            `json:"name"`
	Script     string            `json:"script,omitempty"`
	Command    string            `json:"command,omitempty"`
	Parameters map[string]string `json:"parameters,omitempty"`
	RunAsUser  string            `json:"runAsUser,omitempty"`
	Timeout    Duration          `json:"timeout"`

	// ProtectedParameters is the JSON object of the protected parameters,
	// sealed to the machine's sealing key with sealing.RunCommandAAD.
	ProtectedParameters []byte `json:"protectedParameters,omitempty"`
}

// RunCommandResult is the agent's report on a run (ReportRunCommand).
// Running is reported when it starts; a final state when it ends.
type RunCommandResult struct {
	Name       string    `json:"name"`
	State      string    `json:"state"`
	ExitCode   *int      `json:"exitCode,omitempty"`
	Stdout     string    `json:"stdout,omitempty"`
	Stderr     string    `json:"stderr,omitempty"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}
