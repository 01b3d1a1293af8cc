package policy

import (
	"fmt"
	"strings"
)

// A deployIfNotExists deployment: an ARM template whose resources are
// machine extensions. Corral does not run ARM; it extracts the extensions
// and the server installs them through the extensions path (each machine's
// local lock-down still applies).

type templateScope struct {
	params    map[string]*tmplParam
	variables map[string]expr
}

type tmplParam struct {
	name       string
	typ        ParamType
	def        expr
	hasDefault bool
}

type deploymentSpec struct {
	scope     *templateScope
	paramVals map[string]expr // lower-case template parameter -> value (policy scope)
	resources []tmplExtension
}

type tmplExtension struct {
	path                    string
	name                    expr
	publisher, typ, version expr
	settings                expr
	autoUpgrade             expr
}

// Deployment is what deployIfNotExists would deploy on a machine.
type Deployment struct {
	Extensions []ExtensionDeployment
}

// ExtensionDeployment is one extension to install.
type ExtensionDeployment struct {
	Name      string
	Publisher string
	Type      string
	Version   string // typeHandlerVersion; empty = latest listed
	Settings  map[string]any
	// AutoUpgradeMinorVersion is informational (Corral installs the version
	// asked for, or the latest listed).
	AutoUpgradeMinorVersion bool
}

func parseDeployment(cc *compileCtx, v any, path string) (*deploymentSpec, error) {
	o, err := asObj(v, path)
	if err != nil {
		return nil, err
	}
	pv, pp, ok := o.get("properties")
	if !ok {
		return nil, defErr(pp, "the deployment needs properties with mode, template and parameters")
	}
	if err := o.rest("properties"); err != nil {
		return nil, err
	}
	po, err := asObj(pv, pp)
	if err != nil {
		return nil, err
	}
	if m, mp, err := po.str("mode"); err != nil {
		return nil, err
	} else if m != "" && !strings.EqualFold(m, "incremental") {
		return nil, defErr(mp, "deployment mode %q is not supported: only incremental", m)
	}
	tv, tp, ok := po.get("template")
	if !ok {
		return nil, defErr(tp, "the deployment needs a template")
	}
	ds := &deploymentSpec{paramVals: map[string]expr{}}
	if ds.scope, ds.resources, err = parseTemplate(tv, tp); err != nil {
		return nil, err
	}
	if av, ap, ok := po.get("parameters"); ok && av != nil {
		ao, err := asObj(av, ap)
		if err != nil {
			return nil, err
		}
		for _, k := range sortedKeys(ao.m) {
			x, xp, _ := ao.get(k)
			if _, ok := ds.scope.params[strings.ToLower(k)]; !ok {
				return nil, defErr(xp, "the template declares no parameter %q", k)
			}
			xo, err := asObj(x, xp)
			if err != nil {
				return nil, err
			}
			vv, vp, ok := xo.get("value")
			if !ok {
				return nil, defErr(vp, "a deployment parameter needs a value")
			}
			if err := xo.rest("value"); err != nil {
				return nil, err
			}
			e, err := compileValue(cc, vv, vp)
			if err != nil {
				return nil, err
			}
			ds.paramVals[strings.ToLower(k)] = e
		}
	}
	for lk, tp2 := range ds.scope.params {
		if _, ok := ds.paramVals[lk]; !ok && !tp2.hasDefault {
			return nil, defErr(joinPath(pp, "parameters"), "template parameter %q has no default and no value", tp2.name)
		}
	}
	if err := po.rest("mode, template, parameters"); err != nil {
		return nil, err
	}
	return ds, nil
}

func parseTemplate(v any, path string) (*templateScope, []tmplExtension, error) {
	o, err := asObj(v, path)
	if err != nil {
		return nil, nil, err
	}
	ts := &templateScope{params: map[string]*tmplParam{}, variables: map[string]expr{}}
	tc := &compileCtx{tmpl: ts}
	var pending []pendingDefault
	if pv, pp, ok := o.get("parameters"); ok && pv != nil {
		po, err := asObj(pv, pp)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range sortedKeys(po.m) {
			x, xp, _ := po.get(k)
			xo, err := asObj(x, xp)
			if err != nil {
				return nil, nil, err
			}
			t, tp, err := xo.str("type")
			if err != nil {
				return nil, nil, err
			}
			tpm := &tmplParam{name: k}
			for _, pt := range append(paramTypes, "securestring", "secureobject", "int", "bool") {
				if strings.EqualFold(t, string(pt)) {
					tpm.typ = pt
				}
			}
			if tpm.typ == "" {
				return nil, nil, defErr(tp, "unsupported template parameter type %q", t)
			}
			ts.params[strings.ToLower(k)] = tpm
			if dv, _, ok := xo.get("defaultValue"); ok {
				tpm.hasDefault = true
				tpm.def = litExpr{dv}
				pending = append(pending, pendingDefault{tpm, dv, joinPath(xp, "defaultValue")})
			}
			xo.ignore("metadata", "allowedValues")
			if err := xo.rest("type, defaultValue, allowedValues, metadata"); err != nil {
				return nil, nil, err
			}
		}
	}
	// Defaults may use other parameters: compile them once all are known.
	for _, pd := range pending {
		if pd.p.def, err = compileValue(tc, pd.v, pd.path); err != nil {
			return nil, nil, err
		}
	}
	if vv, vp, ok := o.get("variables"); ok && vv != nil {
		vo, err := asObj(vv, vp)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range sortedKeys(vo.m) {
			ts.variables[strings.ToLower(k)] = litExpr{nil}
		}
		for _, k := range sortedKeys(vo.m) {
			x, xp, _ := vo.get(k)
			e, err := compileValue(tc, x, xp)
			if err != nil {
				return nil, nil, err
			}
			ts.variables[strings.ToLower(k)] = e
		}
	}
	rv, rp, ok := o.get("resources")
	if !ok {
		return nil, nil, defErr(rp, "the template needs resources")
	}
	arr, isArr := rv.([]any)
	if !isArr || len(arr) == 0 {
		return nil, nil, defErr(rp, "must be a non-empty array of resources")
	}
	var exts []tmplExtension
	for i, el := range arr {
		p := indexPath(rp, i)
		ro, err := asObj(el, p)
		if err != nil {
			return nil, nil, err
		}
		t, tp, err := ro.str("type")
		if err != nil {
			return nil, nil, err
		}
		if CanonicalType(t) != TypeMachineExtension {
			return nil, nil, defErr(tp, "unsupported template resource type %q: deployIfNotExists templates in Corral deploy %s (or Microsoft.HybridCompute/machines/extensions)", t, TypeMachineExtension)
		}
		te := tmplExtension{path: p}
		nv, np, ok := ro.get("name")
		if !ok {
			return nil, nil, defErr(np, "the resource needs a name")
		}
		if te.name, err = compileValue(tc, nv, np); err != nil {
			return nil, nil, err
		}
		pv, pp, ok := ro.get("properties")
		if !ok {
			return nil, nil, defErr(pp, "the extension needs properties with publisher and type")
		}
		po, err := asObj(pv, pp)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range []struct {
			key string
			dst *expr
			req bool
		}{{"publisher", &te.publisher, true}, {"type", &te.typ, true}, {"typeHandlerVersion", &te.version, false}, {"settings", &te.settings, false}, {"autoUpgradeMinorVersion", &te.autoUpgrade, false}} {
			x, xp, ok := po.get(f.key)
			if !ok {
				if f.req {
					return nil, nil, defErr(xp, "the extension needs %s", f.key)
				}
				continue
			}
			if *f.dst, err = compileValue(tc, x, xp); err != nil {
				return nil, nil, err
			}
		}
		po.ignore("enableAutomaticUpgrade")
		if po.has("protectedSettings") {
			_, xp, _ := po.get("protectedSettings")
			return nil, nil, defErr(xp, "protectedSettings in a policy deployment are not supported: they would be stored in the definition in the clear")
		}
		if err := po.rest("publisher, type, typeHandlerVersion, settings, autoUpgradeMinorVersion, enableAutomaticUpgrade"); err != nil {
			return nil, nil, err
		}
		// ARM bookkeeping with no meaning for a Corral extension.
		ro.ignore("apiVersion", "location")
		if err := ro.rest("type, name, apiVersion, location, properties"); err != nil {
			return nil, nil, err
		}
		exts = append(exts, te)
	}
	o.ignore("$schema", "contentVersion", "outputs")
	if err := o.rest("$schema, contentVersion, parameters, variables, resources, outputs"); err != nil {
		return nil, nil, err
	}
	return ts, exts, nil
}

type pendingDefault struct {
	p    *tmplParam
	v    any
	path string
}

type tmplParamExpr struct{ name string }

func (e tmplParamExpr) eval(c *evalCtx) (any, error) {
	v, ok := c.tmplParams[e.name]
	if !ok {
		return nil, fmt.Errorf("template parameter %q has no value", e.name)
	}
	return v, nil
}

type tmplVarExpr struct{ name string }

func (e tmplVarExpr) eval(c *evalCtx) (any, error) {
	x, ok := c.tmplScope.variables[e.name]
	if !ok {
		return nil, fmt.Errorf("template variable %q is not declared", e.name)
	}
	return x.eval(c)
}

// plan evaluates the deployment for a matched resource.
func (ds *deploymentSpec) plan(c *evalCtx) (*Deployment, error) {
	vals := map[string]any{}
	for lk, e := range ds.paramVals {
		v, err := e.eval(c)
		if err != nil {
			return nil, fmt.Errorf("deployment parameter %s: %w", lk, err)
		}
		vals[lk] = v
	}
	tc := *c
	tc.tmplParams, tc.tmplScope = vals, ds.scope
	for lk, p := range ds.scope.params {
		if _, ok := vals[lk]; ok || !p.hasDefault {
			continue
		}
		v, err := p.def.eval(&tc)
		if err != nil {
			return nil, fmt.Errorf("template parameter %s default: %w", p.name, err)
		}
		vals[lk] = v
	}
	out := &Deployment{}
	for _, te := range ds.resources {
		var ext ExtensionDeployment
		for _, f := range []struct {
			e   expr
			dst *string
		}{{te.name, &ext.Name}, {te.publisher, &ext.Publisher}, {te.typ, &ext.Type}, {te.version, &ext.Version}} {
			if f.e == nil {
				continue
			}
			v, err := f.e.eval(&tc)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", te.path, err)
			}
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%s: expected a string, got %s", te.path, jsonKind(v))
			}
			*f.dst = s
		}
		if i := strings.LastIndex(ext.Name, "/"); i >= 0 {
			ext.Name = ext.Name[i+1:] // "machine/extension" -> "extension"
		}
		if te.settings != nil {
			v, err := te.settings.eval(&tc)
			if err != nil {
				return nil, fmt.Errorf("%s settings: %w", te.path, err)
			}
			m, ok := v.(map[string]any)
			if !ok && v != nil {
				return nil, fmt.Errorf("%s settings: expected an object, got %s", te.path, jsonKind(v))
			}
			ext.Settings = m
		}
		if te.autoUpgrade != nil {
			v, err := te.autoUpgrade.eval(&tc)
			if err != nil {
				return nil, err
			}
			ext.AutoUpgradeMinorVersion, _ = argBool(v)
		}
		out.Extensions = append(out.Extensions, ext)
	}
	return out, nil
}
