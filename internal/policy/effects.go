package policy

import (
	"fmt"
	"strings"
)

// Effect is what happens when a definition's if condition matches.
type Effect string

// Supported effects, spelled as Azure spells them.
const (
	EffectAudit             Effect = "Audit"
	EffectDeny              Effect = "Deny"
	EffectAppend            Effect = "Append"
	EffectModify            Effect = "Modify"
	EffectAuditIfNotExists  Effect = "AuditIfNotExists"
	EffectDeployIfNotExists Effect = "DeployIfNotExists"
	EffectDisabled          Effect = "Disabled"
)

var effects = []Effect{EffectAudit, EffectDeny, EffectAppend, EffectModify, EffectAuditIfNotExists, EffectDeployIfNotExists, EffectDisabled}

func effectList() string {
	s := make([]string, len(effects))
	for i, e := range effects {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

func parseEffectName(s string) (Effect, error) {
	for _, e := range effects {
		if strings.EqualFold(s, string(e)) {
			return e, nil
		}
	}
	return "", fmt.Errorf("unsupported effect %q: supported are %s", s, effectList())
}

// detailsKind is the shape of then.details an effect uses.
type detailsKind int

const (
	detailsNone detailsKind = iota
	detailsAppend
	detailsModify
	detailsExistence
)

func (e Effect) details() detailsKind {
	switch e {
	case EffectAppend:
		return detailsAppend
	case EffectModify:
		return detailsModify
	case EffectAuditIfNotExists, EffectDeployIfNotExists:
		return detailsExistence
	}
	return detailsNone
}

func (d *Definition) parseEffect(cc *compileCtx, v any, path string) error {
	s, ok := v.(string)
	if !ok {
		return defErr(path, "must be a string, got %s", jsonKind(v))
	}
	e, err := compileValue(cc, s, path)
	if err != nil {
		return err
	}
	if lit, ok := isLiteral(e); ok {
		eff, err := parseEffectName(lit.(string))
		if err != nil {
			return defErr(path, "%v", err)
		}
		d.effect, d.possible = eff, []Effect{eff}
		return nil
	}
	pe, ok := e.(paramExpr)
	if !ok {
		return defErr(path, "the effect must be an effect name or [parameters('name')]")
	}
	prm := d.Parameters[pe.name]
	if prm.Type != ParamString {
		return defErr(path, "the effect parameter %q must be of type String, not %s", prm.Name, prm.Type)
	}
	d.effectParam = pe.name
	var candidates []any
	switch {
	case prm.AllowedValues != nil:
		candidates = prm.AllowedValues
	case prm.HasDefault:
		candidates = []any{prm.DefaultValue}
	default:
		return defErr(path, "the effect parameter %q needs allowedValues or a defaultValue so the effect can be checked", prm.Name)
	}
	for i, c := range candidates {
		eff, err := parseEffectName(c.(string))
		if err != nil {
			p := "parameters." + prm.Name + ".defaultValue"
			if prm.AllowedValues != nil {
				p = indexPath("parameters."+prm.Name+".allowedValues", i)
			}
			return defErr(p, "%v", err)
		}
		d.possible = append(d.possible, eff)
	}
	return nil
}

// checkEffect validates an effect chosen by an assignment parameter.
func (d *Definition) checkEffect(s string) (Effect, error) {
	eff, err := parseEffectName(s)
	if err != nil {
		return "", err
	}
	if k := eff.details(); k != detailsNone && k != d.detailsKind() {
		return "", fmt.Errorf("effect %s needs details this definition does not have", eff)
	}
	return eff, nil
}

func (d *Definition) detailsKind() detailsKind {
	switch {
	case d.appendOps != nil:
		return detailsAppend
	case d.modify != nil:
		return detailsModify
	case d.exist != nil:
		return detailsExistence
	}
	return detailsNone
}

func (d *Definition) parseDetails(cc *compileCtx, v any, path string, present bool, effectPath string) error {
	kind := detailsNone
	var user Effect
	for _, e := range d.possible {
		k := e.details()
		if k == detailsNone {
			continue
		}
		if kind != detailsNone && k != kind {
			return defErr(effectPath, "effects %s and %s need different details and cannot share a definition", user, e)
		}
		kind, user = k, e
	}
	switch {
	case kind == detailsNone && present:
		return defErr(path, "details is not used by effect %s", d.possible[0])
	case kind != detailsNone && !present:
		return defErr(path, "effect %s needs details", user)
	}
	var err error
	switch kind {
	case detailsAppend:
		d.appendOps, err = parseAppend(cc, v, path)
	case detailsModify:
		d.modify, err = parseModify(cc, v, path)
	case detailsExistence:
		d.exist, err = parseExistence(cc, v, path, d.possibleHas(EffectDeployIfNotExists))
	}
	return err
}

func (d *Definition) possibleHas(e Effect) bool {
	for _, p := range d.possible {
		if p == e {
			return true
		}
	}
	return false
}

// ---- append and modify (tags only) ----

// TagOperation is a modify/append operation on a tag.
type TagOperation string

// Tag operations (modify's operation names; append adds).
const (
	TagAddOrReplace TagOperation = "addOrReplace"
	TagAdd          TagOperation = "add"
	TagRemove       TagOperation = "remove"
)

type tagOp struct {
	op        TagOperation
	field     *fieldRef // fTag or fTags; nil when computed
	fieldExpr expr      // a computed tag field name (concat('tags[', ...))
	value     expr
	condition expr // modify operations may carry one
	path      string
}

func compileTagField(cc *compileCtx, v any, path, effect string) (*fieldRef, error) {
	s, ok := v.(string)
	if !ok {
		return nil, defErr(path, "must be a string, got %s", jsonKind(v))
	}
	if strings.HasPrefix(s, "[") && !strings.HasPrefix(s, "[[") {
		// A computed tag field (concat('tags[', parameters('tagName'), ']')) is
		// checked when it is evaluated; keep the expression.
		return nil, nil
	}
	f, err := parseFieldName(s)
	if err != nil {
		return nil, defErr(path, "%v", err)
	}
	if f.kind != fTag && f.kind != fTags {
		return nil, defErr(path, "%s in Corral changes only tags: use tags['name'], tags.name or tags, not %q", effect, s)
	}
	return f, nil
}

func parseAppend(cc *compileCtx, v any, path string) ([]tagOp, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, defErr(path, "append details must be an array of {field, value}, got %s", jsonKind(v))
	}
	if len(arr) == 0 {
		return nil, defErr(path, "append details must hold at least one {field, value}")
	}
	var out []tagOp
	for i, el := range arr {
		p := indexPath(path, i)
		o, err := asObj(el, p)
		if err != nil {
			return nil, err
		}
		t := tagOp{op: TagAddOrReplace, path: p}
		fv, fp, ok := o.get("field")
		if !ok {
			return nil, defErr(fp, "needs a field")
		}
		if t.field, err = compileTagField(cc, fv, fp, "append"); err != nil {
			return nil, err
		}
		if t.field == nil {
			if t.fieldExpr, err = compileValue(cc, fv, fp); err != nil {
				return nil, err
			}
		}
		vv, vp, ok := o.get("value")
		if !ok {
			return nil, defErr(vp, "needs a value")
		}
		if t.value, err = compileValue(cc, vv, vp); err != nil {
			return nil, err
		}
		if err := o.rest("field, value"); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

type modifyDetails struct {
	roleDefinitionIDs []string
	conflictEffect    Effect
	ops               []tagOp
}

func parseModify(cc *compileCtx, v any, path string) (*modifyDetails, error) {
	o, err := asObj(v, path)
	if err != nil {
		return nil, err
	}
	md := &modifyDetails{conflictEffect: EffectAudit}
	if md.roleDefinitionIDs, err = stringList(o, "roleDefinitionIds"); err != nil {
		return nil, err
	}
	if ce, cp, err := o.str("conflictEffect"); err != nil {
		return nil, err
	} else if ce != "" {
		e, err := parseEffectName(ce)
		if err != nil || (e != EffectAudit && e != EffectDeny && e != EffectDisabled) {
			return nil, defErr(cp, "conflictEffect must be audit, deny or disabled, got %q", ce)
		}
		md.conflictEffect = e
	}
	ov, op, ok := o.get("operations")
	if !ok {
		return nil, defErr(op, "modify details need operations")
	}
	arr, isArr := ov.([]any)
	if !isArr || len(arr) == 0 {
		return nil, defErr(op, "must be a non-empty array of operations")
	}
	for i, el := range arr {
		p := indexPath(op, i)
		eo, err := asObj(el, p)
		if err != nil {
			return nil, err
		}
		name, np, err := eo.str("operation")
		if err != nil {
			return nil, err
		}
		t := tagOp{path: p}
		for _, k := range []TagOperation{TagAddOrReplace, TagAdd, TagRemove} {
			if strings.EqualFold(name, string(k)) {
				t.op = k
			}
		}
		if t.op == "" {
			return nil, defErr(np, "unsupported operation %q: supported are addOrReplace, add, remove", name)
		}
		fv, fp, ok := eo.get("field")
		if !ok {
			return nil, defErr(fp, "needs a field")
		}
		if t.field, err = compileTagField(cc, fv, fp, "modify"); err != nil {
			return nil, err
		}
		if t.field == nil {
			if t.fieldExpr, err = compileValue(cc, fv, fp); err != nil {
				return nil, err
			}
		}
		vv, vp, hasValue := eo.get("value")
		switch {
		case t.op != TagRemove && !hasValue:
			return nil, defErr(vp, "operation %s needs a value", t.op)
		case hasValue:
			if t.value, err = compileValue(cc, vv, vp); err != nil {
				return nil, err
			}
		}
		if cv, cp, ok := eo.get("condition"); ok {
			if t.condition, err = compileValue(cc, cv, cp); err != nil {
				return nil, err
			}
		}
		if err := eo.rest("operation, field, value, condition"); err != nil {
			return nil, err
		}
		md.ops = append(md.ops, t)
	}
	if err := o.rest("roleDefinitionIds, conflictEffect, operations"); err != nil {
		return nil, err
	}
	return md, nil
}

func stringList(o *obj, name string) ([]string, error) {
	v, p, ok := o.get(name)
	if !ok {
		return nil, nil
	}
	arr, isArr := v.([]any)
	if !isArr {
		return nil, defErr(p, "must be an array of strings, got %s", jsonKind(v))
	}
	out := make([]string, len(arr))
	for i, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, defErr(indexPath(p, i), "must be a string, got %s", jsonKind(x))
		}
		out[i] = s
	}
	return out, nil
}

// ---- auditIfNotExists / deployIfNotExists ----

type existenceDetails struct {
	relType           string // canonical
	name              expr
	condition         node
	evaluationDelay   string
	roleDefinitionIDs []string
	deployment        *deploymentSpec
}

func parseExistence(cc *compileCtx, v any, path string, deploy bool) (*existenceDetails, error) {
	o, err := asObj(v, path)
	if err != nil {
		return nil, err
	}
	ed := &existenceDetails{}
	t, tp, err := o.str("type")
	if err != nil {
		return nil, err
	}
	ed.relType = CanonicalType(t)
	if ed.relType != TypeMachineExtension && ed.relType != TypeGuestConfigurationAssignment {
		return nil, defErr(tp, "unsupported related resource type %q: Corral machines have %s (or their Microsoft.* synonyms)", t, TypeMachineExtension+" and "+TypeGuestConfigurationAssignment)
	}
	if nv, np, ok := o.get("name"); ok {
		if ed.name, err = compileValue(cc, nv, np); err != nil {
			return nil, err
		}
	}
	if cv, cp, ok := o.get("existenceCondition"); ok {
		ec := cc.clone()
		ec.inExistence = true
		if ed.condition, err = ec.compileCondition(cv, cp); err != nil {
			return nil, err
		}
	}
	if s, sp, err := o.str("existenceScope"); err != nil {
		return nil, err
	} else if s != "" && !strings.EqualFold(s, "resourceGroup") {
		return nil, defErr(sp, "existenceScope %q is not supported: related resources are the machine's own", s)
	}
	if ed.evaluationDelay, _, err = o.str("evaluationDelay"); err != nil {
		return nil, err
	}
	if ed.roleDefinitionIDs, err = stringList(o, "roleDefinitionIds"); err != nil {
		return nil, err
	}
	if s, sp, err := o.str("deploymentScope"); err != nil {
		return nil, err
	} else if s != "" && !strings.EqualFold(s, "resourceGroup") {
		return nil, defErr(sp, "deploymentScope %q is not supported: deployments install extensions on the machine", s)
	}
	if o.has("resourceGroupName") {
		_, rp, _ := o.get("resourceGroupName")
		return nil, defErr(rp, "resourceGroupName is not supported: related resources are the machine's own")
	}
	dv, dp, hasDeployment := o.get("deployment")
	switch {
	case deploy && !hasDeployment:
		return nil, defErr(dp, "deployIfNotExists needs a deployment")
	case hasDeployment && !deploy:
		return nil, defErr(dp, "deployment is only used by deployIfNotExists")
	case hasDeployment:
		if ed.relType != TypeMachineExtension {
			return nil, defErr(dp, "deployIfNotExists deploys machine extensions: details.type must be %s", TypeMachineExtension)
		}
		if ed.deployment, err = parseDeployment(cc, dv, dp); err != nil {
			return nil, err
		}
	}
	if err := o.rest("type, name, existenceCondition, existenceScope, evaluationDelay, roleDefinitionIds, deploymentScope, deployment"); err != nil {
		return nil, err
	}
	return ed, nil
}
