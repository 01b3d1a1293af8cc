package webui_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// uiClient is a cookie-keeping HTTPS client of the web UI that does not
// follow redirects, so tests see every 303 and Set-Cookie.
type uiClient struct {
	t testing.TB
	s *testutil.Server
	c *http.Client
}

func newUIClient(t testing.TB, s *testutil.Server) *uiClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &uiClient{t: t, s: s, c: &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: s.TLSConfig(t)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// result is one UI answer.
type result struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (c *uiClient) do(req *http.Request) result {
	c.t.Helper()
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), header: resp.Header}
}

func (c *uiClient) get(path string) result {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.s.URL+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do(req)
}

// post submits a form as a same-origin browser would (Origin and
// Sec-Fetch-Site set), with extra headers overriding those.
func (c *uiClient) post(path string, form url.Values, headers ...string) result {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.s.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.s.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	return c.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the forms on a page.
func (c *uiClient) csrf(body string) string {
	c.t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	return m[1]
}

// signIn signs in through the form and fails the test unless it worked.
func (c *uiClient) signIn(user, password string) {
	c.t.Helper()
	page := c.get("/ui/signin")
	r := c.post("/ui/signin", url.Values{"csrf": {c.csrf(page.body)}, "username": {user}, "password": {password}, "next": {"/ui/machines"}})
	if r.status != http.StatusSeeOther || r.location != "/ui/machines" {
		c.t.Fatalf("sign in as %s: status %d location %q:\n%s", user, r.status, r.location, r.body)
	}
}

// cookie is the value of a cookie the client holds for the UI.
func (c *uiClient) cookie(name string) string {
	u, _ := url.Parse(c.s.URL + "/ui/")
	for _, ck := range c.c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// newCSR makes a key and a PEM certificate request, as the agent does.
func newCSR(t testing.TB, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// onboard connects a machine through the real connect endpoint with the
// given properties, agent version and configuration.
func onboard(t testing.TB, s *testutil.Server, tok, rg, name, agentVersion string, props wire.MachineProperties, cfg wire.AgentConfig) wire.ConnectResponse {
	t.Helper()
	csr := newCSR(t, name)
	var resp wire.ConnectResponse
	s.MustDo(t, http.StatusCreated, "POST", wire.PathConnect, tok, wire.ConnectRequest{ProtocolVersion: wire.ProtocolVersion,
		SubscriptionID: "default", ResourceGroup: rg, Name: name, CSR: string(csr), AgentVersion: agentVersion,
		Properties: props, AgentConfig: cfg}, &resp)
	return resp
}

var awsProps = wire.MachineProperties{
	OSName: "debian", OSVersion: "12", OSPrettyName: "Debian GNU/Linux 12 (bookworm)", OSType: "linux",
	Kernel: "6.1.0-27-cloud-amd64", Arch: "amd64", Hostname: "web-01", FQDN: "web-01.prod.example.com",
	IPAddresses: []string{"10.0.1.15", "fd00::15"}, CPUCount: 4, CPUModel: "Intel(R) Xeon(R) Platinum 8259CL",
	MemoryBytes: 16 << 30, Environment: wire.EnvAWS, Manufacturer: "Amazon EC2", Model: "m5.xlarge",
	Cloud: &wire.CloudMetadata{InstanceID: "i-0abc123def4567890", Region: "eu-west-1", Zone: "eu-west-1a", AccountID: "123456789012", InstanceType: "m5.xlarge"},
}

var onPremProps = wire.MachineProperties{
	OSName: "ubuntu", OSVersion: "24.04", OSPrettyName: "Ubuntu 24.04.1 LTS", OSType: "linux", Kernel: "6.8.0-45-generic",
	Hostname: "db-legacy", CPUCount: 2, MemoryBytes: 4 << 30, Environment: wire.EnvOnPrem, Manufacturer: "Dell Inc.", Model: "PowerEdge R640",
}

// startFleet starts a server with web-01 (AWS, rg web, env=prod, current
// agent, lock-down configuration) and db-legacy (OnPrem, rg db, env=dev,
// an agent version more than a year old).
func startFleet(t testing.TB, opts ...testutil.Option) *testutil.Server {
	t.Helper()
	s := testutil.StartServer(t, opts...)
	admin := s.AdminToken(t)
	for _, m := range []struct {
		rg, name, version string
		props             wire.MachineProperties
		cfg               wire.AgentConfig
		tags              map[string]string
	}{
		{"web", "web-01", "2026.11.0", awsProps, wire.AgentConfig{Mode: "monitor", ExtensionsEnabled: true, GuestConfigurationEnabled: true,
			ExtensionsAllowlist: []string{"Corral/PatchManagement", "Corral/EndpointProtection"}, IncomingConnectionsEnabled: true,
			IncomingConnectionsPorts: []string{"22"}, ProxyURL: "http://proxy.example:3128", ExtensionsCPULimit: 20}, map[string]string{"env": "prod", "team": "web"}},
		{"db", "db-legacy", "2024.01.3", onPremProps, wire.AgentConfig{Mode: "full", ExtensionsEnabled: true}, map[string]string{"env": "dev"}},
	} {
		id, secret := s.OnboardingPrincipal(t, m.rg)
		onboard(t, s, s.ClientToken(t, id, secret), m.rg, m.name, m.version, m.props, m.cfg)
		s.MustDo(t, http.StatusOK, "PATCH", "/api/v1/subscriptions/default/resourceGroups/"+m.rg+"/machines/"+m.name, admin,
			wire.MachineUpdate{Tags: m.tags}, nil)
	}
	return s
}

// createUser makes a user holding role at scope and returns its password.
func createUser(t testing.TB, s *testutil.Server, name, role, scope string) string {
	t.Helper()
	pw := "pw-" + name + "-0123456789"
	admin := s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/users", admin, wire.UserCreate{Name: name, Password: pw}, nil)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: name, Role: role, Scope: scope}, nil)
	return pw
}

// activity queries the activity log as admin.
func activity(t testing.TB, s *testutil.Server, query url.Values) []wire.ActivityEntry {
	t.Helper()
	var l wire.List[wire.ActivityEntry]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?"+query.Encode(), s.AdminToken(t), nil, &l)
	return l.Value
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
