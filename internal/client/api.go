package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// PasswordToken signs a user in with the OAuth2 password grant.
func (c *Client) PasswordToken(ctx context.Context, username, password string) (wire.TokenResponse, error) {
	return c.formToken(ctx, url.Values{"grant_type": {wire.GrantPassword}, "username": {username}, "password": {password}})
}

// ClientCredentialsToken gets a service principal token (client_credentials grant).
func (c *Client) ClientCredentialsToken(ctx context.Context, clientID, secret string) (wire.TokenResponse, error) {
	return c.formToken(ctx, url.Values{"grant_type": {wire.GrantClientCredentials}, "client_id": {clientID}, "client_secret": {secret}})
}

func (c *Client) formToken(ctx context.Context, form url.Values) (wire.TokenResponse, error) {
	var tr wire.TokenResponse
	if err := c.postForm(ctx, wire.PathToken, form, &tr); err != nil {
		return tr, err
	}
	if tr.AccessToken == "" {
		return tr, errors.New("the token endpoint returned no access token")
	}
	return tr, nil
}

func (c *Client) postForm(ctx context.Context, path string, form url.Values, out any) error {
	target, err := c.resolve(path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	return c.send(req, out)
}

// Me describes the caller.
func (c *Client) Me(ctx context.Context) (wire.Me, error) {
	var me wire.Me
	err := c.do(ctx, http.MethodGet, "/api/v1/me", nil, &me)
	return me, err
}

// ListSubscriptions lists the subscriptions the caller can read.
func (c *Client) ListSubscriptions(ctx context.Context) ([]wire.Subscription, error) {
	return listAll[wire.Subscription](ctx, c, "/api/v1/subscriptions", 0)
}

// APIBase is where the API's paths start.
const APIBase = "/api/v1"

// ResourcePath is the API path of a resource, its names path-escaped.
func ResourcePath(id resource.ID) string { return APIBase + id.Path() }

func resourcePath(id resource.ID) string { return ResourcePath(id) }

func rgPath(sub, rg string) string { return resourcePath(resource.ResourceGroup(sub, rg)) }

// CreateResourceGroup creates resource group name in subscription sub.
func (c *Client) CreateResourceGroup(ctx context.Context, sub, name string, tags map[string]string) (wire.ResourceGroup, error) {
	var g wire.ResourceGroup
	err := c.do(ctx, http.MethodPut, rgPath(sub, name), wire.ResourceGroupCreate{Tags: tags}, &g)
	return g, err
}

// GetResourceGroup reads one resource group.
func (c *Client) GetResourceGroup(ctx context.Context, sub, name string) (wire.ResourceGroup, error) {
	var g wire.ResourceGroup
	err := c.do(ctx, http.MethodGet, rgPath(sub, name), nil, &g)
	return g, err
}

// ListResourceGroups lists every resource group of a subscription.
func (c *Client) ListResourceGroups(ctx context.Context, sub string) ([]wire.ResourceGroup, error) {
	return listAll[wire.ResourceGroup](ctx, c, resourcePath(resource.Subscription(sub))+"/"+resource.ResourceGroups, 0)
}

// DeleteResourceGroup deletes an empty resource group.
func (c *Client) DeleteResourceGroup(ctx context.Context, sub, name string) error {
	return c.do(ctx, http.MethodDelete, rgPath(sub, name), nil, nil)
}

// MachineFilter selects machines. Subscription is required; the other fields
// are optional filters (see docs/api.md).
type MachineFilter struct {
	Subscription  string
	ResourceGroup string
	Environment   string
	Status        string
	OS            string
	Tag           string // "key" or "key=value"
	Name          string // substring
	// PageSize is $top per request (0 = server default).
	PageSize int
	// Max stops after this many machines (0 = all pages).
	Max int
}

// ListMachines lists machines, following nextLink across pages.
func (c *Client) ListMachines(ctx context.Context, f MachineFilter) ([]wire.Machine, error) {
	if f.Subscription == "" {
		return nil, errors.New("subscription is required")
	}
	p := resourcePath(resource.Subscription(f.Subscription))
	if f.ResourceGroup != "" {
		p = rgPath(f.Subscription, f.ResourceGroup)
	}
	q := url.Values{}
	for k, v := range map[string]string{"environment": f.Environment, "status": f.Status, "os": f.OS, "tag": f.Tag, "name": f.Name} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.PageSize > 0 {
		q.Set("$top", strconv.Itoa(f.PageSize))
	}
	return listAll[wire.Machine](ctx, c, withQuery(p+"/machines", q), f.Max)
}

func machinePath(sub, rg, name string) string { return resourcePath(resource.Machine(sub, rg, name)) }

// GetMachine reads one machine.
func (c *Client) GetMachine(ctx context.Context, sub, rg, name string) (wire.Machine, error) {
	var m wire.Machine
	err := c.do(ctx, http.MethodGet, machinePath(sub, rg, name), nil, &m)
	return m, err
}

// DeleteMachine deletes a machine resource; its agent is told to stop.
func (c *Client) DeleteMachine(ctx context.Context, sub, rg, name string) error {
	return c.do(ctx, http.MethodDelete, machinePath(sub, rg, name), nil, nil)
}

// SetMachineTags replaces a machine's tags (an empty map removes them all).
func (c *Client) SetMachineTags(ctx context.Context, sub, rg, name string, tags map[string]string) (wire.Machine, error) {
	if tags == nil {
		tags = map[string]string{}
	}
	var m wire.Machine
	err := c.do(ctx, http.MethodPatch, machinePath(sub, rg, name), wire.MachineUpdate{Tags: tags}, &m)
	return m, err
}

// ListDeviceCodes lists pending device-code onboardings the caller may approve.
func (c *Client) ListDeviceCodes(ctx context.Context) ([]wire.PendingDeviceCode, error) {
	return listAll[wire.PendingDeviceCode](ctx, c, "/api/v1/deviceCodes", 0)
}

// ApproveDeviceCode approves the onboarding with the given user code.
func (c *Client) ApproveDeviceCode(ctx context.Context, userCode string) (wire.DeviceCodeApproval, error) {
	var a wire.DeviceCodeApproval
	err := c.do(ctx, http.MethodPost, "/api/v1/deviceCodes/"+seg(userCode)+"/approve", nil, &a)
	return a, err
}

// ListRoleDefinitions lists built-in and custom roles.
func (c *Client) ListRoleDefinitions(ctx context.Context) ([]wire.RoleDefinition, error) {
	return listAll[wire.RoleDefinition](ctx, c, "/api/v1/roleDefinitions", 0)
}

// GetRoleDefinition reads one role.
func (c *Client) GetRoleDefinition(ctx context.Context, id string) (wire.RoleDefinition, error) {
	var r wire.RoleDefinition
	err := c.do(ctx, http.MethodGet, resourcePath(resource.RoleDefinition(id)), nil, &r)
	return r, err
}

// PutRoleDefinition creates or updates the custom role rd (rd.ID is required).
func (c *Client) PutRoleDefinition(ctx context.Context, rd wire.RoleDefinition) (wire.RoleDefinition, error) {
	var out wire.RoleDefinition
	if rd.ID == "" {
		return out, errors.New("role id is required")
	}
	err := c.do(ctx, http.MethodPut, resourcePath(resource.RoleDefinition(rd.ID)), rd, &out)
	return out, err
}

// DeleteRoleDefinition deletes an unassigned custom role.
func (c *Client) DeleteRoleDefinition(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, resourcePath(resource.RoleDefinition(id)), nil, nil)
}

// CreateRoleAssignment assigns a role to a principal at a scope.
func (c *Client) CreateRoleAssignment(ctx context.Context, in wire.RoleAssignmentCreate) (wire.RoleAssignment, error) {
	var ra wire.RoleAssignment
	err := c.do(ctx, http.MethodPost, "/api/v1/roleAssignments", in, &ra)
	return ra, err
}

// ListRoleAssignments lists assignments at, above and below scope ("" = "/"),
// optionally of one principal (id, user name or client id).
func (c *Client) ListRoleAssignments(ctx context.Context, scope, principal string) ([]wire.RoleAssignment, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", scope)
	}
	if principal != "" {
		q.Set("principal", principal)
	}
	return listAll[wire.RoleAssignment](ctx, c, withQuery("/api/v1/roleAssignments", q), 0)
}

// GetRoleAssignment reads one role assignment.
func (c *Client) GetRoleAssignment(ctx context.Context, id string) (wire.RoleAssignment, error) {
	var ra wire.RoleAssignment
	err := c.do(ctx, http.MethodGet, "/api/v1/roleAssignments/"+seg(id), nil, &ra)
	return ra, err
}

// DeleteRoleAssignment deletes a role assignment.
func (c *Client) DeleteRoleAssignment(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/roleAssignments/"+seg(id), nil, nil)
}

// CreateUser creates a user.
func (c *Client) CreateUser(ctx context.Context, name, password string) (wire.User, error) {
	var u wire.User
	err := c.do(ctx, http.MethodPost, "/api/v1/users", wire.UserCreate{Name: name, Password: password}, &u)
	return u, err
}

// ListUsers lists users.
func (c *Client) ListUsers(ctx context.Context) ([]wire.User, error) {
	return listAll[wire.User](ctx, c, "/api/v1/users", 0)
}

// DeleteUser deletes a user, their tokens and role assignments.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, resourcePath(resource.User(name)), nil, nil)
}

// CreateServicePrincipal creates a service principal; the secret is in the answer, once.
func (c *Client) CreateServicePrincipal(ctx context.Context, in wire.ServicePrincipalCreate) (wire.ServicePrincipalCreated, error) {
	var sp wire.ServicePrincipalCreated
	err := c.do(ctx, http.MethodPost, "/api/v1/servicePrincipals", in, &sp)
	return sp, err
}

// ListServicePrincipals lists service principals.
func (c *Client) ListServicePrincipals(ctx context.Context) ([]wire.ServicePrincipal, error) {
	return listAll[wire.ServicePrincipal](ctx, c, "/api/v1/servicePrincipals", 0)
}

// GetServicePrincipal reads one service principal by client id.
func (c *Client) GetServicePrincipal(ctx context.Context, clientID string) (wire.ServicePrincipal, error) {
	var sp wire.ServicePrincipal
	err := c.do(ctx, http.MethodGet, resourcePath(resource.ServicePrincipal(clientID)), nil, &sp)
	return sp, err
}

// DeleteServicePrincipal deletes a service principal, its tokens and role assignments.
func (c *Client) DeleteServicePrincipal(ctx context.Context, clientID string) error {
	return c.do(ctx, http.MethodDelete, resourcePath(resource.ServicePrincipal(clientID)), nil, nil)
}

// CreateToken creates an API token of the caller; the token is in the answer, once.
func (c *Client) CreateToken(ctx context.Context, in wire.APITokenCreate) (wire.APITokenCreated, error) {
	var t wire.APITokenCreated
	err := c.do(ctx, http.MethodPost, "/api/v1/tokens", in, &t)
	return t, err
}

// ListTokens lists the caller's API tokens.
func (c *Client) ListTokens(ctx context.Context) ([]wire.APIToken, error) {
	return listAll[wire.APIToken](ctx, c, "/api/v1/tokens", 0)
}

// DeleteToken deletes one of the caller's API tokens.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, resourcePath(resource.Token(id)), nil, nil)
}

// ActivityQuery filters the activity log. Zero fields are not sent.
type ActivityQuery struct {
	Scope  string
	Caller string // caller principal id
	Action string // exact, or a prefix ending in '*'
	Result string // Succeeded, Failed or Denied
	From   time.Time
	To     time.Time
	// Max stops after this many entries (0 = all pages).
	Max int
}

// ListActivity queries the activity log, following nextLink up to q.Max entries.
func (c *Client) ListActivity(ctx context.Context, q ActivityQuery) ([]wire.ActivityEntry, error) {
	v := url.Values{}
	for k, s := range map[string]string{"scope": q.Scope, "caller": q.Caller, "action": q.Action, "result": q.Result} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	if q.Max < 0 {
		return nil, fmt.Errorf("max must not be negative")
	}
	if q.Max > 0 {
		v.Set("$top", strconv.Itoa(min(q.Max, 1000)))
	}
	return listAll[wire.ActivityEntry](ctx, c, withQuery("/api/v1/activityLogs", v), q.Max)
}

// Do calls any API path with an optional JSON body and decodes the JSON
// answer into out (if non-nil). Errors are *wire.APIError for API failures.
// A json.RawMessage body is sent as is, without a copy, so the caller may
// clear it after the call.
func (c *Client) Do(ctx context.Context, method, pathAndQuery string, in, out any) error {
	return c.do(ctx, method, pathAndQuery, in, out)
}

// RequestDeviceCode starts a device-code onboarding (RFC 8628) into a
// resource group.
func (c *Client) RequestDeviceCode(ctx context.Context, sub, rg, machineName string) (wire.DeviceCodeResponse, error) {
	var dc wire.DeviceCodeResponse
	err := c.postForm(ctx, wire.PathDeviceCode, url.Values{"subscription_id": {sub}, "resource_group": {rg}, "machine_name": {machineName}}, &dc)
	if err == nil && (dc.DeviceCode == "" || dc.UserCode == "") {
		err = errors.New("the server returned no device code")
	}
	return dc, err
}

// DeviceCodeToken polls for the token of an approved device code. Until an
// operator approves it the error is an APIError with code
// authorization_pending.
func (c *Client) DeviceCodeToken(ctx context.Context, deviceCode string) (wire.TokenResponse, error) {
	return c.formToken(ctx, url.Values{"grant_type": {wire.GrantDeviceCode}, "device_code": {deviceCode}})
}
