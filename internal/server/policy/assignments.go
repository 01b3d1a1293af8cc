package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func toWireAssignment(a store.PolicyAssignment, effect string) wire.PolicyAssignment {
	out := wire.PolicyAssignment{ID: AssignmentID(a.Scope, a.Name), Name: a.Name, Scope: a.Scope, Definition: a.Definition, Effect: effect,
		NonComplianceMessage: a.NonComplianceMessage, AssignmentType: a.AssignmentType, NotScopes: a.NotScopes,
		Description: a.Description, CreatedAt: a.CreatedAt, CreatedBy: a.CreatedBy}
	if len(a.Parameters) > 0 {
		out.Parameters = json.RawMessage(a.Parameters)
	}
	return out
}

// bind parses and binds an assignment's parameter values.
func bind(d *policy.Definition, raw []byte) (policy.Params, map[string]any, error) {
	var values map[string]any
	if len(raw) > 0 && string(raw) != "null" {
		v, err := policy.ParseParameterValues(raw)
		if err != nil {
			return policy.Params{}, nil, invalid("parameters", err)
		}
		values = v
	}
	p, err := d.BindParameters(values)
	if err != nil {
		return policy.Params{}, nil, invalid("parameters", err)
	}
	return p, values, nil
}

// CreateAssignment assigns a definition at a scope. The definition, the
// scope and every excluded scope must exist; parameters must fit the
// definition; nothing is stored on a refusal. Machines in scope are
// evaluated now (server-side definitions) or get the machine configuration
// in their desired state (guest definitions).
func (s *Service) CreateAssignment(ctx context.Context, name string, req wire.PolicyAssignmentCreate, by string) (wire.PolicyAssignment, error) {
	if err := resource.CheckName("policy assignment", name); err != nil {
		return wire.PolicyAssignment{}, refusal.Invalid("name", "%v", err)
	}
	if req.Definition == "" {
		return wire.PolicyAssignment{}, refusal.Invalid("definition", "definition is required")
	}
	if req.Scope == "" {
		return wire.PolicyAssignment{}, refusal.Invalid("scope", "scope is required")
	}
	if err := wire.CheckText(req.NonComplianceMessage, maxMessage); err != nil {
		return wire.PolicyAssignment{}, refusal.Invalid("nonComplianceMessage", "nonComplianceMessage %v", err)
	}
	if err := wire.CheckText(req.Description, maxDescription); err != nil {
		return wire.PolicyAssignment{}, refusal.Invalid("description", "description %v", err)
	}
	if len(req.NotScopes) > maxNotScopes {
		return wire.PolicyAssignment{}, refusal.Invalid("notScopes", "at most %d notScopes", maxNotScopes)
	}
	d, err := s.lookupDefinition(ctx, req.Definition)
	if err != nil {
		if errors.Is(err, refusal.ErrNotFound) {
			// A missing definition is the body's fault, not the path's.
			return wire.PolicyAssignment{}, refusal.Invalid("definition", "policy definition %q was not found (built-in or custom)", req.Definition)
		}
		return wire.PolicyAssignment{}, err
	}
	_, values, err := bind(d.def, req.Parameters)
	if err != nil {
		return wire.PolicyAssignment{}, err
	}
	scope, err := s.resolveScope(ctx, "scope", req.Scope)
	if err != nil {
		return wire.PolicyAssignment{}, err
	}
	var notScopes []string
	for i, ns := range req.NotScopes {
		target := fmt.Sprintf("notScopes[%d]", i)
		id, err := resource.ParseScope(ns)
		if err != nil {
			return wire.PolicyAssignment{}, refusal.Invalid(target, "%v", err)
		}
		if !within(id.String(), scope) || strings.EqualFold(id.String(), scope) {
			return wire.PolicyAssignment{}, refusal.Invalid(target, "%s is not below the assignment's scope %s", ns, scope)
		}
		notScopes = append(notScopes, id.String())
	}
	at := req.AssignmentType
	if d.guestCfg == "" {
		if at != "" {
			return wire.PolicyAssignment{}, refusal.Invalid("assignmentType", "assignmentType applies to definitions with a machine configuration; %s has none", d.def.Name)
		}
	} else {
		if at == "" && d.def.GuestConfiguration.AssignmentType != "" {
			at = d.def.GuestConfiguration.AssignmentType
		}
		if at == "" {
			at = wire.AssignmentTypeAudit
		}
		switch at {
		case wire.AssignmentTypeAudit, wire.AssignmentTypeApplyAndMonitor, wire.AssignmentTypeApplyAndAutoCorrect:
		default:
			return wire.PolicyAssignment{}, refusal.Invalid("assignmentType", "assignmentType %q is not one of Audit, ApplyAndMonitor, ApplyAndAutoCorrect", at)
		}
	}
	var params []byte
	if values != nil {
		params, _ = json.Marshal(values)
	}
	defName := d.def.Name
	if !d.builtIn {
		defName = d.stored.Name
	}
	rec := store.PolicyAssignment{Name: name, Scope: scope, Definition: defName, Parameters: params, NonComplianceMessage: req.NonComplianceMessage,
		AssignmentType: at, NotScopes: notScopes, Description: req.Description, CreatedAt: s.now(), CreatedBy: by}
	if err := s.store.CreatePolicyAssignment(ctx, rec, d.builtIn); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			return wire.PolicyAssignment{}, refusal.Conflict("policy assignment %q already exists", name)
		case errors.Is(err, store.ErrNotFound):
			return wire.PolicyAssignment{}, refusal.Invalid("definition", "policy definition %q was not found", req.Definition)
		case errors.Is(err, store.ErrInvalidData):
			return wire.PolicyAssignment{}, refusal.Invalid("parameters", "the assignment holds text the store cannot keep")
		}
		return wire.PolicyAssignment{}, err
	}
	s.assignmentChanged(ctx, rec, d)
	return toWireAssignment(rec, effectOf(d.def, values)), nil
}

// assignmentChanged brings machines in scope up to date with an assignment
// that was created or deleted (d zero): server-side definitions are
// evaluated now, guest ones reach the agents through a new generation.
// Failures are logged: the assignment stands, the next evaluation repairs.
func (s *Service) assignmentChanged(ctx context.Context, a store.PolicyAssignment, d definition) {
	ms, err := s.machinesUnder(ctx, a.Scope)
	if err != nil {
		s.log.ErrorContext(ctx, "list machines of an assignment", "assignment", a.Name, "err", err)
		return
	}
	var ids []string
	for _, m := range ms {
		if d.def != nil && d.guestCfg == "" && !excluded(a, m) {
			if err := s.evaluateServerSide(ctx, m, a, d, ""); err != nil {
				s.log.WarnContext(ctx, "evaluate a definition on a machine", "assignment", a.Name, "machine", m.ID, "err", err)
			}
			continue
		}
		ids = append(ids, m.ID)
	}
	if len(ids) > 0 {
		if _, err := s.syncer.DesiredChanged(ctx, ids, s.now()); err != nil {
			s.log.ErrorContext(ctx, "announce an assignment change", "assignment", a.Name, "err", err)
		}
	}
}

// within reports whether id is at or below scope (path segments,
// case-insensitive).
func within(id, scope string) bool {
	id, scope = strings.ToLower(id), strings.ToLower(strings.TrimSuffix(scope, "/"))
	return scope == "" || id == scope || strings.HasPrefix(id, scope+"/")
}

// excluded reports whether a notScope of a covers m.
func excluded(a store.PolicyAssignment, m store.Machine) bool {
	id := m.ResourceID().String()
	for _, ns := range a.NotScopes {
		if within(id, ns) {
			return true
		}
	}
	return false
}

// GetAssignment returns an assignment.
func (s *Service) GetAssignment(ctx context.Context, name string) (wire.PolicyAssignment, error) {
	a, err := s.store.GetPolicyAssignment(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return wire.PolicyAssignment{}, refusal.NotFound("policy assignment %q was not found", name)
	}
	if err != nil {
		return wire.PolicyAssignment{}, err
	}
	return toWireAssignment(a, s.assignmentEffect(ctx, a)), nil
}

// AssignmentScope returns where an assignment sits (for authorization).
func (s *Service) AssignmentScope(ctx context.Context, name string) (string, error) {
	a, err := s.store.GetPolicyAssignment(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return "", refusal.NotFound("policy assignment %q was not found", name)
	}
	return a.Scope, err
}

func (s *Service) assignmentEffect(ctx context.Context, a store.PolicyAssignment) string {
	d, err := s.lookupDefinition(ctx, a.Definition)
	if err != nil {
		return ""
	}
	var values map[string]any
	if len(a.Parameters) > 0 {
		_ = json.Unmarshal(a.Parameters, &values)
	}
	return effectOf(d.def, values)
}

// ListAssignments lists assignments at or below scope, by name.
func (s *Service) ListAssignments(ctx context.Context, scope string, p store.Page) (store.PageOf[wire.PolicyAssignment], error) {
	var out store.PageOf[wire.PolicyAssignment]
	lim := p.Limit
	if lim <= 0 {
		lim = store.DefaultPageSize
	}
	p.Limit = lim + 1
	as, err := s.store.ListPolicyAssignments(ctx, scope, p)
	if err != nil {
		return out, err
	}
	if len(as) > lim {
		as = as[:lim]
		out.After = strings.ToLower(as[lim-1].Name)
	}
	for _, a := range as {
		out.Items = append(out.Items, toWireAssignment(a, s.assignmentEffect(ctx, a)))
	}
	return out, nil
}

// DeleteAssignment deletes an assignment with its exemptions, states and
// remediation records; its machines drop the machine configuration.
func (s *Service) DeleteAssignment(ctx context.Context, name string) (wire.PolicyAssignment, error) {
	a, err := s.store.GetPolicyAssignment(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return wire.PolicyAssignment{}, refusal.NotFound("policy assignment %q was not found", name)
	}
	if err != nil {
		return wire.PolicyAssignment{}, err
	}
	if err := s.store.DeletePolicyAssignment(ctx, a.Name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return wire.PolicyAssignment{}, refusal.NotFound("policy assignment %q was not found", name)
		}
		return wire.PolicyAssignment{}, err
	}
	s.assignmentChanged(ctx, a, definition{})
	return toWireAssignment(a, ""), nil
}

func toWireExemption(e store.PolicyExemption) wire.PolicyExemption {
	out := wire.PolicyExemption{ID: ExemptionID(e.Scope, e.Name), Name: e.Name, Assignment: e.Assignment, Scope: e.Scope,
		Category: e.Category, Description: e.Description, CreatedAt: e.CreatedAt, CreatedBy: e.CreatedBy}
	if !e.ExpiresAt.IsZero() {
		t := e.ExpiresAt
		out.ExpiresOn = &t
	}
	return out
}

// CreateExemption exempts a scope (at or below the assignment's) from an
// assignment, as a Waiver or Mitigated, optionally until an expiry.
func (s *Service) CreateExemption(ctx context.Context, name string, req wire.PolicyExemptionCreate, by string) (wire.PolicyExemption, error) {
	if err := resource.CheckName("policy exemption", name); err != nil {
		return wire.PolicyExemption{}, refusal.Invalid("name", "%v", err)
	}
	if req.Category != wire.ExemptionWaiver && req.Category != wire.ExemptionMitigated {
		return wire.PolicyExemption{}, refusal.Invalid("category", "category %q is not Waiver or Mitigated", req.Category)
	}
	if err := wire.CheckText(req.Description, maxDescription); err != nil {
		return wire.PolicyExemption{}, refusal.Invalid("description", "description %v", err)
	}
	now := s.now()
	var expires time.Time
	if req.ExpiresOn != nil {
		expires = req.ExpiresOn.UTC()
		if !expires.After(now) {
			return wire.PolicyExemption{}, refusal.Invalid("expiresOn", "expiresOn %s is not in the future", expires.Format(time.RFC3339))
		}
	}
	if req.Assignment == "" {
		return wire.PolicyExemption{}, refusal.Invalid("assignment", "assignment is required")
	}
	a, err := s.store.GetPolicyAssignment(ctx, assignmentName(req.Assignment))
	if errors.Is(err, store.ErrNotFound) {
		return wire.PolicyExemption{}, refusal.Invalid("assignment", "policy assignment %q was not found", req.Assignment)
	}
	if err != nil {
		return wire.PolicyExemption{}, err
	}
	id, err := resource.ParseScope(req.Scope)
	if err != nil {
		return wire.PolicyExemption{}, refusal.Invalid("scope", "%v", err)
	}
	if !within(id.String(), a.Scope) {
		return wire.PolicyExemption{}, refusal.Invalid("scope", "%s is not at or below the assignment's scope %s", req.Scope, a.Scope)
	}
	rec := store.PolicyExemption{Name: name, Assignment: a.Name, Scope: id.String(), Category: req.Category, ExpiresAt: expires,
		Description: req.Description, CreatedAt: now, CreatedBy: by}
	if err := s.store.CreatePolicyExemption(ctx, rec); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			return wire.PolicyExemption{}, refusal.Conflict("policy exemption %q already exists", name)
		case errors.Is(err, store.ErrNotFound):
			return wire.PolicyExemption{}, refusal.Invalid("assignment", "policy assignment %q was not found", req.Assignment)
		}
		return wire.PolicyExemption{}, err
	}
	return toWireExemption(rec), nil
}

// ListExemptions lists exemptions (of one assignment when given).
func (s *Service) ListExemptions(ctx context.Context, assignment string) ([]wire.PolicyExemption, error) {
	es, err := s.store.ListPolicyExemptions(ctx, assignmentName(assignment))
	if err != nil {
		return nil, err
	}
	out := make([]wire.PolicyExemption, 0, len(es))
	for _, e := range es {
		out = append(out, toWireExemption(e))
	}
	return out, nil
}

// GetExemption returns an exemption.
func (s *Service) GetExemption(ctx context.Context, name string) (wire.PolicyExemption, error) {
	e, err := s.store.GetPolicyExemption(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return wire.PolicyExemption{}, refusal.NotFound("policy exemption %q was not found", name)
	}
	return toWireExemption(e), err
}

// DeleteExemption deletes an exemption.
func (s *Service) DeleteExemption(ctx context.Context, name string) error {
	err := s.store.DeletePolicyExemption(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return refusal.NotFound("policy exemption %q was not found", name)
	}
	return err
}
