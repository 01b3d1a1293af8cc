package httpapi

import (
	"net/http"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/wire"
)

func scopeRoot(*http.Request) string { return "/" }

func scopeSub(r *http.Request) string { return resource.Subscription(r.PathValue("sub")).String() }

func scopeRG(r *http.Request) string {
	return resource.ResourceGroup(r.PathValue("sub"), r.PathValue("rg")).String()
}

// machineRef is the machine named by the path of r.
func machineRef(r *http.Request) resource.MachineRef {
	return resource.MachineRef{Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Name: r.PathValue("name")}
}

func scopeMachine(r *http.Request) string { return machineRef(r).ID().String() }

// scopeQuery is the scope given in ?scope=, "/" by default.
func scopeQuery(r *http.Request) string {
	if s := r.URL.Query().Get("scope"); s != "" {
		return s
	}
	return "/"
}

const (
	subPath     = "/api/v1/subscriptions/{sub}"
	rgPath      = subPath + "/resourceGroups/{rg}"
	machinePath = rgPath + "/machines/{name}"
	extPath     = machinePath + "/extensions/{ext}"
	runPath     = machinePath + "/runCommands/{run}"
	pubPath     = "/api/v1/publishers/{name}"
)

// Actions of routes that are not role-governed (public and agent routes);
// they still name what happened in the activity log.
const (
	actIssueToken      = "Corral.Identity/oauth2/token/action"
	actDeviceCode      = "Corral.Identity/oauth2/devicecode/action"
	actAgentStream     = "Corral.HybridCompute/machines/stream/action"
	actAgentDesired    = "Corral.HybridCompute/machines/desiredState/read"
	actAgentReport     = "Corral.HybridCompute/machines/reports/action"
	actAgentRenew      = "Corral.HybridCompute/machines/certificate/action"
	actAgentDisconnect = "Corral.HybridCompute/machines/disconnect/action"
	actAgentCatalog    = "Corral.HybridCompute/machines/extensionCatalogs/read"
	actAgentPackage    = "Corral.HybridCompute/machines/extensionPackages/read"
	actPublicRead      = "Corral.Server/read"
)

func (a *API) buildRoutes() []Route {
	pub := func(m, p, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: actPublicRead, Auth: AuthPublic, Summary: summary, Handle: h}
	}
	api := func(m, p, action string, scope func(*http.Request) string, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: action, Auth: AuthBearer, Scope: scope, Summary: summary, Handle: h}
	}
	inHandler := func(rt Route) Route { rt.CheckInHandler = true; return rt }
	agent := func(m, p, action, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: action, Auth: AuthMachine, Summary: summary, Handle: h,
			Scope: func(r *http.Request) string { return machineScopeOf(r) }}
	}
	routes := []Route{
		pub("GET", "/api/v1/openapi.json", "The OpenAPI document of this API.", a.getOpenAPI),
		{Method: "POST", Pattern: wire.PathToken, Action: actIssueToken, Auth: AuthPublic, Scope: scopeRoot,
			Summary: "OAuth2 token endpoint: client_credentials, password and device_code grants.", Handle: a.postToken},
		{Method: "POST", Pattern: wire.PathDeviceCode, Action: actDeviceCode, Auth: AuthPublic,
			Summary: "OAuth2 device authorization (RFC 8628) for machine onboarding.", Handle: a.postDeviceCode},

		api("GET", "/api/v1/me", authz.ActSelfRead, scopeRoot, "The calling principal and its role assignments.", a.getMe),

		inHandler(api("GET", "/api/v1/subscriptions", authz.ActSubscriptionsRead, scopeRoot, "List the subscriptions the caller can read.", a.listSubscriptions)),
		api("GET", subPath, authz.ActSubscriptionsRead, scopeSub, "Get a subscription.", a.getSubscription),
		api("PUT", subPath, authz.ActSubscriptionsWrite, scopeSub, "Create a subscription.", a.putSubscription),

		api("GET", subPath+"/resourceGroups", authz.ActResourceGroupsRead, scopeSub, "List resource groups.", a.listResourceGroups),
		api("GET", rgPath, authz.ActResourceGroupsRead, scopeRG, "Get a resource group.", a.getResourceGroup),
		api("PUT", rgPath, authz.ActResourceGroupsWrite, scopeRG, "Create a resource group.", a.putResourceGroup),
		api("DELETE", rgPath, authz.ActResourceGroupsDelete, scopeRG, "Delete an empty resource group.", a.deleteResourceGroup),

		api("GET", subPath+"/machines", authz.ActMachinesRead, scopeSub, "List machines in a subscription, with filters.", a.listMachines),
		api("GET", rgPath+"/machines", authz.ActMachinesRead, scopeRG, "List machines in a resource group, with filters.", a.listMachines),
		api("GET", machinePath, authz.ActMachinesRead, scopeMachine, "Get a machine.", a.getMachine),
		api("PATCH", machinePath, authz.ActMachinesWrite, scopeMachine, "Update a machine's tags.", a.patchMachine),
		api("DELETE", machinePath, authz.ActMachinesDelete, scopeMachine, "Delete a machine (its agent is told to stop).", a.deleteMachine),

		inHandler(api("GET", "/api/v1/deviceCodes", authz.ActMachinesOnboard, scopeRoot, "List pending device-code onboardings the caller may approve.", a.listDeviceCodes)),
		inHandler(api("POST", "/api/v1/deviceCodes/{code}/approve", authz.ActMachinesOnboard, scopeRoot, "Approve a device-code onboarding.", a.approveDeviceCode)),

		api("GET", "/api/v1/roleDefinitions", authz.ActRoleDefinitionsRead, scopeRoot, "List built-in and custom roles.", a.listRoleDefinitions),
		api("GET", "/api/v1/roleDefinitions/{id}", authz.ActRoleDefinitionsRead, scopeRoot, "Get a role.", a.getRoleDefinition),
		api("PUT", "/api/v1/roleDefinitions/{id}", authz.ActRoleDefinitionsWrite, scopeRoot, "Create or update a custom role.", a.putRoleDefinition),
		api("DELETE", "/api/v1/roleDefinitions/{id}", authz.ActRoleDefinitionsDelete, scopeRoot, "Delete an unassigned custom role.", a.deleteRoleDefinition),

		api("GET", "/api/v1/roleAssignments", authz.ActRoleAssignmentsRead, scopeQuery, "List role assignments at or below a scope.", a.listRoleAssignments),
		inHandler(api("POST", "/api/v1/roleAssignments", authz.ActRoleAssignmentsWrite, scopeRoot, "Assign a role to a principal at a scope.", a.createRoleAssignment)),
		inHandler(api("GET", "/api/v1/roleAssignments/{id}", authz.ActRoleAssignmentsRead, scopeRoot, "Get a role assignment.", a.getRoleAssignment)),
		inHandler(api("DELETE", "/api/v1/roleAssignments/{id}", authz.ActRoleAssignmentsDelete, scopeRoot, "Delete a role assignment.", a.deleteRoleAssignment)),

		api("GET", "/api/v1/users", authz.ActUsersRead, scopeRoot, "List users.", a.listUsers),
		api("POST", "/api/v1/users", authz.ActUsersWrite, scopeRoot, "Create a user.", a.createUser),
		api("DELETE", "/api/v1/users/{name}", authz.ActUsersDelete, scopeRoot, "Delete a user, their tokens and role assignments.", a.deleteUser),

		api("GET", "/api/v1/servicePrincipals", authz.ActServicePrincipalsRead, scopeRoot, "List service principals.", a.listServicePrincipals),
		api("POST", "/api/v1/servicePrincipals", authz.ActServicePrincipalsWrite, scopeRoot, "Create a service principal; the secret is returned once.", a.createServicePrincipal),
		api("GET", "/api/v1/servicePrincipals/{id}", authz.ActServicePrincipalsRead, scopeRoot, "Get a service principal.", a.getServicePrincipal),
		api("DELETE", "/api/v1/servicePrincipals/{id}", authz.ActServicePrincipalsDelete, scopeRoot, "Delete a service principal, its tokens and role assignments.", a.deleteServicePrincipal),

		api("GET", "/api/v1/tokens", authz.ActSelfRead, scopeRoot, "List the caller's API tokens.", a.listTokens),
		api("POST", "/api/v1/tokens", authz.ActSelfWrite, scopeRoot, "Create an API token for the caller; the token is returned once.", a.createToken),
		api("DELETE", "/api/v1/tokens/{id}", authz.ActSelfWrite, scopeRoot, "Delete one of the caller's API tokens.", a.deleteToken),

		api("GET", "/api/v1/activityLogs", authz.ActActivityLogsRead, scopeQuery, "Query the activity log.", a.listActivity),

		api("GET", "/api/v1/publishers", authz.ActPublishersRead, scopeRoot, "List extension publishers.", a.listPublishers),
		api("GET", pubPath, authz.ActPublishersRead, scopeRoot, "Get an extension publisher.", a.getPublisher),
		api("PUT", pubPath, authz.ActPublishersWrite, scopeRoot, "Register a publisher's ed25519 public key (PublisherCreate).", a.putPublisher),
		api("POST", pubPath+"/packages", authz.ActPackagesWrite, scopeRoot, "Upload an extension package: the raw tar.gz archive as the body.", a.postPackage),
		api("GET", pubPath+"/catalog", authz.ActCatalogsRead, scopeRoot, "Get the publisher's current signed catalog.", a.getCatalog),
		api("PUT", pubPath+"/catalog", authz.ActCatalogsWrite, scopeRoot, "Upload the publisher's signed catalog (SignedCatalog).", a.putCatalog),
		inHandler(api("GET", "/api/v1/extensionPackages", authz.ActExtensionPackagesRead, scopeRoot, "List uploaded extension packages, with filters (allowed to whoever holds the action at any scope: the list is global).", a.listExtensionPackages)),

		api("GET", machinePath+"/extensions", authz.ActExtensionsRead, scopeMachine, "List a machine's extensions.", a.listMachineExtensions),
		api("GET", extPath, authz.ActExtensionsRead, scopeExtension, "Get an extension of a machine.", a.getMachineExtension),
		api("PUT", extPath, authz.ActExtensionsWrite, scopeExtension, "Install, reconfigure or upgrade an extension (MachineExtensionSet).", a.putMachineExtension),
		api("DELETE", extPath, authz.ActExtensionsDelete, scopeExtension, "Remove an extension from a machine (202, state Deleting).", a.deleteMachineExtension),
		api("GET", machinePath+"/runCommands", authz.ActRunCommandsRead, scopeMachine, "List a machine's run commands, newest first.", a.listRunCommands),
		api("GET", runPath, authz.ActRunCommandsRead, scopeRunCommand, "Get a run command with its result.", a.getRunCommand),
		api("PUT", runPath, authz.ActRunCommandsWrite, scopeRunCommand, "Run a script or command on a machine (RunCommandCreate).", a.putRunCommand),

		{Method: "POST", Pattern: wire.PathConnect, Action: authz.ActMachinesOnboard, Auth: AuthBearer, CheckInHandler: true,
			AllowRestricted: true, Scope: scopeRoot, Summary: "Onboard a machine: sign its CSR and create the resource.", Handle: a.postConnect},
		agent("GET", wire.PathStream, actAgentStream, "The agent's push channel (WebSocket).", a.getStream),
		agent("GET", wire.PathDesiredState, actAgentDesired, "The machine's desired state.", a.getDesired),
		agent("POST", wire.PathReports, actAgentReport, "Deliver a batch of agent reports.", a.postReports),
		agent("POST", wire.PathCertificate, actAgentRenew, "Renew the machine's client certificate.", a.postRenew),
		agent("DELETE", wire.PathMachine, actAgentDisconnect, "Disconnect: delete the machine resource.", a.deleteSelf),
		agent("GET", wire.PathCatalogs+"{publisher}", actAgentCatalog, "A publisher's signed catalog.", a.getAgentCatalog),
		agent("GET", wire.PathPackages+"{digest}", actAgentPackage, "A package archive named by the machine's desired state.", a.getAgentPackage),
	}
	routes = append(routes, a.updatesRoutes()...)
	return routes
}
