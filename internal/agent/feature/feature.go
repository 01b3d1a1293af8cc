// Package feature is the agent's seam for capabilities. Each capability
// (the extension manager, run command, and later guest configuration,
// update management, endpoint protection, secure access) is a Feature in a
// package of its own; the daemon hosts the features it is given (normally
// features.Default()) and never imports a capability directly.
//
// Lifecycle, driven by the daemon (the host):
//
//	New (by the feature's package) → Start(ctx, env) once → Apply for every
//	desired state → ConfigChanged when root changes the local configuration
//	→ Tick every TickInterval (if a Ticker) → Close once on shutdown.
//
// The host never runs Apply and Tick of one feature at the same time, so a
// feature needs no lock for state only those two touch. ConfigChanged may
// come while Apply or Tick runs — that is its point: to stop work in
// progress that root just forbade. Close comes after the last call returned. A feature that panics or fails to start is
// contained: the host logs it, reports it to the control plane
// (wire.ReportFeature) and keeps every other feature and the connection
// running.
//
// Local lock-down: every decision a feature makes under the local
// configuration reads Env.Config() at that moment (the file as it is on
// disk), so a value is in force from the moment `corral-agent config set`
// returns; ConfigChanged only tells a feature to stop what the new
// configuration forbids and to re-check what was refused before.
package feature

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/corralhq/corral/internal/agent/agentlog"
	"github.com/corralhq/corral/internal/agent/cpulimit"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/agent/supervise"
	"github.com/corralhq/corral/internal/wire"
)

// Feature is one capability of the agent.
type Feature interface {
	// Name is the feature's stable name: its folder under the state
	// directory and its key in wire.DesiredState.Features.
	Name() string
	// Start prepares the feature (open its state, recover from a crash).
	// It must not block on the network: the control plane may be away.
	Start(ctx context.Context, env Env) error
	// Apply brings the machine toward the feature's part of d. It must be
	// idempotent: it runs again after every fetch, after a restart, after
	// a local configuration change and periodically.
	Apply(ctx context.Context, d Desired) error
	// Close stops everything the feature started and waits for it.
	Close() error
}

// Desired is one desired state handed to the features.
type Desired struct {
	State wire.DesiredState
	// Fresh says State was just fetched from the control plane. A cached
	// copy (re-applied after a restart, a local configuration change or
	// for the periodic repair) may be days old: one-shot work such as a run
	// command starts only from a fresh one.
	Fresh bool
}

// ConfigWatcher is a feature told when root changed the local
// configuration. It must stop at once what cfg forbids (and report why);
// what cfg now allows is picked up by the Apply of the cached desired state
// the host runs right after.
type ConfigWatcher interface {
	ConfigChanged(ctx context.Context, cfg localconfig.Effective)
}

// Ticker is a feature with periodic work (an assessment every 24 h, a
// re-evaluation every 15 min).
type Ticker interface {
	// TickInterval is how often Tick runs; <= 0 means never.
	TickInterval() time.Duration
	Tick(ctx context.Context) error
}

// Builtin is a first-party extension (publisher Corral) whose code ships
// with the agent: the extension manager runs its handlers in process
// instead of downloading a package, after the same lock-down checks as any
// extension. The control plane can switch it on and configure it, never
// supply its code.
type Builtin interface {
	// ExtensionName is "Corral/Type".
	ExtensionName() string
	// RunHandler runs lifecycle handler (wire.HandlerInstall, ...Enable,
	// ...Disable, ...Update, ...Uninstall) with the handler input (settings,
	// opened protected settings) and returns the status message.
	RunHandler(ctx context.Context, handler string, in wire.HandlerInput) (string, error)
}

// ReportOnlyBuiltin is a Builtin whose handlers change nothing on the host
// themselves: the feature behind it checks Env.HostChangesRefused before
// each change it makes and otherwise only observes (endpoint protection
// reports detections instead of quarantining them). The extension manager
// runs its handlers while host changes are off (corral dev, trial mode),
// after the same lock-down checks as any extension.
type ReportOnlyBuiltin interface {
	Builtin
	RunsWithoutHostChanges() bool
}

// BuiltinProvider is a feature that provides first-party extensions.
type BuiltinProvider interface {
	Builtins() []Builtin
}

// ControlPlane is the agent's authenticated channel to the control plane
// (mTLS, through the configured proxy, never following redirects).
type ControlPlane interface {
	// Do sends body as JSON (nil: none) and decodes a 2xx JSON answer into
	// out (nil: discard); other answers are *wire.APIError.
	Do(ctx context.Context, method, path string, body, out any) error
	// Download returns a binary body of at most max bytes.
	Download(ctx context.Context, path string, max int64) ([]byte, error)
}

// Machine is who this agent is.
type Machine struct {
	ID         string
	ResourceID string
	// SealingKey returns the private X25519 key protected settings are
	// sealed to.
	SealingKey func() ([]byte, error)
}

// Env is what the host gives a feature at Start. It is the feature's only
// way to the rest of the agent.
type Env struct {
	Logger *slog.Logger
	// StateDir is the agent's state directory; Dir the feature's own folder
	// in it (created root-only).
	StateDir statedir.Dir
	Dir      string
	// HostRoot is the root of the host the agent manages: "/" in production,
	// a tree in tests and corral dev's read-only view (--root). Features read
	// and change the host only under it.
	HostRoot string
	Clock    func() time.Time
	// Report queues an observation for the control plane in the on-disk
	// outbox; a later report with the same supersedeKey replaces an
	// undelivered earlier one.
	Report func(kind string, body any, supersedeKey string)
	// Config is the local configuration as it is on disk now; a damaged
	// file yields localconfig.FailClosed.
	Config       func() localconfig.Effective
	ControlPlane ControlPlane
	Machine      Machine
	// Limiter runs processes under the local CPU limits (nil: cgroup v2 is
	// not available and limits are not enforced).
	Limiter *cpulimit.Limiter
	// Supervisor runs long-lived first-party daemons.
	Supervisor *supervise.Supervisor
	// HostChangesOff, when not empty, is why every host-changing operation
	// is refused (corral dev without --allow-host-changes).
	HostChangesOff string
	// Builtins are the first-party extensions every hosted feature
	// provides, by lower-cased "publisher/type".
	Builtins map[string]Builtin
	// Refusals samples the logging of refused operations (LogRefused).
	Refusals *agentlog.Sampler
}

// HostChangesRefused says why an operation that changes the host may not run
// now: corral dev without --allow-host-changes, `corral-agent run
// --host-changes=false`, or hostchanges.enabled=false (trial mode) in the
// local configuration as it is on disk at this moment. Nil when allowed.
func (e Env) HostChangesRefused() error {
	if e.HostChangesOff != "" {
		return errors.New(e.HostChangesOff)
	}
	return e.Config().HostChangesRefused()
}

// LogRefused logs an operation the local rules (or a limit) refused, at most
// a few such lines per minute per feature, so that a control plane sending
// thousands of refused operations cannot rotate the agent's logs away.
func (e Env) LogRefused(ctx context.Context, msg string, args ...any) {
	if e.Logger == nil {
		return
	}
	if e.Refusals == nil {
		e.Logger.WarnContext(ctx, msg, args...)
		return
	}
	ok, suppressed := e.Refusals.Allow(msg)
	if suppressed > 0 {
		e.Logger.WarnContext(ctx, "refusals not logged in the last minute", "kind", msg, "count", suppressed)
	}
	if ok {
		e.Logger.WarnContext(ctx, msg, args...)
	}
}

// Limits on what one desired state may ask of the agent: beyond them the
// rest is ignored (and said once in the log), so that a control plane cannot
// make the agent write without bound.
const (
	MaxDesiredExtensions = 256
	MaxDesiredRuns       = 100
)
