package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/httpapi"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// TestEveryRouteEveryBuiltInRole calls every route of the table as a service
// principal holding each built-in role at "/" and checks the outcome against
// what the role grants: denied calls get 403 AuthorizationFailed, allowed
// calls never do. Agent routes refuse bearer tokens altogether.
func TestEveryRouteEveryBuiltInRole(t *testing.T) {
	// Every role asks for a device code from this one address: no rate.
	s := testutil.StartServer(t, func(c *server.Config) { c.Limits.DeviceCodesPerSource = -1 })
	admin := s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/rg1", admin, wire.ResourceGroupCreate{}, nil)

	for _, role := range authz.BuiltInRoles {
		t.Run(role.Name, func(t *testing.T) {
			var sp wire.ServicePrincipalCreated
			s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: "rbac-" + role.ID}, &sp)
			s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: role.ID, Scope: "/"}, nil)
			tok := s.ClientToken(t, sp.ClientID, sp.ClientSecret)

			for _, rt := range s.Srv.API.Routes() {
				path, body := requestFor(t, s, admin, rt)
				status, resp := s.Do(t, rt.Method, path, tok, body)
				want := expectation(role, rt)
				switch want {
				case "public", "allowed":
					if status == http.StatusUnauthorized || status == http.StatusForbidden {
						t.Errorf("%s %s as %s: status %d, want allowed: %s", rt.Method, path, role.Name, status, resp)
					}
				case "denied":
					if status != http.StatusForbidden || testutil.DecodeError(t, resp).Code != wire.CodeForbidden {
						t.Errorf("%s %s as %s: status %d, want 403 AuthorizationFailed: %s", rt.Method, path, role.Name, status, resp)
					}
				case "machine-only":
					if status != http.StatusUnauthorized {
						t.Errorf("%s %s as %s: status %d, want 401 (machine certificate required): %s", rt.Method, path, role.Name, status, resp)
					}
				}
			}
		})
	}
}

// expectation says what a principal with role at "/" gets from route rt.
func expectation(role authz.Role, rt httpapi.Route) string {
	switch {
	case rt.Auth == httpapi.AuthPublic:
		return "public"
	case rt.Auth == httpapi.AuthMachine:
		return "machine-only"
	case rt.Method == "POST" && rt.Pattern == "/api/v1/tokens" && authz.OnlyOnboarding([]authz.Assignment{{Role: role, Scope: "/"}}):
		return "denied" // an onboarding-only principal mints no tokens
	case rt.Action == authz.ActSelfRead || rt.Action == authz.ActSelfWrite:
		return "allowed"
	case rt.Method == "GET" && (rt.Pattern == "/api/v1/subscriptions" || rt.Pattern == "/api/v1/deviceCodes"):
		return "allowed" // lists filtered to what the caller may see
	case authz.RoleGrants(role, rt.Action):
		return "allowed"
	}
	return "denied"
}

// requestFor builds a request for a route that passes validation far enough
// for authorization to decide. Deletes target resources made for the call.
func requestFor(t *testing.T, s *testutil.Server, admin string, rt httpapi.Route) (string, any) {
	t.Helper()
	r := strings.NewReplacer("{sub}", "default", "{rg}", "rg1", "{name}", "nosuchthing", "{id}", "nosuchid",
		"{ext}", "nosuchext", "{run}", "nosuchrun", "{schedule}", "nosuchschedule", "{publisher}", "nosuchpublisher", "{digest}", "sha256:00")
	path := r.Replace(rt.Pattern)
	var body any
	if rt.Method == "POST" || rt.Method == "PUT" || rt.Method == "PATCH" {
		body = "{}"
	}
	switch {
	case rt.Pattern == "/api/v1/deviceCodes/{code}/approve":
		path = strings.Replace(rt.Pattern, "{code}", newDeviceCode(t, s), 1)
	case rt.Pattern == "/api/v1/roleAssignments/{id}":
		var ra wire.RoleAssignment
		s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin,
			wire.RoleAssignmentCreate{Principal: "admin", Role: "Reader", Scope: fmt.Sprintf("/subscriptions/default/resourceGroups/rg1/machines/m%d", len(path)+randInt())}, &ra)
		path = "/api/v1/roleAssignments/" + ra.ID
	case rt.Pattern == "/api/v1/roleAssignments" && rt.Method == "POST":
		body = wire.RoleAssignmentCreate{Principal: "admin", Role: "Reader", Scope: "/subscriptions/default"}
	case rt.Pattern == wire.PathConnect:
		body = wire.ConnectRequest{ProtocolVersion: 1, SubscriptionID: "default", ResourceGroup: "rg1", Name: "rbac-probe", CSR: "not a csr"}
	case rt.Pattern == "/api/v1/users/{name}":
		path = "/api/v1/users/nosuchuser"
	}
	if rt.Auth == httpapi.AuthPublic && rt.Method == "POST" {
		body = nil
	}
	return path, body
}

var counter int

func randInt() int { counter++; return counter }

func newDeviceCode(t *testing.T, s *testutil.Server) string {
	t.Helper()
	resp, err := s.Client.PostForm(s.URL+wire.PathDeviceCode, url.Values{"subscription_id": {"default"}, "resource_group": {"rg1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dc wire.DeviceCodeResponse
	if err := decodeJSONBody(resp, &dc); err != nil || dc.UserCode == "" {
		t.Fatalf("device code: %v", err)
	}
	return dc.UserCode
}
