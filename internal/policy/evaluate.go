package policy

import (
	"fmt"
	"sort"
	"strings"
)

// evalCtx is the state of one evaluation; it never outlives Evaluate.
type evalCtx struct {
	res     *Resource // what "field" conditions read
	primary *Resource // the evaluated resource (field() in an existenceCondition)
	params  map[string]any
	scopes  []any // current elements of the enclosing counts
	tagsRes *Resource
	tagsObj map[string]any

	tmplParams map[string]any
	tmplScope  *templateScope
}

// ComplianceState is a resource's state for one definition.
type ComplianceState string

// Compliance states of a policy evaluation. (Exempt is decided by the
// server's exemptions, Unknown by guest evaluation; neither comes from here.)
const (
	Compliant    ComplianceState = "Compliant"
	NonCompliant ComplianceState = "NonCompliant"
)

// Result is the outcome of evaluating a definition on one resource.
type Result struct {
	Effect Effect
	// Matched: the if condition matched (false: not applicable, counted
	// as Compliant as Azure does).
	Matched bool
	// ComplianceState is empty when the effect is Disabled.
	ComplianceState ComplianceState
	// Reason says why, in words: the conditions that matched, or which
	// related resource was (not) found.
	Reason string
	// TagChanges are what append/modify would change (already effective
	// changes only: adding a tag that has the same value is no change).
	TagChanges []TagChange
	// ConflictEffect is modify's conflictEffect.
	ConflictEffect Effect
	// RelatedType/RelatedName: what auditIfNotExists/deployIfNotExists
	// looked for; RelatedFound the name of the one that satisfied it.
	RelatedType  string
	RelatedName  string
	RelatedFound string
	// Deployment is what deployIfNotExists would install (when NonCompliant).
	Deployment *Deployment
	// GuestConfiguration is the definition's machine configuration, if any.
	GuestConfiguration *GuestConfigurationRef
}

// TagChange is one tag change of append or modify.
type TagChange struct {
	Operation TagOperation `json:"operation"`
	Key       string       `json:"key"`
	Value     string       `json:"value,omitempty"`
	// Previous is the tag's value before, when it had one.
	Previous *string `json:"previous,omitempty"`
}

// Effect returns the effect the definition has with these parameters.
func (d *Definition) Effect(p Params) Effect {
	if d.effectParam == "" {
		return d.effect
	}
	s, _ := p.values[d.effectParam].(string)
	e, _ := parseEffectName(s)
	return e
}

// Evaluate evaluates the definition on r with bound parameters (nil: the
// parameters' defaults). It returns an error only when the definition cannot
// be evaluated (an *EvalError: e.g. a computed field name that names no
// field); a resource that does not match is a Result, not an error.
func (d *Definition) Evaluate(r *Resource, p *Params) (*Result, error) {
	if p == nil {
		bp, err := d.BindParameters(nil)
		if err != nil {
			return nil, err
		}
		p = &bp
	}
	eff := d.Effect(*p)
	if eff == "" {
		return nil, &EvalError{Path: "policyRule.then.effect", Err: fmt.Errorf("the effect parameter has no supported value")}
	}
	res := &Result{Effect: eff, GuestConfiguration: d.GuestConfiguration}
	if eff == EffectDisabled {
		res.Reason = "the effect is Disabled"
		return res, nil
	}
	c := &evalCtx{res: r, primary: r, params: p.values}
	ok, err := d.cond.eval(c)
	if err != nil {
		return nil, err
	}
	if !ok {
		res.ComplianceState = Compliant
		res.Reason = "not applicable: the if condition does not match"
		return res, nil
	}
	res.Matched = true
	why := d.cond.describe(c)
	switch eff {
	case EffectAudit, EffectDeny:
		res.ComplianceState = NonCompliant
		res.Reason = "matched: " + why
	case EffectAppend:
		res.ComplianceState = NonCompliant
		res.Reason = "matched: " + why
		if res.TagChanges, err = tagChanges(c, d.appendOps, r.Tags); err != nil {
			return nil, err
		}
	case EffectModify:
		res.ComplianceState = NonCompliant
		res.Reason = "matched: " + why
		res.ConflictEffect = d.modify.conflictEffect
		if res.TagChanges, err = tagChanges(c, d.modify.ops, r.Tags); err != nil {
			return nil, err
		}
	case EffectAuditIfNotExists, EffectDeployIfNotExists:
		if err := d.exist.check(c, r, res); err != nil {
			return nil, err
		}
		if res.ComplianceState == NonCompliant && eff == EffectDeployIfNotExists {
			if res.Deployment, err = d.exist.deployment.plan(c); err != nil {
				return nil, &EvalError{Path: "policyRule.then.details.deployment", Err: err}
			}
		}
	}
	return res, nil
}

func (ed *existenceDetails) check(c *evalCtx, r *Resource, res *Result) error {
	res.RelatedType = ed.relType
	if ed.name != nil {
		v, err := ed.name.eval(c)
		if err != nil {
			return &EvalError{Path: "policyRule.then.details.name", Err: err}
		}
		s, ok := v.(string)
		if !ok {
			return &EvalError{Path: "policyRule.then.details.name", Err: fmt.Errorf("expected a string, got %s", jsonKind(v))}
		}
		if i := strings.LastIndex(s, "/"); i >= 0 {
			s = s[i+1:]
		}
		res.RelatedName = s
	}
	seen := 0
	for _, rel := range r.Related {
		if rel.Type != ed.relType || res.RelatedName != "" && !strings.EqualFold(rel.Name, res.RelatedName) {
			continue
		}
		seen++
		if ed.condition != nil {
			rc := &evalCtx{res: rel, primary: r, params: c.params}
			ok, err := ed.condition.eval(rc)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		res.ComplianceState = Compliant
		res.RelatedFound = rel.Name
		res.Reason = fmt.Sprintf("%s %q exists", ed.relType, rel.Name)
		if ed.condition != nil {
			res.Reason += " and satisfies the existenceCondition"
		}
		return nil
	}
	res.ComplianceState = NonCompliant
	what := ed.relType
	if res.RelatedName != "" {
		what += fmt.Sprintf(" %q", res.RelatedName)
	}
	switch {
	case seen == 0:
		res.Reason = "no " + what + " exists"
	default:
		res.Reason = fmt.Sprintf("%d %s exist but none satisfies the existenceCondition", seen, what)
		if ed.relType == TypeGuestConfigurationAssignment {
			for _, rel := range r.Related {
				if rel.Type == ed.relType && (res.RelatedName == "" || strings.EqualFold(rel.Name, res.RelatedName)) {
					if st, ok := walkOne(rel.Properties, []seg{{key: "complianceStatus"}}); ok {
						res.Reason = fmt.Sprintf("guest configuration assignment %q is %v", rel.Name, st)
					}
				}
			}
		}
	}
	return nil
}

// tagChanges computes the effective tag changes of append or modify
// operations on tags (append adds or replaces, as modify's addOrReplace).
func tagChanges(c *evalCtx, ops []tagOp, tags map[string]string) ([]TagChange, error) {
	cur := make(map[string]string, len(tags))
	for k, v := range tags {
		cur[k] = v
	}
	var out []TagChange
	for _, t := range ops {
		if t.condition != nil {
			v, err := t.condition.eval(c)
			if err != nil {
				return nil, &EvalError{Path: t.path + ".condition", Err: err}
			}
			b, err := argBool(v)
			if err != nil {
				return nil, &EvalError{Path: t.path + ".condition", Err: err}
			}
			if !b {
				continue
			}
		}
		f := t.field
		if f == nil {
			v, err := t.fieldExpr.eval(c)
			if err != nil {
				return nil, &EvalError{Path: t.path + ".field", Err: err}
			}
			s, _ := v.(string)
			if f, err = parseFieldName(s); err != nil || (f.kind != fTag && f.kind != fTags) {
				return nil, &EvalError{Path: t.path + ".field", Err: fmt.Errorf("%q is not a tag field (tags['name'], tags.name or tags)", s)}
			}
		}
		var val any
		if t.value != nil {
			v, err := t.value.eval(c)
			if err != nil {
				return nil, &EvalError{Path: t.path + ".value", Err: err}
			}
			val = v
		}
		if f.kind == fTags {
			switch {
			case t.op == TagRemove:
				for _, k := range sortedTagKeys(cur) {
					prev := cur[k]
					out = append(out, TagChange{Operation: TagRemove, Key: k, Previous: &prev})
					delete(cur, k)
				}
			default:
				m, ok := val.(map[string]any)
				if !ok {
					return nil, &EvalError{Path: t.path + ".value", Err: fmt.Errorf("a value for tags must be an object, got %s", jsonKind(val))}
				}
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					out = applyTag(out, cur, t.op, k, stringify(m[k]))
				}
			}
			continue
		}
		if t.op == TagRemove {
			if k, ok := findTag(cur, f.tag); ok {
				prev := cur[k]
				out = append(out, TagChange{Operation: TagRemove, Key: k, Previous: &prev})
				delete(cur, k)
			}
			continue
		}
		if val == nil {
			return nil, &EvalError{Path: t.path + ".value", Err: fmt.Errorf("a tag value cannot be null")}
		}
		s, ok := scalarString(val)
		if !ok {
			return nil, &EvalError{Path: t.path + ".value", Err: fmt.Errorf("a tag value must be a string, got %s", jsonKind(val))}
		}
		out = applyTag(out, cur, t.op, f.tag, s)
	}
	return out, nil
}

func applyTag(out []TagChange, cur map[string]string, op TagOperation, key, val string) []TagChange {
	k, exists := findTag(cur, key)
	switch {
	case !exists:
		cur[key] = val
		return append(out, TagChange{Operation: op, Key: key, Value: val})
	case op == TagAdd:
		return out // add never replaces
	case cur[k] == val:
		return out
	}
	prev := cur[k]
	cur[k] = val
	return append(out, TagChange{Operation: TagAddOrReplace, Key: k, Value: val, Previous: &prev})
}

func findTag(tags map[string]string, key string) (string, bool) {
	if _, ok := tags[key]; ok {
		return key, true
	}
	for k := range tags {
		if strings.EqualFold(k, key) {
			return k, true
		}
	}
	return "", false
}

func sortedTagKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ApplyTagChanges returns tags with the changes applied (tags is not
// modified); tag names match case-insensitively, as in Azure.
func ApplyTagChanges(tags map[string]string, changes []TagChange) map[string]string {
	out := make(map[string]string, len(tags)+len(changes))
	for k, v := range tags {
		out[k] = v
	}
	for _, ch := range changes {
		k, ok := findTag(out, ch.Key)
		switch {
		case ch.Operation == TagRemove:
			if ok {
				delete(out, k)
			}
		case ok:
			out[k] = ch.Value
		default:
			out[ch.Key] = ch.Value
		}
	}
	return out
}
