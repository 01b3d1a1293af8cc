package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func TestOnboardingPrincipalCanOnlyOnboardInItsScope(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/rg2", admin, wire.ResourceGroupCreate{}, nil)
	tok := s.ClientToken(t, id, secret)

	m := s.OnboardMachine(t, tok, "rg1", "web-01", wire.MachineProperties{Environment: wire.EnvAWS, OSName: "ubuntu"})
	if m.ResourceID != "/subscriptions/default/resourceGroups/rg1/machines/web-01" {
		t.Fatalf("resource id %q", m.ResourceID)
	}
	// It cannot read, change or delete anything, nor onboard elsewhere.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/v1/subscriptions/default/resourceGroups/rg1/machines", nil},
		{"GET", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/web-01", nil},
		{"PATCH", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/web-01", wire.MachineUpdate{Tags: map[string]string{"a": "b"}}},
		{"DELETE", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/web-01", nil},
		{"GET", "/api/v1/activityLogs", nil},
		{"POST", "/api/v1/servicePrincipals", wire.ServicePrincipalCreate{DisplayName: "x"}},
		{"POST", "/api/v1/roleAssignments", wire.RoleAssignmentCreate{Principal: id, Role: "Owner", Scope: "/"}},
		{"POST", wire.PathConnect, wire.ConnectRequest{ProtocolVersion: 1, SubscriptionID: "default", ResourceGroup: "rg2", Name: "x", CSR: "x"}},
	} {
		status, b := s.Do(t, c.method, c.path, tok, c.body)
		if status != http.StatusForbidden {
			t.Errorf("%s %s: status %d, want 403: %s", c.method, c.path, status, b)
		}
	}
	// Every denied call is in the activity log with the caller.
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?result=Denied&caller="+id, admin, nil, &acts)
	if len(acts.Value) != 8 {
		t.Fatalf("denied entries: got %d, want 8: %+v", len(acts.Value), acts.Value)
	}
	for _, e := range acts.Value {
		if e.CallerID != id || e.SourceIP != "127.0.0.1" || e.CorrelationID == "" || e.Status != 403 {
			t.Errorf("entry %+v", e)
		}
	}
	// The onboarding itself was logged as Succeeded at the machine scope.
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?result=Succeeded&scope=/subscriptions/default/resourceGroups/rg1/machines/web-01", admin, nil, &acts)
	if len(acts.Value) != 1 || acts.Value[0].Action != "Corral.HybridCompute/machines/onboard/action" {
		t.Fatalf("onboard entry: %+v", acts.Value)
	}
}

func TestBadInputIsRefusedClearlyAndChangesNothing(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	rgPath := "/api/v1/subscriptions/default/resourceGroups/"
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed JSON", "PUT", rgPath + "bad1", `{"tags": {`, 400, wire.CodeInvalidJSON},
		{"unknown field", "PUT", rgPath + "bad2", `{"tagz": {}}`, 400, wire.CodeInvalidJSON},
		{"wrong type", "PUT", rgPath + "bad3", `{"tags": 5}`, 400, wire.CodeInvalidJSON},
		{"trailing data", "PUT", rgPath + "bad4", `{} {}`, 400, wire.CodeInvalidJSON},
		{"empty body", "PUT", rgPath + "bad5", ``, 400, wire.CodeInvalidJSON},
		{"bad name", "PUT", rgPath + "-bad", `{}`, 400, wire.CodeValidation},
		{"oversized", "PUT", rgPath + "bad6", `{"tags":{"a":"` + strings.Repeat("x", 2<<20) + `"}}`, 413, wire.CodeTooLarge},
		{"bad tag", "PUT", rgPath + "bad7", `{"tags":{"bad key":"v"}}`, 400, wire.CodeValidation},
		{"bad filter", "GET", "/api/v1/subscriptions/default/machines?environment=Mars", "", 400, wire.CodeValidation},
		{"bad top", "GET", "/api/v1/subscriptions/default/machines?$top=0", "", 400, wire.CodeValidation},
		{"bad skip token", "GET", "/api/v1/subscriptions/default/machines?$skipToken=%25%25", "", 400, wire.CodeValidation},
		{"unknown route", "GET", "/api/v1/nothing", "", 404, wire.CodeNotFound},
		{"missing group", "GET", rgPath + "nosuch", "", 404, wire.CodeNotFound},
	}
	for _, c := range cases {
		var body any
		if c.body != "" {
			body = c.body
		}
		status, b := s.Do(t, c.method, c.path, admin, body)
		if status != c.status {
			t.Errorf("%s: status %d, want %d: %.200s", c.name, status, c.status, b)
			continue
		}
		if e := testutil.DecodeError(t, b); e.Code != c.code || e.Message == "" {
			t.Errorf("%s: error %+v, want code %s", c.name, e, c.code)
		}
	}
	var groups wire.List[wire.ResourceGroup]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/subscriptions/default/resourceGroups", admin, nil, &groups)
	if len(groups.Value) != 0 {
		t.Fatalf("bad input created groups: %+v", groups.Value)
	}
}

func TestCredentialsAreChecked(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	s := testutil.StartServer(t, testutil.WithClock(clock))
	id, secret := s.OnboardingPrincipal(t, "rg1")

	post := func(form url.Values) (int, wire.OAuthError) {
		resp, err := s.Client.PostForm(s.URL+wire.PathToken, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var oe wire.OAuthError
		_ = json.NewDecoder(resp.Body).Decode(&oe)
		return resp.StatusCode, oe
	}
	if st, oe := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret + "x"}}); st != 401 || oe.Error != "invalid_client" {
		t.Errorf("wrong secret: %d %+v", st, oe)
	}
	if st, oe := post(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"wrong-password-123"}}); st != 401 || oe.Error != "invalid_grant" {
		t.Errorf("wrong password: %d %+v", st, oe)
	}
	if st, oe := post(url.Values{"grant_type": {"magic"}}); st != 400 || oe.Error != "unsupported_grant_type" {
		t.Errorf("bad grant: %d %+v", st, oe)
	}
	tok := s.ClientToken(t, id, secret)
	for _, bad := range []string{"", "Basic abc", "Bearer garbage", "Bearer " + tok[:len(tok)-4] + "AAAA", "Bearer crl_pat_nosuchtoken"} {
		req, _ := http.NewRequest("GET", s.URL+"/api/v1/me", nil)
		if bad != "" {
			req.Header.Set("Authorization", bad)
		}
		resp, err := s.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %q: status %d, want 401", bad, resp.StatusCode)
		}
	}
	clock.Advance(2 * time.Hour)
	status, b := s.Do(t, "GET", "/api/v1/me", tok, nil)
	if status != 401 || testutil.DecodeError(t, b).Code != wire.CodeExpiredToken {
		t.Fatalf("expired token: %d %s", status, b)
	}
	// Failed sign-ins are in the activity log, without the secret: the
	// first of the minute from this address in full, the others in the
	// address's summary entry.
	if err := s.Srv.API.FlushAnonymousDenials(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?action=Corral.Identity/oauth2/*&result=Denied", s.PasswordToken(t, "admin", testutil.AdminPassword), nil, &acts)
	if len(acts.Value) < 2 {
		t.Fatalf("denied sign-ins logged: %d", len(acts.Value))
	}
	raw, _ := json.Marshal(acts)
	if strings.Contains(string(raw), secret) || strings.Contains(string(raw), "wrong-password-123") {
		t.Fatal("a secret reached the activity log")
	}
}

func TestMachineCertificatesAreVerified(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})

	if status, b := s.DoMachine(t, m, "GET", wire.PathDesiredState, nil); status != 200 {
		t.Fatalf("own certificate refused: %d %s", status, b)
	}
	// No certificate.
	if status, b := s.Do(t, "GET", wire.PathDesiredState, "", nil); status != 401 || testutil.DecodeError(t, b).Code != wire.CodeInvalidCertificate {
		t.Errorf("no certificate: %d %s", status, b)
	}
	// A certificate from a foreign CA with the same machine id.
	foreign := selfSignedClient(t, m.MachineID, big.NewInt(42))
	if status, b := s.DoWith(t, clientWith(t, s, foreign), "GET", wire.PathDesiredState, "", nil); status != 401 {
		t.Errorf("foreign certificate: %d %s", status, b)
	}
	// A renewal supersedes the old certificate.
	var renewed wire.RenewResponse
	_, csr := newCSR(t)
	status, b := s.DoMachine(t, m, "POST", wire.PathCertificate, wire.RenewRequest{CSR: csr})
	if status != 200 || json.Unmarshal(b, &renewed) != nil {
		t.Fatalf("renew: %d %s", status, b)
	}
	if status, _ := s.DoMachine(t, m, "GET", wire.PathDesiredState, nil); status != 401 {
		t.Errorf("superseded certificate accepted: %d", status)
	}
	// Anonymous denials from one address are one entry plus a summary
	// per minute.
	if err := s.Srv.API.FlushAnonymousDenials(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, 200, "GET", "/api/v1/activityLogs?result=Denied", s.AdminToken(t), nil, &acts)
	if len(acts.Value) != 2 || !strings.Contains(acts.Value[0].Message, "2 more denied requests") {
		t.Errorf("refused certificates in the activity log: %+v, want the first and a summary of 2 more", acts.Value)
	}
}

func selfSignedClient(t *testing.T, cn string, serial *big.Int) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("corral://machines/" + cn)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func clientWith(t *testing.T, s *testutil.Server, c tls.Certificate) *http.Client {
	cfg := s.TLSConfig(t)
	cfg.Certificates = []tls.Certificate{c}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

func newCSR(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "m"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}
