package policy

import (
	"fmt"
	"sort"
	"strings"
)

type fieldKind uint8

const (
	fName fieldKind = iota
	fFullName
	fType
	fLocation
	fID
	fKind
	fTags    // the tags object
	fTag     // one tag: tags['x'], tags[x], tags.x
	fTagsAll // tags[*]: every tag value
	fAlias
)

// fieldRef is a compiled "field": a built-in field or an alias, possibly
// bound to an enclosing field count (scope >= 0: resolve from that count's
// current element instead of the resource).
type fieldRef struct {
	raw   string
	kind  fieldKind
	tag   string
	al    *alias
	path  []seg
	scope int
	multi bool // an unbound [*] remains: the field has many values
}

const supportedFields = "name, fullName, type, location, id, kind, tags, tags['x'], tags[x], tags.x, tags[*] and the aliases in docs/policy.md (e.g. Corral.HybridCompute/machines/osName, Microsoft.HybridCompute/machines/osSku)"

// compileField resolves a field name in the compile context (count scopes).
func compileField(cc *compileCtx, name, path string) (*fieldRef, error) {
	f, err := parseFieldName(name)
	if err != nil {
		return nil, defErr(path, "%v", err)
	}
	cc.bindField(f)
	return f, nil
}

func parseFieldName(name string) (*fieldRef, error) {
	ln := strings.ToLower(strings.TrimSpace(name))
	f := &fieldRef{raw: name, scope: -1}
	switch ln {
	case "name":
		f.kind = fName
		return f, nil
	case "fullname":
		f.kind = fFullName
		return f, nil
	case "type":
		f.kind = fType
		return f, nil
	case "location":
		f.kind = fLocation
		return f, nil
	case "id":
		f.kind = fID
		return f, nil
	case "kind":
		f.kind = fKind
		return f, nil
	case "tags":
		f.kind = fTags
		return f, nil
	case "tags[*]":
		f.kind = fTagsAll
		f.multi = true
		return f, nil
	}
	if strings.HasPrefix(ln, "tags[") && strings.HasSuffix(ln, "]") {
		k := strings.TrimSpace(name[len("tags[") : len(name)-1])
		if len(k) >= 2 && k[0] == '\'' && k[len(k)-1] == '\'' {
			k = strings.ReplaceAll(k[1:len(k)-1], "''", "'")
		}
		if k == "" {
			return nil, fmt.Errorf("field %q names no tag", name)
		}
		f.kind, f.tag = fTag, k
		return f, nil
	}
	if strings.HasPrefix(ln, "tags.") && len(name) > len("tags.") {
		f.kind, f.tag = fTag, name[len("tags."):]
		return f, nil
	}
	if strings.HasPrefix(ln, "identity.") || strings.HasPrefix(ln, "properties.") {
		return nil, fmt.Errorf("unsupported field %q: Corral resources are read through aliases; supported fields are %s", name, supportedFields)
	}
	if a, ok := aliasTable[ln]; ok {
		f.kind, f.al, f.path = fAlias, a, a.path
		for _, s := range a.path {
			if s.each {
				f.multi = true
			}
		}
		return f, nil
	}
	return nil, fmt.Errorf("unknown field or alias %q: supported fields are %s", name, supportedFields)
}

// endsInEach reports whether the field is an array alias ending in [*] (what
// a field count iterates).
func (f *fieldRef) endsInEach() bool {
	switch f.kind {
	case fTagsAll:
		return f.scope < 0
	case fAlias:
		return len(f.path) > 0 && f.path[len(f.path)-1].each
	}
	return false
}

// value returns a single-valued field's value and whether it exists.
func (f *fieldRef) value(c *evalCtx, r *Resource) (any, bool) {
	if f.scope >= 0 {
		return walkOne(c.scopes[f.scope], f.path)
	}
	switch f.kind {
	case fName, fFullName:
		return r.Name, true
	case fType:
		return r.Type, true
	case fLocation:
		return r.Location, true
	case fID:
		return r.ID, true
	case fKind:
		return nil, false
	case fTags:
		return c.tagsOf(r), true
	case fTag:
		if v, ok := r.Tags[f.tag]; ok {
			return v, true
		}
		for k, v := range r.Tags {
			if strings.EqualFold(k, f.tag) {
				return v, true
			}
		}
		return nil, false
	case fAlias:
		if r.Type != f.al.resType {
			return nil, false
		}
		return walkOne(r.Properties, f.path)
	}
	return nil, false
}

// each calls fn for every value of a multi-valued field (an unbound [*]);
// fn returns false to stop.
func (f *fieldRef) each(c *evalCtx, r *Resource, fn func(v any, exists bool) bool) {
	if f.scope >= 0 {
		walkEach(c.scopes[f.scope], f.path, fn)
		return
	}
	switch f.kind {
	case fTagsAll:
		keys := make([]string, 0, len(r.Tags))
		for k := range r.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !fn(r.Tags[k], true) {
				return
			}
		}
	case fAlias:
		if r.Type != f.al.resType {
			return
		}
		walkEach(r.Properties, f.path, fn)
	}
}

// values collects every value of the field (for field() in expressions).
func (f *fieldRef) values(c *evalCtx, r *Resource) (any, bool) {
	if !f.multi {
		return f.value(c, r)
	}
	out := []any{}
	f.each(c, r, func(v any, exists bool) bool {
		if exists {
			out = append(out, v)
		}
		return true
	})
	return out, true
}

func walkOne(v any, path []seg) (any, bool) {
	for _, s := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		x, ok := m[s.key]
		if !ok {
			if x, ok = lookupFold(m, s.key); !ok {
				return nil, false
			}
		}
		v = x
	}
	return v, v != nil
}

func walkEach(v any, path []seg, fn func(any, bool) bool) bool {
	for i, s := range path {
		if s.key != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return fn(nil, false)
			}
			x, ok := m[s.key]
			if !ok {
				if x, ok = lookupFold(m, s.key); !ok {
					if s.each {
						return true // no array: no elements
					}
					return fn(nil, false)
				}
			}
			v = x
		}
		if s.each {
			arr, _ := v.([]any)
			for _, el := range arr {
				if !walkEach(el, path[i+1:], fn) {
					return false
				}
			}
			return true
		}
	}
	return fn(v, v != nil)
}

// tagsOf returns the resource's tags as a JSON object (cached per call).
func (c *evalCtx) tagsOf(r *Resource) map[string]any {
	if c.tagsRes == r && c.tagsObj != nil {
		return c.tagsObj
	}
	m := make(map[string]any, len(r.Tags))
	for k, v := range r.Tags {
		m[k] = v
	}
	c.tagsRes, c.tagsObj = r, m
	return m
}
