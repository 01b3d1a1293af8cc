package policy

import (
	"encoding/json"
	"strings"
)

// Definition is a parsed policy definition. It is immutable after Parse.
type Definition struct {
	Name        string
	DisplayName string
	Description string
	Mode        string // All or Indexed
	PolicyType  string // informational: BuiltIn, Custom, Static
	Version     string // informational
	Metadata    map[string]any
	Parameters  map[string]*Parameter // by lower-case name
	// GuestConfiguration is set when the definition audits or applies a
	// machine configuration (metadata.guestConfiguration, as in Azure).
	GuestConfiguration *GuestConfigurationRef

	cond        node
	effect      Effect // when literal
	effectParam string // lower-case parameter name when the effect is [parameters('x')]
	possible    []Effect
	appendOps   []tagOp
	modify      *modifyDetails
	exist       *existenceDetails
}

// GuestConfigurationRef names the machine configuration a definition
// evaluates inside machines: Azure's metadata.guestConfiguration.
type GuestConfigurationRef struct {
	Name    string
	Version string
	// ConfigurationParameter maps definition parameter names to
	// "ruleId;setting" targets inside the machine configuration.
	ConfigurationParameter map[string]string
	// AssignmentType is the default assignment type when the definition
	// says (Audit, ApplyAndMonitor, ApplyAndAutoCorrect).
	AssignmentType string
}

// Parse reads a policy definition as Azure exports it: {"properties":{...}}
// (with optional id, name, type, systemData) or the bare properties. Every
// unsupported part is refused with a *PathError (ErrInvalidDefinition).
func Parse(data []byte) (*Definition, error) {
	var root any
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, jsonSyntaxError(data, err, ErrInvalidDefinition)
	}
	top, err := asObj(root, "")
	if err != nil {
		return nil, err
	}
	d := &Definition{}
	props := top
	if pv, pp, ok := top.get("properties"); ok {
		if d.Name, _, err = top.str("name"); err != nil {
			return nil, err
		}
		top.ignore("id", "type", "systemData")
		if err := top.rest("properties, name, id, type, systemData"); err != nil {
			return nil, err
		}
		if props, err = asObj(pv, pp); err != nil {
			return nil, err
		}
	}
	if n, _, err := props.str("name"); err != nil {
		return nil, err
	} else if n != "" && d.Name == "" {
		d.Name = n
	}
	if d.DisplayName, _, err = props.str("displayName"); err != nil {
		return nil, err
	}
	if d.Description, _, err = props.str("description"); err != nil {
		return nil, err
	}
	if d.PolicyType, _, err = props.str("policyType"); err != nil {
		return nil, err
	}
	if d.Version, _, err = props.str("version"); err != nil {
		return nil, err
	}
	props.ignore("versions")
	mode, mp, err := props.str("mode")
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(mode) {
	case "", "all":
		d.Mode = "All"
	case "indexed":
		d.Mode = "Indexed"
	default:
		return nil, defErr(mp, "unsupported mode %q: supported are All and Indexed (resource provider modes such as Microsoft.Kubernetes.Data do not apply to Corral machines)", mode)
	}
	if mv, mp, ok := props.get("metadata"); ok && mv != nil {
		m, isObj := mv.(map[string]any)
		if !isObj {
			return nil, defErr(mp, "must be an object, got %s", jsonKind(mv))
		}
		d.Metadata = m
		if gv, gp, ok := (&obj{m: m}).lookup("guestConfiguration"); ok {
			if d.GuestConfiguration, err = parseGuestConfigurationRef(gv, joinPath(mp, gp)); err != nil {
				return nil, err
			}
		}
	}
	d.Parameters = map[string]*Parameter{}
	if pv, pp, ok := props.get("parameters"); ok && pv != nil {
		if d.Parameters, err = parseParameters(pv, pp); err != nil {
			return nil, err
		}
	}
	rv, rp, ok := props.get("policyRule")
	if !ok {
		return nil, defErr(rp, "a definition needs a policyRule with if and then")
	}
	if err := d.parseRule(rv, rp); err != nil {
		return nil, err
	}
	if err := props.rest("name, displayName, description, mode, metadata, parameters, policyRule, policyType, version, versions"); err != nil {
		return nil, err
	}
	if gc := d.GuestConfiguration; gc != nil {
		for pname := range gc.ConfigurationParameter {
			if _, ok := d.Parameters[strings.ToLower(pname)]; !ok {
				return nil, defErr("metadata.guestConfiguration.configurationParameter."+pname, "names no declared parameter")
			}
		}
	}
	return d, nil
}

// lookup is get on a bare map (case-insensitive), returning the key as written.
func (o *obj) lookup(name string) (any, string, bool) {
	for k, v := range o.m {
		if strings.EqualFold(k, name) {
			return v, k, true
		}
	}
	return nil, "", false
}

func parseGuestConfigurationRef(v any, path string) (*GuestConfigurationRef, error) {
	o, err := asObj(v, path)
	if err != nil {
		return nil, err
	}
	g := &GuestConfigurationRef{}
	var np string
	if g.Name, np, err = o.str("name"); err != nil {
		return nil, err
	}
	if g.Name == "" {
		return nil, defErr(np, "the machine configuration needs a name")
	}
	if g.Version, _, err = o.str("version"); err != nil {
		return nil, err
	}
	if g.AssignmentType, _, err = o.str("assignmentType"); err != nil {
		return nil, err
	}
	if cv, cp, ok := o.get("configurationParameter"); ok {
		co, err := asObj(cv, cp)
		if err != nil {
			return nil, err
		}
		g.ConfigurationParameter = map[string]string{}
		for _, k := range sortedKeys(co.m) {
			s, _, err := co.str(k)
			if err != nil {
				return nil, err
			}
			g.ConfigurationParameter[k] = s
		}
	}
	// Azure's package location fields: Corral ships machine configurations
	// itself, so these are informational.
	o.ignore("contentType", "contentUri", "contentHash", "contentManagedIdentity")
	return g, nil
}

func (d *Definition) parseRule(v any, path string) error {
	o, err := asObj(v, path)
	if err != nil {
		return err
	}
	cc := &compileCtx{params: d.Parameters}
	iv, ip, ok := o.get("if")
	if !ok {
		return defErr(ip, "the policy rule needs an if condition")
	}
	if d.cond, err = cc.compileCondition(iv, ip); err != nil {
		return err
	}
	tv, tp, ok := o.get("then")
	if !ok {
		return defErr(tp, "the policy rule needs a then block with an effect")
	}
	if err := o.rest("if, then"); err != nil {
		return err
	}
	to, err := asObj(tv, tp)
	if err != nil {
		return err
	}
	ev, ep, ok := to.get("effect")
	if !ok {
		return defErr(ep, "then needs an effect: one of %s", effectList())
	}
	if err := d.parseEffect(cc, ev, ep); err != nil {
		return err
	}
	dv, dp, hasDetails := to.get("details")
	if err := to.rest("effect, details"); err != nil {
		return err
	}
	return d.parseDetails(cc, dv, dp, hasDetails, ep)
}
