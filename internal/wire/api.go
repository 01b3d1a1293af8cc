package wire

import (
	"encoding/json"
	"fmt"
	"time"
)

// Machine status values, exactly as in DESIGN.md §2.
const (
	StatusConnected    = "Connected"
	StatusDisconnected = "Disconnected"
	StatusExpired      = "Expired"
)

// Environment values detected by the agent (DESIGN.md §2).
const (
	EnvAWS    = "AWS"
	EnvGCP    = "GCP"
	EnvAzure  = "Azure"
	EnvOCI    = "OCI"
	EnvVMware = "VMware"
	EnvOnPrem = "OnPrem"
)

// Environments lists every valid environment value.
var Environments = []string{EnvAWS, EnvGCP, EnvAzure, EnvOCI, EnvVMware, EnvOnPrem}

// List is one page of a collection. NextLink, when set, is the full path and
// query of the next page (it carries an opaque skipToken).
type List[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// MarshalJSON writes an empty list as "value":[], never null, as the API
// document promises.
func (l List[T]) MarshalJSON() ([]byte, error) {
	if l.Value == nil {
		l.Value = []T{}
	}
	return json.Marshal(struct {
		Value    []T    `json:"value"`
		NextLink string `json:"nextLink,omitempty"`
	}{l.Value, l.NextLink})
}

// Subscription is the top-level scope: /subscriptions/{name}.
type Subscription struct {
	ID          string    `json:"id"` // resource id: /subscriptions/{name}
	Name        string    `json:"name"`
	DisplayName string    `json:"displayName,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	CreatedBy   string    `json:"createdBy,omitempty"`
}

// SubscriptionCreate is the body of PUT /api/v1/subscriptions/{name}.
type SubscriptionCreate struct {
	DisplayName string `json:"displayName,omitempty"`
}

// ResourceGroup is /subscriptions/{sub}/resourceGroups/{name}.
type ResourceGroup struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	SubscriptionID string            `json:"subscriptionId"`
	Tags           map[string]string `json:"tags,omitempty"`
	CreatedAt      time.Time         `json:"createdAt"`
	CreatedBy      string            `json:"createdBy,omitempty"`
}

// ResourceGroupCreate is the body of PUT .../resourceGroups/{name}.
type ResourceGroupCreate struct {
	Tags map[string]string `json:"tags,omitempty"`
}

// Machine is a connected server: /subscriptions/{sub}/resourceGroups/{rg}/machines/{name}.
type Machine struct {
	ID             string            `json:"id"` // resource id
	Name           string            `json:"name"`
	SubscriptionID string            `json:"subscriptionId"`
	ResourceGroup  string            `json:"resourceGroup"`
	MachineID      string            `json:"machineId"` // stable UUID of this onboarding
	Tags           map[string]string `json:"tags,omitempty"`
	Status         string            `json:"status"`
	LastHeartbeat  time.Time         `json:"lastHeartbeat,omitzero"`
	AgentVersion   string            `json:"agentVersion,omitempty"`
	// AgentSupported is false once the agent version is more than a year old.
	AgentSupported      bool              `json:"agentSupported"`
	Properties          MachineProperties `json:"properties"`
	AgentConfig         *AgentConfig      `json:"agentConfiguration,omitempty"` // read-only view of the local lock-down
	CreatedAt           time.Time         `json:"createdAt"`
	CreatedBy           string            `json:"createdBy,omitempty"`
	CertificateNotAfter time.Time         `json:"certificateNotAfter,omitzero"`
}

// MachineUpdate is the body of PATCH .../machines/{name}. Only tags can be
// changed by an operator; everything else is reported by the agent.
type MachineUpdate struct {
	Tags map[string]string `json:"tags"`
}

// MachineProperties is what the agent reports about its host.
type MachineProperties struct {
	OSName       string         `json:"osName,omitempty"`    // e.g. "debian"
	OSVersion    string         `json:"osVersion,omitempty"` // e.g. "12"
	OSPrettyName string         `json:"osPrettyName,omitempty"`
	OSType       string         `json:"osType,omitempty"` // "linux"
	Kernel       string         `json:"kernel,omitempty"`
	Arch         string         `json:"arch,omitempty"`
	Hostname     string         `json:"hostname,omitempty"`
	FQDN         string         `json:"fqdn,omitempty"`
	IPAddresses  []string       `json:"ipAddresses,omitempty"`
	CPUCount     int            `json:"cpuCount,omitempty"`
	CPUModel     string         `json:"cpuModel,omitempty"`
	MemoryBytes  uint64         `json:"memoryBytes,omitempty"`
	Environment  string         `json:"environment,omitempty"` // one of Environments
	Cloud        *CloudMetadata `json:"cloud,omitempty"`
	Manufacturer string         `json:"manufacturer,omitempty"` // DMI sys_vendor
	Model        string         `json:"model,omitempty"`        // DMI product_name
}

// CloudMetadata is what the cloud's instance metadata service says.
type CloudMetadata struct {
	InstanceID   string `json:"instanceId,omitempty"`
	Region       string `json:"region,omitempty"`
	Zone         string `json:"zone,omitempty"`
	AccountID    string `json:"accountId,omitempty"` // AWS account, GCP project, Azure subscription, OCI tenancy
	InstanceType string `json:"instanceType,omitempty"`
}

// AgentConfig is the agent's local configuration as reported to the server
// (DESIGN.md §4). The server can read it but never change it.
type AgentConfig struct {
	Mode                      string   `json:"config.mode"`
	ExtensionsAllowlist       []string `json:"extensions.allowlist"`
	ExtensionsBlocklist       []string `json:"extensions.blocklist"`
	ExtensionsEnabled         bool     `json:"extensions.enabled"`
	GuestConfigurationEnabled bool     `json:"guestconfiguration.enabled"`
	// HostChangesEnabled false is trial mode: the agent changes nothing on
	// the host (no handler, no run command, no remediation).
	HostChangesEnabled         bool     `json:"hostchanges.enabled"`
	IncomingConnectionsEnabled bool     `json:"incomingconnections.enabled"`
	IncomingConnectionsPorts   []string `json:"incomingconnections.ports"`
	ProxyURL                   string   `json:"proxy.url,omitempty"`
	ProxyBypass                []string `json:"proxy.bypass,omitempty"`
	ExtensionsCPULimit         int      `json:"extensions.agent.cpulimit"`
	GuestConfigurationCPULimit int      `json:"guestconfiguration.agent.cpulimit"`
	// SSHManage true: sshd trusts the control plane's SSH user CA for the
	// accounts SSHAdminUser and SSHUser.
	SSHManage    bool   `json:"ssh.manage"`
	SSHAdminUser string `json:"ssh.adminuser,omitempty"`
	SSHUser      string `json:"ssh.user,omitempty"`
}

// Principal types.
const (
	PrincipalUser             = "User"
	PrincipalServicePrincipal = "ServicePrincipal"
	PrincipalMachine          = "Machine"
)

// User is a person who signs in with a password.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
	Disabled  bool      `json:"disabled,omitempty"`
	// MustChangePassword: the user's next sign-in may only change the
	// password.
	MustChangePassword bool `json:"mustChangePassword,omitempty"`
}

// UserCreate is the body of POST /api/v1/users.
type UserCreate struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	// MustChangePassword makes the user change this password at first
	// sign-in.
	MustChangePassword bool `json:"mustChangePassword,omitempty"`
}

// ServicePrincipal is a non-human identity with a client id and secret.
type ServicePrincipal struct {
	ID          string    `json:"id"`       // resource id: /servicePrincipals/{clientId}
	ClientID    string    `json:"clientId"` // UUID
	DisplayName string    `json:"displayName"`
	CreatedAt   time.Time `json:"createdAt"`
	CreatedBy   string    `json:"createdBy,omitempty"`
	ExpiresAt   time.Time `json:"secretExpiresAt"`
}

// ServicePrincipalCreate is the body of POST /api/v1/servicePrincipals.
type ServicePrincipalCreate struct {
	DisplayName string `json:"displayName"`
	// ExpiresIn is how long the secret is valid, as a Go duration ("8760h").
	// Empty means one year.
	ExpiresIn string `json:"expiresIn,omitempty"`
}

// ServicePrincipalCreated is returned once, on creation: the only time the
// secret is ever shown.
type ServicePrincipalCreated struct {
	ServicePrincipal
	ClientSecret string `json:"clientSecret"`
}

// APIToken is a long-lived bearer token of a user or service principal.
type APIToken struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	PrincipalID string    `json:"principalId"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// APITokenCreate is the body of POST /api/v1/tokens.
type APITokenCreate struct {
	Name      string `json:"name"`
	ExpiresIn string `json:"expiresIn,omitempty"` // Go duration; empty = 30 days
}

// APITokenCreated carries the token value, shown once.
type APITokenCreated struct {
	APIToken
	Token string `json:"token"`
}

// RoleDefinition is a built-in or custom role.
type RoleDefinition struct {
	ID          string   `json:"id"`   // e.g. "Owner" for built-ins, a UUID for custom roles
	Name        string   `json:"name"` // display name, unique
	Description string   `json:"description,omitempty"`
	BuiltIn     bool     `json:"builtIn"`
	Actions     []string `json:"actions"`
	NotActions  []string `json:"notActions,omitempty"`
	// AssignableScopes limits where a custom role can be assigned; empty = "/".
	AssignableScopes []string `json:"assignableScopes,omitempty"`
}

// RoleAssignment grants a role to a principal at a scope (and below).
type RoleAssignment struct {
	ID            string    `json:"id"`
	PrincipalID   string    `json:"principalId"`
	PrincipalType string    `json:"principalType"`
	RoleID        string    `json:"roleDefinitionId"`
	RoleName      string    `json:"roleDefinitionName,omitempty"`
	Scope         string    `json:"scope"`
	CreatedAt     time.Time `json:"createdAt"`
	CreatedBy     string    `json:"createdBy,omitempty"`
}

// RoleAssignmentCreate is the body of POST /api/v1/roleAssignments. Role may
// be a role id or a role name; Principal may be a principal id, a user name or
// a service principal client id.
type RoleAssignmentCreate struct {
	Principal string `json:"principal"`
	Role      string `json:"role"`
	Scope     string `json:"scope"`
}

// Activity results.
const (
	ResultSucceeded = "Succeeded"
	ResultFailed    = "Failed"
	ResultDenied    = "Denied"
)

// ActivityEntry is one line of the activity log. Entries are append-only.
type ActivityEntry struct {
	ID            string    `json:"id"`
	Time          time.Time `json:"time"`
	CallerID      string    `json:"callerId"`
	Caller        string    `json:"caller"` // display name
	CallerType    string    `json:"callerType"`
	Action        string    `json:"action"`
	Scope         string    `json:"scope"`
	Result        string    `json:"result"`
	Status        int       `json:"httpStatus"`
	Message       string    `json:"message,omitempty"`
	CorrelationID string    `json:"correlationId"`
	SourceIP      string    `json:"sourceIp"`
	Method        string    `json:"method,omitempty"`
	Path          string    `json:"path,omitempty"`
	// Seq, PrevHash and Hash place a sealed entry in the tamper-evident
	// chain (internal/auditchain); absent for the second or so before the
	// server seals it.
	Seq      int64  `json:"seq,omitempty"`
	PrevHash string `json:"prevHash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// ChainLink names a position of the activity chain: an entry's Seq and
// Hash (Seq 0 and Hash "" is the start of the chain).
type ChainLink struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// String is SEQ:HASH, as corral activity verify prints and takes it.
func (l ChainLink) String() string { return fmt.Sprintf("%d:%s", l.Seq, l.Hash) }

// ActivityChainPage is a page of the activity chain in Seq order, with the
// chain's base (what its first kept entry follows) and head (its last
// sealed entry) when the page was read.
type ActivityChainPage struct {
	Base     ChainLink       `json:"base"`
	Head     ChainLink       `json:"head"`
	Value    []ActivityEntry `json:"value"`
	NextLink string          `json:"nextLink,omitempty"`
}

// DeviceCodeApproval is returned when an operator approves a device code.
type DeviceCodeApproval struct {
	UserCode      string `json:"userCode"`
	Subscription  string `json:"subscriptionId"`
	ResourceGroup string `json:"resourceGroup"`
	MachineName   string `json:"machineName,omitempty"`
	ApprovedBy    string `json:"approvedBy"`
}

// PendingDeviceCode is a device-code onboarding waiting for approval.
type PendingDeviceCode struct {
	UserCode      string    `json:"userCode"`
	Subscription  string    `json:"subscriptionId"`
	ResourceGroup string    `json:"resourceGroup"`
	MachineName   string    `json:"machineName,omitempty"`
	SourceIP      string    `json:"sourceIp,omitempty"`
	ExpiresAt     time.Time `json:"expiresAt"`
}

// Me describes the authenticated caller.
type Me struct {
	ID          string           `json:"id"`
	Name        string           `json:"name"`
	Type        string           `json:"type"`
	Assignments []RoleAssignment `json:"roleAssignments"`
	// PasswordChangeRequired: this session may only change the password
	// (PUT /api/v1/me/password).
	PasswordChangeRequired bool `json:"passwordChangeRequired,omitempty"`
}

// TokenResponse is the OAuth2 token endpoint's answer (RFC 6749 §5.1).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"` // "Bearer"
	ExpiresIn   int    `json:"expires_in"` // seconds
}

// OAuthError is the OAuth2 error body (RFC 6749 §5.2); the token endpoint
// returns it instead of ErrorResponse, as OAuth2 clients expect.
type OAuthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// DeviceCodeResponse is RFC 8628 §3.2.
type DeviceCodeResponse struct {
	DeviceCode      string `json:"device_code"`
	UserCode        string `json:"user_code"`
	VerificationURI string `json:"verification_uri"`
	ExpiresIn       int    `json:"expires_in"`
	Interval        int    `json:"interval"`
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status  string `json:"status"` // "ok" or "unavailable"
	Version string `json:"version"`
	Detail  string `json:"detail,omitempty"`
}
