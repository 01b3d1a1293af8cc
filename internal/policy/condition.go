package policy

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// A node is a compiled condition or logical operator.
type node interface {
	eval(c *evalCtx) (bool, error)
	// describe explains, in words, why the node is true (called only after
	// it evaluated true).
	describe(c *evalCtx) string
}

type op uint8

const (
	opEquals op = iota
	opNotEquals
	opLike
	opNotLike
	opMatch
	opMatchInsensitively
	opNotMatch
	opNotMatchInsensitively
	opContains
	opNotContains
	opIn
	opNotIn
	opContainsKey
	opNotContainsKey
	opLess
	opLessOrEquals
	opGreater
	opGreaterOrEquals
	opExists
)

var opNames = []string{"equals", "notEquals", "like", "notLike", "match", "matchInsensitively", "notMatch", "notMatchInsensitively",
	"contains", "notContains", "in", "notIn", "containsKey", "notContainsKey", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists"}

var opByName = func() map[string]op {
	m := map[string]op{}
	for i, n := range opNames {
		m[strings.ToLower(n)] = op(i)
	}
	return m
}()

func (o op) String() string { return opNames[o] }

// negated operators are true exactly when their positive form is false,
// including when the field does not exist.
func (o op) negated() bool {
	switch o {
	case opNotEquals, opNotLike, opNotMatch, opNotMatchInsensitively, opNotContains, opNotIn, opNotContainsKey:
		return true
	}
	return false
}

func (o op) positive() op {
	switch o {
	case opNotEquals:
		return opEquals
	case opNotLike:
		return opLike
	case opNotMatch:
		return opMatch
	case opNotMatchInsensitively:
		return opMatchInsensitively
	case opNotContains:
		return opContains
	case opNotIn:
		return opIn
	case opNotContainsKey:
		return opContainsKey
	}
	return o
}

// SupportedOperators lists the condition operators.
func SupportedOperators() []string { return append([]string(nil), opNames...) }

const logicalHelp = "allOf, anyOf, not"

// compileCondition compiles {allOf|anyOf|not} or {field|value|count + one operator}.
func (cc *compileCtx) compileCondition(v any, path string) (node, error) {
	o, err := asObj(v, path)
	if err != nil {
		return nil, err
	}
	for _, lk := range []string{"allof", "anyof", "not"} {
		if !o.has(lk) {
			continue
		}
		if len(o.m) != 1 {
			return nil, defErr(path, "a logical operator (%s) must be the only property of its object, found %s", logicalHelp, strings.Join(sortedKeys(o.m), ", "))
		}
		x, p, _ := o.get(lk)
		if lk == "not" {
			kid, err := cc.compileCondition(x, p)
			if err != nil {
				return nil, err
			}
			return &notNode{kid: kid}, nil
		}
		arr, ok := x.([]any)
		if !ok {
			return nil, defErr(p, "must be an array of conditions, got %s", jsonKind(x))
		}
		if len(arr) == 0 {
			return nil, defErr(p, "must hold at least one condition")
		}
		kids := make([]node, len(arr))
		for i, el := range arr {
			if kids[i], err = cc.compileCondition(el, indexPath(p, i)); err != nil {
				return nil, err
			}
		}
		if lk == "allof" {
			return &allOfNode{kids: kids}, nil
		}
		return &anyOfNode{kids: kids}, nil
	}

	n := &leafNode{path: path}
	subjects := 0
	if x, p, ok := o.get("field"); ok {
		subjects++
		s, isStr := x.(string)
		if !isStr {
			return nil, defErr(p, "must be a string naming a field or alias, got %s", jsonKind(x))
		}
		e, err := compileValue(cc, s, p)
		if err != nil {
			return nil, err
		}
		if lit, ok := isLiteral(e); ok {
			if n.field, err = compileField(cc, lit.(string), p); err != nil {
				return nil, err
			}
		} else {
			n.fieldExpr, n.fieldCC = e, cc.clone()
		}
	}
	if x, p, ok := o.get("value"); ok {
		subjects++
		e, err := compileValue(cc, x, p)
		if err != nil {
			return nil, err
		}
		n.value = e
	}
	if x, p, ok := o.get("count"); ok {
		subjects++
		cn, err := cc.compileCount(x, p)
		if err != nil {
			return nil, err
		}
		n.count = cn
	}
	var ops []string
	for k := range o.m {
		if o.used[k] {
			continue
		}
		if _, ok := opByName[strings.ToLower(k)]; ok {
			ops = append(ops, k)
		}
	}
	sort.Strings(ops)
	switch {
	case subjects == 0 && len(ops) == 0 && len(o.m) > 0:
		return nil, o.rest("field, value or count with one of the operators " + strings.Join(opNames, ", ") + "; or " + logicalHelp)
	case subjects == 0:
		return nil, defErr(path, "a condition needs field, value or count (or a logical operator: %s)", logicalHelp)
	case subjects > 1:
		return nil, defErr(path, "a condition takes exactly one of field, value or count")
	case len(ops) == 0:
		if err := o.rest("one operator: " + strings.Join(opNames, ", ")); err != nil {
			return nil, &PathError{Path: err.(*PathError).Path, Msg: "unsupported condition operator " + strings.TrimPrefix(err.(*PathError).Msg, "unsupported property "), Kind: ErrInvalidDefinition}
		}
		return nil, defErr(path, "the condition has no operator: use one of %s", strings.Join(opNames, ", "))
	case len(ops) > 1:
		return nil, defErr(path, "a condition takes exactly one operator, found %s", strings.Join(ops, ", "))
	}
	rv, rp, _ := o.get(ops[0])
	n.op = opByName[strings.ToLower(ops[0])]
	if err := o.rest("field, value or count and one operator"); err != nil {
		return nil, err
	}
	if n.count != nil && (n.op == opExists || n.op == opContainsKey || n.op == opNotContainsKey) {
		return nil, defErr(rp, "%s cannot compare a count", n.op)
	}
	rhs, err := compileValue(cc, rv, rp)
	if err != nil {
		return nil, err
	}
	n.rhs = rhs
	if lit, ok := isLiteral(rhs); ok {
		if n.field != nil && n.field.kind == fType && n.field.scope < 0 {
			lit = canonicalTypes(lit)
		}
		if err := checkOperand(n.op, lit); err != nil {
			return nil, defErr(rp, "%v", err)
		}
		n.rhsLit, n.rhsIsLit = lit, true
		if s, ok := lit.(string); ok {
			switch n.op.positive() {
			case opLike:
				n.like = compileLike(s)
			case opMatch, opMatchInsensitively:
				n.pattern = []rune(s)
			}
		}
	}
	return n, nil
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// checkOperand validates a literal operand for an operator.
func checkOperand(o op, v any) error {
	switch o.positive() {
	case opIn:
		if _, ok := v.([]any); !ok {
			return fmt.Errorf("%s needs an array, got %s", o, jsonKind(v))
		}
	case opExists:
		if _, err := argBool(v); err != nil {
			return fmt.Errorf("exists needs true or false, got %s", jsonKind(v))
		}
	case opLike, opMatch, opMatchInsensitively, opContainsKey:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s needs a string, got %s", o, jsonKind(v))
		}
	case opLess, opLessOrEquals, opGreater, opGreaterOrEquals:
		switch v.(type) {
		case string, float64:
		default:
			return fmt.Errorf("%s needs a number, a string or a date, got %s", o, jsonKind(v))
		}
	}
	return nil
}

func canonicalTypes(v any) any {
	switch t := v.(type) {
	case string:
		return CanonicalType(t)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = canonicalTypes(x)
		}
		return out
	}
	return v
}

// ---- logical nodes ----

type allOfNode struct{ kids []node }

func (n *allOfNode) eval(c *evalCtx) (bool, error) {
	for _, k := range n.kids {
		ok, err := k.eval(c)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func (n *allOfNode) describe(c *evalCtx) string {
	parts := make([]string, 0, len(n.kids))
	for _, k := range n.kids {
		parts = append(parts, k.describe(c))
	}
	return strings.Join(parts, " and ")
}

type anyOfNode struct{ kids []node }

func (n *anyOfNode) eval(c *evalCtx) (bool, error) {
	for _, k := range n.kids {
		ok, err := k.eval(c)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func (n *anyOfNode) describe(c *evalCtx) string {
	for _, k := range n.kids {
		if ok, err := k.eval(c); err == nil && ok {
			return k.describe(c)
		}
	}
	return "anyOf"
}

type notNode struct{ kid node }

func (n *notNode) eval(c *evalCtx) (bool, error) {
	ok, err := n.kid.eval(c)
	return !ok && err == nil, err
}

func (n *notNode) describe(c *evalCtx) string {
	if l, ok := n.kid.(*leafNode); ok {
		return "not (" + l.text(c) + ")"
	}
	return "not (...)"
}

// ---- leaf conditions ----

type leafNode struct {
	path      string
	field     *fieldRef
	fieldExpr expr // a field name computed by an expression
	fieldCC   *compileCtx
	dynFields sync.Map // computed field name -> *fieldRef
	value     expr
	count     *countNode
	op        op
	rhs       expr
	rhsLit    any
	rhsIsLit  bool
	like      *likePattern
	pattern   []rune
}

func (n *leafNode) resolveField(c *evalCtx) (*fieldRef, error) {
	if n.field != nil {
		return n.field, nil
	}
	v, err := n.fieldExpr.eval(c)
	if err != nil {
		return nil, &EvalError{Path: n.path + ".field", Err: err}
	}
	s, ok := v.(string)
	if !ok {
		return nil, &EvalError{Path: n.path + ".field", Err: fmt.Errorf("the field expression gave %s, not a field name", jsonKind(v))}
	}
	if f, ok := n.dynFields.Load(s); ok {
		return f.(*fieldRef), nil
	}
	f, err := parseFieldName(s)
	if err != nil {
		return nil, &EvalError{Path: n.path + ".field", Err: err}
	}
	n.fieldCC.bindField(f)
	n.dynFields.Store(s, f)
	return f, nil
}

func (n *leafNode) operand(c *evalCtx, f *fieldRef) (any, error) {
	if n.rhsIsLit {
		return n.rhsLit, nil
	}
	v, err := n.rhs.eval(c)
	if err != nil {
		return nil, &EvalError{Path: n.path, Err: err}
	}
	if f != nil && f.kind == fType && f.scope < 0 {
		v = canonicalTypes(v)
	}
	if err := checkOperand(n.op, v); err != nil {
		return nil, &EvalError{Path: n.path, Err: err}
	}
	return v, nil
}

func (n *leafNode) eval(c *evalCtx) (bool, error) {
	switch {
	case n.count != nil:
		cnt, err := n.count.eval(c)
		if err != nil {
			return false, err
		}
		rhs, err := n.operand(c, nil)
		if err != nil {
			return false, err
		}
		return n.test(cnt, true, rhs), nil
	case n.value != nil:
		v, err := n.value.eval(c)
		if err != nil {
			return false, &EvalError{Path: n.path + ".value", Err: err}
		}
		rhs, err := n.operand(c, nil)
		if err != nil {
			return false, err
		}
		return n.test(v, v != nil, rhs), nil
	}
	f, err := n.resolveField(c)
	if err != nil {
		return false, err
	}
	rhs, err := n.operand(c, f)
	if err != nil {
		return false, err
	}
	if !f.multi {
		v, ok := f.value(c, c.res)
		return n.test(v, ok, rhs), nil
	}
	// An array alias with [*]: every element must satisfy the condition
	// (true for an empty array).
	all := true
	f.each(c, c.res, func(v any, ok bool) bool {
		if !n.test(v, ok, rhs) {
			all = false
			return false
		}
		return true
	})
	return all, nil
}

func (n *leafNode) test(v any, exists bool, rhs any) bool {
	if n.op == opExists {
		want, _ := argBool(rhs)
		return exists == want
	}
	if !exists {
		return n.op.negated()
	}
	r := n.positiveTest(v, rhs)
	if n.op.negated() {
		return !r
	}
	return r
}

func (n *leafNode) positiveTest(v, rhs any) bool {
	switch n.op.positive() {
	case opEquals:
		return looseEqual(v, rhs)
	case opLike:
		s, ok := scalarString(v)
		if !ok {
			return false
		}
		lp := n.like
		if lp == nil {
			pat, _ := rhs.(string)
			lp = compileLike(pat)
		}
		return lp.match(s)
	case opMatch, opMatchInsensitively:
		s, ok := scalarString(v)
		if !ok {
			return false
		}
		pat := n.pattern
		if pat == nil {
			p, _ := rhs.(string)
			pat = []rune(p)
		}
		return matchPattern(pat, s, n.op.positive() == opMatchInsensitively)
	case opContains:
		switch t := v.(type) {
		case string:
			sub, ok := scalarString(rhs)
			return ok && strings.Contains(strings.ToLower(t), strings.ToLower(sub))
		case []any:
			for _, el := range t {
				if looseEqual(el, rhs) {
					return true
				}
			}
		}
		return false
	case opIn:
		arr, _ := rhs.([]any)
		for _, el := range arr {
			if looseEqual(v, el) {
				return true
			}
		}
		return false
	case opContainsKey:
		m, ok := v.(map[string]any)
		k, _ := rhs.(string)
		if !ok {
			return false
		}
		_, found := lookupFold(m, k)
		return found
	case opLess, opLessOrEquals, opGreater, opGreaterOrEquals:
		cmp, ok := compareValues(v, rhs)
		if !ok {
			return false
		}
		switch n.op {
		case opLess:
			return cmp < 0
		case opLessOrEquals:
			return cmp <= 0
		case opGreater:
			return cmp > 0
		}
		return cmp >= 0
	}
	return false
}

// text renders the condition with the value it saw.
func (n *leafNode) text(c *evalCtx) string {
	rhs, _ := n.operand(c, n.field)
	switch {
	case n.count != nil:
		cnt, _ := n.count.eval(c)
		return fmt.Sprintf("count %s (%s) %s %s", n.count.what, stringify(cnt), n.op, render(rhs))
	case n.value != nil:
		v, _ := n.value.eval(c)
		return fmt.Sprintf("value %s %s %s", render(v), n.op, render(rhs))
	}
	f, err := n.resolveField(c)
	if err != nil {
		return n.path
	}
	var seen any
	var exists bool
	if f.multi {
		seen, exists = f.values(c, c.res)
	} else {
		seen, exists = f.value(c, c.res)
	}
	shown := "missing"
	if exists {
		shown = render(seen)
	}
	return fmt.Sprintf("field %s (%s) %s %s", f.raw, shown, n.op, render(rhs))
}

func (n *leafNode) describe(c *evalCtx) string { return n.text(c) }

func render(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return stringify(v)
}

// ---- count ----

type countNode struct {
	field *fieldRef // field count
	value expr      // value count
	where node
	scope int
	what  string
}

func (cc *compileCtx) compileCount(v any, path string) (*countNode, error) {
	o, err := asObj(v, path)
	if err != nil {
		return nil, err
	}
	cn := &countNode{scope: len(cc.scopes)}
	inner := cc.clone()
	hasField, hasValue := o.has("field"), o.has("value")
	switch {
	case hasField && hasValue:
		return nil, defErr(path, "count takes field or value, not both")
	case hasField:
		x, p, _ := o.get("field")
		s, ok := x.(string)
		if !ok {
			return nil, defErr(p, "must be a string naming an array alias ending in [*], got %s", jsonKind(x))
		}
		f, err := compileField(cc, s, p)
		if err != nil {
			return nil, err
		}
		if !f.endsInEach() {
			return nil, defErr(p, "count.field %q must be an array alias ending in [*] (e.g. Corral.HybridCompute/machines/extensions[*]) or tags[*]", s)
		}
		cn.field, cn.what = f, s
		inner.scopes = append(inner.scopes, countScope{field: f})
	case hasValue:
		x, p, _ := o.get("value")
		e, err := compileValue(cc, x, p)
		if err != nil {
			return nil, err
		}
		name, np, err := o.str("name")
		if err != nil {
			return nil, err
		}
		if o.has("name") && name == "" {
			return nil, defErr(np, "must not be empty")
		}
		cn.value, cn.what = e, "value"
		if name != "" {
			cn.what = "value " + name
		}
		inner.scopes = append(inner.scopes, countScope{value: true, name: name})
	default:
		return nil, defErr(path, "count needs field (an array alias ending in [*]) or value (an array)")
	}
	if x, p, ok := o.get("where"); ok {
		w, err := inner.compileCondition(x, p)
		if err != nil {
			return nil, err
		}
		cn.where = w
	}
	if err := o.rest("field or value, name (with value), where"); err != nil {
		return nil, err
	}
	return cn, nil
}

func (cn *countNode) eval(c *evalCtx) (float64, error) {
	var elems []any
	if cn.field != nil {
		elems = cn.field.elements(c)
	} else {
		v, err := cn.value.eval(c)
		if err != nil {
			return 0, &EvalError{Path: "count.value", Err: err}
		}
		arr, ok := v.([]any)
		if !ok && v != nil {
			return 0, &EvalError{Path: "count.value", Err: fmt.Errorf("must be an array, got %s", jsonKind(v))}
		}
		elems = arr
	}
	if cn.where == nil {
		return float64(len(elems)), nil
	}
	n := 0
	c.scopes = append(c.scopes[:cn.scope], nil)
	defer func() { c.scopes = c.scopes[:cn.scope] }()
	for _, el := range elems {
		c.scopes[cn.scope] = el
		ok, err := cn.where.eval(c)
		if err != nil {
			return 0, err
		}
		if ok {
			n++
		}
	}
	return float64(n), nil
}

// elements returns the elements of a count's array field: the array itself
// when the path to it has no other [*], else every element collected.
func (f *fieldRef) elements(c *evalCtx) []any {
	if f.kind == fTagsAll && f.scope < 0 {
		var out []any
		f.each(c, c.res, func(v any, _ bool) bool { out = append(out, v); return true })
		return out
	}
	var root any
	switch {
	case f.scope >= 0:
		root = c.scopes[f.scope]
	case c.res.Type != f.al.resType:
		return nil
	default:
		root = c.res.Properties
	}
	head := f.path[:len(f.path)-1]
	last := f.path[len(f.path)-1].key
	nested := false
	for _, s := range head {
		if s.each {
			nested = true
		}
	}
	if !nested {
		parent, ok := walkOne(root, head)
		if !ok {
			return nil
		}
		arr, _ := walkOne(parent, []seg{{key: last}})
		a, _ := arr.([]any)
		return a
	}
	var out []any
	walkEach(root, append(append([]seg(nil), head...), seg{key: last}), func(v any, ok bool) bool {
		if arr, isArr := v.([]any); ok && isArr {
			out = append(out, arr...)
		}
		return true
	})
	return out
}

// ---- comparison helpers ----

// scalarString renders strings, numbers and booleans as strings.
func scalarString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case float64, bool:
		return stringify(t), true
	}
	return "", false
}

// looseEqual is the equality of policy conditions: strings compare
// case-insensitively, and a scalar equals its string form ("true", "3"), as
// Azure definitions often compare booleans and numbers with strings.
func looseEqual(a, b any) bool {
	if deepEqual(a, b, true) {
		return true
	}
	as, aok := scalarString(a)
	bs, bok := scalarString(b)
	if !aok || !bok {
		return false
	}
	if af, ok := a.(float64); ok {
		if bf, err := strconv.ParseFloat(bs, 64); err == nil {
			return af == bf
		}
		return false
	}
	if bf, ok := b.(float64); ok {
		if af, err := strconv.ParseFloat(as, 64); err == nil {
			return af == bf
		}
		return false
	}
	return strings.EqualFold(as, bs)
}

// compareValues orders numbers numerically, dates (RFC 3339 or
// YYYY-MM-DD) chronologically and other strings case-insensitively.
func compareValues(a, b any) (int, bool) {
	af, aNum := toNumber(a)
	bf, bNum := toNumber(b)
	if aNum && bNum {
		switch {
		case af < bf:
			return -1, true
		case af > bf:
			return 1, true
		}
		return 0, true
	}
	as, aok := a.(string)
	bs, bok := b.(string)
	if !aok || !bok {
		return 0, false
	}
	if at, ok := parseTime(as); ok {
		if bt, ok := parseTime(bs); ok {
			return at.Compare(bt), true
		}
	}
	return strings.Compare(strings.ToLower(as), strings.ToLower(bs)), true
}

func toNumber(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, !math.IsNaN(t)
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
		return f, err == nil
	}
	return 0, false
}

func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// likePattern is a like/notLike pattern: * matches any run of characters,
// compared case-insensitively.
type likePattern struct{ parts []string }

func compileLike(p string) *likePattern {
	return &likePattern{parts: strings.Split(strings.ToLower(p), "*")}
}

func (l *likePattern) match(s string) bool {
	s = strings.ToLower(s)
	parts := l.parts
	if len(parts) == 1 {
		return s == parts[0]
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// matchPattern is match/matchInsensitively: # is a digit, ? a letter, . any
// character, anything else itself; the whole value must match.
func matchPattern(pat []rune, s string, fold bool) bool {
	if utf8.RuneCountInString(s) != len(pat) {
		return false
	}
	i := 0
	for _, r := range s {
		p := pat[i]
		i++
		switch p {
		case '#':
			if !unicode.IsDigit(r) {
				return false
			}
		case '?':
			if !unicode.IsLetter(r) {
				return false
			}
		case '.':
		default:
			if r != p && !(fold && unicode.ToLower(r) == unicode.ToLower(p)) {
				return false
			}
		}
	}
	return true
}
