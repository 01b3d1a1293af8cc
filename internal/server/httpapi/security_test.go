package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// Regression tests of the adversarial probe of the server (issue 7), one
// (or more) per finding. Each failed on the code before its fix.

// tokenAnswer is what the token endpoint answered.
type tokenAnswer struct {
	status     int
	retryAfter string
	token      string
	oauth      wire.OAuthError
}

func postToken(t *testing.T, s *testutil.Server, form url.Values, basic ...string) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL+wire.PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := tokenAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	var tr wire.TokenResponse
	if json.Unmarshal(b, &tr) == nil {
		a.token = tr.AccessToken
	}
	_ = json.Unmarshal(b, &a.oauth)
	return a
}

func passwordForm(user, pw string, extra ...string) url.Values {
	f := url.Values{"grant_type": {wire.GrantPassword}, "username": {user}, "password": {pw}}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

// Finding 1: the lockout is keyed on the identity a grant verifies; a grant
// naming more than that identity is refused; and a source address has a
// failure budget across accounts.
func TestSignInThrottleKeysOnTheVerifiedIdentity(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, func(c *server.Config) {
		c.Limits.SignInFailuresPerAccount, c.Limits.SignInFailuresPerSource = 3, 1000
	})
	id, secret := s.OnboardingPrincipal(t, "rg1") // signs the admin in before the lockout
	// Extra client credentials on a password grant no longer make a
	// fresh lockout count: they are refused.
	if a := postToken(t, s, passwordForm("admin", "wrong-password-1", "client_id", "zz1")); a.status != 400 || a.oauth.Error != "invalid_request" {
		t.Errorf("password grant with a client_id: %d %+v, want 400 invalid_request", a.status, a.oauth)
	}
	if a := postToken(t, s, passwordForm("admin", "wrong-password-1"), "zz", "x"); a.status != 400 {
		t.Errorf("password grant with Basic client credentials: %d, want 400", a.status)
	}
	for i := range 3 {
		if a := postToken(t, s, passwordForm("admin", fmt.Sprintf("wrong-password-%d", i))); a.status != 401 {
			t.Fatalf("wrong password %d: %d", i, a.status)
		}
	}
	// Locked: the right password gets no token, with or without a
	// changing client_id.
	for _, extra := range [][]string{nil, {"client_id", "zz"}, {"client_id", "zz2", "client_secret", "x"}} {
		a := postToken(t, s, passwordForm("admin", testutil.AdminPassword, extra...))
		if a.token != "" || (a.status != 429 && a.status != 400) {
			t.Errorf("locked account with %v: %d %+v, got a token: %t", extra, a.status, a.oauth, a.token != "")
		}
		if extra == nil && (a.status != 429 || a.retryAfter == "") {
			t.Errorf("locked account: %d Retry-After %q, want 429 with Retry-After", a.status, a.retryAfter)
		}
	}
	// The same for client_credentials: a user name alongside is refused,
	// and so are credentials given twice.
	cc := url.Values{"grant_type": {wire.GrantClientCredentials}, "client_id": {id}, "client_secret": {secret}}
	withUser := url.Values{"grant_type": {wire.GrantClientCredentials}, "client_id": {id}, "client_secret": {secret}, "username": {"x"}}
	if a := postToken(t, s, withUser); a.status != 400 || a.token != "" {
		t.Errorf("client_credentials with a username: %d", a.status)
	}
	if a := postToken(t, s, cc, id, secret); a.status != 400 || a.token != "" {
		t.Errorf("client credentials in the header and the form: %d", a.status)
	}
	if a := postToken(t, s, url.Values{"grant_type": {wire.GrantClientCredentials}}, id, secret); a.status != 200 {
		t.Errorf("client credentials in the header only: %d %+v", a.status, a.oauth)
	}

	// Spraying many accounts from one address spends its own budget.
	spray := testutil.StartServer(t, func(c *server.Config) {
		c.Limits.SignInFailuresPerAccount, c.Limits.SignInFailuresPerSource = 100, 5
	})
	for i := range 5 {
		if a := postToken(t, spray, passwordForm(fmt.Sprintf("user%d", i), "wrong-password-123")); a.status != 401 {
			t.Fatalf("spray %d: %d", i, a.status)
		}
	}
	if a := postToken(t, spray, passwordForm("admin", testutil.AdminPassword)); a.status != 429 || a.token != "" || a.retryAfter == "" {
		t.Errorf("sign-in from an address that sprayed 5 accounts: %d %+v, want 429 with Retry-After", a.status, a.oauth)
	}
}

// Finding 2: password hashing (19 MiB each) is admitted through a gate:
// with every slot taken a sign-in is refused at once with 503 and
// Retry-After, and one address cannot take more than its share (429).
func TestPasswordHashingIsBounded(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, func(c *server.Config) {
		c.Limits.PasswordHashConcurrency, c.Limits.PasswordHashQueue, c.Limits.PasswordHashPerSource = 1, -1, 1
	})
	admin := s.AdminToken(t)
	gate := s.Srv.API.Hashes
	if l := gate.Limits(); l.Slots != 1 || l.Queue != 0 {
		t.Fatalf("gate limits %+v", l)
	}
	release, err := gate.Acquire(t.Context(), "203.0.113.9") // another address holds the only slot
	if err != nil {
		t.Fatal(err)
	}
	a := postToken(t, s, passwordForm("admin", testutil.AdminPassword))
	if a.status != http.StatusServiceUnavailable || a.retryAfter == "" || a.token != "" {
		t.Errorf("sign-in with every hash slot taken: %d Retry-After %q, want 503 with Retry-After", a.status, a.retryAfter)
	}
	st, b := s.Do(t, "POST", "/api/v1/users", admin, wire.UserCreate{Name: "carol", Password: "carol-password-123"})
	if st != http.StatusServiceUnavailable {
		t.Errorf("user creation with every hash slot taken: %d %s", st, b)
	}
	release()
	if a := postToken(t, s, passwordForm("admin", testutil.AdminPassword)); a.status != 200 {
		t.Errorf("sign-in once the slot is free: %d %+v", a.status, a.oauth)
	}

	// One address holds its share: its next sign-in is 429, not queued.
	s2 := testutil.StartServer(t, func(c *server.Config) {
		c.Limits.PasswordHashConcurrency, c.Limits.PasswordHashQueue, c.Limits.PasswordHashPerSource = 4, 4, 1
	})
	release, err = s2.Srv.API.Hashes.Acquire(t.Context(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if a := postToken(t, s2, passwordForm("admin", testutil.AdminPassword)); a.status != http.StatusTooManyRequests || a.retryAfter == "" {
		t.Errorf("a second hash from one address: %d, want 429 with Retry-After", a.status)
	}
}

// Finding 4: what an onboarding principal's machines report is bounded
// per field and per document, a principal has a machine quota and a rate,
// and the inventory stays usable for everyone.
func TestOnboardingPrincipalCannotBloatTheInventory(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	s := testutil.StartServer(t, testutil.WithClock(clock), func(c *server.Config) {
		c.Limits.MachinesPerPrincipal, c.Limits.OnboardingsPerMinute = 4, 3
	})
	id, secret := s.OnboardingPrincipal(t, "rg1")
	tok := s.ClientToken(t, id, secret)
	connect := func(name string, props wire.MachineProperties) (int, []byte) {
		t.Helper()
		req := connectRequestFor(t, name)
		req.Properties = props
		return s.Do(t, "POST", wire.PathConnect, tok, req)
	}
	for _, tc := range []struct {
		props  wire.MachineProperties
		target string
	}{
		{wire.MachineProperties{Hostname: strings.Repeat("h", 1<<20)}, "properties.hostname"},
		{wire.MachineProperties{OSName: strings.Repeat("d", 300)}, "properties.osName"},
		{wire.MachineProperties{OSPrettyName: "Debian \x1b]0;owned\a\x1b[2J"}, "properties.osPrettyName"},
		{wire.MachineProperties{IPAddresses: []string{strings.Repeat("1", 100)}}, "properties.ipAddresses[0]"},
	} {
		st, b := connect("big", tc.props)
		if st != 400 || testutil.DecodeError(t, b).Target != tc.target {
			t.Errorf("connect with %.60q...: %d %s, want 400 at %s", fmt.Sprint(tc.props), st, b[:min(len(b), 200)], tc.target)
		}
	}
	m := s.OnboardMachine(t, tok, "rg1", "m1", wire.MachineProperties{Hostname: "m1", OSName: "debian"})
	// A report over the limits is acknowledged and dropped; the rest of the
	// batch still counts.
	big, _ := json.Marshal(wire.MachineProperties{Hostname: strings.Repeat("x", 100<<10), OSName: "windows"})
	applied, _ := json.Marshal(wire.AppliedState{Generation: 1})
	batch := wire.ReportBatch{Reports: []wire.Report{{ID: "big", Kind: wire.ReportProperties, Body: big}, {ID: "ok", Kind: wire.ReportApplied, Body: applied}}}
	var ack wire.ReportAck
	st, b := s.DoMachine(t, m, "POST", wire.PathReports, batch)
	if st != 200 || json.Unmarshal(b, &ack) != nil || len(ack.Accepted) != 2 {
		t.Fatalf("batch with an oversized report: %d %s", st, b)
	}
	var got wire.Machine
	s.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1", s.AdminToken(t), nil, &got)
	if got.Properties.Hostname != "m1" || got.Properties.OSName != "debian" {
		t.Errorf("an oversized report changed the machine: %+v", got.Properties)
	}
	// The rate: 3 a minute (m1 was the first).
	s.OnboardMachine(t, tok, "rg1", "m2", wire.MachineProperties{})
	s.OnboardMachine(t, tok, "rg1", "m3", wire.MachineProperties{})
	st, b = connect("m4", wire.MachineProperties{})
	if st != http.StatusTooManyRequests {
		t.Errorf("a fourth onboarding within a minute: %d %s, want 429", st, b)
	}
	clock.Advance(61 * time.Second)
	tok = s.ClientToken(t, id, secret)
	s.OnboardMachine(t, tok, "rg1", "m4", wire.MachineProperties{})
	// The quota: 4 machines.
	clock.Advance(61 * time.Second)
	tok = s.ClientToken(t, id, secret)
	st, b = connect("m5", wire.MachineProperties{})
	if st != http.StatusConflict || testutil.DecodeError(t, b).Code != wire.CodeQuotaExceeded {
		t.Errorf("a fifth machine: %d %s, want 409 QuotaExceeded", st, b)
	}
	// However many machines hold documents at the limits, a page of the
	// list stays near store.MaxPageBytes and the rest follows by nextLink.
	props, _ := json.Marshal(wire.MachineProperties{OSPrettyName: strings.Repeat("p", 30<<10)})
	at := time.Now().UTC()
	for i := range 400 {
		err := s.Srv.Store.CreateMachine(t.Context(), store.Machine{ID: fmt.Sprintf("big-%d", i), Subscription: "default", ResourceGroup: "rg1",
			Name: fmt.Sprintf("big-%03d", i), Status: wire.StatusConnected, Properties: props, CreatedAt: at, UpdatedAt: at}, false)
		if err != nil {
			t.Fatal(err)
		}
	}
	var page wire.List[wire.Machine]
	st, b = s.Do(t, "GET", "/api/v1/subscriptions/default/machines?$top=1000", s.AdminToken(t), nil)
	if st != 200 || json.Unmarshal(b, &page) != nil || len(b) > store.MaxPageBytes+(1<<20) || page.NextLink == "" || len(page.Value) >= 404 {
		t.Errorf("machine list of 404 large machines: %d, %d bytes, %d machines, nextLink %q; want a page under %d bytes and a next page",
			st, len(b), len(page.Value), page.NextLink, store.MaxPageBytes)
	}
	total := len(page.Value)
	for page.NextLink != "" {
		next := page.NextLink
		page = wire.List[wire.Machine]{}
		s.MustDo(t, 200, "GET", next, s.AdminToken(t), nil, &page)
		total += len(page.Value)
	}
	if total != 404 {
		t.Errorf("the pages hold %d machines, want 404", total)
	}
	req, _ := http.NewRequest("GET", s.URL+"/ui/machines?top=1000", nil)
	req.AddCookie(&http.Cookie{Name: "corral_session", Value: s.AdminToken(t)})
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the inventory page with large machines: %d", resp.StatusCode)
	}
}

func connectRequestFor(t *testing.T, name string) wire.ConnectRequest {
	t.Helper()
	_, csr := newCSR(t)
	return wire.ConnectRequest{ProtocolVersion: wire.ProtocolVersion, SubscriptionID: "default", ResourceGroup: "rg1", Name: name, CSR: csr, AgentVersion: "2026.11.0"}
}

// Finding 5: anonymous denials are one entry and a summary per source and
// minute, not one entry per request.
func TestAnonymousDenialsAreAggregated(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	count := func() []wire.ActivityEntry {
		var acts wire.List[wire.ActivityEntry]
		s.MustDo(t, 200, "GET", "/api/v1/activityLogs?result=Denied&$top=1000", admin, nil, &acts)
		return acts.Value
	}
	for i := range 200 {
		if st, _ := s.Do(t, "GET", "/api/v1/me", fmt.Sprintf("garbage-%d", i), nil); st != 401 {
			t.Fatalf("request %d: %d", i, st)
		}
	}
	if n := len(count()); n != 1 {
		t.Errorf("200 anonymous denials wrote %d entries at once, want 1", n)
	}
	if err := s.Srv.API.FlushAnonymousDenials(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	es := count()
	if len(es) != 2 || !strings.Contains(es[0].Message, "199 more denied requests") || es[0].SourceIP != "127.0.0.1" {
		msg := ""
		if len(es) > 0 {
			msg = es[0].Message
		}
		t.Errorf("after the minute: %d entries, newest %q; want the first and a summary of 199 more", len(es), msg)
	}
}

// Finding 5: device-code requests are throttled per address, and the
// pending codes in all are bounded.
func TestDeviceCodeRequestsAreThrottled(t *testing.T) {
	t.Parallel()
	request := func(s *testutil.Server) (int, string) {
		resp, err := s.Client.PostForm(s.URL+wire.PathDeviceCode, url.Values{"subscription_id": {"default"}, "resource_group": {"rg1"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	s := testutil.StartServer(t, func(c *server.Config) { c.Limits.DeviceCodesPerSource = 3 })
	for i := range 3 {
		if st, _ := request(s); st != 200 {
			t.Fatalf("device code %d: %d", i, st)
		}
	}
	if st, retry := request(s); st != http.StatusTooManyRequests || retry == "" {
		t.Errorf("fourth device code in a minute: %d Retry-After %q, want 429", st, retry)
	}
	s = testutil.StartServer(t, func(c *server.Config) { c.Limits.DeviceCodesPerSource, c.Limits.MaxPendingDeviceCodes = 100, 2 })
	request(s)
	request(s)
	if st, retry := request(s); st != http.StatusTooManyRequests || retry == "" {
		t.Errorf("a third pending code with room for 2: %d, want 429", st)
	}
}

// Finding 6: an API token never outlives the secret of the service
// principal that minted it; an API token mints no token; an onboarding
// principal mints none.
func TestTokensDoNotOutliveTheirCredential(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	s := testutil.StartServer(t, testutil.WithClock(clock))
	admin := s.AdminToken(t)
	var sp wire.ServicePrincipalCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: "ci", ExpiresIn: "2h"}, &sp)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: "Reader", Scope: "/"}, nil)
	spTok := s.ClientToken(t, sp.ClientID, sp.ClientSecret)
	var pat wire.APITokenCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/tokens", spTok, wire.APITokenCreate{Name: "long", ExpiresIn: "720h"}, &pat)
	if pat.ExpiresAt.After(sp.ExpiresAt) {
		t.Errorf("an API token of a service principal expires at %s, after its secret (%s)", pat.ExpiresAt, sp.ExpiresAt)
	}
	st, b := s.Do(t, "POST", "/api/v1/tokens", pat.Token, wire.APITokenCreate{Name: "chain", ExpiresIn: "720h"})
	if st != http.StatusForbidden {
		t.Errorf("an API token minted another: %d %s", st, b)
	}
	// A token stored before the cap (or by any other path) is checked on
	// use against the secret's expiry.
	long := "crl_pat_stored-before-the-cap-0123456789"
	if err := s.Srv.Store.CreateAPIToken(t.Context(), store.APIToken{ID: "legacy", Name: "legacy", PrincipalID: sp.ClientID,
		Hash: hashOf(long), CreatedAt: clock.Now(), ExpiresAt: clock.Now().Add(365 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s.MustDo(t, 200, "GET", "/api/v1/me", long, nil, nil)
	clock.Advance(3 * time.Hour)
	for name, tok := range map[string]string{"capped": pat.Token, "stored long": long} {
		if st, _ := s.Do(t, "GET", "/api/v1/me", tok, nil); st != http.StatusUnauthorized {
			t.Errorf("%s API token of an expired service principal: %d, want 401", name, st)
		}
	}
	s.ForgetAdminToken()
	id, secret := s.OnboardingPrincipal(t, "rg1")
	st, b = s.Do(t, "POST", "/api/v1/tokens", s.ClientToken(t, id, secret), wire.APITokenCreate{Name: "onboard"})
	if st != http.StatusForbidden {
		t.Errorf("an onboarding principal minted an API token: %d %s", st, b)
	}
}

// Finding 7: deleting a resource group or a machine deletes the role
// assignments at and below it, so a group or machine re-created under the
// same name does not hand its new contents to the old readers.
func TestRoleAssignmentsGoWithTheirScope(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	rg := "/api/v1/subscriptions/default/resourceGroups/web"
	s.MustDo(t, http.StatusCreated, "PUT", rg, admin, wire.ResourceGroupCreate{}, nil)
	var sp wire.ServicePrincipalCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: "old-reader"}, &sp)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: "Reader",
		Scope: "/subscriptions/default/resourceGroups/web"}, nil)
	reader := s.ClientToken(t, sp.ClientID, sp.ClientSecret)
	s.MustDo(t, 200, "GET", rg+"/machines", reader, nil, nil)
	s.MustDo(t, http.StatusNoContent, "DELETE", rg, admin, nil, nil)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/WEB", admin, wire.ResourceGroupCreate{}, nil)
	if st, b := s.Do(t, "GET", rg+"/machines", reader, nil); st != http.StatusForbidden {
		t.Errorf("the old group's reader reads the re-created group: %d %s", st, b)
	}
	// A machine-scoped grant goes with its machine.
	id, secret := s.OnboardingPrincipal(t, "rg2")
	s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg2", "vm", wire.MachineProperties{})
	vm := "/api/v1/subscriptions/default/resourceGroups/rg2/machines/vm"
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: "Reader",
		Scope: "/subscriptions/default/resourceGroups/rg2/machines/vm"}, nil)
	s.MustDo(t, 200, "GET", vm, reader, nil, nil)
	s.MustDo(t, http.StatusNoContent, "DELETE", vm, admin, nil, nil)
	s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg2", "vm", wire.MachineProperties{})
	if st, b := s.Do(t, "GET", vm, reader, nil); st != http.StatusForbidden {
		t.Errorf("the old machine's reader reads the new machine of that name: %d %s", st, b)
	}
}

// Finding 8: a user changes their own password (every session ends), an
// administrator sets one (optionally to be changed at the next sign-in),
// and a user can be disabled (sessions, sign-ins and API tokens refused).
func TestPasswordChangeAndDisable(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	s := testutil.StartServer(t, testutil.WithClock(clock))
	admin := s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/users", admin, wire.UserCreate{Name: "bob", Password: "bob-password-123"}, nil)
	bob := s.PasswordToken(t, "bob", "bob-password-123")
	var pat wire.APITokenCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: "bob", Role: "Reader", Scope: "/"}, nil)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/tokens", bob, wire.APITokenCreate{Name: "bobs"}, &pat)

	if st, _ := s.Do(t, "PUT", wire.PathMyPassword, bob, wire.PasswordChange{CurrentPassword: "not-it-at-all", NewPassword: "bob-new-password-1"}); st != 400 {
		t.Errorf("change with a wrong current password: %d", st)
	}
	clock.Advance(2 * time.Second) // token times have whole seconds
	s.MustDo(t, http.StatusNoContent, "PUT", wire.PathMyPassword, bob, wire.PasswordChange{CurrentPassword: "bob-password-123", NewPassword: "bob-new-password-1"}, nil)
	if st, _ := s.Do(t, "GET", "/api/v1/me", bob, nil); st != http.StatusUnauthorized {
		t.Errorf("a session from before the password change: %d, want 401", st)
	}
	if a := postToken(t, s, passwordForm("bob", "bob-password-123")); a.status != 401 {
		t.Errorf("the old password: %d", a.status)
	}
	s.MustDo(t, 200, "GET", "/api/v1/me", pat.Token, nil, nil) // API tokens stay

	// An administrator's reset that must be changed at the next sign-in.
	s.MustDo(t, 200, "PUT", "/api/v1/users/bob/password", admin, wire.PasswordSet{Password: "temporary-password-1", MustChangePassword: true}, nil)
	bob = s.PasswordToken(t, "bob", "temporary-password-1")
	if st, b := s.Do(t, "GET", "/api/v1/users", bob, nil); st != 403 || testutil.DecodeError(t, b).Code != wire.CodePasswordChangeRequired {
		t.Errorf("a must-change session: %d %s", st, b)
	}
	s.MustDo(t, http.StatusNoContent, "PUT", wire.PathMyPassword, bob, wire.PasswordChange{CurrentPassword: "temporary-password-1", NewPassword: "bob-third-password"}, nil)
	bob = s.PasswordToken(t, "bob", "bob-third-password")
	s.MustDo(t, 200, "GET", "/api/v1/users", bob, nil, nil)

	// Disabled: sessions, sign-ins and API tokens are refused at once.
	s.MustDo(t, 200, "PATCH", "/api/v1/users/bob", admin, wire.UserUpdate{Disabled: ptr(true)}, nil)
	for name, tok := range map[string]string{"session": bob, "API token": pat.Token} {
		if st, _ := s.Do(t, "GET", "/api/v1/me", tok, nil); st != 401 {
			t.Errorf("a disabled user's %s: %d", name, st)
		}
	}
	if a := postToken(t, s, passwordForm("bob", "bob-third-password")); a.status != 401 {
		t.Errorf("a disabled user's sign-in: %d", a.status)
	}
	s.MustDo(t, 200, "PATCH", "/api/v1/users/bob", admin, wire.UserUpdate{Disabled: ptr(false)}, nil)
	s.PasswordToken(t, "bob", "bob-third-password")
	if st, _ := s.Do(t, "PATCH", "/api/v1/users/admin", admin, wire.UserUpdate{Disabled: ptr(true)}); st != 400 {
		t.Errorf("an administrator disabled themself: %d", st)
	}
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, 200, "GET", "/api/v1/activityLogs?action=Corral.Identity/*&$top=1000", admin, nil, &acts)
	var bobs []wire.ActivityEntry
	for _, e := range acts.Value {
		if e.Scope == "/users/bob" {
			bobs = append(bobs, e)
		}
	}
	raw, _ := json.Marshal(acts)
	if len(bobs) < 5 || bytes.Contains(raw, []byte("password-1")) || bytes.Contains(raw, []byte("third-password")) {
		t.Errorf("password changes and disables in the activity log: %d entries (a password in them: %t)", len(bobs),
			bytes.Contains(raw, []byte("password-1")))
	}
}

// Finding 10 (server side): control characters are refused in names and
// reported strings, and what the activity log keeps of a claimed caller is
// escaped.
func TestControlCharactersAreRefusedOrEscaped(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	const evil = "\x1b]0;owned\a\x1b[2J"
	if st, b := s.Do(t, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: "sp" + evil}); st != 400 {
		t.Errorf("service principal named with escapes: %d %s", st, b)
	}
	if st, b := s.Do(t, "PUT", "/api/v1/subscriptions/default/resourceGroups/rg1", admin, wire.ResourceGroupCreate{Tags: map[string]string{"k": evil}}); st != 400 {
		t.Errorf("tag value with escapes: %d %s", st, b)
	}
	postToken(t, s, url.Values{"grant_type": {wire.GrantClientCredentials}, "client_id": {evil}, "client_secret": {"x"}})
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, 200, "GET", "/api/v1/activityLogs?result=Denied", admin, nil, &acts)
	raw, _ := json.Marshal(acts)
	if len(acts.Value) == 0 || bytes.Contains(raw, []byte(`\u001b`)) || !strings.Contains(acts.Value[0].Caller, `\x1b]0;owned\x07\x1b[2J`) {
		t.Errorf("claimed caller in the activity log: %+v", acts.Value)
	}
}

// Finding 11: every paged list serves exactly 1,000 items without a
// nextLink and 1,001 with one, and the next page holds the last item.
func TestListsAtExactlyOneThousand(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	st := s.Srv.Store
	ctx := t.Context()
	at := time.Now().UTC()
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/bulk", admin, map[string]string{}, nil)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/bulk/resourceGroups/rg", admin, wire.ResourceGroupCreate{}, nil)
	if err := st.CreatePublisher(ctx, store.Publisher{Name: "Bulk", PublicKey: bytes.Repeat([]byte{1}, 32), CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	host := store.Machine{ID: "bulk-host", Subscription: "bulk", ResourceGroup: "rg", Name: "host", Status: wire.StatusConnected, CreatedAt: at, UpdatedAt: at}
	if err := st.CreateMachine(ctx, host, false); err != nil {
		t.Fatal(err)
	}
	// add makes item i of every list: a group (and the host already counts
	// as machine 0 of the subscription), a machine, an activity entry, a
	// run command and a package.
	add := func(i int) {
		t.Helper()
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		if i > 0 { // "rg" is group 0
			must(st.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "bulk", Name: fmt.Sprintf("g%04d", i), CreatedAt: at}))
			m := host
			m.ID, m.Name = fmt.Sprintf("bulk-%04d", i), fmt.Sprintf("m%04d", i)
			must(st.CreateMachine(ctx, m, false))
		}
		must(st.AppendActivity(ctx, store.ActivityEntry{ID: fmt.Sprintf("00000000-bulk-%04d", i), Time: at, CallerID: "t", Caller: "t",
			Action: "Test.Bulk/write", Scope: "/subscriptions/bulk", Result: wire.ResultSucceeded, Status: 200}))
		_, err := st.CreateRunCommand(ctx, store.RunCommand{ID: fmt.Sprintf("r%05d", i), MachineID: "bulk-host", Name: fmt.Sprintf("run-%04d", i),
			Command: "true", State: wire.RunSucceeded, Timeout: time.Minute, CreatedAt: at, UpdatedAt: at})
		must(err)
		must(st.CreatePackage(ctx, store.Package{Publisher: "Bulk", Type: "T", Version: fmt.Sprintf("1.0.%d", i), Digest: fmt.Sprintf("sha256:%064d", i),
			Size: 1, Manifest: []byte(`{}`), Archive: []byte{0}, PublishedAt: at}))
	}
	for i := range 1000 {
		add(i)
	}
	lists := map[string]string{
		"resource groups":            "/api/v1/subscriptions/bulk/resourceGroups",
		"machines of a subscription": "/api/v1/subscriptions/bulk/machines",
		"activity":                   "/api/v1/activityLogs?action=Test.Bulk/*",
		"run commands":               "/api/v1/subscriptions/bulk/resourceGroups/rg/machines/host/runCommands",
		"extension packages":         "/api/v1/extensionPackages?publisher=Bulk",
	}
	page := func(path string) wire.List[json.RawMessage] {
		t.Helper()
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		var l wire.List[json.RawMessage]
		s.MustDo(t, 200, "GET", path+sep+"$top=1000", admin, nil, &l)
		return l
	}
	for name, path := range lists {
		if l := page(path); len(l.Value) != 1000 || l.NextLink != "" {
			t.Errorf("%s with exactly 1,000: %d items, nextLink %q; want 1,000 and none", name, len(l.Value), l.NextLink)
		}
	}
	add(1000)
	// machines of a group: the group "rg" holds host and m0001..m1000 now
	lists["machines of a group"] = "/api/v1/subscriptions/bulk/resourceGroups/rg/machines"
	for name, path := range lists {
		l := page(path)
		if len(l.Value) != 1000 || l.NextLink == "" {
			t.Errorf("%s with 1,001: %d items, nextLink %q; want 1,000 and a next page", name, len(l.Value), l.NextLink)
			continue
		}
		var next wire.List[json.RawMessage]
		s.MustDo(t, 200, "GET", l.NextLink, admin, nil, &next)
		if len(next.Value) != 1 || next.NextLink != "" {
			t.Errorf("%s, second page: %d items, nextLink %q; want the last one", name, len(next.Value), next.NextLink)
		}
	}
}

// Finding 12 on SQLite: NUL is refused in every text input with a 400.
func TestNULIsRefused(t *testing.T) {
	t.Parallel()
	testNUL(t, testutil.StartServer(t))
}

// Finding 12 on PostgreSQL: a NUL is a 400, never a 500, and one bad
// report does not fail its batch.
func TestNULIsRefusedOnPostgres(t *testing.T) {
	t.Parallel()
	testNUL(t, testutil.StartServer(t, testutil.WithStore(testutil.PostgresDSN(t))))
}

func testNUL(t *testing.T, s *testutil.Server) {
	admin := s.AdminToken(t)
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/v1/servicePrincipals", wire.ServicePrincipalCreate{DisplayName: "a\x00b"}},
		{"PUT", "/api/v1/roleDefinitions/custom", wire.RoleDefinition{Name: "x\x00", Actions: []string{"*/read"}, AssignableScopes: []string{"/"}}},
		{"PUT", "/api/v1/subscriptions/default/resourceGroups/rg9", wire.ResourceGroupCreate{Tags: map[string]string{"k": "v\x00"}}},
		{"GET", "/api/v1/subscriptions/default/machines?name=a%00b", nil},
		{"GET", "/api/v1/activityLogs?caller=%00", nil},
	} {
		if st, b := s.Do(t, tc.method, tc.path, admin, tc.body); st != 400 {
			t.Errorf("%s %s with a NUL: %d %s, want 400", tc.method, tc.path, st, b)
		}
	}
	id, secret := s.OnboardingPrincipal(t, "rg1")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{OSName: "debian"})
	bad, _ := json.Marshal(wire.MachineProperties{OSName: "deb\x00ian", OSPrettyName: "Debian\x00"})
	applied, _ := json.Marshal(wire.AppliedState{Generation: 1})
	batch := wire.ReportBatch{Reports: []wire.Report{{ID: "nul", Kind: wire.ReportProperties, Body: bad}, {ID: "applied", Kind: wire.ReportApplied, Body: applied}}}
	st, b := s.DoMachine(t, m, "POST", wire.PathReports, batch)
	var ack wire.ReportAck
	if st != 200 || json.Unmarshal(b, &ack) != nil || len(ack.Accepted) != 2 {
		t.Fatalf("a batch with a NUL report: %d %s, want both acknowledged", st, b)
	}
	var got wire.Machine
	s.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1", admin, nil, &got)
	if got.Properties.OSName != "debian" {
		t.Errorf("the NUL report changed the machine: %+v", got.Properties)
	}
}

// Finding 14: protected run-command parameters are sealed to the machine
// for their run, never returned or logged, and refused for an agent
// without a sealing key.
func TestRunCommandProtectedParameters(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	onboard := s.ClientToken(t, id, secret)
	m := s.OnboardMachine(t, onboard, "rg1", "m1", wire.MachineProperties{})
	const secretValue = "s3cret-db-password-Zq9"
	run := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1/runCommands/"
	var rc wire.RunCommand
	s.MustDo(t, http.StatusCreated, "PUT", run+"migrate", admin, wire.RunCommandCreate{Command: "migrate", Parameters: map[string]string{"LEVEL": "2"},
		ProtectedParameters: map[string]string{"DBPASS": secretValue}}, &rc)
	if !rc.HasProtectedParameters {
		t.Error("the run does not say it has protected parameters")
	}
	var sp wire.ServicePrincipalCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: "reader"}, &sp)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: "Reader", Scope: "/"}, nil)
	reader := s.ClientToken(t, sp.ClientID, sp.ClientSecret)
	for _, path := range []string{run + "migrate", run[:len(run)-1], "/api/v1/activityLogs"} {
		if st, b := s.Do(t, "GET", path, reader, nil); st != 200 || bytes.Contains(b, []byte(secretValue)) || bytes.Contains(b, []byte("DBPASS")) {
			t.Errorf("GET %s as a Reader: %d, holds the protected parameter: %t", path, st, bytes.Contains(b, []byte(secretValue)))
		}
	}
	stored, err := s.Srv.Store.GetRunCommand(t.Context(), m.MachineID, "migrate")
	if err != nil || bytes.Contains(stored.ProtectedParameters, []byte(secretValue)) || len(stored.ProtectedParameters) == 0 {
		t.Fatalf("stored run: %v, %d sealed bytes (plaintext in them: %t)", err, len(stored.ProtectedParameters), bytes.Contains(stored.ProtectedParameters, []byte(secretValue)))
	}
	var ds wire.DesiredState
	st, b := s.DoMachine(t, m, "GET", wire.PathDesiredState, nil)
	if st != 200 || json.Unmarshal(b, &ds) != nil || len(ds.RunCommands) != 1 || bytes.Contains(b, []byte(secretValue)) {
		t.Fatalf("desired state: %d", st)
	}
	sealed := ds.RunCommands[0].ProtectedParameters
	plain, err := sealing.Open(m.SealingKey, sealing.RunCommandAAD(m.MachineID, "MIGRATE"), sealed)
	if err != nil || string(plain) != `{"DBPASS":"`+secretValue+`"}` {
		t.Errorf("open the sealed parameters on the machine: %q, %v", plain, err)
	}
	if _, err := sealing.Open(m.SealingKey, sealing.RunCommandAAD(m.MachineID, "other"), sealed); err == nil {
		t.Error("the sealed parameters open for another run")
	}
	if _, err := sealing.Open(m.SealingKey, sealing.ExtensionAAD(m.MachineID, "migrate", "Corral", "RunCommand"), sealed); err == nil {
		t.Error("the sealed parameters open as extension settings")
	}
	if st, b := s.Do(t, "PUT", run+"both", admin, wire.RunCommandCreate{Command: "x", Parameters: map[string]string{"A": "1"},
		ProtectedParameters: map[string]string{"A": "2"}}); st != 400 || bytes.Contains(b, []byte(`"2"`)) {
		t.Errorf("a name in both maps: %d %s", st, b)
	}
	old := s.OnboardMachine(t, onboard, "rg1", "old", wire.MachineProperties{}, testutil.WithoutSealingKey())
	_ = old
	if st, b := s.Do(t, "PUT", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/old/runCommands/x", admin,
		wire.RunCommandCreate{Command: "x", ProtectedParameters: map[string]string{"P": "v"}}); st != 400 {
		t.Errorf("protected parameters for an agent without a sealing key: %d %s", st, b)
	}
}

// Also found: a resource group named with a trailing dot is refused, and
// connect answers the stored casing of the resource id.
func TestNamesAndResourceIDCasing(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	if st, b := s.Do(t, "PUT", "/api/v1/subscriptions/default/resourceGroups/web.", admin, wire.ResourceGroupCreate{}); st != 400 {
		t.Errorf("group name with a trailing dot: %d %s", st, b)
	}
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/Web", admin, wire.ResourceGroupCreate{}, nil)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: "admin", Role: "Connected Machine Onboarding",
		Scope: "/subscriptions/default/resourceGroups/Web"}, nil)
	req := connectRequestFor(t, "vm1")
	req.SubscriptionID, req.ResourceGroup = "DEFAULT", "WEB"
	var resp wire.ConnectResponse
	s.MustDo(t, http.StatusCreated, "POST", wire.PathConnect, admin, req, &resp)
	if want := "/subscriptions/default/resourceGroups/Web/machines/vm1"; resp.ResourceID != want {
		t.Errorf("connect answered resource id %q, want the stored casing %q", resp.ResourceID, want)
	}
}

// hashOf is how the server stores an API token.
func hashOf(tok string) string { return authn.HashSecret(tok) }
