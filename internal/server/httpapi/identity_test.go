package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func TestCustomRoleWithWildcardsInheritsDownward(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	for _, rg := range []string{"rg1", "rg2"} {
		s.MustDo(t, 201, "PUT", "/api/v1/subscriptions/default/resourceGroups/"+rg, admin, wire.ResourceGroupCreate{}, nil)
	}
	s.MustDo(t, 201, "PUT", "/api/v1/roleDefinitions/machine-reader", admin, wire.RoleDefinition{Name: "Machine Reader",
		Actions: []string{"Corral.HybridCompute/machines/*"}, NotActions: []string{"Corral.HybridCompute/machines/delete", "Corral.HybridCompute/machines/onboard/action", "Corral.HybridCompute/machines/write"}}, nil)
	s.MustDo(t, 201, "POST", "/api/v1/users", admin, wire.UserCreate{Name: "alice", Password: "alice-password-1"}, nil)
	s.MustDo(t, 201, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: "alice", Role: "Machine Reader", Scope: "/subscriptions/default/resourceGroups/rg1"}, nil)
	// The role cannot be deleted while assigned; built-ins cannot change.
	if st, _ := s.Do(t, "DELETE", "/api/v1/roleDefinitions/machine-reader", admin, nil); st != 409 {
		t.Errorf("delete assigned role: %d", st)
	}
	if st, _ := s.Do(t, "PUT", "/api/v1/roleDefinitions/Owner", admin, wire.RoleDefinition{Name: "x", Actions: []string{"*"}}); st != 400 {
		t.Errorf("change built-in: %d", st)
	}
	alice := s.PasswordToken(t, "alice", "alice-password-1")
	if st, b := s.Do(t, "GET", "/api/v1/subscriptions/default/resourceGroups/rg1/machines", alice, nil); st != 200 {
		t.Errorf("alice lists rg1: %d %s", st, b)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/subscriptions/default/resourceGroups/rg2/machines"},
		{"GET", "/api/v1/subscriptions/default/machines"},
		{"DELETE", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/x"},
		{"GET", "/api/v1/subscriptions/default/resourceGroups/rg1"},
	} {
		if st, _ := s.Do(t, c.method, c.path, alice, nil); st != 403 {
			t.Errorf("alice %s %s: %d, want 403", c.method, c.path, st)
		}
	}
	var me wire.Me
	s.MustDo(t, 200, "GET", "/api/v1/me", alice, nil, &me)
	if me.Name != "alice" || len(me.Assignments) != 1 || me.Assignments[0].RoleName != "Machine Reader" {
		t.Errorf("me %+v", me)
	}
}

func TestAPITokensAndServicePrincipalExpiry(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	s := testutil.StartServer(t, testutil.WithClock(clock))
	admin := s.AdminToken(t)
	var created wire.APITokenCreated
	s.MustDo(t, 201, "POST", "/api/v1/tokens", admin, wire.APITokenCreate{Name: "ci", ExpiresIn: "48h"}, &created)
	if st, _ := s.Do(t, "GET", "/api/v1/me", created.Token, nil); st != 200 {
		t.Fatalf("API token refused: %d", st)
	}
	var list wire.List[wire.APIToken]
	s.MustDo(t, 200, "GET", "/api/v1/tokens", created.Token, nil, &list)
	raw, _ := json.Marshal(list)
	if len(list.Value) != 1 || containsStr(string(raw), created.Token) {
		t.Fatalf("token list %s", raw)
	}
	var sp wire.ServicePrincipalCreated
	s.MustDo(t, 201, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: "short", ExpiresIn: "1h"}, &sp)
	var got wire.ServicePrincipal
	s.MustDo(t, 200, "GET", "/api/v1/servicePrincipals/"+sp.ClientID, admin, nil, &got)
	raw, _ = json.Marshal(got)
	if containsStr(string(raw), sp.ClientSecret) {
		t.Fatal("secret shown again")
	}
	s.ClientToken(t, sp.ClientID, sp.ClientSecret)
	clock.Advance(49 * time.Hour)
	if st, _ := s.Do(t, "GET", "/api/v1/me", created.Token, nil); st != 401 {
		t.Errorf("expired API token: %d", st)
	}
	resp, err := s.Client.PostForm(s.URL+wire.PathToken, url.Values{"grant_type": {"client_credentials"}, "client_id": {sp.ClientID}, "client_secret": {sp.ClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("expired SP secret: %d", resp.StatusCode)
	}
	// Deleting a service principal removes its grants.
	s.ForgetAdminToken()
	admin = s.AdminToken(t)
	s.MustDo(t, 204, "DELETE", "/api/v1/servicePrincipals/"+sp.ClientID, admin, nil, nil)
	s.MustDo(t, 204, "DELETE", "/api/v1/tokens/"+created.ID, admin, nil, nil)
}

func TestActivityLogCannotBeEdited(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		if st, _ := s.Do(t, m, "/api/v1/activityLogs", admin, "{}"); st != http.StatusMethodNotAllowed && st != http.StatusNotFound {
			t.Errorf("%s /api/v1/activityLogs: %d", m, st)
		}
	}
}

func TestDeviceCodeOnboarding(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	s.MustDo(t, 201, "PUT", "/api/v1/subscriptions/default/resourceGroups/rg1", admin, wire.ResourceGroupCreate{}, nil)
	s.MustDo(t, 201, "PUT", "/api/v1/subscriptions/default/resourceGroups/rg2", admin, wire.ResourceGroupCreate{}, nil)
	resp, err := s.Client.PostForm(s.URL+wire.PathDeviceCode, url.Values{"subscription_id": {"default"}, "resource_group": {"rg1"}, "machine_name": {"m1"}})
	if err != nil {
		t.Fatal(err)
	}
	var dc wire.DeviceCodeResponse
	if err := decodeJSONBody(resp, &dc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	poll := func() (int, wire.OAuthError, wire.TokenResponse) {
		r, err := s.Client.PostForm(s.URL+wire.PathToken, url.Values{"grant_type": {wire.GrantDeviceCode}, "device_code": {dc.DeviceCode}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var raw json.RawMessage
		_ = json.NewDecoder(r.Body).Decode(&raw)
		var oe wire.OAuthError
		var tr wire.TokenResponse
		_ = json.Unmarshal(raw, &oe)
		_ = json.Unmarshal(raw, &tr)
		return r.StatusCode, oe, tr
	}
	if st, oe, _ := poll(); st != 400 || oe.Error != wire.CodeAuthorizationPending {
		t.Fatalf("before approval: %d %+v", st, oe)
	}
	var pending wire.List[wire.PendingDeviceCode]
	s.MustDo(t, 200, "GET", "/api/v1/deviceCodes", admin, nil, &pending)
	if len(pending.Value) != 1 || pending.Value[0].UserCode != dc.UserCode {
		t.Fatalf("pending %+v", pending)
	}
	s.MustDo(t, 200, "POST", "/api/v1/deviceCodes/"+dc.UserCode+"/approve", admin, nil, nil)
	st, oe, tr := poll()
	if st != 200 || tr.AccessToken == "" {
		t.Fatalf("after approval: %d %+v", st, oe)
	}
	if st, _, _ := poll(); st != 400 {
		t.Errorf("device code reused: %d", st)
	}
	// The token onboards into rg1 only, and cannot call the API.
	if st, _ := s.Do(t, "GET", "/api/v1/me", tr.AccessToken, nil); st != 403 {
		t.Errorf("restricted token on the API: %d", st)
	}
	_, csr, _ := machinekey.New("m1")
	req := wire.ConnectRequest{ProtocolVersion: 1, SubscriptionID: "default", ResourceGroup: "rg2", Name: "m1", CSR: string(csr)}
	if st, _ := s.Do(t, "POST", wire.PathConnect, tr.AccessToken, req); st != 403 {
		t.Errorf("restricted token into rg2: %d", st)
	}
	req.ResourceGroup = "rg1"
	var cr wire.ConnectResponse
	s.MustDo(t, 201, "POST", wire.PathConnect, tr.AccessToken, req, &cr)
	var m wire.Machine
	s.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1", admin, nil, &m)
	if m.CreatedBy != "admin" {
		t.Errorf("created by %q, want the approver", m.CreatedBy)
	}
}

func containsStr(s, sub string) bool { return sub != "" && strings.Contains(s, sub) }

func TestRepeatedFailedSignInsLockTheAccount(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	try := func(pw string) int {
		resp, err := s.Client.PostForm(s.URL+wire.PathToken, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {pw}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 10 {
		if st := try("wrong-password-xyz"); st != 401 {
			t.Fatalf("failed sign-in: %d", st)
		}
	}
	if st := try(testutil.AdminPassword); st != http.StatusTooManyRequests {
		t.Fatalf("locked account accepted a sign-in: %d", st)
	}
}
