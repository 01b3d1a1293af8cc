package policy

import (
	"fmt"
	"sort"
	"strings"
)

// obj reads a decoded JSON object with case-insensitive keys (the Azure
// Policy language is case-insensitive in property names) and remembers
// which keys were read, so the rest can be refused as unsupported.
type obj struct {
	path string
	m    map[string]any
	keys map[string]string // lower-case key -> key as written
	used map[string]bool
}

func asObj(v any, path string) (*obj, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, defErr(path, "must be a JSON object, got %s", jsonKind(v))
	}
	o := &obj{path: path, m: m, keys: make(map[string]string, len(m)), used: map[string]bool{}}
	for k := range m {
		lk := strings.ToLower(k)
		if prev, dup := o.keys[lk]; dup {
			a, b := prev, k
			if b < a {
				a, b = b, a
			}
			return nil, defErr(path, "property %q is given twice (as %q and %q)", lk, a, b)
		}
		o.keys[lk] = k
	}
	return o, nil
}

func (o *obj) has(name string) bool {
	_, ok := o.keys[strings.ToLower(name)]
	return ok
}

// get returns the value of name and its JSON path.
func (o *obj) get(name string) (any, string, bool) {
	k, ok := o.keys[strings.ToLower(name)]
	if !ok {
		return nil, joinPath(o.path, name), false
	}
	o.used[k] = true
	return o.m[k], joinPath(o.path, k), true
}

// str returns a string property ("" when absent).
func (o *obj) str(name string) (string, string, error) {
	v, p, ok := o.get(name)
	if !ok || v == nil {
		return "", p, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", p, defErr(p, "must be a string, got %s", jsonKind(v))
	}
	return s, p, nil
}

// rest refuses the first key (in sorted order) that was not read.
func (o *obj) rest(supported string) error {
	var left []string
	for k := range o.m {
		if !o.used[k] {
			left = append(left, k)
		}
	}
	if len(left) == 0 {
		return nil
	}
	sort.Strings(left)
	return defErr(joinPath(o.path, left[0]), "unsupported property %q: supported here: %s", left[0], supported)
}

// ignore marks keys as read without using them (documented as informational).
func (o *obj) ignore(names ...string) {
	for _, n := range names {
		if k, ok := o.keys[strings.ToLower(n)]; ok {
			o.used[k] = true
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
