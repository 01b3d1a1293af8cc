package resource

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse: an id Parse accepts is written back exactly as given, its
// segments rebuild it, and its Path (escaped, for API calls) never holds a
// name's "/" or "?" as a separator; ParseScope accepts only the scope
// shapes, as a subset of Parse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/", "", "/subscriptions/default", "/subscriptions/default/resourceGroups/rg1/machines/m1/extensions/rc",
		"/publishers/Corral/extensionTypes/RunCommand/versions/1.0.0", "/subscriptions/", "//", "/a", "/a//b",
		"/SUBSCRIPTIONS/s/RESOURCEGROUPS/r", "/subscriptions/a%2Fb", "/subscriptions/a?b=c", "/subscriptions/%zz",
		"/subscriptions/s/machines/m", "/subscriptions/s/resourceGroups/r/machines/m/extensions/e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		scope, scopeErr := ParseScope(s)
		if err != nil {
			if scopeErr == nil {
				t.Fatalf("ParseScope accepts %q, which Parse refuses (%v)", s, err)
			}
			return
		}
		if got := id.String(); got != s {
			t.Fatalf("Parse(%q).String() = %q", s, got)
		}
		again, err := Parse(id.String())
		if err != nil || again != id {
			t.Fatalf("Parse(%q) again = %v, %v", id.String(), again, err)
		}
		rebuilt := Root()
		for _, seg := range id.Segments() {
			if seg.Type == "" || seg.Name == "" || strings.Contains(seg.Type, "/") || strings.Contains(seg.Name, "/") {
				t.Fatalf("Parse(%q) has segment %+v", s, seg)
			}
			rebuilt = rebuilt.Child(seg.Type, seg.Name)
		}
		if rebuilt != id {
			t.Fatalf("segments of %q rebuild %q", s, rebuilt.String())
		}
		if p := id.Path(); strings.Count(p, "/") != strings.Count(s, "/")*btoi(s != "/") || strings.ContainsAny(p, "?#") {
			t.Fatalf("Path of %q is %q", s, p)
		}
		if !id.IsRoot() && id.Parent().Path() != id.Path()[:strings.LastIndex(id.Path()[:strings.LastIndex(id.Path(), "/")], "/")] {
			t.Fatalf("Parent of %q is %q", s, id.Parent().String())
		}
		if scopeErr == nil {
			if scope != id || len(scope.Segments()) > 3 {
				t.Fatalf("ParseScope(%q) = %q, Parse %q", s, scope.String(), id.String())
			}
			for i, seg := range scope.Segments() {
				if !strings.EqualFold(seg.Type, scopeTypes[i]) {
					t.Fatalf("scope %q has a %s where %s belongs", s, seg.Type, scopeTypes[i])
				}
			}
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzNamesAndTags: a valid name is 1-63 safe characters; tags CheckTags
// accepts have valid keys and bounded values without control characters.
func FuzzNamesAndTags(f *testing.F) {
	for _, s := range [][2]string{{"web-1", "prod"}, {"web.", "a\x00"}, {"-x", "\u202e"}, {strings.Repeat("a", 64), strings.Repeat("v", 257)}, {"a:b/c", "é"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		if ValidName(name) {
			if len(name) == 0 || len(name) > 63 || !utf8.ValidString(name) || strings.ContainsAny(name, "/?#%\x00 ") || strings.HasSuffix(name, ".") {
				t.Fatalf("ValidName(%q) = true", name)
			}
			if id, err := Parse(Machine("s", "rg", name).String()); err != nil || id.Name(Machines) != name {
				t.Fatalf("machine %q does not round-trip through its id (%v)", name, err)
			}
		}
		if err := CheckTags(map[string]string{name: value}); err == nil {
			if !ValidTagKey(name) || len(value) > MaxTagValueLen || strings.ContainsFunc(value, unsafeRune) || strings.ContainsRune(value, 0) {
				t.Fatalf("tag %q=%q accepted", name, value)
			}
		}
	})
}
