// Package access is the agent feature of secure access (DESIGN §9): it keeps
// the machine's `inet corral` nftables table in line with the JIT policy and
// grants of the desired state (package jit does the kernel part), and, when
// root allows it with `ssh.manage true`, makes sshd trust the control
// plane's SSH user CA for the two login accounts (package sshaccess).
//
// JIT: the policy and grants arrive with absolute expiries; each grant is
// given to the kernel with the time left, so it closes on time even when
// the agent is dead. What the feature put in force is saved in its folder
// (jit.json) before the kernel is changed, and restored at start: after a
// reboot the table is rebuilt with the unexpired grants. A Tick checks the
// table every CheckInterval and restores it when someone flushed the
// ruleset. A machine whose nftables cannot be used (no nf_tables, no
// CAP_NET_ADMIN) reports the JIT state Failed with the reason and every
// grant Failed with it; nothing is half-applied (every change is one
// netlink batch). Grant durations are never longer than the policy's
// maximum, whatever the control plane asks.
//
// SSH: with ssh.manage true (read from the local configuration at each
// decision) and the CA in the desired state, sshaccess.Enable puts the
// drop-in, the CA key and the principals files in place under the host
// root, creates the accounts (ssh.adminuser, ssh.user) if absent, and
// checks it all before it is in force; principals must be scoped to this
// machine ("admin@MACHINE-ID"). When ssh.manage goes false it is undone at
// once (ConfigChanged), as undoing is always allowed. The sshd host keys
// are reported so `corral ssh` can pin them.
//
// Every host change is refused, with the reason reported, while
// env.HostChangesRefused() says so (corral dev, trial mode). Each report
// (wire.ReportAccess) is the whole status, sent when it changes.
//
// Concurrency: the host never runs Apply and Tick together; ConfigChanged
// may come during either, so the feature's own state is under a mutex.
package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/jit"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/sshaccess"
	"github.com/corralhq/corral/internal/wire"
)

// Options configure the feature. The zero value is what the agent runs.
type Options struct {
	// NetNS is an open descriptor of the network namespace whose nftables
	// the feature manages; 0 is the agent's own (tests give one of theirs).
	NetNS int
	// CheckInterval is how often the table is checked and restored if it
	// went missing; default DefaultCheckInterval.
	CheckInterval time.Duration
	// ReloadSSHD makes the running sshd read its configuration again;
	// default: SIGHUP to the pid in HOSTROOT/run/sshd.pid, else systemctl.
	ReloadSSHD func(ctx context.Context) error
}

// DefaultCheckInterval is how often the table is checked: the longest a
// flushed ruleset leaves managed ports open.
const DefaultCheckInterval = 5 * time.Second

// Feature is the secure-access feature.
type Feature struct {
	opts Options
	env  feature.Env
	jit  *jit.Manager

	mu       sync.Mutex
	desired  wire.AccessDesired
	have     bool // desired was set by an Apply
	status   wire.AccessStatus
	reported []byte // the last report sent
	ssh      *sshaccess.Access
	// sshKey and sshAt are the settings last put in force and when.
	sshKey string
	sshAt  time.Time
}

var (
	_ feature.Feature       = (*Feature)(nil)
	_ feature.ConfigWatcher = (*Feature)(nil)
	_ feature.Ticker        = (*Feature)(nil)
)

// New returns the feature with the agent's defaults.
func New() *Feature { return NewWith(Options{}) }

// NewWith returns the feature with opts.
func NewWith(opts Options) *Feature {
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	return &Feature{opts: opts}
}

// Name implements feature.Feature.
func (f *Feature) Name() string { return wire.FeatureAccess }

// Start restores the JIT table from the saved state (after a reboot the
// kernel has none).
func (f *Feature) Start(ctx context.Context, env feature.Env) error {
	f.env = env
	f.jit = jit.New(jit.Options{NetNS: f.opts.NetNS, Now: env.Clock})
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok, err := f.loadJIT()
	if err != nil {
		env.Logger.ErrorContext(ctx, "saved JIT state unreadable; the table is rebuilt from the next desired state", "err", err)
		return nil
	}
	if !ok {
		return nil
	}
	if why := env.HostChangesRefused(); why != nil {
		env.LogRefused(ctx, "JIT table not restored", "reason", why)
		return nil
	}
	gs, err := f.jit.Restore(ctx, st)
	if err != nil {
		env.Logger.ErrorContext(ctx, "restore the JIT table", "err", err)
		return nil
	}
	env.Logger.InfoContext(ctx, "JIT table restored", "ports", len(st.Policy.Ports), "grants", len(gs))
	return nil
}

// Apply brings the JIT table and the sshd certificate login in line with
// the desired state and reports the result.
func (f *Feature) Apply(ctx context.Context, d feature.Desired) error {
	var ad wire.AccessDesired
	if raw, ok := d.State.Features[wire.FeatureAccess]; ok {
		if err := json.Unmarshal(raw, &ad); err != nil {
			return fmt.Errorf("the access part of the desired state is malformed: %w", err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desired, f.have = ad, true
	f.status.JIT = f.reconcileJIT(ctx, ad.JIT)
	f.status.SSH = f.reconcileSSH(ctx, ad.SSH)
	f.report()
	return nil
}

// ConfigChanged undoes the sshd certificate login at once when ssh.manage
// is no longer true; the Apply that follows picks up the rest.
func (f *Feature) ConfigChanged(ctx context.Context, cfg localconfig.Effective) {
	if cfg.SSHManage {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.SSH = f.reconcileSSH(ctx, f.desired.SSH)
	f.report()
}

// TickInterval implements feature.Ticker.
func (f *Feature) TickInterval() time.Duration { return f.opts.CheckInterval }

// Tick checks that the table is still in the kernel and restores it if
// someone flushed it.
func (f *Feature) Tick(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok, err := f.loadJIT()
	if err != nil || !ok {
		return err
	}
	err = f.jit.Check(ctx)
	if !errors.Is(err, jit.ErrNotApplied) {
		return nil // in place, or nftables unusable: Apply reports that
	}
	if why := f.env.HostChangesRefused(); why != nil {
		f.env.LogRefused(ctx, "JIT table missing and not restored", "reason", why)
		return nil
	}
	f.env.Logger.WarnContext(ctx, "the JIT table went missing (ruleset flushed?); restoring it", "err", err)
	if _, err := f.jit.Restore(ctx, st); err != nil {
		return fmt.Errorf("restore the JIT table: %w", err)
	}
	if f.have {
		f.status.JIT = f.reconcileJIT(ctx, f.desired.JIT)
		f.report()
	}
	return nil
}

// Close implements feature.Feature. The table stays: it is the machine's
// protection while the agent is away.
func (f *Feature) Close() error { return nil }

// report sends the status when it changed since the last report.
func (f *Feature) report() {
	b, err := json.Marshal(f.status)
	if err != nil || string(b) == string(f.reported) {
		return
	}
	f.reported = b
	f.env.Report(wire.ReportAccess, f.status, wire.ReportAccess)
}
