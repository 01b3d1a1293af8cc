package daemon

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/agent/agentlog"
	"github.com/corralhq/corral/internal/agent/cpulimit"
	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/wire"
)

// hosted is one feature under the daemon's care.
type hosted struct {
	f   feature.Feature
	env feature.Env
	// mu serializes Apply and Tick of this feature (the feature contract).
	mu sync.Mutex
	// failed is why the feature is out of service ("" = running). A
	// feature that failed to start is skipped until the agent restarts; one
	// that failed in Apply or Tick is tried again next time.
	failed   string
	disabled bool
}

// hostFeatures prepares an Env for every feature; first-party extensions
// they provide are collected first so that every feature sees them all.
func (d *Daemon) hostFeatures(fs []feature.Feature, limiter *cpulimit.Limiter) []*hosted {
	builtins := map[string]feature.Builtin{}
	for _, f := range fs {
		if p, ok := f.(feature.BuiltinProvider); ok {
			for _, b := range p.Builtins() {
				builtins[strings.ToLower(b.ExtensionName())] = b
			}
		}
	}
	out := make([]*hosted, 0, len(fs))
	for _, f := range fs {
		log := d.log.With("component", f.Name())
		out = append(out, &hosted{f: f, env: feature.Env{
			Logger: log, StateDir: d.dir, Dir: d.dir.Path(statedir.FeaturesDir, f.Name()), HostRoot: hostRoot(d.cfg.Host.Root), Clock: d.cfg.Clock,
			Report: d.addReport, Config: d.currentConfig, ControlPlane: d.api,
			Machine: feature.Machine{ID: d.id.State.MachineID, ResourceID: d.id.State.ResourceID, SealingKey: d.id.SealingKey},
			Limiter: limiter, Supervisor: d.sup, HostChangesOff: d.cfg.HostChangesOff, Builtins: builtins,
			Refusals: agentlog.NewSampler(5, time.Minute),
		}})
	}
	return out
}

// guard runs one call into a feature, turning a panic into an error, and
// reports a change of the feature's health. It never lets a feature take
// the daemon down.
func (d *Daemon) guard(ctx context.Context, h *hosted, what string, call func() error) {
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic in %s: %v", what, p)
				d.log.ErrorContext(ctx, "agent feature panicked", "feature", h.f.Name(), "call", what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
		}()
		return call()
	}()
	if ctx.Err() != nil {
		return // stopping: whatever the call returned is about that
	}
	switch {
	case err != nil:
		msg := fmt.Sprintf("%s: %v", what, err)
		d.log.ErrorContext(ctx, "agent feature failed", "feature", h.f.Name(), "call", what, "err", err)
		if h.failed != msg {
			h.failed = msg
			d.addReport(wire.ReportFeature, wire.FeatureStatus{Name: h.f.Name(), State: wire.FeatureFailed, Message: truncate(msg, 1024)}, "feature:"+h.f.Name())
		}
	case h.failed != "" && !h.disabled:
		h.failed = ""
		d.addReport(wire.ReportFeature, wire.FeatureStatus{Name: h.f.Name(), State: wire.FeatureRunning}, "feature:"+h.f.Name())
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// startFeatures starts every feature; one that fails is left out.
func (d *Daemon) startFeatures(ctx context.Context) {
	for _, h := range d.features {
		d.guard(ctx, h, "start", func() error {
			if err := statedir.MkdirPrivate(h.env.Dir); err != nil {
				return err
			}
			return h.f.Start(ctx, h.env)
		})
		h.disabled = h.failed != ""
	}
}

// applyFeatures hands a desired state to every running feature.
func (d *Daemon) applyFeatures(ctx context.Context, desired feature.Desired) {
	for _, h := range d.features {
		if h.disabled {
			continue
		}
		h.mu.Lock()
		d.guard(ctx, h, "apply", func() error { return h.f.Apply(ctx, desired) })
		h.mu.Unlock()
	}
}

// configChanged tells the features that watch it about a new local
// configuration.
func (d *Daemon) configChanged(ctx context.Context) {
	cfg := *d.localCfg.Load()
	for _, h := range d.features {
		if w, ok := h.f.(feature.ConfigWatcher); ok && !h.disabled {
			d.guard(ctx, h, "configuration change", func() error { w.ConfigChanged(ctx, cfg); return nil })
		}
	}
}

// tickLoops starts one loop per Ticker feature.
func (d *Daemon) tickLoops(ctx context.Context, wg *sync.WaitGroup) {
	for _, h := range d.features {
		t, ok := h.f.(feature.Ticker)
		if !ok || h.disabled || t.TickInterval() <= 0 {
			continue
		}
		wg.Go(func() {
			tick := time.NewTicker(t.TickInterval())
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				h.mu.Lock()
				d.guard(ctx, h, "tick", func() error { return t.Tick(ctx) })
				h.mu.Unlock()
			}
		})
	}
}

// closeFeatures closes the features in reverse order.
func (d *Daemon) closeFeatures() {
	for i := len(d.features) - 1; i >= 0; i-- {
		h := d.features[i]
		if h.disabled {
			continue
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					d.log.Error("agent feature panicked while closing", "feature", h.f.Name(), "panic", fmt.Sprint(p))
				}
			}()
			if err := h.f.Close(); err != nil {
				d.log.Error("close agent feature", "feature", h.f.Name(), "err", err)
			}
		}()
	}
}

func hostRoot(root string) string {
	if root == "" {
		return "/"
	}
	return root
}
