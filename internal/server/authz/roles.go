package authz

// Built-in role ids. They are also their display names.
const (
	RoleOwner          = "Owner"
	RoleContributor    = "Contributor"
	RoleReader         = "Reader"
	RoleOnboarding     = "Connected Machine Onboarding"
	RoleResourceAdmin  = "Connected Machine Resource Administrator"
	RoleVMAdminLogin   = "Virtual Machine Administrator Login"
	RoleVMUserLogin    = "Virtual Machine User Login"
	RoleSecurityAdmin  = "Security Admin"
	RoleSecurityReader = "Security Reader"
	RoleUpdateManager  = "Update Manager"
	RoleJITRequester   = "JIT Requester"
	// RolePolicyContributor manages policy (DESIGN §6).
	RolePolicyContributor = "Resource Policy Contributor"
)

// Role is a set of granted actions. Built-in roles are defined in code; custom
// roles are stored and loaded by the caller.
type Role struct {
	ID               string
	Name             string
	Description      string
	BuiltIn          bool
	Actions          []string
	NotActions       []string
	AssignableScopes []string
}

// BuiltInRoles are the roles of DESIGN.md §3, in display order.
var BuiltInRoles = []Role{
	{
		ID: RoleOwner, Name: RoleOwner, BuiltIn: true,
		Description: "Full access to all resources, including the right to grant access to others.",
		Actions:     []string{"*"},
	},
	{
		ID: RoleContributor, Name: RoleContributor, BuiltIn: true,
		Description: "Manage all resources, but not grant access, manage identities or publish extensions.",
		Actions:     []string{"*"},
		NotActions: []string{
			"Corral.Authorization/*/write", "Corral.Authorization/*/delete",
			"Corral.Identity/*/write", "Corral.Identity/*/delete",
			"Corral.Extensions/*/write", "Corral.Extensions/*/delete",
			ActMachinesLogin, ActMachinesLoginAsAdmin,
			// A signature set decides what every protected machine removes.
			ActSignaturesWrite,
		},
	},
	{
		ID: RoleReader, Name: RoleReader, BuiltIn: true,
		Description: "View all resources, but not change anything.",
		Actions:     []string{"*/read"},
	},
	{
		ID: RoleOnboarding, Name: RoleOnboarding, BuiltIn: true,
		Description: "Create and connect machines in its scope; nothing else (not even read).",
		Actions:     []string{ActMachinesOnboard},
	},
	{
		ID: RoleResourceAdmin, Name: RoleResourceAdmin, BuiltIn: true,
		Description: "Read, update, delete and onboard machines and manage their extensions; no OS login.",
		Actions: []string{
			ActMachinesRead, ActMachinesWrite, ActMachinesDelete, ActMachinesOnboard,
			"Corral.HybridCompute/machines/extensions/*",
			"Corral.HybridCompute/machines/runCommands/*",
			ActResourceGroupsRead, ActSubscriptionsRead, ActExtensionPackagesRead,
		},
	},
	{
		ID: RoleVMAdminLogin, Name: RoleVMAdminLogin, BuiltIn: true,
		Description: "View machines and log in to them as an administrator (sudo).",
		Actions:     []string{ActMachinesRead, ActMachinesLogin, ActMachinesLoginAsAdmin},
	},
	{
		ID: RoleVMUserLogin, Name: RoleVMUserLogin, BuiltIn: true,
		Description: "View machines and log in to them as an unprivileged user.",
		Actions:     []string{ActMachinesRead, ActMachinesLogin},
	},
	{
		ID: RoleSecurityAdmin, Name: RoleSecurityAdmin, BuiltIn: true,
		Description: "Read everything; manage security policy, alerts, recommendations and JIT.",
		Actions:     []string{"*/read", "Corral.Security/*", "Corral.PolicyInsights/*", "Corral.Authorization/policyAssignments/*", "Corral.Authorization/policyDefinitions/*", "Corral.Authorization/policyExemptions/*"},
	},
	{
		ID: RoleSecurityReader, Name: RoleSecurityReader, BuiltIn: true,
		Description: "Read everything security-related.",
		Actions:     []string{"*/read"},
	},
	{
		ID: RoleUpdateManager, Name: RoleUpdateManager, BuiltIn: true,
		Description: "Assess machines' pending updates, deploy updates and schedule deployments and assessments; read machines.",
		Actions:     []string{"Corral.Updates/*", ActMachinesRead, ActResourceGroupsRead, ActSubscriptionsRead},
	},
	{
		ID: RoleJITRequester, Name: RoleJITRequester, BuiltIn: true,
		Description: "View machines and their JIT policies, and request just-in-time port openings.",
		Actions:     []string{ActMachinesRead, ActJITPoliciesRead, ActJITRequestsRead, ActJITRequestsWrite},
	},
	{
		ID: RolePolicyContributor, Name: RolePolicyContributor, BuiltIn: true,
		Description: "Read everything; create and delete policy definitions, assignments and exemptions, evaluate compliance and roll back remediations.",
		Actions: []string{"*/read", "Corral.Authorization/policyDefinitions/*", "Corral.Authorization/policyAssignments/*",
			"Corral.Authorization/policyExemptions/*", "Corral.PolicyInsights/*"},
	},
}

// BuiltInRole returns the built-in role with the given id or name
// (case-insensitive).
func BuiltInRole(idOrName string) (Role, bool) {
	for _, r := range BuiltInRoles {
		if equalFold(r.ID, idOrName) || equalFold(r.Name, idOrName) {
			return r, true
		}
	}
	return Role{}, false
}
