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
	actAgentTunnel     = "Corral.HybridCompute/machines/tunnels/action"
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
	forPasswordChange := func(rt Route) Route { rt.ForPasswordChange = true; return rt }
	streams := func(rt Route) Route { rt.Streams = true; return rt }
	agent := func(m, p, action, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: action, Auth: AuthMachine, Summary: summary, Handle: h,
			Scope: func(r *http.Request) string { return machineScopeOf(r) }}
	}
	// described sets a route's API description (see Route).
	type desc struct {
		req, resp any
		status    int
		also      []int
		query     []QueryParam
		errs      []int
	}
	d := func(rt Route, x desc) Route {
		rt.Request, rt.Response, rt.Status, rt.AlsoStatus, rt.Query, rt.Errors = x.req, x.resp, x.status, x.also, x.query, x.errs
		return rt
	}
	const (
		ok      = http.StatusOK
		created = http.StatusCreated
		none    = http.StatusNoContent
		e400    = http.StatusBadRequest
		e404    = http.StatusNotFound
		e409    = http.StatusConflict
	)
	machineFilters := pageQuery(
		QueryParam{Name: "environment", Type: "string", Enum: wire.Environments, Description: "Only machines in this environment (any letter case)."},
		QueryParam{Name: "status", Type: "string", Enum: []string{wire.StatusConnected, wire.StatusDisconnected, wire.StatusExpired},
			Description: "Only machines in this status (any letter case)."},
		QueryParam{Name: "os", Type: "string", Description: "Only machines whose OS name is this (e.g. debian)."},
		QueryParam{Name: "name", Type: "string", Description: "Only machines whose name contains this."},
		QueryParam{Name: "tag", Type: "string", Description: "Only machines with this tag: KEY (any value) or KEY=VALUE."},
	)
	scopeParam := QueryParam{Name: "scope", Type: "string", Default: "/", Description: "The scope: / or a resource id; the list holds what is at or below it."}
	routes := []Route{
		d(pub("GET", "/api/v1/openapi.json", "The OpenAPI document of this API.", a.getOpenAPI), desc{resp: map[string]any{}}),
		d(Route{Method: "POST", Pattern: wire.PathToken, Action: actIssueToken, Auth: AuthPublic, Scope: scopeRoot,
			Summary: "OAuth2 token endpoint: client_credentials, password and device_code grants.", Handle: a.postToken},
			desc{req: Form{tokenRequest{}}, resp: wire.TokenResponse{}, errs: []int{http.StatusUnauthorized, http.StatusTooManyRequests}}),
		d(Route{Method: "POST", Pattern: wire.PathDeviceCode, Action: actDeviceCode, Auth: AuthPublic,
			Summary: "OAuth2 device authorization (RFC 8628) for machine onboarding.", Handle: a.postDeviceCode},
			desc{req: Form{deviceCodeRequest{}}, resp: wire.DeviceCodeResponse{}}),

		d(forPasswordChange(api("GET", "/api/v1/me", authz.ActSelfRead, scopeRoot, "The calling principal and its role assignments.", a.getMe)), desc{resp: wire.Me{}}),

		d(inHandler(api("GET", "/api/v1/subscriptions", authz.ActSubscriptionsRead, scopeRoot, "List the subscriptions the caller can read.", a.listSubscriptions)),
			desc{resp: wire.List[wire.Subscription]{}}),
		d(api("GET", subPath, authz.ActSubscriptionsRead, scopeSub, "Get a subscription.", a.getSubscription), desc{resp: wire.Subscription{}}),
		d(api("PUT", subPath, authz.ActSubscriptionsWrite, scopeSub, "Create a subscription.", a.putSubscription),
			desc{req: wire.SubscriptionCreate{}, resp: wire.Subscription{}, status: created, errs: []int{e409}}),

		d(api("GET", subPath+"/resourceGroups", authz.ActResourceGroupsRead, scopeSub, "List resource groups.", a.listResourceGroups),
			desc{resp: wire.List[wire.ResourceGroup]{}, query: pageQuery()}),
		d(api("GET", rgPath, authz.ActResourceGroupsRead, scopeRG, "Get a resource group.", a.getResourceGroup), desc{resp: wire.ResourceGroup{}}),
		d(api("PUT", rgPath, authz.ActResourceGroupsWrite, scopeRG, "Create a resource group.", a.putResourceGroup),
			desc{req: wire.ResourceGroupCreate{}, resp: wire.ResourceGroup{}, status: created, errs: []int{e409}}),
		d(api("DELETE", rgPath, authz.ActResourceGroupsDelete, scopeRG, "Delete an empty resource group.", a.deleteResourceGroup),
			desc{status: none, errs: []int{e409}}),

		d(api("GET", subPath+"/machines", authz.ActMachinesRead, scopeSub, "List machines in a subscription, with filters.", a.listMachines),
			desc{resp: wire.List[wire.Machine]{}, query: machineFilters}),
		d(api("GET", rgPath+"/machines", authz.ActMachinesRead, scopeRG, "List machines in a resource group, with filters.", a.listMachines),
			desc{resp: wire.List[wire.Machine]{}, query: machineFilters}),
		d(api("GET", machinePath, authz.ActMachinesRead, scopeMachine, "Get a machine.", a.getMachine), desc{resp: wire.Machine{}}),
		d(api("PATCH", machinePath, authz.ActMachinesWrite, scopeMachine, "Update a machine's tags.", a.patchMachine),
			desc{req: wire.MachineUpdate{}, resp: wire.Machine{}}),
		d(api("DELETE", machinePath, authz.ActMachinesDelete, scopeMachine, "Delete a machine (its agent is told to stop).", a.deleteMachine),
			desc{status: none}),
		d(streams(api("POST", machinePath+"/tunnel", authz.ActMachinesLogin, scopeMachine,
			"Connect to a local port of the machine through its agent's outbound connection (HTTP/2, both bodies stay open): what corral ssh-proxy uses.", a.postMachineTunnel)),
			desc{req: Raw{ContentTypes: []string{"application/octet-stream"}, Description: "The bytes for the machine's port (e.g. an SSH client's)."},
				resp:  Raw{ContentTypes: []string{"application/octet-stream"}, Description: "The bytes from the machine's port, until either side ends."},
				query: tunnelQuery,
				errs:  []int{http.StatusConflict, http.StatusUpgradeRequired, http.StatusServiceUnavailable}}),

		d(inHandler(api("GET", "/api/v1/deviceCodes", authz.ActMachinesOnboard, scopeRoot, "List pending device-code onboardings the caller may approve.", a.listDeviceCodes)),
			desc{resp: wire.List[wire.PendingDeviceCode]{}}),
		d(inHandler(api("POST", "/api/v1/deviceCodes/{code}/approve", authz.ActMachinesOnboard, scopeRoot, "Approve a device-code onboarding.", a.approveDeviceCode)),
			desc{req: NoBody{}, resp: wire.DeviceCodeApproval{}, errs: []int{e409}}),

		d(api("GET", "/api/v1/roleDefinitions", authz.ActRoleDefinitionsRead, scopeRoot, "List built-in and custom roles.", a.listRoleDefinitions),
			desc{resp: wire.List[wire.RoleDefinition]{}}),
		d(api("GET", "/api/v1/roleDefinitions/{id}", authz.ActRoleDefinitionsRead, scopeRoot, "Get a role.", a.getRoleDefinition),
			desc{resp: wire.RoleDefinition{}}),
		d(api("PUT", "/api/v1/roleDefinitions/{id}", authz.ActRoleDefinitionsWrite, scopeRoot, "Create or update a custom role.", a.putRoleDefinition),
			desc{req: wire.RoleDefinition{}, resp: wire.RoleDefinition{}, status: created, also: []int{ok}, errs: []int{e409}}),
		d(api("DELETE", "/api/v1/roleDefinitions/{id}", authz.ActRoleDefinitionsDelete, scopeRoot, "Delete an unassigned custom role.", a.deleteRoleDefinition),
			desc{status: none, errs: []int{e400, e409}}),

		d(api("GET", "/api/v1/roleAssignments", authz.ActRoleAssignmentsRead, scopeQuery, "List role assignments at or below a scope.", a.listRoleAssignments),
			desc{resp: wire.List[wire.RoleAssignment]{}, query: []QueryParam{scopeParam,
				{Name: "principal", Type: "string", Description: "Only the assignments of this principal (id, user name or client id)."}}}),
		d(inHandler(api("POST", "/api/v1/roleAssignments", authz.ActRoleAssignmentsWrite, scopeRoot, "Assign a role to a principal at a scope.", a.createRoleAssignment)),
			desc{req: wire.RoleAssignmentCreate{}, resp: wire.RoleAssignment{}, status: created, errs: []int{e404, e409}}),
		d(inHandler(api("GET", "/api/v1/roleAssignments/{id}", authz.ActRoleAssignmentsRead, scopeRoot, "Get a role assignment.", a.getRoleAssignment)),
			desc{resp: wire.RoleAssignment{}}),
		d(inHandler(api("DELETE", "/api/v1/roleAssignments/{id}", authz.ActRoleAssignmentsDelete, scopeRoot, "Delete a role assignment.", a.deleteRoleAssignment)),
			desc{status: none}),

		d(api("GET", "/api/v1/users", authz.ActUsersRead, scopeRoot, "List users.", a.listUsers), desc{resp: wire.List[wire.User]{}}),
		d(api("POST", "/api/v1/users", authz.ActUsersWrite, scopeRoot, "Create a user.", a.createUser),
			desc{req: wire.UserCreate{}, resp: wire.User{}, status: created, errs: []int{e409}}),
		d(api("DELETE", "/api/v1/users/{name}", authz.ActUsersDelete, scopeRoot, "Delete a user, their tokens and role assignments.", a.deleteUser),
			desc{status: none, errs: []int{e400}}),

		d(api("GET", "/api/v1/servicePrincipals", authz.ActServicePrincipalsRead, scopeRoot, "List service principals.", a.listServicePrincipals),
			desc{resp: wire.List[wire.ServicePrincipal]{}}),
		d(api("POST", "/api/v1/servicePrincipals", authz.ActServicePrincipalsWrite, scopeRoot, "Create a service principal; the secret is returned once.", a.createServicePrincipal),
			desc{req: wire.ServicePrincipalCreate{}, resp: wire.ServicePrincipalCreated{}, status: created}),
		d(api("GET", "/api/v1/servicePrincipals/{id}", authz.ActServicePrincipalsRead, scopeRoot, "Get a service principal.", a.getServicePrincipal),
			desc{resp: wire.ServicePrincipal{}}),
		d(api("DELETE", "/api/v1/servicePrincipals/{id}", authz.ActServicePrincipalsDelete, scopeRoot, "Delete a service principal, its tokens and role assignments.", a.deleteServicePrincipal),
			desc{status: none}),

		d(api("GET", "/api/v1/tokens", authz.ActSelfRead, scopeRoot, "List the caller's API tokens.", a.listTokens), desc{resp: wire.List[wire.APIToken]{}}),
		d(api("POST", "/api/v1/tokens", authz.ActSelfWrite, scopeRoot, "Create an API token for the caller; the token is returned once.", a.createToken),
			desc{req: wire.APITokenCreate{}, resp: wire.APITokenCreated{}, status: created}),
		d(api("DELETE", "/api/v1/tokens/{id}", authz.ActSelfWrite, scopeRoot, "Delete one of the caller's API tokens.", a.deleteToken), desc{status: none}),

		d(api("GET", "/api/v1/activityLogs", authz.ActActivityLogsRead, scopeQuery, "Query the activity log.", a.listActivity),
			desc{resp: wire.List[wire.ActivityEntry]{}, query: pageQuery(scopeParam,
				QueryParam{Name: "caller", Type: "string", Description: "Only entries of this caller id."},
				QueryParam{Name: "action", Type: "string", Description: "Only entries of this action; a trailing * matches any suffix."},
				QueryParam{Name: "result", Type: "string", Enum: []string{wire.ResultSucceeded, wire.ResultFailed, wire.ResultDenied}, Description: "Only entries with this result (any letter case)."},
				QueryParam{Name: "from", Type: "string", Format: "date-time", Description: "Only entries at or after this time (RFC 3339)."},
				QueryParam{Name: "to", Type: "string", Format: "date-time", Description: "Only entries before this time (RFC 3339)."},
				QueryParam{Name: "order", Type: "string", Enum: []string{"desc", "asc"}, Default: "desc", Description: "desc: newest first; asc: oldest first (exports)."})}),
		d(api("GET", "/api/v1/activityChain", authz.ActActivityLogsRead, scopeRoot,
			"The tamper-evident activity chain in order, with its base and head, for verifying it (corral activity verify).", a.getActivityChain),
			desc{resp: wire.ActivityChainPage{}, query: []QueryParam{
				{Name: "after", Type: "integer", Min: 0, Default: 0, Description: "Entries after this sequence number."},
				{Name: "$top", Type: "integer", Min: 1, Max: 1000, Default: 100, Description: "The most entries to return in one page."}}}),

		d(api("GET", "/api/v1/publishers", authz.ActPublishersRead, scopeRoot, "List extension publishers.", a.listPublishers),
			desc{resp: wire.List[wire.Publisher]{}}),
		d(api("GET", pubPath, authz.ActPublishersRead, scopeRoot, "Get an extension publisher.", a.getPublisher), desc{resp: wire.Publisher{}}),
		d(api("PUT", pubPath, authz.ActPublishersWrite, scopeRoot, "Register a publisher's ed25519 public key (PublisherCreate).", a.putPublisher),
			desc{req: wire.PublisherCreate{}, resp: wire.Publisher{}, status: created, also: []int{ok}, errs: []int{e409}}),
		d(api("POST", pubPath+"/packages", authz.ActPackagesWrite, scopeRoot, "Upload an extension package: the raw tar.gz archive as the body.", a.postPackage),
			desc{req: Raw{ContentTypes: []string{"application/gzip", "application/octet-stream"}, Description: "The package archive (tar.gz with manifest.json), at most 64 MiB."},
				resp: wire.ExtensionPackage{}, status: created, also: []int{ok}, errs: []int{e409}}),
		d(api("GET", pubPath+"/catalog", authz.ActCatalogsRead, scopeRoot, "Get the publisher's current signed catalog.", a.getCatalog),
			desc{resp: wire.SignedCatalog{}}),
		d(api("PUT", pubPath+"/catalog", authz.ActCatalogsWrite, scopeRoot, "Upload the publisher's signed catalog (SignedCatalog).", a.putCatalog),
			desc{req: wire.SignedCatalog{}, resp: wire.SignedCatalog{}, errs: []int{e409}}),
		d(inHandler(api("GET", "/api/v1/extensionPackages", authz.ActExtensionPackagesRead, scopeRoot, "List uploaded extension packages, with filters (allowed to whoever holds the action at any scope: the list is global).", a.listExtensionPackages)),
			desc{resp: wire.List[wire.ExtensionPackage]{}, query: pageQuery(
				QueryParam{Name: "publisher", Type: "string", Description: "Only packages of this publisher."},
				QueryParam{Name: "type", Type: "string", Description: "Only packages of this extension type."})}),

		d(api("GET", machinePath+"/extensions", authz.ActExtensionsRead, scopeMachine, "List a machine's extensions.", a.listMachineExtensions),
			desc{resp: wire.List[wire.MachineExtension]{}}),
		d(api("GET", extPath, authz.ActExtensionsRead, scopeExtension, "Get an extension of a machine.", a.getMachineExtension),
			desc{resp: wire.MachineExtension{}}),
		d(api("PUT", extPath, authz.ActExtensionsWrite, scopeExtension, "Install, reconfigure or upgrade an extension (MachineExtensionSet).", a.putMachineExtension),
			desc{req: wire.MachineExtensionSet{}, resp: wire.MachineExtension{}, status: created, also: []int{ok}, errs: []int{e409}}),
		d(api("DELETE", extPath, authz.ActExtensionsDelete, scopeExtension, "Remove an extension from a machine (202, state Deleting).", a.deleteMachineExtension),
			desc{resp: wire.MachineExtension{}, status: http.StatusAccepted}),
		d(api("GET", machinePath+"/runCommands", authz.ActRunCommandsRead, scopeMachine, "List a machine's run commands, newest first.", a.listRunCommands),
			desc{resp: wire.List[wire.RunCommand]{}, query: pageQuery()}),
		d(api("GET", runPath, authz.ActRunCommandsRead, scopeRunCommand, "Get a run command with its result.", a.getRunCommand),
			desc{resp: wire.RunCommand{}}),
		d(api("PUT", runPath, authz.ActRunCommandsWrite, scopeRunCommand, "Run a script or command on a machine (RunCommandCreate).", a.putRunCommand),
			desc{req: wire.RunCommandCreate{}, resp: wire.RunCommand{}, status: created, errs: []int{e409}}),

		d(Route{Method: "POST", Pattern: wire.PathConnect, Action: authz.ActMachinesOnboard, Auth: AuthBearer, CheckInHandler: true,
			AllowRestricted: true, Scope: scopeRoot, Summary: "Onboard a machine: sign its CSR and create the resource.", Handle: a.postConnect},
			desc{req: wire.ConnectRequest{}, resp: wire.ConnectResponse{}, status: created, errs: []int{e404, e409, http.StatusServiceUnavailable}}),
		d(streams(agent("POST", wire.PathChannel, actAgentStream, "The agent's push channel over HTTP/2, on the agent's one connection.", a.postChannel)),
			desc{req: Raw{ContentTypes: []string{"application/x-ndjson"}, Description: "Stays open: one JSON StreamMessage per line from the agent — hello first (within 10 s), then heartbeats and pongs."},
				resp: Raw{ContentTypes: []string{"application/x-ndjson"}, Description: "Stays open: one JSON StreamMessage per line from the server — welcome (with the heartbeat interval), then sync, ping, tunnel, close and goodbye."},
				errs: []int{http.StatusUpgradeRequired, http.StatusServiceUnavailable}}),
		d(agent("GET", wire.PathStream, actAgentStream, "The agent's push channel over a WebSocket (the HTTP/1.1 fallback).", a.getStream),
			desc{resp: WebSocket{Message: wire.StreamMessage{}, Description: "The agent sends hello first (within 10 s) and heartbeats; " +
				"the server answers welcome (with the heartbeat interval), then pushes sync when the desired state changes, ping, and goodbye " +
				"when the machine's identity is revoked."}, status: http.StatusSwitchingProtocols, errs: []int{http.StatusServiceUnavailable}}),
		d(streams(agent("POST", wire.PathTunnels+"{id}", actAgentTunnel, "The agent's side of a tunnel the server asked for (HTTP/2, both bodies open).", a.postAgentTunnel)),
			desc{req: Raw{ContentTypes: []string{"application/octet-stream"}, Description: "A TunnelVerdict JSON line, then the bytes from the machine's local port."},
				resp: Raw{ContentTypes: []string{"application/octet-stream"}, Description: "The bytes for the machine's local port, until either side ends."},
				errs: []int{http.StatusUpgradeRequired}}),
		d(agent("GET", wire.PathDesiredState, actAgentDesired, "The machine's desired state.", a.getDesired), desc{resp: wire.DesiredState{}}),
		d(agent("POST", wire.PathReports, actAgentReport, "Deliver a batch of agent reports.", a.postReports),
			desc{req: wire.ReportBatch{}, resp: wire.ReportAck{}}),
		d(agent("POST", wire.PathCertificate, actAgentRenew, "Renew the machine's client certificate.", a.postRenew),
			desc{req: wire.RenewRequest{}, resp: wire.RenewResponse{}}),
		d(agent("DELETE", wire.PathMachine, actAgentDisconnect, "Disconnect: delete the machine resource.", a.deleteSelf), desc{status: none}),
		d(agent("GET", wire.PathCatalogs+"{publisher}", actAgentCatalog, "A publisher's signed catalog.", a.getAgentCatalog),
			desc{resp: wire.SignedCatalog{}}),
		d(agent("GET", wire.PathPackages+"{digest}", actAgentPackage, "A package archive named by the machine's desired state.", a.getAgentPackage),
			desc{resp: Raw{ContentTypes: []string{"application/gzip"}, Description: "The package archive, byte for byte as published."}}),
	}
	routes = append(routes, a.protectionRoutes()...)
	routes = append(routes, a.securityRoutes()...)
	routes = append(routes, a.updatesRoutes()...)
	routes = append(routes, a.accessRoutes()...)
	routes = append(routes, a.bulkRoutes()...)
	routes = append(routes, a.policyRoutes()...)
	return routes
}
