// Package authz decides whether a principal may perform an action at a scope.
//
// Actions are strings like "Corral.HybridCompute/machines/write". Roles grant
// actions with wildcards ("*" matches any run of characters, case-insensitive)
// minus notActions. A role assignment at a scope applies to that scope and
// every scope below it (path-segment prefix, case-insensitive).
//
// The package is pure: it holds no state and does no I/O. The caller loads
// the principal's assignments and custom roles and asks Decide.
package authz

// Every action a route can declare. Keep in step with the routes table; the
// route × role test enumerates both.
const (
	ActSubscriptionsRead  = "Corral.Resources/subscriptions/read"
	ActSubscriptionsWrite = "Corral.Resources/subscriptions/write"

	ActResourceGroupsRead   = "Corral.Resources/subscriptions/resourceGroups/read"
	ActResourceGroupsWrite  = "Corral.Resources/subscriptions/resourceGroups/write"
	ActResourceGroupsDelete = "Corral.Resources/subscriptions/resourceGroups/delete"

	ActMachinesRead   = "Corral.HybridCompute/machines/read"
	ActMachinesWrite  = "Corral.HybridCompute/machines/write"
	ActMachinesDelete = "Corral.HybridCompute/machines/delete"
	// ActMachinesOnboard creates and connects a machine (onboarding and
	// device-code approval). It is all the Connected Machine Onboarding role has.
	ActMachinesOnboard = "Corral.HybridCompute/machines/onboard/action"
	// Login actions (DESIGN §9): SSH through the control plane.
	ActMachinesLogin        = "Corral.HybridCompute/machines/login/action"
	ActMachinesLoginAsAdmin = "Corral.HybridCompute/machines/loginAsAdmin/action"

	ActRoleDefinitionsRead   = "Corral.Authorization/roleDefinitions/read"
	ActRoleDefinitionsWrite  = "Corral.Authorization/roleDefinitions/write"
	ActRoleDefinitionsDelete = "Corral.Authorization/roleDefinitions/delete"
	ActRoleAssignmentsRead   = "Corral.Authorization/roleAssignments/read"
	ActRoleAssignmentsWrite  = "Corral.Authorization/roleAssignments/write"
	ActRoleAssignmentsDelete = "Corral.Authorization/roleAssignments/delete"

	ActUsersRead               = "Corral.Identity/users/read"
	ActUsersWrite              = "Corral.Identity/users/write"
	ActUsersDelete             = "Corral.Identity/users/delete"
	ActServicePrincipalsRead   = "Corral.Identity/servicePrincipals/read"
	ActServicePrincipalsWrite  = "Corral.Identity/servicePrincipals/write"
	ActServicePrincipalsDelete = "Corral.Identity/servicePrincipals/delete"

	ActActivityLogsRead = "Corral.Insights/activityLogs/read"

	// Extensions and run commands of a machine (scope: the machine, or the
	// extension / run below it).
	ActExtensionsRead   = "Corral.HybridCompute/machines/extensions/read"
	ActExtensionsWrite  = "Corral.HybridCompute/machines/extensions/write"
	ActExtensionsDelete = "Corral.HybridCompute/machines/extensions/delete"
	ActRunCommandsRead  = "Corral.HybridCompute/machines/runCommands/read"
	ActRunCommandsWrite = "Corral.HybridCompute/machines/runCommands/write"

	// Extension publishers, their packages and signed catalogs (scope "/").
	// Writing them decides what code every agent may run, so Contributor is
	// denied the writes; reading is harmless (public keys and digests).
	ActPublishersRead        = "Corral.Extensions/publishers/read"
	ActPublishersWrite       = "Corral.Extensions/publishers/write"
	ActPackagesWrite         = "Corral.Extensions/publishers/packages/write"
	ActCatalogsRead          = "Corral.Extensions/publishers/catalogs/read"
	ActCatalogsWrite         = "Corral.Extensions/publishers/catalogs/write"
	ActExtensionPackagesRead = "Corral.Extensions/extensionPackages/read"

	// Endpoint protection (Security Admin manages it; readers read): scopes
	// it is enabled on, scans and quarantine of a machine, alerts (scope:
	// their machine), signature sets (scope "/").
	ActProtectionRead    = "Corral.Security/protection/read"
	ActProtectionWrite   = "Corral.Security/protection/write"
	ActProtectionDelete  = "Corral.Security/protection/delete"
	ActScansRead         = "Corral.Security/scans/read"
	ActScansWrite        = "Corral.Security/scans/write"
	ActQuarantineRead    = "Corral.Security/quarantine/read"
	ActQuarantineRestore = "Corral.Security/quarantine/restore/action"
	ActAlertsRead        = "Corral.Security/alerts/read"
	ActAlertsAcknowledge = "Corral.Security/alerts/acknowledge/action"
	ActSignaturesRead    = "Corral.Security/signatures/read"
	ActSignaturesWrite   = "Corral.Security/signatures/write"
	// Update management (scope: the machine, resource group or
	// subscription an assessment, run or schedule targets).
	ActUpdatesRead           = "Corral.Updates/updates/read"
	ActUpdatesAssess         = "Corral.Updates/assessments/action"
	ActUpdateRunsRead        = "Corral.Updates/updateRuns/read"
	ActUpdateRunsWrite       = "Corral.Updates/updateRuns/write"
	ActUpdateSchedulesRead   = "Corral.Updates/updateSchedules/read"
	ActUpdateSchedulesWrite  = "Corral.Updates/updateSchedules/write"
	ActUpdateSchedulesDelete = "Corral.Updates/updateSchedules/delete"
	// Secure access (DESIGN §9). JIT policies and requests (scope: the
	// policy's scope, the request's machine); approving a request, or
	// revoking another user's grant, takes jitRequests/approve/action.
	ActJITPoliciesRead    = "Corral.Security/jitPolicies/read"
	ActJITPoliciesWrite   = "Corral.Security/jitPolicies/write"
	ActJITPoliciesDelete  = "Corral.Security/jitPolicies/delete"
	ActJITRequestsRead    = "Corral.Security/jitRequests/read"
	ActJITRequestsWrite   = "Corral.Security/jitRequests/write"
	ActJITRequestsApprove = "Corral.Security/jitRequests/approve/action"
	// Relayed sessions of a machine (scope: the machine).
	ActSSHSessionsRead = "Corral.HybridCompute/machines/sshSessions/read"
	ActSSHSessionsEnd  = "Corral.HybridCompute/machines/sshSessions/end/action"
	// Policy (DESIGN §6): definitions (scope "/"), assignments and
	// exemptions (scope: where they sit), compliance states, on-demand
	// evaluations and remediations (scope: the machines they are about).
	ActPolicyDefinitionsRead   = "Corral.Authorization/policyDefinitions/read"
	ActPolicyDefinitionsWrite  = "Corral.Authorization/policyDefinitions/write"
	ActPolicyDefinitionsDelete = "Corral.Authorization/policyDefinitions/delete"
	ActPolicyAssignmentsRead   = "Corral.Authorization/policyAssignments/read"
	ActPolicyAssignmentsWrite  = "Corral.Authorization/policyAssignments/write"
	ActPolicyAssignmentsDelete = "Corral.Authorization/policyAssignments/delete"
	ActPolicyExemptionsRead    = "Corral.Authorization/policyExemptions/read"
	ActPolicyExemptionsWrite   = "Corral.Authorization/policyExemptions/write"
	ActPolicyExemptionsDelete  = "Corral.Authorization/policyExemptions/delete"
	ActPolicyStatesRead        = "Corral.PolicyInsights/policyStates/read"
	ActPolicyEvaluate          = "Corral.PolicyInsights/policyStates/triggerEvaluation/action"
	ActRemediationsRead        = "Corral.PolicyInsights/remediations/read"
	ActRemediationsWrite       = "Corral.PolicyInsights/remediations/write"
)

// Self-service actions: every authenticated user or service principal may
// perform them on their own identity (their own API tokens, their own
// profile); they are declared by routes but not granted through roles.
const (
	ActSelfRead  = "Corral.Identity/self/read"
	ActSelfWrite = "Corral.Identity/self/write"
)

// AllActions lists every role-governed action, for validation and docs.
var AllActions = []string{
	ActSubscriptionsRead, ActSubscriptionsWrite,
	ActResourceGroupsRead, ActResourceGroupsWrite, ActResourceGroupsDelete,
	ActMachinesRead, ActMachinesWrite, ActMachinesDelete, ActMachinesOnboard,
	ActMachinesLogin, ActMachinesLoginAsAdmin,
	ActRoleDefinitionsRead, ActRoleDefinitionsWrite, ActRoleDefinitionsDelete,
	ActRoleAssignmentsRead, ActRoleAssignmentsWrite, ActRoleAssignmentsDelete,
	ActUsersRead, ActUsersWrite, ActUsersDelete,
	ActServicePrincipalsRead, ActServicePrincipalsWrite, ActServicePrincipalsDelete,
	ActActivityLogsRead,
	ActExtensionsRead, ActExtensionsWrite, ActExtensionsDelete, ActRunCommandsRead, ActRunCommandsWrite,
	ActPublishersRead, ActPublishersWrite, ActPackagesWrite, ActCatalogsRead, ActCatalogsWrite, ActExtensionPackagesRead,
	ActProtectionRead, ActProtectionWrite, ActProtectionDelete, ActScansRead, ActScansWrite, ActQuarantineRead, ActQuarantineRestore,
	ActAlertsRead, ActAlertsAcknowledge, ActSignaturesRead, ActSignaturesWrite,
	ActUpdatesRead, ActUpdatesAssess, ActUpdateRunsRead, ActUpdateRunsWrite,
	ActUpdateSchedulesRead, ActUpdateSchedulesWrite, ActUpdateSchedulesDelete,
	ActJITPoliciesRead, ActJITPoliciesWrite, ActJITPoliciesDelete, ActJITRequestsRead, ActJITRequestsWrite, ActJITRequestsApprove,
	ActSSHSessionsRead, ActSSHSessionsEnd,
	ActPolicyDefinitionsRead, ActPolicyDefinitionsWrite, ActPolicyDefinitionsDelete,
	ActPolicyAssignmentsRead, ActPolicyAssignmentsWrite, ActPolicyAssignmentsDelete,
	ActPolicyExemptionsRead, ActPolicyExemptionsWrite, ActPolicyExemptionsDelete,
	ActPolicyStatesRead, ActPolicyEvaluate, ActRemediationsRead, ActRemediationsWrite,
}
