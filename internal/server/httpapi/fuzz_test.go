package httpapi_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// The API fuzz targets send what the fuzzer makes to a real control plane
// (SQLite, or PostgreSQL when CORRAL_TEST_POSTGRES is set, where a NUL or
// invalid UTF-8 reaching the store is an error instead of a stored value).
// They check what every caller may rely on, whatever the input:
//   - never a 5xx: bad input is the caller's error, told as a 4xx;
//   - a refusal is a wire.ErrorResponse with a code and a message that is
//     valid UTF-8 and holds no character a terminal acts on;
//   - a body holding a NUL is refused;
//   - an accepted request answers valid JSON.
// docs/security.md, "Fuzzing", says how to run them.

// fuzzCall is one operation the fuzzer sends bodies (or queries) to.
type fuzzCall struct {
	method, path string
	machine      bool   // as the onboarded machine (mTLS), not the admin
	as           string // "onboard" (the onboarding principal's token) or "none"; else the admin
	contentType  string // default application/json
	seed         []byte
}

// fuzzAPI is the server a target sends every input to: starting one per
// input would spend the fuzzing time on TLS keys and migrations.
type fuzzAPI struct {
	s       *testutil.Server
	admin   string
	onboard string
	m       *testutil.Machine
	calls   []fuzzCall
	gets    []fuzzCall
}

// fuzzServer starts the server a target shares across its inputs (each
// fuzzing worker process starts its own).
func fuzzServer(f *testing.F) *fuzzAPI {
	f.Helper()
	var opts []testutil.Option
	onPG := os.Getenv("CORRAL_TEST_POSTGRES") != "" // else SQLite
	if onPG {
		opts = append(opts, testutil.WithStore(testutil.PostgresDSN(f)))
	}
	s := testutil.StartServer(f, opts...)
	admin := s.AdminToken(f)
	id, secret := s.OnboardingPrincipal(f, "rg1")
	onboard := s.ClientToken(f, id, secret)
	m := s.OnboardMachine(f, onboard, "rg1", "m1", wire.MachineProperties{OSName: "debian"})
	pub := s.NewPublisher(f, "Fuzz")
	archive, err := extpkg.BuildArchive(&wire.ExtensionManifest{Publisher: "Fuzz", Type: "Hello", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "true", Enable: "true"}}, extpkg.File{Name: "run.sh", Mode: 0o755, Body: []byte("#!/bin/sh\n")})
	if err != nil {
		f.Fatal(err)
	}
	if st, b := s.UploadPackage(f, "Fuzz", archive); st != http.StatusCreated {
		f.Fatalf("upload: %d %s", st, b)
	}
	catalog, _ := json.Marshal(pub.Sign(f, []wire.CatalogEntry{{Type: "Hello", Version: "1.0.0", Digest: extpkg.Digest(archive), Size: int64(len(archive))}}))
	sshPub, _, _ := ed25519.GenerateKey(rand.Reader)
	sk, _ := ssh.NewPublicKey(sshPub)
	sshReq, _ := json.Marshal(wire.SSHCertificateRequest{PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sk)))})
	fabrikam, _, _ := ed25519.GenerateKey(rand.Reader)
	publisher, _ := json.Marshal(wire.PublisherCreate{PublicKey: fabrikam})
	props, _ := json.Marshal(wire.MachineProperties{OSName: "debian", Hostname: "m1", IPAddresses: []string{"10.0.0.1"}})
	applied, _ := json.Marshal(wire.AppliedState{Generation: 1})
	batch, _ := json.Marshal(wire.ReportBatch{Reports: []wire.Report{
		{ID: "r-1", Kind: wire.ReportApplied, TakenAt: time.Now().UTC(), Body: applied},
		{ID: "r-2", Kind: wire.ReportProperties, TakenAt: time.Now().UTC(), Body: props},
		{ID: "r-3", Kind: wire.ReportExtension, TakenAt: time.Now().UTC(), Body: []byte(`{"name":"rc","state":"Succeeded"}`)},
	}})
	const (
		sub     = "/api/v1/subscriptions/default"
		rg      = sub + "/resourceGroups/rg1"
		machine = rg + "/machines/m1"
		scope   = `"scope":"/subscriptions/default/resourceGroups/rg1"`
		deploy  = `"classifications":["Security"],"reboot":"Never","window":"2h"`
	)
	// A user of its own for the password operation: the fuzzer setting the
	// admin's password would revoke the token every call uses.
	s.MustDo(f, http.StatusCreated, "POST", "/api/v1/users", admin, wire.UserCreate{Name: "fuzz", Password: "a-long-password-1234"}, nil)
	_, csr, err := machinekey.New("mf")
	if err != nil {
		f.Fatal(err)
	}
	connect, _ := json.Marshal(wire.ConnectRequest{ProtocolVersion: wire.ProtocolVersion, SubscriptionID: "default", ResourceGroup: "rg1", Name: "mf",
		CSR: string(csr), AgentVersion: "2026.11.0", Properties: wire.MachineProperties{OSName: "debian"}, AgentConfig: wire.AgentConfig{Mode: "full"}})
	a := &fuzzAPI{s: s, admin: admin, onboard: onboard, m: m}
	a.calls = []fuzzCall{
		{method: "PUT", path: "/api/v1/subscriptions/fz", seed: []byte(`{"displayName":"Two"}`)},
		{method: "PUT", path: sub + "/resourceGroups/rgf", seed: []byte(`{"tags":{"a":"b"}}`)},
		{method: "PATCH", path: machine, seed: []byte(`{"tags":{"tier":"web"}}`)},
		{method: "PUT", path: "/api/v1/roleDefinitions/fz", seed: []byte(`{"name":"Custom One","actions":["Corral.HybridCompute/machines/read"],"assignableScopes":["/"]}`)},
		{method: "POST", path: "/api/v1/roleAssignments", seed: []byte(`{"principal":"admin","role":"Reader","scope":"/subscriptions/default"}`)},
		{method: "POST", path: "/api/v1/servicePrincipals", seed: []byte(`{"displayName":"sp3","expiresIn":"48h"}`)},
		{method: "POST", path: "/api/v1/tokens", seed: []byte(`{"name":"t3","expiresIn":"1h"}`)},
		{method: "PUT", path: "/api/v1/publishers/Fabrikam", seed: publisher},
		{method: "PUT", path: "/api/v1/publishers/Fuzz/catalog", seed: catalog},
		{method: "POST", path: "/api/v1/publishers/Fuzz/packages", contentType: "application/gzip", seed: archive},
		{method: "PUT", path: machine + "/extensions/rc", seed: []byte(`{"publisher":"Corral","type":"RunCommand","settings":{"a":2}}`)},
		{method: "PUT", path: machine + "/runCommands/r2", seed: []byte(`{"script":"echo hi","parameters":{"A":"1"},"timeout":"5m"}`)},
		{method: "PUT", path: "/api/v1/jitPolicy?scope=" + url.QueryEscape("/subscriptions/default/resourceGroups/rg1/machines/m1"),
			seed: []byte(`{"ports":["22","53/udp"],"allowedSources":["192.0.2.0/24"],"maxDuration":"3h","requireApproval":true}`)},
		{method: "POST", path: machine + "/jitRequests", seed: []byte(`{"port":"22","sourceIp":"192.0.2.9","duration":"1h","justification":"deploy"}`)},
		{method: "POST", path: machine + "/sshCertificate", seed: sshReq},
		{method: "PUT", path: rg + "/protection", seed: []byte(`{"settings":{"action":"report","exclusions":{"paths":["/proc"]}}}`)},
		{method: "POST", path: machine + "/scans", seed: []byte(`{"type":"custom","paths":["/srv"]}`)},
		{method: "POST", path: sub + "/updateAssessments", seed: []byte("{" + scope + "}")},
		{method: "POST", path: sub + "/updateRuns", seed: []byte("{" + scope + "," + deploy + "}")},
		{method: "PUT", path: sub + "/updateSchedules/nightly", seed: []byte(`{` + scope + `,"cron":"0 3 * * *","timeZone":"Europe/Paris",` + deploy + `}`)},
		{method: "PUT", path: "/api/v1/users/fuzz/password", seed: []byte(`{"password":"a-third-long-password-3","mustChangePassword":true}`)},
		{method: "POST", path: wire.PathReports, machine: true, seed: batch},
		{method: "POST", path: wire.PathConnect, as: "onboard", seed: connect},
		{method: "POST", path: wire.PathToken, as: "none", contentType: "application/x-www-form-urlencoded",
			seed: []byte(url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {"wrong"}}.Encode())},
		{method: "POST", path: wire.PathDeviceCode, as: "none", contentType: "application/x-www-form-urlencoded",
			seed: []byte(url.Values{"subscription_id": {"default"}, "resource_group": {"rg1"}, "machine_name": {"m9"}}.Encode())},
	}
	a.gets = []fuzzCall{
		{path: sub + "/machines", seed: []byte("status=Connected&$top=2")},
		{path: rg + "/machines", seed: []byte("environment=onprem&tag=x&name=m")},
		{path: sub + "/resourceGroups", seed: []byte("$top=1&$skipToken=" + base64.RawURLEncoding.EncodeToString([]byte("rg0")))},
		{path: "/api/v1/activityLogs", seed: []byte("$top=3&result=Succeeded&from=2020-01-01T00:00:00Z&caller=admin")},
		{path: "/api/v1/activityChain", seed: []byte("after=0&$top=2")},
		{path: "/api/v1/roleAssignments", seed: []byte("scope=/subscriptions/default")},
		{path: "/api/v1/extensionPackages", seed: []byte("publisher=Corral&$top=1")},
		{path: machine + "/runCommands", seed: []byte("$top=5")},
		{path: "/api/v1/jitRequests", seed: []byte("scope=/subscriptions/default&$top=10")},
		{path: "/api/v1/jitPolicies", seed: []byte("scope=/subscriptions/default")},
		{path: machine + "/updates", seed: []byte("name=lib")},
		{path: "/api/v1/sshSessions", seed: []byte("active=false")},
		{path: "/api/v1/users", seed: []byte("$skipToken=" + base64.RawURLEncoding.EncodeToString([]byte("\x00")))},
		{path: "/api/v1/servicePrincipals", seed: []byte("$skipToken=" + base64.RawURLEncoding.EncodeToString([]byte("\xff\xfe")))},
	}
	return a
}

// check applies the properties every answer must have.
func (a *fuzzAPI) check(t *testing.T, c fuzzCall, body []byte, status int, resp []byte) {
	t.Helper()
	if os.Getenv("CORRAL_FUZZ_VERBOSE") != "" {
		t.Logf("%s %s: %d %.200s", c.method, c.path, status, resp)
	}
	if status >= 500 {
		t.Fatalf("%s %s: %d %s (a 5xx for the caller's input)", c.method, c.path, status, resp)
	}
	if status/100 == 2 {
		if len(resp) > 0 && !json.Valid(resp) {
			t.Fatalf("%s %s: %d with a body that is not JSON: %q", c.method, c.path, status, resp)
		}
		if c.contentType == "" && !c.machine && body != nil && wire.NULInJSON(body) >= 0 {
			t.Fatalf("%s %s: a body with a NUL was accepted (%d)", c.method, c.path, status)
		}
		return
	}
	var e wire.ErrorResponse
	var oe struct { // RFC 6749 section 5.2 errors, of the OAuth endpoints
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if (c.path == wire.PathToken || c.path == wire.PathDeviceCode) && json.Unmarshal(resp, &oe) == nil && oe.Error != "" {
		e.Error.Code, e.Error.Message = oe.Error, oe.Error+": "+oe.Description
	} else if err := json.Unmarshal(resp, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s %s: %d with %q, not an error body", c.method, c.path, status, resp)
	}
	if !utf8.ValidString(e.Error.Message) || strings.ContainsFunc(e.Error.Message, wire.UnsafeRune) {
		t.Fatalf("%s %s: error message %q holds invalid UTF-8 or a control character", c.method, c.path, e.Error.Message)
	}
}

func (a *fuzzAPI) do(t *testing.T, c fuzzCall, body []byte, query string) (int, []byte) {
	t.Helper()
	path := c.path
	if query != "" {
		path += "?" + query
	}
	client, token := a.s.Client, a.admin
	switch {
	case c.machine:
		client, token = a.m.Client, ""
	case c.as == "onboard":
		token = a.onboard
	case c.as == "none":
		token = ""
	}
	var rd *strings.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	method := c.method
	if method == "" {
		method = "GET"
	}
	req, err := http.NewRequest(method, a.s.URL+path, nil)
	if err != nil {
		return 0, nil // not a request a client could send (e.g. a bad query escape)
	}
	if rd != nil {
		req, _ = http.NewRequest(method, a.s.URL+path, rd)
		ct := c.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	return resp.StatusCode, out
}

// FuzzAPIBodies sends request bodies to the write operations of the API
// and the agent's report endpoint.
func FuzzAPIBodies(f *testing.F) {
	a := fuzzServer(f)
	for i, c := range a.calls {
		f.Add(uint8(i), c.seed)
		f.Add(uint8(i), []byte(`{"a":"\u0000"}`))
	}
	f.Add(uint8(0), []byte(`{"displayName":"x"}]`))
	f.Add(uint8(len(a.calls)-1), []byte(`{"reports":[{"id":"x","kind":"applied","takenAt":"2026-01-01T00:00:00Z","body":"e30="}]}`))
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		c := a.calls[int(op)%len(a.calls)]
		status, resp := a.do(t, c, body, "")
		a.check(t, c, body, status, resp)
	})
}

// FuzzAPIQueries sends query strings (filters, $top, $skipToken, scopes) to
// the list operations.
func FuzzAPIQueries(f *testing.F) {
	a := fuzzServer(f)
	for i, c := range a.gets {
		f.Add(uint8(i), string(c.seed))
	}
	f.Add(uint8(0), "name=%ff%fe")
	f.Add(uint8(3), "from=9999-99-99&to=x")
	f.Fuzz(func(t *testing.T, op uint8, query string) {
		c := a.gets[int(op)%len(a.gets)]
		if strings.ContainsFunc(query, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '#' }) {
			return // not a query a client sends as is (net/http's own 400); escaped, the fuzzer reaches it
		}
		status, resp := a.do(t, c, nil, query)
		if status == 0 {
			return
		}
		a.check(t, fuzzCall{method: "GET", path: c.path + "?" + query}, nil, status, resp)
		if status == 200 {
			var page struct {
				Value    []json.RawMessage `json:"value"`
				NextLink string            `json:"nextLink"`
			}
			if err := json.Unmarshal(resp, &page); err != nil {
				t.Fatalf("GET %s?%s: a 200 that is not a page: %v", c.path, query, err)
			}
		}
	})
}
