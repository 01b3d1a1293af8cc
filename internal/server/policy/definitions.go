package policy

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// MaxDefinitionBytes bounds a custom definition document.
const MaxDefinitionBytes = 256 << 10

// Text limits of assignment and exemption fields.
const (
	maxMessage     = 1024
	maxDescription = 1024
	maxNotScopes   = 50
)

// DefinitionPrefix is the resource id prefix of policy definitions.
const DefinitionPrefix = "/providers/Corral.Authorization/policyDefinitions/"

// AssignmentID is an assignment's resource id.
func AssignmentID(scope, name string) string {
	return strings.TrimSuffix(scope, "/") + "/providers/Corral.Authorization/policyAssignments/" + name
}

// ExemptionID is an exemption's resource id.
func ExemptionID(scope, name string) string {
	return strings.TrimSuffix(scope, "/") + "/providers/Corral.Authorization/policyExemptions/" + name
}

// assignmentName is the name in an assignment id (the id itself when it
// has no slash).
func assignmentName(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// definition is a resolved definition: parsed, with its document.
type definition struct {
	def      *policy.Definition
	doc      []byte
	builtIn  bool
	stored   store.PolicyDefinition
	guestCfg string // the machine configuration's name, if any
	rules    int
}

// invalid maps an internal/policy parse error to a refusal naming its JSON
// path.
func invalid(prefix string, err error) error {
	var pe *policy.PathError
	if errors.As(err, &pe) {
		target := pe.Path
		if prefix != "" {
			target = prefix + "." + strings.TrimPrefix(pe.Path, ".")
			if pe.Path == "" {
				target = prefix
			}
		}
		if target == "" {
			target = "definition"
		}
		return refusal.Invalid(target, "%s", pe.Msg)
	}
	return refusal.Invalid(prefix, "%v", err)
}

// lookupDefinition resolves a built-in or stored definition by name.
func (s *Service) lookupDefinition(ctx context.Context, name string) (definition, error) {
	if d, ok := s.catalog.Definition(name); ok {
		doc, _ := s.catalog.DefinitionJSON(d.Name)
		out := definition{def: d, doc: doc, builtIn: true}
		s.fillGuest(&out)
		return out, nil
	}
	st, err := s.store.GetPolicyDefinition(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return definition{}, refusal.NotFound("policy definition %q was not found (built-in or custom)", name)
	}
	if err != nil {
		return definition{}, err
	}
	d, err := policy.Parse(st.Document)
	if err != nil {
		return definition{}, err // it parsed when it was stored
	}
	out := definition{def: d, doc: st.Document, stored: st}
	s.fillGuest(&out)
	return out, nil
}

func (s *Service) fillGuest(d *definition) {
	if d.def.GuestConfiguration == nil {
		return
	}
	d.guestCfg = d.def.GuestConfiguration.Name
	if c, ok := s.catalog.Configuration(d.guestCfg); ok {
		d.guestCfg = c.Name
		d.rules = len(c.Rules)
	}
}

func (s *Service) toWireDefinition(d definition, withDoc bool) wire.PolicyDefinition {
	name := d.def.Name
	if !d.builtIn {
		name = d.stored.Name
	}
	out := wire.PolicyDefinition{ID: DefinitionPrefix + name, Name: name, DisplayName: d.def.DisplayName, Description: d.def.Description,
		PolicyType: wire.PolicyTypeCustom, Mode: d.def.Mode, Effect: effectOf(d.def, nil),
		GuestConfiguration: d.guestCfg, Rules: d.rules}
	if d.builtIn {
		out.PolicyType = wire.PolicyTypeBuiltIn
	} else {
		at := d.stored.CreatedAt
		out.CreatedAt, out.CreatedBy = &at, d.stored.CreatedBy
	}
	if withDoc {
		out.Definition = json.RawMessage(d.doc)
	}
	return out
}

// CreateDefinition parses a definition as Azure exports it and stores it.
// Anything unsupported is refused with its JSON path; nothing is stored.
func (s *Service) CreateDefinition(ctx context.Context, doc []byte, by string) (wire.PolicyDefinition, error) {
	if len(doc) > MaxDefinitionBytes {
		return wire.PolicyDefinition{}, refusal.Invalid("definition", "the definition is larger than %d bytes", MaxDefinitionBytes)
	}
	if i := strings.IndexByte(string(doc), 0); i >= 0 {
		return wire.PolicyDefinition{}, refusal.Invalid("definition", "the definition contains a NUL byte at offset %d", i)
	}
	d, err := policy.Parse(doc)
	if err != nil {
		return wire.PolicyDefinition{}, invalid("", err)
	}
	if d.Name == "" {
		return wire.PolicyDefinition{}, refusal.Invalid("name", "the definition has no name (set \"name\" beside \"properties\", or properties.name)")
	}
	if err := resource.CheckName("policy definition", d.Name); err != nil {
		return wire.PolicyDefinition{}, refusal.Invalid("name", "%v", err)
	}
	for target, v := range map[string]string{"properties.displayName": d.DisplayName, "properties.description": d.Description} {
		if err := wire.CheckText(v, 4096); err != nil {
			return wire.PolicyDefinition{}, refusal.Invalid(target, "%s %v", target, err)
		}
	}
	if _, ok := s.catalog.Definition(d.Name); ok {
		return wire.PolicyDefinition{}, refusal.Conflict("policy definition %q is built in; choose another name", d.Name)
	}
	if d.GuestConfiguration != nil {
		if _, ok := s.catalog.Configuration(d.GuestConfiguration.Name); !ok {
			var names []string
			for _, c := range s.catalog.Configurations() {
				names = append(names, c.Name)
			}
			return wire.PolicyDefinition{}, refusal.Invalid("properties.metadata.guestConfiguration.name",
				"machine configuration %q is not built into Corral's agent; supported: %s", d.GuestConfiguration.Name, strings.Join(names, ", "))
		}
	}
	rec := store.PolicyDefinition{Name: d.Name, DisplayName: d.DisplayName, Description: d.Description, Mode: d.Mode,
		Effect: effectOf(d, nil), Document: doc, CreatedAt: s.now(), CreatedBy: by}
	out := definition{def: d, doc: doc, stored: rec}
	s.fillGuest(&out)
	rec.GuestConfiguration = out.guestCfg
	out.stored = rec
	if err := s.store.CreatePolicyDefinition(ctx, rec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return wire.PolicyDefinition{}, refusal.Conflict("policy definition %q already exists", d.Name)
		}
		if errors.Is(err, store.ErrInvalidData) {
			return wire.PolicyDefinition{}, refusal.Invalid("definition", "the definition holds text the store cannot keep")
		}
		return wire.PolicyDefinition{}, err
	}
	return s.toWireDefinition(out, true), nil
}

// GetDefinition returns a built-in or custom definition with its document.
func (s *Service) GetDefinition(ctx context.Context, name string) (wire.PolicyDefinition, error) {
	d, err := s.lookupDefinition(ctx, name)
	if err != nil {
		return wire.PolicyDefinition{}, err
	}
	return s.toWireDefinition(d, true), nil
}

// ListDefinitions lists the built-in definitions (builtIn) or the custom
// ones, by name, without documents. Page.After is a lower-cased name.
func (s *Service) ListDefinitions(ctx context.Context, builtIn bool, p store.Page) (store.PageOf[wire.PolicyDefinition], error) {
	var out store.PageOf[wire.PolicyDefinition]
	if builtIn {
		defs := s.catalog.Definitions()
		sort.Slice(defs, func(i, j int) bool { return strings.ToLower(defs[i].Name) < strings.ToLower(defs[j].Name) })
		for _, d := range defs {
			if p.After != "" && strings.ToLower(d.Name) <= strings.ToLower(p.After) {
				continue
			}
			if len(out.Items) == p.Limit && p.Limit > 0 {
				out.After = strings.ToLower(out.Items[len(out.Items)-1].Name)
				break
			}
			doc, _ := s.catalog.DefinitionJSON(d.Name)
			x := definition{def: d, doc: doc, builtIn: true}
			s.fillGuest(&x)
			out.Items = append(out.Items, s.toWireDefinition(x, false))
		}
		return out, nil
	}
	lim := p.Limit
	if lim <= 0 {
		lim = store.DefaultPageSize
	}
	p.Limit = lim + 1
	recs, err := s.store.ListPolicyDefinitions(ctx, p)
	if err != nil {
		return out, err
	}
	if len(recs) > lim {
		recs = recs[:lim]
		out.After = strings.ToLower(recs[lim-1].Name)
	}
	for _, r := range recs {
		d, err := policy.Parse(r.Document)
		if err != nil {
			return out, err
		}
		x := definition{def: d, doc: r.Document, stored: r}
		s.fillGuest(&x)
		out.Items = append(out.Items, s.toWireDefinition(x, false))
	}
	return out, nil
}

// DeleteDefinition deletes a custom definition no assignment uses.
func (s *Service) DeleteDefinition(ctx context.Context, name string) error {
	if _, ok := s.catalog.Definition(name); ok {
		return refusal.Invalid("name", "policy definition %q is built in and cannot be deleted", name)
	}
	err := s.store.DeletePolicyDefinition(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refusal.NotFound("policy definition %q was not found", name)
	case errors.Is(err, store.ErrNotEmpty):
		return refusal.Conflict("policy definition %q is assigned; delete its assignments first", name)
	}
	return err
}

// effectOf is the definition's effect with these parameter values (nil:
// the defaults); "" when they do not bind.
func effectOf(d *policy.Definition, values map[string]any) string {
	p, err := d.BindParameters(values)
	if err != nil {
		return ""
	}
	return string(d.Effect(p))
}
