package policy

import (
	"fmt"
	"strings"
)

// compileCtx carries what a condition or expression can refer to while it
// is compiled: the definition's parameters, the enclosing counts, and
// whether it is an existenceCondition or a deployment template.
type compileCtx struct {
	params      map[string]*Parameter // by lower-case name
	scopes      []countScope
	inExistence bool
	tmpl        *templateScope // non-nil inside a deployment template
}

// countScope is one enclosing count: a field count (field set) or a value
// count (name set when given).
type countScope struct {
	field *fieldRef
	name  string
	value bool
}

func (cc *compileCtx) clone() *compileCtx {
	n := *cc
	n.scopes = append([]countScope(nil), cc.scopes...)
	return &n
}

// bindField binds a field to the innermost field count whose array it
// belongs to, so it resolves from the count's current element.
func (cc *compileCtx) bindField(f *fieldRef) {
	for i := len(cc.scopes) - 1; i >= 0; i-- {
		s := cc.scopes[i]
		if s.value || s.field == nil {
			continue
		}
		cf := s.field
		switch {
		case f.kind == fTagsAll && cf.kind == fTagsAll:
			f.scope, f.path, f.multi = i, nil, false
			return
		case f.kind == fAlias && cf.kind == fAlias && cf.scope < 0 && f.al.resType == cf.al.resType && segPrefix(cf.path, f.path):
			f.scope = i
			f.path = f.path[len(cf.path):]
			f.multi = false
			for _, sg := range f.path {
				if sg.each {
					f.multi = true
				}
			}
			return
		}
	}
}

// segPrefix reports whether prefix (a field count's array alias path, ending
// in [*]) is a prefix of p.
func segPrefix(prefix, p []seg) bool {
	if len(prefix) == 0 || len(p) < len(prefix) {
		return false
	}
	for i := range prefix {
		if !strings.EqualFold(prefix[i].key, p[i].key) || prefix[i].each != p[i].each {
			return false
		}
	}
	return true
}

func (cc *compileCtx) compileParamRef(p *exprParser, fn string, args []expr) (expr, error) {
	if len(args) != 1 {
		return nil, p.errf("%s() takes 1 argument, got %d", fn, len(args))
	}
	lit, isLit := isLiteral(args[0])
	name, isStr := lit.(string)
	if fn == "variables" {
		if cc.tmpl == nil {
			return nil, p.errf("variables() is only available inside a deployment template")
		}
		if !isLit || !isStr {
			return nil, p.errf("variables() needs a literal name")
		}
		if _, ok := cc.tmpl.variables[strings.ToLower(name)]; !ok {
			return nil, p.errf("variables(%q): the template declares no such variable", name)
		}
		return tmplVarExpr{name: strings.ToLower(name)}, nil
	}
	if cc.tmpl != nil {
		if !isLit || !isStr {
			return nil, p.errf("parameters() needs a literal name")
		}
		if _, ok := cc.tmpl.params[strings.ToLower(name)]; !ok {
			return nil, p.errf("parameters(%q): the deployment template declares no such parameter", name)
		}
		return tmplParamExpr{name: strings.ToLower(name)}, nil
	}
	if isLit {
		if !isStr {
			return nil, p.errf("parameters() needs a string name")
		}
		if _, ok := cc.params[strings.ToLower(name)]; !ok {
			return nil, p.errf("parameters(%q): the definition declares no such parameter", name)
		}
		return paramExpr{name: strings.ToLower(name)}, nil
	}
	return dynParamExpr{arg: args[0]}, nil
}

func (cc *compileCtx) compileFieldFunc(p *exprParser, args []expr) (expr, error) {
	if cc.tmpl != nil {
		return nil, p.errf("field() is not available inside a deployment template; pass the value as a deployment parameter")
	}
	if len(args) != 1 {
		return nil, p.errf("field() takes 1 argument, got %d", len(args))
	}
	lit, isLit := isLiteral(args[0])
	if !isLit {
		return nil, p.errf("field() needs a literal field name")
	}
	name, ok := lit.(string)
	if !ok {
		return nil, p.errf("field() needs a string")
	}
	f, err := parseFieldName(name)
	if err != nil {
		return nil, p.errf("%v", err)
	}
	if cc.inExistence {
		// In an existenceCondition, field() reads the resource the if
		// block matched, not the related resource.
		return fieldFuncExpr{f: f, primary: true}, nil
	}
	cc.bindField(f)
	return fieldFuncExpr{f: f}, nil
}

func (cc *compileCtx) compileCurrent(p *exprParser, args []expr) (expr, error) {
	if len(args) > 1 {
		return nil, p.errf("current() takes at most 1 argument")
	}
	if len(args) == 0 {
		for i := len(cc.scopes) - 1; i >= 0; i-- {
			if cc.scopes[i].value {
				return currentExpr{scope: i}, nil
			}
		}
		if len(cc.scopes) > 0 {
			return currentExpr{scope: len(cc.scopes) - 1}, nil
		}
		return nil, p.errf("current() is only available inside a count's where")
	}
	lit, isLit := isLiteral(args[0])
	name, ok := lit.(string)
	if !isLit || !ok {
		return nil, p.errf("current() needs a literal name")
	}
	for i := len(cc.scopes) - 1; i >= 0; i-- {
		if s := cc.scopes[i]; s.value && s.name != "" && strings.EqualFold(s.name, name) {
			return currentExpr{scope: i}, nil
		}
	}
	f, err := parseFieldName(name)
	if err == nil {
		cc.bindField(f)
		if f.scope >= 0 {
			return currentExpr{scope: f.scope, path: f.path}, nil
		}
	}
	return nil, p.errf("current(%q) names no enclosing count (a value count's name or a field count's array alias)", name)
}

// ---- expression nodes that read the evaluation context ----

type paramExpr struct{ name string }

func (e paramExpr) eval(c *evalCtx) (any, error) { return c.params[e.name], nil }

type dynParamExpr struct{ arg expr }

func (e dynParamExpr) eval(c *evalCtx) (any, error) {
	v, err := e.arg.eval(c)
	if err != nil {
		return nil, err
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("parameters() needs a string name")
	}
	x, ok := c.params[strings.ToLower(s)]
	if !ok {
		return nil, fmt.Errorf("parameters(%q): the definition declares no such parameter", s)
	}
	return x, nil
}

type fieldFuncExpr struct {
	f       *fieldRef
	primary bool
}

func (e fieldFuncExpr) eval(c *evalCtx) (any, error) {
	r := c.res
	if e.primary {
		r = c.primary
	}
	v, _ := e.f.values(c, r)
	return v, nil
}

type currentExpr struct {
	scope int
	path  []seg
}

func (e currentExpr) eval(c *evalCtx) (any, error) {
	v, _ := walkOne(c.scopes[e.scope], e.path)
	return v, nil
}
