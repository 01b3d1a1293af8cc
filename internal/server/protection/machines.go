package protection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// maxScanPaths bounds a custom scan.
const maxScanPaths = 64

func toScan(m store.Machine, sc store.ProtectionScan) wire.Scan {
	return wire.Scan{ID: sc.ID, MachineID: m.ResourceID().String(), Machine: m.Name, Type: sc.Type, Paths: sc.Paths, State: sc.State,
		Message: sc.Message, Scheduled: sc.Scheduled, Files: sc.Files, Bytes: sc.Bytes, Infected: sc.Infected, Errors: sc.Errors,
		CreatedAt: sc.CreatedAt, CreatedBy: sc.CreatedBy, StartedAt: sc.StartedAt, FinishedAt: sc.FinishedAt}
}

// requireProtection refuses an operation on a machine without the
// extension: its agent would only report that protection is off.
func (s *Service) requireProtection(ctx context.Context, m store.Machine) error {
	if m.Status == wire.StatusExpired {
		return refusal.Conflict("machine %q is Expired: onboard it again first", m.Name)
	}
	_, _, ok, err := s.ext.ProtectionExtension(ctx, refOf(m))
	if err != nil {
		return err
	}
	if !ok {
		return refusal.Conflict("endpoint protection is not enabled on machine %q: enable it on its scope (corral protection enable --scope ...)", m.Name)
	}
	return nil
}

// StartScan asks a machine for a scan: quick (common drop locations), full
// (every local filesystem) or custom (the paths given).
func (s *Service) StartScan(ctx context.Context, ref resource.MachineRef, req wire.ScanCreate, by string) (wire.Scan, error) {
	switch req.Type {
	case wire.ScanQuick, wire.ScanFull:
		if len(req.Paths) > 0 {
			return wire.Scan{}, refusal.Invalid("paths", "a %s scan takes no paths; use type custom to scan paths", req.Type)
		}
	case wire.ScanCustom:
		if len(req.Paths) == 0 {
			return wire.Scan{}, refusal.Invalid("paths", "a custom scan needs at least one path")
		}
		if len(req.Paths) > maxScanPaths {
			return wire.Scan{}, refusal.Invalid("paths", "a custom scan takes at most %d paths", maxScanPaths)
		}
		for i, p := range req.Paths {
			if err := wire.CheckHostPath(p); err != nil {
				return wire.Scan{}, refusal.Invalid(fmt.Sprintf("paths[%d]", i), "%v", err)
			}
		}
	default:
		return wire.Scan{}, refusal.Invalid("type", "scan type %q must be quick, full or custom", req.Type)
	}
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.Scan{}, err
	}
	if err := s.requireProtection(ctx, m); err != nil {
		return wire.Scan{}, err
	}
	now := s.now()
	sc := store.ProtectionScan{ID: s.newID(), MachineID: m.ID, Type: req.Type, Paths: req.Paths, State: wire.ScanPending,
		Origin: capability.OriginFrom(ctx).Encode(), CreatedAt: now, CreatedBy: by, UpdatedAt: now}
	gen, err := s.store.CreateScan(ctx, sc)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Scan{}, refusal.NotFound("machine %q was deleted", m.Name)
	}
	if err != nil {
		return wire.Scan{}, err
	}
	s.syncer.Announce(ctx, map[string]int64{m.ID: gen})
	s.log.InfoContext(ctx, "scan requested", "machine", m.ID, "scan", sc.ID, "type", sc.Type, "by", by)
	return toScan(m, sc), nil
}

// GetScan returns one scan of a machine.
func (s *Service) GetScan(ctx context.Context, ref resource.MachineRef, id string) (wire.Scan, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.Scan{}, err
	}
	sc, err := s.store.GetScan(ctx, m.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Scan{}, refusal.NotFound("scan %q was not found on machine %q", id, m.Name)
	}
	if err != nil {
		return wire.Scan{}, err
	}
	return toScan(m, sc), nil
}

// ListScans returns a machine's scans, newest first.
func (s *Service) ListScans(ctx context.Context, ref resource.MachineRef, p store.Page) (store.PageOf[wire.Scan], error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return store.PageOf[wire.Scan]{}, err
	}
	rows, after, err := store.FetchPage(p, func(p store.Page) ([]store.ProtectionScan, error) {
		return s.store.ListScans(ctx, store.ScanFilter{MachineID: m.ID, Page: p})
	}, func(sc store.ProtectionScan) string { return sc.ID })
	if err != nil {
		return store.PageOf[wire.Scan]{}, err
	}
	out := store.PageOf[wire.Scan]{Items: []wire.Scan{}, After: after}
	for _, sc := range rows {
		out.Items = append(out.Items, toScan(m, sc))
	}
	return out, nil
}

var quarantineIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

func toRestore(m store.Machine, r store.ProtectionRestore) wire.Restore {
	return wire.Restore{ID: r.ID, MachineID: m.ResourceID().String(), QuarantineID: r.QuarantineID, NoExclusion: r.NoExclusion,
		Force: r.Force, State: r.State, Message: r.Message, Path: r.Path, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, FinishedAt: r.FinishedAt}
}

// RequestRestore asks a machine to put a quarantined file back (and, unless
// req.NoExclusion, to exclude its SHA-256 from later detections).
func (s *Service) RequestRestore(ctx context.Context, ref resource.MachineRef, quarantineID string, req wire.RestoreCreate, by string) (wire.Restore, error) {
	if !quarantineIDRE.MatchString(quarantineID) {
		return wire.Restore{}, refusal.Invalid("quarantineId", "quarantine id %q is not 16 hexadecimal digits", quarantineID)
	}
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.Restore{}, err
	}
	if m.Status == wire.StatusExpired {
		return wire.Restore{}, refusal.Conflict("machine %q is Expired: onboard it again first", m.Name)
	}
	now := s.now()
	r := store.ProtectionRestore{ID: s.newID(), MachineID: m.ID, QuarantineID: quarantineID, NoExclusion: req.NoExclusion, Force: req.Force,
		State: wire.ScanPending, Origin: capability.OriginFrom(ctx).Encode(), CreatedAt: now, CreatedBy: by}
	gen, err := s.store.CreateRestore(ctx, r)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Restore{}, refusal.NotFound("machine %q was deleted", m.Name)
	}
	if err != nil {
		return wire.Restore{}, err
	}
	s.syncer.Announce(ctx, map[string]int64{m.ID: gen})
	return toRestore(m, r), nil
}

// GetRestore returns a restore request with its outcome.
func (s *Service) GetRestore(ctx context.Context, ref resource.MachineRef, id string) (wire.Restore, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.Restore{}, err
	}
	r, err := s.store.GetRestore(ctx, m.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Restore{}, refusal.NotFound("restore %q was not found on machine %q", id, m.Name)
	}
	if err != nil {
		return wire.Restore{}, err
	}
	return toRestore(m, r), nil
}

// Quarantine returns the machine's quarantine as it last reported it.
func (s *Service) Quarantine(ctx context.Context, ref resource.MachineRef) ([]wire.QuarantineEntry, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := []wire.QuarantineEntry{}
	p, err := s.store.GetMachineProtection(ctx, m.ID)
	if errors.Is(err, store.ErrNotFound) || err == nil && len(p.Quarantine) == 0 {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(p.Quarantine, &out); err != nil {
		return nil, fmt.Errorf("stored quarantine of machine %s: %w", m.ID, err)
	}
	return out, nil
}

// MachineStatus returns a machine's protection.
func (s *Service) MachineStatus(ctx context.Context, ref resource.MachineRef) (wire.MachineProtection, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.MachineProtection{}, err
	}
	out, err := s.statuses(ctx, []store.Machine{m})
	if err != nil {
		return wire.MachineProtection{}, err
	}
	return out[0], nil
}

// ListMachineStatus returns the protection of every machine in a
// subscription or resource group (rg empty), by resource group and name.
func (s *Service) ListMachineStatus(ctx context.Context, sub, rg string) ([]wire.MachineProtection, error) {
	id := resource.Subscription(sub)
	if rg != "" {
		id = resource.ResourceGroup(sub, rg)
	}
	ms, err := s.machinesUnder(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.statuses(ctx, ms)
}

func (s *Service) statuses(ctx context.Context, ms []store.Machine) ([]wire.MachineProtection, error) {
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	stored, err := s.store.ListMachineProtection(ctx, ids)
	if err != nil {
		return nil, err
	}
	counts, err := s.store.CountActiveAlerts(ctx, ids)
	if err != nil {
		return nil, err
	}
	scopes, err := s.store.ListProtectionScopes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.MachineProtection, 0, len(ms))
	for _, m := range ms {
		mp := wire.MachineProtection{MachineID: m.ResourceID().String(), Machine: m.Name, ActiveAlerts: counts[m.ID]}
		if eff, ok := effective(scopes, m); ok {
			mp.Scope = eff.Scope
		}
		if p, ok := stored[m.ID]; ok && len(p.Status) > 0 {
			var st wire.ProtectionStatus
			if json.Unmarshal(p.Status, &st) == nil {
				mp.Status, mp.UpdatedAt = &st, p.StatusAt
			}
		}
		state, msg, ok, err := s.ext.ProtectionExtension(ctx, refOf(m))
		if err != nil {
			return nil, err
		}
		if ok {
			mp.ExtensionState, mp.ExtensionMessage = state, msg
		}
		out = append(out, mp)
	}
	return out, nil
}
