package extensions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Limits of machine extensions.
const (
	// MaxExtensionsPerMachine bounds a machine's desired set.
	MaxExtensionsPerMachine = 100
	// MaxSettingsBytes bounds public and protected settings, each.
	MaxSettingsBytes = 64 << 10
)

// Operations, as the agent and the activity log name them.
const (
	OpInstall = "install"
	OpUpdate  = "update"
	OpUpgrade = "upgrade"
	OpRemove  = "remove"
)

// SealingAAD binds sealed protected settings to one extension of one
// machine and to the publisher/type it was set for (sealing.ExtensionAAD).
func SealingAAD(machineID, extension, publisher, typ string) []byte {
	return sealing.ExtensionAAD(machineID, extension, publisher, typ)
}

// toWireExtension shows the version the agent last reported once an
// operation has ended (so a failed upgrade shows the version still
// installed), and the desired version while one is in progress.
func toWireExtension(m store.Machine, e store.MachineExtension) wire.MachineExtension {
	version := e.Version
	if e.ReportedVersion != "" && (e.State == wire.ExtSucceeded || e.State == wire.ExtFailed) {
		version = e.ReportedVersion
	}
	return wire.MachineExtension{
		ID: m.ResourceID().Extension(e.Name).String(), Name: e.Name, Publisher: e.Publisher, Type: e.Type, Version: version,
		Settings: json.RawMessage(e.Settings), HasProtectedSettings: len(e.ProtectedSettings) > 0,
		State: e.State, Message: e.Message, SeqNo: e.SeqNo,
		CreatedAt: e.CreatedAt, CreatedBy: e.CreatedBy, UpdatedAt: e.UpdatedAt, UpdatedBy: e.UpdatedBy,
	}
}

// SetResult says what SetExtension did.
type SetResult struct {
	Extension wire.MachineExtension
	Created   bool   // a new resource (HTTP 201)
	Operation string // install, update or upgrade
	// FromVersion is the previous desired version of an upgrade.
	FromVersion string
}

// Summary names the operation for the activity log, e.g.
// "install Corral/RunCommand 1.0.0" or "upgrade Contoso/Agent 1.0.0 -> 1.1.0".
func (r SetResult) Summary() string {
	e := r.Extension
	v := e.Version
	if r.Operation == OpUpgrade {
		v = r.FromVersion + " -> " + v
	}
	return r.Operation + " " + e.Publisher + "/" + e.Type + " " + v
}

// settingsDoc checks a settings document: absent (nil), null, or a JSON
// object of at most MaxSettingsBytes, returned compacted. Error messages
// never quote the document.
func settingsDoc(target string, raw json.RawMessage) ([]byte, bool, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, len(raw) > 0, nil
	}
	if len(t) > MaxSettingsBytes {
		return nil, true, refusal.Invalid(target, "%s is larger than %d bytes", target, MaxSettingsBytes)
	}
	if t[0] != '{' {
		return nil, true, refusal.Invalid(target, "%s must be a JSON object", target)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return nil, true, refusal.Invalid(target, "%s is not valid JSON", target)
	}
	if buf.String() == "{}" {
		return nil, true, nil
	}
	return buf.Bytes(), true, nil
}

// resolvedPackage is the package a set request asks for.
type resolvedPackage struct {
	publisher string
	typ       string
	version   string
	digest    string
}

// resolve finds the requested version in the publisher's signed catalog;
// an empty version means the highest listed one.
func (s *Service) resolve(ctx context.Context, req wire.MachineExtensionSet) (resolvedPackage, error) {
	var r resolvedPackage
	if !extpkg.ValidName(req.Publisher) {
		return r, refusal.Invalid("publisher", "publisher %q is not a valid name", req.Publisher)
	}
	if !extpkg.ValidName(req.Type) {
		return r, refusal.Invalid("type", "type %q is not a valid name", req.Type)
	}
	if req.Version != "" && !extpkg.ValidVersion(req.Version) {
		return r, refusal.Invalid("version", "version %q is not MAJOR.MINOR.PATCH", req.Version)
	}
	pub, err := s.publisher(ctx, req.Publisher)
	if err != nil {
		return r, err
	}
	cat, _, ok, err := s.currentCatalog(ctx, pub.Name)
	if err != nil {
		return r, err
	}
	var entry wire.CatalogEntry
	found := false
	if ok {
		if req.Version != "" {
			entry, found = extpkg.Find(cat, req.Type, req.Version)
		} else {
			for _, e := range cat.Packages {
				if strings.EqualFold(e.Type, req.Type) && (!found || extpkg.CompareVersions(e.Version, entry.Version) > 0) {
					entry, found = e, true
				}
			}
		}
	}
	if !found {
		if req.Version == "" {
			return r, refusal.NotFound("no version of %s/%s is listed in the publisher's signed catalog", pub.Name, req.Type)
		}
		_, err := s.store.GetPackage(ctx, pub.Name, req.Type, req.Version)
		switch {
		case err == nil:
			return r, refusal.Invalid("version", "%s/%s %s was uploaded but is not listed in the publisher's signed catalog", pub.Name, req.Type, req.Version)
		case errors.Is(err, store.ErrNotFound):
			return r, refusal.NotFound("%s/%s version %s does not exist", pub.Name, req.Type, req.Version)
		}
		return r, err
	}
	p, err := s.store.GetPackage(ctx, pub.Name, entry.Type, entry.Version)
	if err != nil {
		return r, err // accepted catalogs only list uploaded packages
	}
	return resolvedPackage{publisher: p.Publisher, typ: p.Type, version: p.Version, digest: entry.Digest}, nil
}

// maxSetAttempts bounds retries of a set that lost a race with another
// set of the same extension; attempts are spaced by a short random pause.
const maxSetAttempts = 10

// SetExtension installs, reconfigures (update) or changes the version
// (upgrade) of an extension on a machine, and pushes a sync to its agent.
//
// Public settings are replaced by the request's. Protected settings are
// sealed at once to the machine's sealing key; when the request omits them
// an update or upgrade keeps the sealed ones, an install has none; null or
// {} removes them. The plaintext in req.ProtectedSettings is cleared before
// SetExtension returns.
func (s *Service) SetExtension(ctx context.Context, ref resource.MachineRef, name string, req wire.MachineExtensionSet, by string) (SetResult, error) {
	defer clear(req.ProtectedSettings)
	if err := validResourceName("extension", name); err != nil {
		return SetResult{}, err
	}
	settings, _, err := settingsDoc("settings", req.Settings)
	if err != nil {
		return SetResult{}, err
	}
	protected, protectedGiven, err := settingsDoc("protectedSettings", req.ProtectedSettings)
	if err != nil {
		return SetResult{}, err
	}
	defer clear(protected)
	pkg, err := s.resolve(ctx, req)
	if err != nil {
		return SetResult{}, err
	}
	m, err := s.machine(ctx, ref)
	if err != nil {
		return SetResult{}, err
	}
	if m.Status == wire.StatusExpired {
		return SetResult{}, refusal.Conflict("machine %q is Expired: onboard it again before changing its extensions", m.Name)
	}
	if len(protected) > 0 && len(m.SealingKey) == 0 {
		return SetResult{}, refusal.Invalid("protectedSettings", "machine %q has no sealing key, so protected settings cannot be sealed to it: upgrade its agent and connect it again", m.Name)
	}
	for attempt := range maxSetAttempts {
		res, err := s.trySet(ctx, m, name, pkg, settings, protected, protectedGiven, by)
		if !errors.Is(err, store.ErrConflict) {
			return res, err
		}
		// Another set of the same extension won; decide again.
		select {
		case <-ctx.Done():
			return SetResult{}, ctx.Err()
		case <-time.After(time.Duration(1+rand.IntN(2*(attempt+1))) * time.Millisecond):
		}
	}
	return SetResult{}, refusal.Conflict("extension %q is being changed concurrently; try again", name)
}

func (s *Service) trySet(ctx context.Context, m store.Machine, name string, pkg resolvedPackage, settings, protected []byte,
	protectedGiven bool, by string) (SetResult, error) {
	cur, err := s.store.GetMachineExtension(ctx, m.ID, name)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return SetResult{}, err
	}
	now := s.now()
	e := store.MachineExtension{Origin: capability.OriginFrom(ctx).Encode(), MachineID: m.ID, Name: name, Publisher: pkg.publisher, Type: pkg.typ, Version: pkg.version,
		Digest: pkg.digest, Settings: settings, SeqNo: m.Generation + 1, State: wire.ExtCreating, CreatedAt: now, CreatedBy: by, UpdatedAt: now, UpdatedBy: by}
	// A new extension's first seqNo comes from the machine's generation,
	// which only grows: a name dropped and set again never reuses a seqNo an
	// agent may still hold for it (it would take the new request as done).
	res := SetResult{Created: !exists, Operation: OpInstall}
	if exists {
		if !strings.EqualFold(cur.Publisher, pkg.publisher) || !strings.EqualFold(cur.Type, pkg.typ) {
			if cur.Deleting {
				return SetResult{}, refusal.Conflict("extension %q (%s/%s) is being deleted; wait until it is gone before reusing the name", cur.Name, cur.Publisher, cur.Type)
			}
			return SetResult{}, refusal.Conflict("extension %q on this machine is %s/%s; delete it before using the name for %s/%s",
				cur.Name, cur.Publisher, cur.Type, pkg.publisher, pkg.typ)
		}
		e.Name, e.SeqNo, e.ReportedVersion = cur.Name, cur.SeqNo+1, cur.ReportedVersion
		e.CreatedAt, e.CreatedBy = cur.CreatedAt, cur.CreatedBy
		switch {
		case cur.Deleting:
			res.Operation = OpInstall
		case cur.Version != pkg.version:
			res.Operation, res.FromVersion, e.State = OpUpgrade, cur.Version, wire.ExtUpdating
		default:
			res.Operation, e.State = OpUpdate, wire.ExtUpdating
		}
		if !protectedGiven && res.Operation != OpInstall {
			e.ProtectedSettings = cur.ProtectedSettings
		}
	} else {
		n, err := s.store.ListMachineExtensions(ctx, m.ID)
		if err != nil {
			return SetResult{}, err
		}
		if len(n) >= MaxExtensionsPerMachine {
			return SetResult{}, refusal.Conflict("machine %q already has %d extensions, the most allowed", m.Name, MaxExtensionsPerMachine)
		}
	}
	if len(protected) > 0 {
		sealed, err := sealing.Seal(m.SealingKey, SealingAAD(m.ID, e.Name, e.Publisher, e.Type), protected)
		if err != nil {
			return SetResult{}, refusal.Invalid("protectedSettings", "the protected settings cannot be sealed to machine %q: %v", m.Name, err)
		}
		e.ProtectedSettings = sealed
	}
	gen, err := s.store.PutMachineExtension(ctx, e, cur.SeqNo)
	if errors.Is(err, store.ErrNotFound) {
		return SetResult{}, refusal.NotFound("machine %q was deleted", m.Name)
	}
	if err != nil {
		return SetResult{}, err
	}
	s.notify.Notify(ctx, m.ID, gen)
	res.Extension = toWireExtension(m, e)
	s.log.InfoContext(ctx, "extension set", "machine", m.ID, "extension", e.Name, "op", res.Operation,
		"publisher", e.Publisher, "type", e.Type, "version", e.Version, "seq", e.SeqNo, "generation", gen, "by", by)
	return res, nil
}

func (s *Service) extension(ctx context.Context, m store.Machine, name string) (store.MachineExtension, error) {
	e, err := s.store.GetMachineExtension(ctx, m.ID, name)
	if errors.Is(err, store.ErrNotFound) {
		return e, refusal.NotFound("extension %q was not found on machine %q", name, m.Name)
	}
	return e, err
}

// DeleteExtension asks for an extension's removal and pushes a sync. If the
// agent has ever reported on the extension, it goes to Deleting and stays
// until the agent confirms removal (or applies a desired state without
// it); if the agent never reported on it, nothing of it can be on the
// machine and it is dropped at once. Either way the result has state
// Deleting; a later read tells which.
func (s *Service) DeleteExtension(ctx context.Context, ref resource.MachineRef, name, by string) (wire.MachineExtension, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.MachineExtension{}, err
	}
	e, err := s.extension(ctx, m, name)
	if err != nil {
		return wire.MachineExtension{}, err
	}
	var gen int64
	if !e.AgentReported {
		gen, err = s.store.DeleteMachineExtension(ctx, m.ID, e.Name)
		// The agent reported on it since it was read: it may be on the
		// machine now, so it waits for the agent like any other.
		e.AgentReported = errors.Is(err, store.ErrConflict)
	}
	if e.AgentReported {
		gen, err = s.store.MarkMachineExtensionDeleting(ctx, m.ID, e.Name, by, capability.OriginFrom(ctx).Encode(), s.now())
	}
	if errors.Is(err, store.ErrNotFound) {
		return wire.MachineExtension{}, refusal.NotFound("extension %q was not found on machine %q", name, m.Name)
	}
	if err != nil {
		return wire.MachineExtension{}, err
	}
	s.notify.Notify(ctx, m.ID, gen)
	e.Deleting, e.State, e.Message, e.UpdatedAt, e.UpdatedBy = true, wire.ExtDeleting, "", s.now(), by
	s.log.InfoContext(ctx, "extension delete requested", "machine", m.ID, "extension", e.Name, "dropped", !e.AgentReported,
		"generation", gen, "by", by)
	return toWireExtension(m, e), nil
}

// DeleteSummary names a delete for the activity log.
func DeleteSummary(e wire.MachineExtension) string {
	return OpRemove + " " + e.Publisher + "/" + e.Type
}

// GetExtension returns one extension of a machine.
func (s *Service) GetExtension(ctx context.Context, ref resource.MachineRef, name string) (wire.MachineExtension, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.MachineExtension{}, err
	}
	e, err := s.extension(ctx, m, name)
	if err != nil {
		return wire.MachineExtension{}, err
	}
	return toWireExtension(m, e), nil
}

// ListExtensions returns every extension of a machine, by name.
func (s *Service) ListExtensions(ctx context.Context, ref resource.MachineRef) ([]wire.MachineExtension, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return nil, err
	}
	es, err := s.store.ListMachineExtensions(ctx, m.ID)
	if err != nil {
		return nil, err
	}
	out := make([]wire.MachineExtension, 0, len(es))
	for _, e := range es {
		out = append(out, toWireExtension(m, e))
	}
	return out, nil
}
