package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/agent/jit"
	"github.com/corralhq/corral/internal/wire"
)

// jitStateFile holds what the feature put in force, for Restore.
const jitStateFile = "jit.json"

// matchSlack is how far a kernel element's expiry may be from the desired
// one and still count as that grant (the kernel counts in milliseconds
// and time passes between the two reads).
const matchSlack = 2 * time.Second

type grantKey struct {
	src  netip.Addr
	port jit.Port
}

// desiredGrant is one grant the kernel should hold.
type desiredGrant struct {
	id      string
	key     grantKey
	expires time.Time
}

// parsePolicy turns the desired policy into the engine's, refusing a
// malformed one with the reason.
func parsePolicy(d *wire.JITDesired) (jit.Policy, error) {
	var p jit.Policy
	var errs []error
	for _, s := range d.Ports {
		port, err := jit.ParsePort(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(p.Ports, port) {
			p.Ports = append(p.Ports, port)
		}
	}
	for _, s := range d.AllowedSources {
		pr, err := jit.ParsePrefix(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.AllowedSources = append(p.AllowedSources, pr)
	}
	p.MaxDuration = time.Duration(d.MaxDuration)
	if err := errors.Join(errs...); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// reconcileJIT makes the kernel hold the desired policy and grants and
// says how it went.
func (f *Feature) reconcileJIT(ctx context.Context, d *wire.JITDesired) wire.JITStatus {
	_, applied, _ := f.loadJIT()
	if d == nil {
		if !applied {
			return wire.JITStatus{State: wire.JITStateNone}
		}
		if why := f.env.HostChangesRefused(); why != nil {
			f.env.LogRefused(ctx, "JIT table not removed", "reason", why)
			return wire.JITStatus{State: wire.JITStateRefused, Message: "the JIT table stays as it is: " + why.Error()}
		}
		if err := f.jit.Remove(ctx); err != nil && !errors.Is(err, jit.ErrUnavailable) {
			return wire.JITStatus{State: wire.JITStateFailed, Message: "remove the JIT table: " + err.Error()}
		}
		if err := f.removeJIT(); err != nil {
			return wire.JITStatus{State: wire.JITStateFailed, Message: err.Error()}
		}
		f.env.Logger.InfoContext(ctx, "JIT table removed: no policy")
		return wire.JITStatus{State: wire.JITStateNone}
	}

	now := f.env.Clock()
	var want []desiredGrant
	failed := map[string]string{} // grant id -> why
	policy, err := parsePolicy(d)
	st := wire.JITStatus{Ports: d.Ports}
	fail := func(state, why string) wire.JITStatus {
		st.State, st.Message = state, why
		for _, g := range d.Grants {
			if g.Expires.After(now) {
				st.Grants = append(st.Grants, wire.JITGrantStatus{ID: g.ID, State: wire.JITFailed, Message: "the JIT policy is not in force on this machine: " + why})
			}
		}
		return st
	}
	if err != nil {
		return fail(wire.JITStateFailed, "the control plane sent a JIT policy this agent refuses: "+err.Error())
	}
	if why := f.env.HostChangesRefused(); why != nil {
		f.env.LogRefused(ctx, "JIT policy refused", "reason", why)
		return fail(wire.JITStateRefused, why.Error())
	}
	// The grants the kernel should hold: one per source and port (the
	// longest), never longer than the policy allows from now.
	best := map[grantKey]int{}
	for _, g := range d.Grants {
		if !g.Expires.After(now) {
			continue
		}
		src, serr := jit.ParseSource(g.Source)
		port, perr := jit.ParsePort(g.Port)
		if err := errors.Join(serr, perr); err != nil {
			failed[g.ID] = err.Error()
			continue
		}
		exp := g.Expires
		if policy.MaxDuration > 0 && exp.Sub(now) > policy.MaxDuration {
			exp = now.Add(policy.MaxDuration) // the control plane's clock runs ahead, or it asks too much
		}
		k := grantKey{src.Unmap(), port}
		dg := desiredGrant{id: g.ID, key: k, expires: exp}
		if i, ok := best[k]; ok {
			if exp.After(want[i].expires) {
				want[i] = dg
			}
			continue
		}
		best[k] = len(want)
		want = append(want, dg)
	}
	// Saved before the kernel changes: a crash in between is repaired by
	// the Restore at the next start.
	save := jit.State{Policy: policy}
	for _, g := range want {
		save.Grants = append(save.Grants, jit.Grant{ID: g.id, Source: g.key.src, Port: g.key.port, Expires: g.expires})
	}
	if err := f.saveJIT(save); err != nil {
		return fail(wire.JITStateFailed, err.Error())
	}
	if err := f.applyPolicy(ctx, policy); err != nil {
		f.env.Logger.ErrorContext(ctx, "JIT policy not applied", "err", err)
		if errors.Is(err, jit.ErrUnavailable) {
			// Nothing is in force: forget it, so a later start does not
			// keep trying to restore it.
			_ = f.removeJIT()
		}
		return fail(wire.JITStateFailed, err.Error())
	}
	current, err := f.jit.List(ctx)
	if err != nil {
		return fail(wire.JITStateFailed, "read the JIT table back: "+err.Error())
	}
	have := map[grantKey]jit.Grant{}
	for _, g := range current {
		have[grantKey{g.Source.Unmap(), g.Port}] = g
	}
	ok := map[string]time.Time{}
	for _, g := range want {
		if k, found := have[g.key]; found && k.ID == g.id && absDuration(k.Expires.Sub(g.expires)) < matchSlack {
			ok[g.id] = g.expires
			continue
		}
		remaining := g.expires.Sub(f.env.Clock()).Truncate(time.Millisecond)
		if remaining < time.Millisecond {
			continue
		}
		if _, err := f.jit.Grant(ctx, jit.GrantRequest{ID: g.id, Source: g.key.src, Port: g.key.port, Duration: remaining}); err != nil {
			failed[g.id] = err.Error()
			f.env.Logger.WarnContext(ctx, "JIT grant not applied", "grant", g.id, "err", err)
			continue
		}
		f.env.Logger.InfoContext(ctx, "JIT grant open", "grant", g.id, "source", g.key.src, "port", g.key.port, "for", remaining)
		ok[g.id] = g.expires
	}
	for k, g := range have {
		if _, wanted := best[k]; wanted {
			continue
		}
		if _, err := f.jit.Revoke(ctx, k.src, k.port); err != nil {
			f.env.Logger.WarnContext(ctx, "JIT grant not closed", "grant", g.ID, "err", err)
			continue
		}
		f.env.Logger.InfoContext(ctx, "JIT grant closed", "grant", g.ID, "source", k.src, "port", k.port)
	}
	st.State = wire.JITStateApplied
	for _, g := range d.Grants {
		switch {
		case !g.Expires.After(now):
		case failed[g.ID] != "":
			st.Grants = append(st.Grants, wire.JITGrantStatus{ID: g.ID, State: wire.JITFailed, Message: failed[g.ID]})
		default:
			// A grant that lost to a longer one for the same source and
			// port is open too (through that one).
			exp, found := ok[g.ID]
			if !found {
				if i, in := best[grantKeyOf(g)]; in {
					exp, found = ok[want[i].id]
				}
			}
			if found {
				st.Grants = append(st.Grants, wire.JITGrantStatus{ID: g.ID, State: wire.JITApplied, Expires: exp.UTC()})
			}
		}
	}
	return st
}

func grantKeyOf(g wire.JITDesiredGrant) grantKey {
	src, _ := jit.ParseSource(g.Source)
	port, _ := jit.ParsePort(g.Port)
	return grantKey{src.Unmap(), port}
}

// applyPolicy puts the policy in the kernel unless it is there already.
func (f *Feature) applyPolicy(ctx context.Context, p jit.Policy) error {
	if samePolicy(f.jit.Policy(), p) {
		if err := f.jit.Check(ctx); err == nil {
			return nil
		}
	}
	err := f.jit.Apply(ctx, p)
	if err != nil && !errors.Is(err, jit.ErrUnavailable) {
		// A table of another shape (an older agent's, one made by hand):
		// rebuild it whole.
		if _, rerr := f.jit.Restore(ctx, jit.State{Policy: p}); rerr == nil {
			return nil
		}
	}
	return err
}

func samePolicy(a, b jit.Policy) bool {
	return slices.Equal(a.Ports, b.Ports) && slices.Equal(a.AllowedSources, b.AllowedSources) && a.MaxDuration == b.MaxDuration && len(a.Ports) > 0
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func (f *Feature) jitPath() string { return filepath.Join(f.env.Dir, jitStateFile) }

// loadJIT reads the saved state; ok is false when there is none.
func (f *Feature) loadJIT() (jit.State, bool, error) {
	b, err := os.ReadFile(f.jitPath())
	if errors.Is(err, fs.ErrNotExist) {
		return jit.State{}, false, nil
	}
	if err != nil {
		return jit.State{}, false, err
	}
	var st jit.State
	if err := json.Unmarshal(b, &st); err != nil {
		return jit.State{}, false, fmt.Errorf("%s: %w", f.jitPath(), err)
	}
	return st, true, nil
}

// saveJIT replaces the saved state atomically (root-only).
func (f *Feature) saveJIT(st jit.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(f.jitPath(), b)
}

func (f *Feature) removeJIT() error {
	if err := os.Remove(f.jitPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget the JIT state: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
