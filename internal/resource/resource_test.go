package resource_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/resource"
)

func TestBuilders(t *testing.T) {
	t.Parallel()
	m := resource.Machine("default", "web", "vm1")
	for _, tc := range []struct {
		got  resource.ID
		want string
	}{
		{resource.Root(), "/"},
		{resource.ID{}, "/"},
		{resource.Subscription("default"), "/subscriptions/default"},
		{resource.ResourceGroup("default", "web"), "/subscriptions/default/resourceGroups/web"},
		{m, "/subscriptions/default/resourceGroups/web/machines/vm1"},
		{m.Extension("ama"), "/subscriptions/default/resourceGroups/web/machines/vm1/extensions/ama"},
		{m.RunCommand("r1"), "/subscriptions/default/resourceGroups/web/machines/vm1/runCommands/r1"},
		{resource.Publisher("Corral"), "/publishers/Corral"},
		{resource.ExtensionPackage("Corral", "RunCommand", "1.0.0"), "/publishers/Corral/extensionTypes/RunCommand/versions/1.0.0"},
		{resource.User("alice"), "/users/alice"},
		{resource.ServicePrincipal("c1"), "/servicePrincipals/c1"},
		{resource.Token("t1"), "/tokens/t1"},
		{resource.RoleDefinition("r1"), "/roleDefinitions/r1"},
		{m.Parent(), "/subscriptions/default/resourceGroups/web"},
		{resource.Subscription("s").Parent(), "/"},
		{resource.Root().Parent(), "/"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
	if m.Name(resource.ResourceGroups) != "web" || m.Name("MACHINES") != "vm1" || m.Name(resource.Extensions) != "" {
		t.Errorf("Name: %q %q %q", m.Name(resource.ResourceGroups), m.Name("MACHINES"), m.Name(resource.Extensions))
	}
	if !resource.Root().IsRoot() || m.IsRoot() {
		t.Error("IsRoot")
	}
	if m != resource.Machine("default", "web", "vm1") {
		t.Error("equal ids are not ==")
	}
	want := []resource.Segment{{resource.Subscriptions, "default"}, {resource.ResourceGroups, "web"}, {resource.Machines, "vm1"}}
	if d := cmp.Diff(want, m.Segments()); d != "" {
		t.Errorf("segments (-want +got):\n%s", d)
	}
}

func TestPathEscapes(t *testing.T) {
	t.Parallel()
	got := resource.Machine("default", "a b", "x/y?z").Path()
	if want := "/subscriptions/default/resourceGroups/a%20b/machines/x%2Fy%3Fz"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// A name holding "/" stays one segment: an API path built from it
	// cannot reach another route.
	odd := resource.Machine("default", "web", "vm1/extensions/x")
	if n := len(odd.Segments()); n != 3 || odd.Name(resource.Machines) != "vm1/extensions/x" {
		t.Errorf("name with a slash: %d segments, machine %q", n, odd.Name(resource.Machines))
	}
	if odd == resource.Machine("default", "web", "vm1").Extension("x") {
		t.Error("a name holding a slash equals a deeper id")
	}
	if resource.Root().Path() != "" {
		t.Errorf("root path %q", resource.Root().Path())
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		wantErr string
	}{
		{"/", ""},
		{"/subscriptions/s", ""},
		{"/publishers/Corral/extensionTypes/RunCommand/versions/1.0.0", ""},
		{"", "must be \"/\" or start with /"},
		{"subscriptions/s", "must be \"/\" or start with /"},
		{"/subscriptions/s/", "must be \"/\" or start with /"},
		{"/subscriptions", "pairs of /type/name"},
		{"/subscriptions//resourceGroups/x", "empty segment"},
	} {
		id, err := resource.Parse(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Parse(%q): %v", tc.in, err)
		case tc.wantErr == "" && id.String() != tc.in:
			t.Errorf("Parse(%q) = %s", tc.in, id)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Parse(%q): got %v, want an error with %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestParseScope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"/", true},
		{"/subscriptions/s", true},
		{"/Subscriptions/s/resourcegroups/rg", true},
		{"/subscriptions/s/resourceGroups/rg/machines/m", true},
		{"/subscriptions/s/resourceGroups/rg/machines/m/extensions/e", false},
		{"/subscriptions/s/machines/m", false},
		{"/publishers/Corral", false},
		{"/subscriptions/", false},
		{"/subscriptions", false},
		{"subscriptions/s", false},
		{"", false},
	} {
		id, err := resource.ParseScope(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseScope(%q): err %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err == nil && id.String() != tc.in {
			t.Errorf("ParseScope(%q) = %s, want it kept as given", tc.in, id)
		}
	}
}
