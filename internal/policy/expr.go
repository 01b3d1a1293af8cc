package policy

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// An expr is a compiled value: a literal or a template language expression
// ("[concat('tags[', parameters('tagName'), ']')]").
type expr interface {
	eval(c *evalCtx) (any, error)
}

type litExpr struct{ v any }

func (e litExpr) eval(*evalCtx) (any, error) { return e.v, nil }

// isLiteral reports whether e is a constant, and its value.
func isLiteral(e expr) (any, bool) {
	if l, ok := e.(litExpr); ok {
		return l.v, true
	}
	return nil, false
}

type arrayExpr []expr

func (e arrayExpr) eval(c *evalCtx) (any, error) {
	out := make([]any, len(e))
	for i, x := range e {
		v, err := x.eval(c)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

type objectExpr map[string]expr

func (e objectExpr) eval(c *evalCtx) (any, error) {
	out := make(map[string]any, len(e))
	for k, x := range e {
		v, err := x.eval(c)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// compileValue compiles a JSON value in which any string may be a template
// expression: "[...]" is an expression, "[[..." is the literal "[...".
func compileValue(cc *compileCtx, v any, path string) (expr, error) {
	switch t := v.(type) {
	case string:
		if strings.HasPrefix(t, "[[") {
			return litExpr{t[1:]}, nil
		}
		if len(t) >= 2 && t[0] == '[' && t[len(t)-1] == ']' {
			return compileExpression(cc, t[1:len(t)-1], path)
		}
		return litExpr{t}, nil
	case []any:
		parts := make(arrayExpr, len(t))
		allLit := true
		for i, x := range t {
			e, err := compileValue(cc, x, indexPath(path, i))
			if err != nil {
				return nil, err
			}
			parts[i] = e
			if _, ok := isLiteral(e); !ok {
				allLit = false
			}
		}
		if allLit {
			lits := make([]any, len(parts))
			for i, p := range parts {
				lits[i], _ = isLiteral(p)
			}
			return litExpr{lits}, nil
		}
		return parts, nil
	case map[string]any:
		parts := make(objectExpr, len(t))
		allLit := true
		for k, x := range t {
			e, err := compileValue(cc, x, joinPath(path, k))
			if err != nil {
				return nil, err
			}
			parts[k] = e
			if _, ok := isLiteral(e); !ok {
				allLit = false
			}
		}
		if allLit {
			lits := make(map[string]any, len(parts))
			for k, p := range parts {
				lits[k], _ = isLiteral(p)
			}
			return litExpr{lits}, nil
		}
		return parts, nil
	}
	return litExpr{v}, nil
}

// ---- parser ----

type exprParser struct {
	cc   *compileCtx
	src  string
	pos  int
	path string
}

func compileExpression(cc *compileCtx, src, path string) (expr, error) {
	p := &exprParser{cc: cc, src: src, path: path}
	e, err := p.expression()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.src) {
		return nil, p.errf("unexpected %q", p.src[p.pos:])
	}
	return e, nil
}

func (p *exprParser) errf(format string, args ...any) error {
	return defErr(p.path, "in expression [%s]: %s", p.src, fmt.Sprintf(format, args...))
}

func (p *exprParser) space() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n' || p.src[p.pos] == '\r') {
		p.pos++
	}
}

func (p *exprParser) peek() byte {
	p.space()
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *exprParser) expression() (expr, error) {
	e, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		switch p.peek() {
		case '.':
			p.pos++
			p.space()
			name := p.ident()
			if name == "" {
				return nil, p.errf("a property name must follow '.'")
			}
			e = propExpr{x: e, name: name}
		case '[':
			p.pos++
			idx, err := p.expression()
			if err != nil {
				return nil, err
			}
			if p.peek() != ']' {
				return nil, p.errf("missing ']'")
			}
			p.pos++
			e = indexExpr{x: e, idx: idx}
		default:
			return e, nil
		}
	}
}

func (p *exprParser) ident() string {
	start := p.pos
	for p.pos < len(p.src) {
		ch := p.src[p.pos]
		if ch == '_' || ch == '$' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || (p.pos > start && ch >= '0' && ch <= '9') {
			p.pos++
			continue
		}
		break
	}
	return p.src[start:p.pos]
}

func (p *exprParser) primary() (expr, error) {
	switch ch := p.peek(); {
	case ch == '\'':
		return p.stringLit()
	case ch == '-' || ch >= '0' && ch <= '9':
		start := p.pos
		p.pos++
		for p.pos < len(p.src) && (p.src[p.pos] >= '0' && p.src[p.pos] <= '9' || p.src[p.pos] == '.') {
			p.pos++
		}
		f, err := strconv.ParseFloat(p.src[start:p.pos], 64)
		if err != nil {
			return nil, p.errf("invalid number %q", p.src[start:p.pos])
		}
		return litExpr{f}, nil
	case ch == 0:
		return nil, p.errf("unexpected end of expression")
	}
	name := p.ident()
	if name == "" {
		return nil, p.errf("unexpected %q", p.src[p.pos:])
	}
	if p.peek() != '(' {
		switch strings.ToLower(name) {
		case "true":
			return litExpr{true}, nil
		case "false":
			return litExpr{false}, nil
		case "null":
			return litExpr{nil}, nil
		}
		return nil, p.errf("%q must be followed by '(' (template functions are called like concat('a', 'b'))", name)
	}
	p.pos++
	var args []expr
	if p.peek() == ')' {
		p.pos++
	} else {
		for {
			a, err := p.expression()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			switch p.peek() {
			case ',':
				p.pos++
				continue
			case ')':
				p.pos++
			default:
				return nil, p.errf("expected ',' or ')' in the arguments of %s()", name)
			}
			break
		}
	}
	return p.call(name, args)
}

func (p *exprParser) stringLit() (expr, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for p.pos < len(p.src) {
		ch := p.src[p.pos]
		if ch == '\'' {
			if p.pos+1 < len(p.src) && p.src[p.pos+1] == '\'' {
				b.WriteByte('\'')
				p.pos += 2
				continue
			}
			p.pos++
			return litExpr{b.String()}, nil
		}
		b.WriteByte(ch)
		p.pos++
	}
	return nil, p.errf("unterminated string literal")
}

// ---- evaluation of accessors ----

type propExpr struct {
	x    expr
	name string
}

func (e propExpr) eval(c *evalCtx) (any, error) {
	v, err := e.x.eval(c)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("cannot read property %q of %s", e.name, jsonKind(v))
	}
	if x, ok := lookupFold(m, e.name); ok {
		return x, nil
	}
	return nil, fmt.Errorf("the object has no property %q", e.name)
}

type indexExpr struct{ x, idx expr }

func (e indexExpr) eval(c *evalCtx) (any, error) {
	v, err := e.x.eval(c)
	if err != nil {
		return nil, err
	}
	i, err := e.idx.eval(c)
	if err != nil {
		return nil, err
	}
	switch t := v.(type) {
	case []any:
		n, ok := i.(float64)
		if !ok || n != math.Trunc(n) || n < 0 || int(n) >= len(t) {
			return nil, fmt.Errorf("index %v is out of range for an array of %d", i, len(t))
		}
		return t[int(n)], nil
	case map[string]any:
		k, ok := i.(string)
		if !ok {
			return nil, fmt.Errorf("an object is indexed by a string, got %s", jsonKind(i))
		}
		if x, ok := lookupFold(t, k); ok {
			return x, nil
		}
		return nil, fmt.Errorf("the object has no property %q", k)
	}
	return nil, fmt.Errorf("cannot index %s", jsonKind(v))
}

func lookupFold(m map[string]any, k string) (any, bool) {
	if v, ok := m[k]; ok {
		return v, true
	}
	for mk, v := range m {
		if strings.EqualFold(mk, k) {
			return v, true
		}
	}
	return nil, false
}

// ---- functions ----

type callExpr struct {
	name string
	fn   func(c *evalCtx, args []any) (any, error)
	args []expr
}

func (e callExpr) eval(c *evalCtx) (any, error) {
	var buf [4]any
	vals := buf[:0]
	for _, a := range e.args {
		v, err := a.eval(c)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	v, err := e.fn(c, vals)
	if err != nil {
		return nil, fmt.Errorf("%s(): %w", e.name, err)
	}
	return v, nil
}

type funcSpec struct {
	min, max int // max -1: variadic
	fn       func(c *evalCtx, args []any) (any, error)
}

// pureFuncs are the template functions that need nothing but their
// arguments. parameters, variables, field, current, resourceGroup and
// subscription are compiled specially (exprParser.call).
var pureFuncs = map[string]funcSpec{
	"concat":          {1, -1, fnConcat},
	"tolower":         {1, 1, func(_ *evalCtx, a []any) (any, error) { s, err := argStr(a[0]); return strings.ToLower(s), err }},
	"toupper":         {1, 1, func(_ *evalCtx, a []any) (any, error) { s, err := argStr(a[0]); return strings.ToUpper(s), err }},
	"trim":            {1, 1, func(_ *evalCtx, a []any) (any, error) { s, err := argStr(a[0]); return strings.TrimSpace(s), err }},
	"if":              {3, 3, fnIf},
	"equals":          {2, 2, func(_ *evalCtx, a []any) (any, error) { return deepEqual(a[0], a[1], false), nil }},
	"contains":        {2, 2, fnContains},
	"empty":           {1, 1, fnEmpty},
	"length":          {1, 1, fnLength},
	"and":             {2, -1, fnAnd},
	"or":              {2, -1, fnOr},
	"not":             {1, 1, func(_ *evalCtx, a []any) (any, error) { b, err := argBool(a[0]); return !b, err }},
	"startswith":      {2, 2, fnStartsWith},
	"endswith":        {2, 2, fnEndsWith},
	"split":           {2, 2, fnSplit},
	"first":           {1, 1, fnFirst},
	"last":            {1, 1, fnLast},
	"string":          {1, 1, fnString},
	"int":             {1, 1, fnInt},
	"bool":            {1, 1, fnBool},
	"replace":         {3, 3, fnReplace},
	"substring":       {2, 3, fnSubstring},
	"coalesce":        {1, -1, fnCoalesce},
	"greater":         {2, 2, cmpFunc(func(c int) bool { return c > 0 })},
	"greaterorequals": {2, 2, cmpFunc(func(c int) bool { return c >= 0 })},
	"less":            {2, 2, cmpFunc(func(c int) bool { return c < 0 })},
	"lessorequals":    {2, 2, cmpFunc(func(c int) bool { return c <= 0 })},
	"true":            {0, 0, func(*evalCtx, []any) (any, error) { return true, nil }},
	"false":           {0, 0, func(*evalCtx, []any) (any, error) { return false, nil }},
	"createarray":     {0, -1, func(_ *evalCtx, a []any) (any, error) { return append([]any(nil), a...), nil }},
	"base64": {1, 1, func(_ *evalCtx, a []any) (any, error) {
		s, err := argStr(a[0])
		return base64.StdEncoding.EncodeToString([]byte(s)), err
	}},
}

// SupportedFunctions lists the template functions definitions may use.
func SupportedFunctions() []string {
	names := []string{"parameters", "variables", "field", "current", "resourceGroup", "subscription"}
	for n := range pureFuncs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (p *exprParser) call(name string, args []expr) (expr, error) {
	lname := strings.ToLower(name)
	switch lname {
	case "parameters", "variables":
		return p.cc.compileParamRef(p, lname, args)
	case "field":
		return p.cc.compileFieldFunc(p, args)
	case "current":
		return p.cc.compileCurrent(p, args)
	case "resourcegroup", "subscription":
		if len(args) != 0 {
			return nil, p.errf("%s() takes no arguments", name)
		}
		return scopeFuncExpr{subscription: lname == "subscription"}, nil
	}
	spec, ok := pureFuncs[lname]
	if !ok {
		return nil, p.errf("unsupported template function %q: supported are %s", name, strings.Join(SupportedFunctions(), ", "))
	}
	if len(args) < spec.min || spec.max >= 0 && len(args) > spec.max {
		switch {
		case spec.max < 0:
			return nil, p.errf("%s() takes at least %d arguments, got %d", name, spec.min, len(args))
		case spec.min == spec.max:
			return nil, p.errf("%s() takes %d arguments, got %d", name, spec.min, len(args))
		}
		return nil, p.errf("%s() takes %d to %d arguments, got %d", name, spec.min, spec.max, len(args))
	}
	return callExpr{name: name, fn: spec.fn, args: args}, nil
}

// scopeFuncExpr is resourceGroup() / subscription(): the evaluated
// resource's container.
type scopeFuncExpr struct{ subscription bool }

func (e scopeFuncExpr) eval(c *evalCtx) (any, error) {
	r := c.primary
	if e.subscription {
		return map[string]any{"subscriptionId": r.SubscriptionID, "id": "/subscriptions/" + r.SubscriptionID, "displayName": r.SubscriptionID}, nil
	}
	return map[string]any{"name": r.ResourceGroup, "id": "/subscriptions/" + r.SubscriptionID + "/resourceGroups/" + r.ResourceGroup, "location": r.Location}, nil
}

func argStr(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("expected a string, got %s", jsonKind(v))
	}
	return s, nil
}

func argBool(v any) (bool, error) {
	switch t := v.(type) {
	case bool:
		return t, nil
	case string:
		switch strings.ToLower(t) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, fmt.Errorf("expected a boolean, got %s", jsonKind(v))
}

func fnConcat(_ *evalCtx, a []any) (any, error) {
	if _, ok := a[0].([]any); ok {
		var out []any
		for _, x := range a {
			arr, ok := x.([]any)
			if !ok {
				return nil, fmt.Errorf("cannot concatenate an array and %s", jsonKind(x))
			}
			out = append(out, arr...)
		}
		return out, nil
	}
	var b strings.Builder
	n := 0
	for _, x := range a {
		if s, ok := x.(string); ok {
			n += len(s)
		}
	}
	b.Grow(n + 8)
	for _, x := range a {
		switch t := x.(type) {
		case string:
			b.WriteString(t)
		case float64, bool:
			b.WriteString(stringify(t))
		case nil:
		default:
			return nil, fmt.Errorf("cannot concatenate %s into a string", jsonKind(x))
		}
	}
	return b.String(), nil
}

func fnIf(_ *evalCtx, a []any) (any, error) {
	b, err := argBool(a[0])
	if err != nil {
		return nil, err
	}
	if b {
		return a[1], nil
	}
	return a[2], nil
}

func fnContains(_ *evalCtx, a []any) (any, error) {
	switch t := a[0].(type) {
	case string:
		s, ok := a[1].(string)
		if !ok {
			s = stringify(a[1])
		}
		return strings.Contains(t, s), nil
	case []any:
		for _, x := range t {
			if deepEqual(x, a[1], false) {
				return true, nil
			}
		}
		return false, nil
	case map[string]any:
		k, err := argStr(a[1])
		if err != nil {
			return nil, err
		}
		_, ok := lookupFold(t, k)
		return ok, nil
	case nil:
		return false, nil
	}
	return nil, fmt.Errorf("the container must be a string, array or object, got %s", jsonKind(a[0]))
}

func fnEmpty(_ *evalCtx, a []any) (any, error) {
	switch t := a[0].(type) {
	case nil:
		return true, nil
	case string:
		return t == "", nil
	case []any:
		return len(t) == 0, nil
	case map[string]any:
		return len(t) == 0, nil
	}
	return false, nil
}

func fnLength(_ *evalCtx, a []any) (any, error) {
	switch t := a[0].(type) {
	case string:
		return float64(utf8.RuneCountInString(t)), nil
	case []any:
		return float64(len(t)), nil
	case map[string]any:
		return float64(len(t)), nil
	case nil:
		return float64(0), nil
	}
	return nil, fmt.Errorf("expected a string, array or object, got %s", jsonKind(a[0]))
}

func fnAnd(_ *evalCtx, a []any) (any, error) {
	for _, x := range a {
		b, err := argBool(x)
		if err != nil {
			return nil, err
		}
		if !b {
			return false, nil
		}
	}
	return true, nil
}

func fnOr(_ *evalCtx, a []any) (any, error) {
	for _, x := range a {
		b, err := argBool(x)
		if err != nil {
			return nil, err
		}
		if b {
			return true, nil
		}
	}
	return false, nil
}

func fnStartsWith(_ *evalCtx, a []any) (any, error) {
	s, err1 := argStr(a[0])
	p, err2 := argStr(a[1])
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p), nil
}

func fnEndsWith(_ *evalCtx, a []any) (any, error) {
	s, err1 := argStr(a[0])
	p, err2 := argStr(a[1])
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return len(s) >= len(p) && strings.EqualFold(s[len(s)-len(p):], p), nil
}

func fnSplit(_ *evalCtx, a []any) (any, error) {
	s, err := argStr(a[0])
	if err != nil {
		return nil, err
	}
	var seps []string
	switch t := a[1].(type) {
	case string:
		seps = []string{t}
	case []any:
		for _, x := range t {
			d, err := argStr(x)
			if err != nil {
				return nil, err
			}
			seps = append(seps, d)
		}
	default:
		return nil, fmt.Errorf("the delimiter must be a string or an array of strings")
	}
	parts := []string{s}
	for _, d := range seps {
		if d == "" {
			continue
		}
		var next []string
		for _, p := range parts {
			next = append(next, strings.Split(p, d)...)
		}
		parts = next
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

func fnFirst(_ *evalCtx, a []any) (any, error) {
	switch t := a[0].(type) {
	case string:
		if t == "" {
			return "", nil
		}
		r, _ := utf8.DecodeRuneInString(t)
		return string(r), nil
	case []any:
		if len(t) == 0 {
			return nil, nil
		}
		return t[0], nil
	}
	return nil, fmt.Errorf("expected a string or an array, got %s", jsonKind(a[0]))
}

func fnLast(_ *evalCtx, a []any) (any, error) {
	switch t := a[0].(type) {
	case string:
		if t == "" {
			return "", nil
		}
		r, _ := utf8.DecodeLastRuneInString(t)
		return string(r), nil
	case []any:
		if len(t) == 0 {
			return nil, nil
		}
		return t[len(t)-1], nil
	}
	return nil, fmt.Errorf("expected a string or an array, got %s", jsonKind(a[0]))
}

func fnString(_ *evalCtx, a []any) (any, error) { return stringify(a[0]), nil }

func stringify(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(t)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func fnInt(_ *evalCtx, a []any) (any, error) {
	switch t := a[0].(type) {
	case float64:
		return math.Trunc(t), nil
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", t)
		}
		return float64(n), nil
	}
	return nil, fmt.Errorf("expected a string or a number, got %s", jsonKind(a[0]))
}

func fnBool(_ *evalCtx, a []any) (any, error) {
	if f, ok := a[0].(float64); ok {
		return f != 0, nil
	}
	return argBool(a[0])
}

func fnReplace(_ *evalCtx, a []any) (any, error) {
	s, err1 := argStr(a[0])
	o, err2 := argStr(a[1])
	n, err3 := argStr(a[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	return strings.ReplaceAll(s, o, n), nil
}

func fnSubstring(_ *evalCtx, a []any) (any, error) {
	s, err := argStr(a[0])
	if err != nil {
		return nil, err
	}
	r := []rune(s)
	start, ok := a[1].(float64)
	if !ok || start < 0 || int(start) > len(r) {
		return nil, fmt.Errorf("start index %v is out of range", a[1])
	}
	end := len(r)
	if len(a) == 3 {
		n, ok := a[2].(float64)
		if !ok || n < 0 || int(start)+int(n) > len(r) {
			return nil, fmt.Errorf("length %v is out of range", a[2])
		}
		end = int(start) + int(n)
	}
	return string(r[int(start):end]), nil
}

func fnCoalesce(_ *evalCtx, a []any) (any, error) {
	for _, x := range a {
		if x != nil {
			return x, nil
		}
	}
	return nil, nil
}

func cmpFunc(ok func(int) bool) func(*evalCtx, []any) (any, error) {
	return func(_ *evalCtx, a []any) (any, error) {
		c, comparable := compareValues(a[0], a[1])
		if !comparable {
			return nil, fmt.Errorf("cannot compare %s with %s", jsonKind(a[0]), jsonKind(a[1]))
		}
		return ok(c), nil
	}
}

// deepEqual compares JSON values; fold makes string comparison
// case-insensitive (policy conditions) rather than exact (template equals()).
func deepEqual(a, b any, fold bool) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		if !ok {
			return false
		}
		if fold {
			return strings.EqualFold(x, y)
		}
		return x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !deepEqual(x[i], y[i], fold) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok && fold {
				yv, ok = lookupFold(y, k)
			}
			if !ok || !deepEqual(xv, yv, fold) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
