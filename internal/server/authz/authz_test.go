package authz

import "testing"

func TestMatchAction(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, action string
		want            bool
	}{
		{"*", "Corral.HybridCompute/machines/read", true},
		{"*/read", "Corral.HybridCompute/machines/read", true},
		{"*/read", "Corral.HybridCompute/machines/write", false},
		{"Corral.HybridCompute/machines/*/read", "Corral.HybridCompute/machines/extensions/read", true},
		{"Corral.HybridCompute/machines/*/read", "Corral.HybridCompute/machines/read", false},
		{"corral.hybridcompute/MACHINES/read", "Corral.HybridCompute/machines/read", true},
		{"Corral.Authorization/*/write", "Corral.Authorization/roleAssignments/write", true},
		{"Corral.Authorization/*/write", "Corral.Authorization/roleAssignments/delete", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"", "x", false},
	}
	for _, c := range cases {
		if got := MatchAction(c.pattern, c.action); got != c.want {
			t.Errorf("MatchAction(%q, %q) = %v, want %v", c.pattern, c.action, got, c.want)
		}
	}
}

func TestScopeCovers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		scope, target string
		want          bool
	}{
		{"/", "/subscriptions/a", true},
		{"/subscriptions/a", "/subscriptions/a", true},
		{"/subscriptions/a", "/subscriptions/A/resourceGroups/rg", true},
		{"/subscriptions/a", "/subscriptions/ab", false},
		{"/subscriptions/a/resourceGroups/rg", "/subscriptions/a", false},
		{"/subscriptions/a/resourceGroups/rg", "/subscriptions/a/resourceGroups/rg/machines/m", true},
		{"/subscriptions/a/resourceGroups/rg", "/subscriptions/a/resourceGroups/rg2/machines/m", false},
	}
	for _, c := range cases {
		if got := ScopeCovers(c.scope, c.target); got != c.want {
			t.Errorf("ScopeCovers(%q, %q) = %v, want %v", c.scope, c.target, got, c.want)
		}
	}
}

func TestBuiltInRoles(t *testing.T) {
	t.Parallel()
	role := func(id string) Role {
		r, ok := BuiltInRole(id)
		if !ok {
			t.Fatalf("no role %s", id)
		}
		return r
	}
	cases := []struct {
		role, action string
		want         bool
	}{
		{RoleOwner, ActRoleAssignmentsWrite, true},
		{RoleContributor, ActMachinesDelete, true},
		{RoleContributor, ActRoleAssignmentsWrite, false},
		{RoleContributor, ActServicePrincipalsWrite, false},
		{RoleContributor, ActMachinesLogin, false},
		{RoleReader, ActMachinesRead, true},
		{RoleReader, ActMachinesWrite, false},
		{RoleOnboarding, ActMachinesOnboard, true},
		{RoleOnboarding, ActMachinesRead, false},
		{RoleOnboarding, ActMachinesDelete, false},
		{RoleResourceAdmin, ActMachinesDelete, true},
		{RoleResourceAdmin, ActMachinesLogin, false},
		{RoleResourceAdmin, ActRoleAssignmentsWrite, false},
		{RoleVMAdminLogin, ActMachinesLoginAsAdmin, true},
		{RoleVMUserLogin, ActMachinesLogin, true},
		{RoleVMUserLogin, ActMachinesLoginAsAdmin, false},
		{RoleSecurityReader, ActMachinesWrite, false},
		{RoleOwner, ActPublishersWrite, true},
		{RoleOwner, ActCatalogsWrite, true},
		{RoleContributor, ActPublishersWrite, false},
		{RoleContributor, ActPackagesWrite, false},
		{RoleContributor, ActCatalogsWrite, false},
		{RoleContributor, ActExtensionPackagesRead, true},
		{RoleContributor, ActExtensionsWrite, true},
		{RoleContributor, ActRunCommandsWrite, true},
		{RoleResourceAdmin, ActExtensionsWrite, true},
		{RoleResourceAdmin, ActExtensionsDelete, true},
		{RoleResourceAdmin, ActRunCommandsWrite, true},
		{RoleResourceAdmin, ActExtensionPackagesRead, true},
		{RoleResourceAdmin, ActPublishersWrite, false},
		{RoleReader, ActExtensionsRead, true},
		{RoleReader, ActRunCommandsRead, true},
		{RoleReader, ActExtensionsWrite, false},
		{RoleReader, ActRunCommandsWrite, false},
		{RoleSecurityReader, ActExtensionsRead, true},
		{RoleSecurityReader, ActExtensionsDelete, false},
		{RoleOnboarding, ActExtensionsRead, false},
		{RoleOnboarding, ActExtensionsWrite, false},
		{RoleOnboarding, ActRunCommandsWrite, false},
		{RoleVMAdminLogin, ActRunCommandsWrite, false},
	}
	for _, c := range cases {
		if got := RoleGrants(role(c.role), c.action); got != c.want {
			t.Errorf("%s grants %s = %v, want %v", c.role, c.action, got, c.want)
		}
	}
}

func TestAllowedInheritsDownward(t *testing.T) {
	t.Parallel()
	reader, _ := BuiltInRole(RoleReader)
	as := []Assignment{{Role: reader, Scope: "/subscriptions/s/resourceGroups/rg1"}}
	if !Allowed(as, ActMachinesRead, "/subscriptions/s/resourceGroups/rg1/machines/m") {
		t.Error("assignment at the group does not reach its machine")
	}
	if Allowed(as, ActMachinesRead, "/subscriptions/s/resourceGroups/rg2/machines/m") {
		t.Error("assignment leaked to a sibling group")
	}
	if Allowed(as, ActMachinesRead, "/subscriptions/s") {
		t.Error("assignment leaked upward")
	}
}

func TestValidateScopeAndRole(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"/", "/subscriptions/s", "/subscriptions/s/resourceGroups/rg", "/subscriptions/s/resourceGroups/rg/machines/m"} {
		if err := ValidateScope(ok); err != nil {
			t.Errorf("ValidateScope(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "subscriptions/s", "/subscriptions/", "/subscriptions/s/", "/foo/s", "/subscriptions/s/machines/m", "/subscriptions/s/resourceGroups"} {
		if err := ValidateScope(bad); err == nil {
			t.Errorf("ValidateScope(%q) accepted", bad)
		}
	}
	if err := ValidateRole(Role{Name: "x", Actions: []string{"Corral.HybridCompute/machines/*/read"}}); err != nil {
		t.Errorf("valid role refused: %v", err)
	}
	for _, bad := range []Role{{Actions: []string{"*"}}, {Name: "x"}, {Name: "x", Actions: []string{"a b"}}} {
		if err := ValidateRole(bad); err == nil {
			t.Errorf("ValidateRole(%+v) accepted", bad)
		}
	}
}
