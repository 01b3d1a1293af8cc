package extensions

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Bulk operations (docs/bulk.md) set or remove an extension, or start a
// run, on every machine of a scope or tag selector in one request. The
// machines are written BulkChunk at a time, each chunk in one store
// transaction that also bumps the machines' generations and records them
// as the operation's; the chunk's syncs are pushed once it is committed.
// A machine's result is not kept twice: it is read from its extension or
// run as its agent reports it, so any replica answers for any operation.

// maxBulkMachines is wire.MaxBulkMachines unless a test set a lower bound.
func (s *Service) maxBulkMachines() int {
	if s.bulkLimit > 0 {
		return s.bulkLimit
	}
	return wire.MaxBulkMachines
}

// maxBulkRounds bounds how often a machine is decided again after losing a
// race with another change of the same extension or run name.
const maxBulkRounds = 5

// bulkPlan is a validated bulk request.
type bulkPlan struct {
	kind           string
	name           string
	pkg            resolvedPackage
	settings       []byte
	protected      []byte
	protectedGiven bool
	run            wire.RunCommandCreate
	runTimeout     time.Duration
}

// BulkScope is the scope a caller must hold the operation's action at for
// a bulk request in subscription sub: its scope when it parses as a scope
// of the subscription, else the subscription (the service then refuses the
// request after authorization).
func BulkScope(sub string, req wire.BulkOperationCreate) string {
	if req.Scope != "" {
		if id, err := resource.ParseScope(req.Scope); err == nil && !id.IsRoot() && sameSubscription(id, sub) {
			return id.String()
		}
	}
	return resource.Subscription(sub).String()
}

func sameSubscription(id resource.ID, sub string) bool {
	return strings.EqualFold(id.Name(resource.Subscriptions), sub)
}

// plainText reports text without NUL, control characters or invalid UTF-8.
func plainText(s string) bool {
	for _, r := range s {
		if r == unicode.ReplacementChar || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// BulkKind returns the canonical spelling of a kind, or refuses it.
func BulkKind(kind string) (string, error) {
	for _, k := range wire.BulkKinds {
		if strings.EqualFold(strings.TrimSpace(kind), k) {
			return k, nil
		}
	}
	return "", refusal.Invalid("kind", "kind %q is not one of %s", kind, strings.Join(wire.BulkKinds, ", "))
}

func (s *Service) planBulk(ctx context.Context, req wire.BulkOperationCreate) (bulkPlan, error) {
	var p bulkPlan
	kind, err := BulkKind(req.Kind)
	if err != nil {
		return p, err
	}
	p.kind, p.name = kind, req.Name
	what := "extension"
	if kind == wire.BulkRunCommand {
		what = "run command"
	}
	if err := validResourceName(what, req.Name); err != nil {
		return p, err
	}
	switch kind {
	case wire.BulkExtensionSet:
		if req.Extension == nil {
			return p, refusal.Invalid("extension", "kind extensionSet needs extension (publisher, type, version, settings)")
		}
		if req.RunCommand != nil {
			return p, refusal.Invalid("runCommand", "kind extensionSet takes no runCommand")
		}
		if p.settings, _, err = settingsDoc("extension.settings", req.Extension.Settings); err != nil {
			return p, err
		}
		if p.protected, p.protectedGiven, err = settingsDoc("extension.protectedSettings", req.Extension.ProtectedSettings); err != nil {
			return p, err
		}
		if p.pkg, err = s.resolve(ctx, *req.Extension); err != nil {
			return p, err
		}
	case wire.BulkExtensionDelete:
		if req.Extension != nil || req.RunCommand != nil {
			return p, refusal.Invalid("extension", "kind extensionDelete takes only the extension's name")
		}
	case wire.BulkRunCommand:
		if req.RunCommand == nil {
			return p, refusal.Invalid("runCommand", "kind runCommand needs runCommand (script or command, parameters, timeout)")
		}
		if req.Extension != nil {
			return p, refusal.Invalid("extension", "kind runCommand takes no extension")
		}
		timeout, err := validateRunCommand(*req.RunCommand)
		if err != nil {
			return p, err
		}
		p.run, p.runTimeout = *req.RunCommand, timeout
	}
	return p, nil
}

// bulkMachines lists the machines a bulk request selects: every machine of
// the scope (the subscription by default, or a resource group of it) that
// is not Expired, only those with the tag if one is given.
func (s *Service) bulkMachines(ctx context.Context, sub, scope, tag string) ([]store.Machine, string, error) {
	var tagKey, tagValue string
	if tag != "" {
		k, v, ok := strings.Cut(tag, "=")
		k = strings.TrimSpace(k)
		if !ok || !resource.ValidTagKey(k) || v == "" || !plainText(v) || len(v) > 256 {
			return nil, "", refusal.Invalid("tag", "tag %q is not KEY=VALUE (a valid tag key, a value of at most 256 characters without control characters)", tag)
		}
		tagKey, tagValue = k, v
	}
	id := resource.Subscription(sub)
	if scope != "" {
		sc, err := resource.ParseScope(scope)
		if err != nil || sc.IsRoot() || !sameSubscription(sc, sub) || len(sc.Segments()) > 2 {
			return nil, "", refusal.Invalid("scope", "scope %q is not /subscriptions/%s or /subscriptions/%s/resourceGroups/RG", scope, sub, sub)
		}
		id = sc
	}
	f := store.MachineFilter{Subscription: sub, ResourceGroup: id.Name(resource.ResourceGroups), TagKey: tagKey, TagValue: tagValue,
		Page: store.Page{Limit: store.MaxPageSize}, WithoutInventory: true}
	var out []store.Machine
	for {
		ms, err := s.store.ListMachines(ctx, f)
		if err != nil {
			return nil, "", err
		}
		for _, m := range ms {
			if m.Status != wire.StatusExpired {
				out = append(out, m)
			}
		}
		if len(out) > s.maxBulkMachines() {
			return nil, "", refusal.Invalid("scope", "the scope selects more than %d machines, the most one bulk operation may change: narrow it with a resource group or a tag", s.maxBulkMachines())
		}
		if len(ms) < store.MaxPageSize {
			break
		}
		last := ms[len(ms)-1]
		f.Page.After = last.ResourceGroup + "/" + last.Name
	}
	if len(out) == 0 {
		what := "scope " + id.String()
		if tag != "" {
			what += " with tag " + tag
		}
		return nil, "", refusal.Invalid("scope", "%s has no machines (Expired machines are left out)", what)
	}
	return out, id.String(), nil
}

// CreateBulkOperation makes a bulk operation and applies it to every
// machine it selects before it returns (chunk by chunk; a caller that goes
// away does not stop it half-way). Machines the change is refused for
// (another extension under the name, too many extensions or runs, no
// sealing key for protected settings) are recorded Failed with the reason;
// the others get the change and a sync.
func (s *Service) CreateBulkOperation(ctx context.Context, sub string, req wire.BulkOperationCreate, by string) (wire.BulkOperation, error) {
	if req.Extension != nil {
		defer clear(req.Extension.ProtectedSettings)
	}
	if req.RunCommand != nil {
		defer clear(req.RunCommand.ProtectedParameters)
	}
	p, err := s.planBulk(ctx, req)
	if err != nil {
		return wire.BulkOperation{}, err
	}
	defer clear(p.protected)
	ms, scope, err := s.bulkMachines(ctx, sub, req.Scope, strings.TrimSpace(req.Tag))
	if err != nil {
		return wire.BulkOperation{}, err
	}
	op := store.BulkOperation{ID: s.newID(), Subscription: ms[0].Subscription, Scope: scope, Tag: strings.TrimSpace(req.Tag), Kind: p.kind,
		Name: p.name, Publisher: p.pkg.publisher, Type: p.pkg.typ, Version: p.pkg.version, Machines: len(ms), CreatedAt: s.now(), CreatedBy: by}
	if err := s.store.CreateBulkOperation(ctx, op); err != nil {
		return wire.BulkOperation{}, err
	}
	// Once begun, every machine is written: a half-applied operation helps
	// nobody. Each chunk's syncs go out as soon as it is written, so its
	// agents fetch and report while the next chunks are written (the
	// writing is one goroutine; the agents' requests use the other cores).
	wctx := context.WithoutCancel(ctx)
	changed := 0
	for chunk := range slices.Chunk(ms, store.BulkChunk) {
		gens := make(map[string]int64, len(chunk))
		err := s.applyBulkChunk(wctx, op, p, chunk, by, gens)
		push.NotifyAll(wctx, s.notify, gens)
		changed += len(gens)
		if err != nil {
			s.log.ErrorContext(ctx, "bulk operation stopped", "op", op.ID, "written", changed, "err", err)
			return wire.BulkOperation{}, err
		}
	}
	s.log.InfoContext(ctx, "bulk operation applied", "op", op.ID, "kind", op.Kind, "scope", op.Scope, "tag", op.Tag,
		"name", op.Name, "machines", len(ms), "changed", changed, "by", by)
	return s.GetBulkOperation(ctx, sub, op.ID)
}

// applyBulkChunk writes one chunk of machines, deciding again those that
// changed meanwhile, and adds the new generations of those it changed to
// gens.
func (s *Service) applyBulkChunk(ctx context.Context, op store.BulkOperation, p bulkPlan, chunk []store.Machine, by string,
	gens map[string]int64) error {
	byID := make(map[string]store.Machine, len(chunk))
	pending := make([]string, 0, len(chunk))
	for _, m := range chunk {
		byID[m.ID] = m
		pending = append(pending, m.ID)
	}
	origin := capability.OriginFrom(ctx).Encode()
	for round := 0; len(pending) > 0; round++ {
		var fixed []store.BulkMachine
		if round == maxBulkRounds {
			for _, id := range pending {
				fixed = append(fixed, store.BulkMachine{MachineID: id, State: wire.BulkFailed,
					Message: "the machine's " + op.Name + " was being changed concurrently; try again"})
			}
			pending = nil
		}
		targets, err := s.store.BulkTargets(ctx, pending, op.Name)
		if err != nil {
			return err
		}
		var res store.BulkApplied
		switch p.kind {
		case wire.BulkExtensionSet:
			var puts []store.BulkExtensionPut
			for _, id := range pending {
				t, ok := targets[id]
				if !ok {
					continue // deleted since it was listed
				}
				put, reason := s.bulkPut(byID[id], t, op, p, origin, by)
				if reason != "" {
					fixed = append(fixed, store.BulkMachine{MachineID: id, State: wire.BulkFailed, Message: reason})
					continue
				}
				puts = append(puts, put)
			}
			res, err = s.store.BulkSetExtensions(ctx, op.ID, puts, fixed, s.now())
		case wire.BulkExtensionDelete:
			// Machines without the extension are done: no generation,
			// no sync.
			var ids []string
			for _, id := range pending {
				t, ok := targets[id]
				switch {
				case !ok:
				case t.HasExtension:
					ids = append(ids, id)
				default:
					fixed = append(fixed, store.BulkMachine{MachineID: id, State: wire.BulkSucceeded, Message: store.BulkNotPresentMessage})
				}
			}
			res, err = s.store.BulkDeleteExtensions(ctx, op.ID, op.Name, ids, fixed, by, origin, s.now())
		case wire.BulkRunCommand:
			var rcs []store.RunCommand
			for _, id := range pending {
				t, ok := targets[id]
				if !ok {
					continue
				}
				rc, reason := s.bulkRun(byID[id], t, op, p, origin, by)
				if reason != "" {
					fixed = append(fixed, store.BulkMachine{MachineID: id, State: wire.BulkFailed, Message: reason})
					continue
				}
				rcs = append(rcs, rc)
			}
			res, err = s.store.BulkCreateRunCommands(ctx, op.ID, rcs, fixed, s.now())
		}
		if err != nil {
			return err
		}
		for id, gen := range res.Generations {
			gens[id] = gen
		}
		pending = res.Conflicts
	}
	return nil
}

// bulkPut decides one machine's extension as SetExtension would, or says
// why it is refused.
func (s *Service) bulkPut(m store.Machine, t store.BulkTarget, op store.BulkOperation, p bulkPlan, origin []byte, by string) (store.BulkExtensionPut, string) {
	now := s.now()
	e := store.MachineExtension{Origin: origin, MachineID: m.ID, Name: op.Name, Publisher: p.pkg.publisher, Type: p.pkg.typ,
		Version: p.pkg.version, Digest: p.pkg.digest, Settings: p.settings, State: wire.ExtCreating,
		CreatedAt: now, CreatedBy: by, UpdatedAt: now, UpdatedBy: by}
	put := store.BulkExtensionPut{Extension: e}
	install := true
	if t.HasExtension {
		cur := t.Extension
		if !strings.EqualFold(cur.Publisher, p.pkg.publisher) || !strings.EqualFold(cur.Type, p.pkg.typ) {
			return put, "extension " + cur.Name + " on this machine is " + cur.Publisher + "/" + cur.Type + "; delete it before using the name for " +
				p.pkg.publisher + "/" + p.pkg.typ
		}
		e.Name, e.SeqNo, e.ReportedVersion, e.CreatedAt, e.CreatedBy = cur.Name, cur.SeqNo+1, cur.ReportedVersion, cur.CreatedAt, cur.CreatedBy
		if !cur.Deleting {
			install, e.State = false, wire.ExtUpdating
		}
		if !p.protectedGiven && !install {
			e.ProtectedSettings = cur.ProtectedSettings
		}
		put.ExpectSeqNo = cur.SeqNo
	} else if t.Extensions >= MaxExtensionsPerMachine {
		return put, "the machine already has the most extensions allowed"
	}
	if len(p.protected) > 0 {
		if len(m.SealingKey) == 0 {
			return put, "the machine has no sealing key, so protected settings cannot be sealed to it: upgrade its agent and connect it again"
		}
		sealed, err := sealing.Seal(m.SealingKey, SealingAAD(m.ID, e.Name, e.Publisher, e.Type), p.protected)
		if err != nil {
			return put, "the protected settings cannot be sealed to the machine: " + err.Error()
		}
		e.ProtectedSettings = sealed
	}
	put.Extension = e
	return put, ""
}

// bulkRun makes one machine's run as CreateRunCommand would, or says why
// it is refused.
func (s *Service) bulkRun(m store.Machine, t store.BulkTarget, op store.BulkOperation, p bulkPlan, origin []byte, by string) (store.RunCommand, string) {
	if t.HasRun {
		return store.RunCommand{}, "a run named " + op.Name + " already exists on the machine; run names are not reused"
	}
	if t.UnfinishedRuns >= MaxUnfinishedRuns {
		return store.RunCommand{}, "the machine already has the most runs waiting or running"
	}
	var sealed []byte
	if len(p.run.ProtectedParameters) > 0 {
		plain, err := json.Marshal(p.run.ProtectedParameters)
		if err != nil {
			return store.RunCommand{}, err.Error()
		}
		sealed, err = sealing.Seal(m.SealingKey, sealing.RunCommandAAD(m.ID, op.Name), plain)
		clear(plain)
		if errors.Is(err, sealing.ErrNoKey) {
			return store.RunCommand{}, "the machine has no sealing key (its agent is too old): upgrade the agent and connect it again"
		}
		if err != nil {
			return store.RunCommand{}, "the protected parameters cannot be sealed to the machine: " + err.Error()
		}
	}
	now := s.now()
	rc := store.RunCommand{Origin: origin, ID: s.newID(), MachineID: m.ID, Name: op.Name, Script: p.run.Script, Command: p.run.Command,
		Parameters: p.run.Parameters, ProtectedParameters: sealed, RunAsUser: p.run.RunAsUser, Timeout: p.runTimeout,
		State: wire.RunPending, CreatedAt: now, CreatedBy: by, UpdatedAt: now}
	if rc.Parameters == nil {
		rc.Parameters = map[string]string{}
	}
	return rc, ""
}
