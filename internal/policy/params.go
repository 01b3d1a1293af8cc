package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// ParamType is a definition parameter's type.
type ParamType string

// Parameter types, as Azure spells them.
const (
	ParamString   ParamType = "String"
	ParamInteger  ParamType = "Integer"
	ParamBoolean  ParamType = "Boolean"
	ParamArray    ParamType = "Array"
	ParamObject   ParamType = "Object"
	ParamFloat    ParamType = "Float"
	ParamDateTime ParamType = "DateTime"
)

var paramTypes = []ParamType{ParamString, ParamInteger, ParamBoolean, ParamArray, ParamObject, ParamFloat, ParamDateTime}

// Parameter is one declared parameter of a definition.
type Parameter struct {
	Name          string
	Type          ParamType
	AllowedValues []any // nil: any value of the type
	DefaultValue  any
	HasDefault    bool
	DisplayName   string
	Description   string
	StrongType    string // informational (Azure portal pickers)
}

func parseParameters(v any, path string) (map[string]*Parameter, error) {
	o, err := asObj(v, path)
	if err != nil {
		return nil, err
	}
	out := map[string]*Parameter{}
	for _, name := range sortedKeys(o.m) {
		x, p, _ := o.get(name)
		if strings.TrimSpace(name) == "" {
			return nil, defErr(p, "a parameter needs a name")
		}
		po, err := asObj(x, p)
		if err != nil {
			return nil, err
		}
		prm := &Parameter{Name: name}
		ts, tp, err := po.str("type")
		if err != nil {
			return nil, err
		}
		if ts == "" {
			return nil, defErr(tp, "the parameter needs a type: one of %s", typeList())
		}
		for _, t := range paramTypes {
			if strings.EqualFold(ts, string(t)) {
				prm.Type = t
			}
		}
		if prm.Type == "" {
			return nil, defErr(tp, "unsupported parameter type %q: supported are %s", ts, typeList())
		}
		if av, ap, ok := po.get("allowedValues"); ok {
			arr, isArr := av.([]any)
			if !isArr {
				return nil, defErr(ap, "must be an array, got %s", jsonKind(av))
			}
			for i, el := range arr {
				if err := checkParamValue(prm.Type, el); err != nil {
					return nil, defErr(indexPath(ap, i), "%v", err)
				}
			}
			prm.AllowedValues = arr
		}
		if dv, dp, ok := po.get("defaultValue"); ok {
			if err := checkParamValue(prm.Type, dv); err != nil {
				return nil, defErr(dp, "%v", err)
			}
			if prm.AllowedValues != nil && !allowed(prm.AllowedValues, dv) {
				return nil, defErr(dp, "the default value %s is not one of the allowed values %s", render(dv), stringify(prm.AllowedValues))
			}
			prm.DefaultValue, prm.HasDefault = dv, true
		}
		if mv, mp, ok := po.get("metadata"); ok {
			mo, err := asObj(mv, mp)
			if err != nil {
				return nil, err
			}
			if prm.DisplayName, _, err = mo.str("displayName"); err != nil {
				return nil, err
			}
			if prm.Description, _, err = mo.str("description"); err != nil {
				return nil, err
			}
			if prm.StrongType, _, err = mo.str("strongType"); err != nil {
				return nil, err
			}
			// Portal hints: informational only.
			mo.ignore("assignPermissions", "portalReview", "deprecated")
			if err := mo.rest("displayName, description, strongType, assignPermissions, portalReview, deprecated"); err != nil {
				return nil, err
			}
		}
		if err := po.rest("type, allowedValues, defaultValue, metadata"); err != nil {
			return nil, err
		}
		lk := strings.ToLower(name)
		if _, dup := out[lk]; dup {
			return nil, defErr(p, "parameter %q is declared twice (names are case-insensitive)", name)
		}
		out[lk] = prm
	}
	return out, nil
}

func typeList() string {
	s := make([]string, len(paramTypes))
	for i, t := range paramTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func checkParamValue(t ParamType, v any) error {
	ok := false
	switch t {
	case ParamString:
		_, ok = v.(string)
	case ParamInteger:
		f, isNum := v.(float64)
		ok = isNum && f == math.Trunc(f)
	case ParamFloat:
		_, ok = v.(float64)
	case ParamBoolean:
		_, ok = v.(bool)
	case ParamArray:
		_, ok = v.([]any)
	case ParamObject:
		_, ok = v.(map[string]any)
	case ParamDateTime:
		s, isStr := v.(string)
		if isStr {
			_, ok = parseTime(s)
		}
		if !ok {
			return fmt.Errorf("must be a DateTime (RFC 3339, e.g. 2026-01-31T00:00:00Z), got %s", render(v))
		}
	}
	if !ok {
		return fmt.Errorf("must be of type %s, got %s", t, jsonKind(v))
	}
	return nil
}

func allowed(list []any, v any) bool {
	for _, a := range list {
		if looseEqual(a, v) && jsonKind(a) == jsonKind(v) {
			return true
		}
	}
	return false
}

// Params are parameter values bound to a definition (BindParameters):
// every declared parameter has a value of its type.
type Params struct {
	values map[string]any // lower-case name -> value
}

// Value returns a bound parameter's value.
func (p Params) Value(name string) (any, bool) {
	v, ok := p.values[strings.ToLower(name)]
	return v, ok
}

// BindParameters checks assignment parameter values against the
// definition: unknown names, wrong types, values outside allowedValues and
// missing values without a default are refused with ErrInvalidParameters.
func (d *Definition) BindParameters(values map[string]any) (Params, error) {
	out := Params{values: make(map[string]any, len(d.Parameters))}
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		prm, ok := d.Parameters[strings.ToLower(k)]
		if !ok {
			return Params{}, paramErr(k, "the definition has no parameter %q (it declares: %s)", k, d.parameterNames())
		}
		v := values[k]
		if err := checkParamValue(prm.Type, v); err != nil {
			return Params{}, paramErr(k, "%v", err)
		}
		if prm.AllowedValues != nil && !allowed(prm.AllowedValues, v) {
			return Params{}, paramErr(k, "%s is not one of the allowed values %s", render(v), stringify(prm.AllowedValues))
		}
		out.values[strings.ToLower(k)] = v
	}
	for lk, prm := range d.Parameters {
		if _, ok := out.values[lk]; ok {
			continue
		}
		if !prm.HasDefault {
			return Params{}, paramErr(prm.Name, "a value is required: the parameter has no default")
		}
		out.values[lk] = prm.DefaultValue
	}
	if d.effectParam != "" {
		eff, _ := out.values[d.effectParam].(string)
		if _, err := d.checkEffect(eff); err != nil {
			return Params{}, paramErr(d.Parameters[d.effectParam].Name, "%v", err)
		}
	}
	return out, nil
}

func (d *Definition) parameterNames() string {
	if len(d.Parameters) == 0 {
		return "none"
	}
	var n []string
	for _, p := range d.Parameters {
		n = append(n, p.Name)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// ParseParameterValues reads assignment parameter values in either Azure's
// form {"name": {"value": V}} or the plain form {"name": V}.
func ParseParameterValues(data []byte) (map[string]any, error) {
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, jsonSyntaxError(data, err, ErrInvalidParameters)
	}
	wrapped := len(raw) > 0
	for _, v := range raw {
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			wrapped = false
			break
		}
		if _, ok := m["value"]; !ok {
			wrapped = false
			break
		}
	}
	if !wrapped {
		return raw, nil
	}
	out := make(map[string]any, len(raw))
	for k, v := range raw {
		out[k] = v.(map[string]any)["value"]
	}
	return out, nil
}
