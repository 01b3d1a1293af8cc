package apidoc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func init() {
	// Package archives are validated as opaque binary bodies.
	openapi3filter.RegisterBodyDecoder("application/gzip", openapi3filter.FileBodyDecoder)
}

// uncoveredOps are operations ("METHOD /path") the happy calls of
// TestResponsesMatchTheDocument do not make yet, each with why. Their
// refusals (401, 400, 415, 404) are still checked.
var uncoveredOps = map[string]string{
	"POST /agent/v1/channel":      "a stream that stays open both ways; the agent daemon's tests (TestPushChannelTransports and every agent test) drive it",
	"POST /agent/v1/tunnels/{id}": "a byte stream both ways, opened by the agent when asked; internal/server/relay's tests drive it",
	"POST /api/v1/subscriptions/{sub}/resourceGroups/{rg}/machines/{name}/tunnel": "a byte stream both ways; internal/server/relay's tests drive it (single server and two replicas)",
	"GET /api/v1/sshSessions/{id}":      "a session exists only while a tunnel runs through a real agent; internal/server/access's session tests get and end one",
	"POST /api/v1/sshSessions/{id}/end": "a session exists only while a tunnel runs through a real agent; internal/server/access's session tests get and end one",
}

// apiCall is one request of the sweep.
type apiCall struct {
	method, pattern string
	params          map[string]string // path parameters
	query           string
	as              string // "admin", "none", or a machine's name
	contentType     string
	body            []byte
}

// docChecker validates real exchanges against the document.
type docChecker struct {
	t    *testing.T
	doc  *openapi3.T
	s    *testutil.Server
	adm  string
	ms   map[string]*testutil.Machine
	seen map[string][]int // "METHOD pattern" -> statuses answered
}

// loadDocument parses api/openapi.json with kin-openapi and checks it is a
// valid OpenAPI 3.1 document by kin-openapi's rules too.
func loadDocument(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(checkedInDocument(t))
	if err != nil {
		t.Fatalf("kin-openapi cannot load api/openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("kin-openapi finds api/openapi.json invalid: %v", err)
	}
	// Validate strictly: an object may hold only the properties the
	// document names, so a field it forgets fails the check. (The document
	// itself leaves objects open, for clients to tolerate new fields.)
	for _, ref := range doc.Components.Schemas {
		if sc := ref.Value; sc != nil && len(sc.Properties) > 0 && sc.AdditionalProperties.Has == nil && sc.AdditionalProperties.Schema == nil {
			closed := false
			sc.AdditionalProperties.Has = &closed
		}
	}
	return doc
}

// do sends c and validates the answer: its status must be one the
// operation declares, its headers and body must match the declared
// response. It returns the status and body.
func (k *docChecker) do(c apiCall) (int, []byte) {
	k.t.Helper()
	status, body, h, req := k.roundTrip(c)
	key := c.method + " " + c.pattern
	k.seen[key] = append(k.seen[key], status)
	if err := k.check(c, req, status, h, body); err != nil {
		if len(body) > 600 {
			body = append(body[:600:600], "..."...)
		}
		k.t.Errorf("%s %s (as %s) answered %d, which the document does not describe: %v\nbody: %s", c.method, req.URL.Path, c.as, status, err, body)
	}
	return status, body
}

// send is roundTrip without the headers.
func (k *docChecker) send(c apiCall) (int, []byte, *http.Request) {
	status, body, _, req := k.roundTrip(c)
	return status, body, req
}

func (k *docChecker) roundTrip(c apiCall) (int, []byte, http.Header, *http.Request) {
	t := k.t
	t.Helper()
	path := c.pattern
	for name, v := range c.params {
		path = strings.Replace(path, "{"+name+"}", url.PathEscape(v), 1)
	}
	if strings.Contains(path, "{") {
		t.Fatalf("%s %s: path parameters left in %s", c.method, c.pattern, path)
	}
	u := k.s.URL + path
	if c.query != "" {
		u += "?" + c.query
	}
	req, err := http.NewRequest(c.method, u, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	client := k.s.Client
	switch c.as {
	case "none":
	case "admin":
		req.Header.Set("Authorization", "Bearer "+k.adm)
	default:
		m := k.ms[c.as]
		if m == nil {
			t.Fatalf("no machine %s", c.as)
		}
		client = m.Client
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header, req
}

func (k *docChecker) operation(method, pattern string) (*openapi3.PathItem, *openapi3.Operation) {
	item := k.doc.Paths.Value(pattern)
	if item == nil {
		k.t.Fatalf("the document has no path %s", pattern)
	}
	op := item.GetOperation(method)
	if op == nil {
		k.t.Fatalf("the document has no %s %s", method, pattern)
	}
	return item, op
}

func (k *docChecker) check(c apiCall, req *http.Request, status int, h http.Header, body []byte) error {
	item, op := k.operation(c.method, c.pattern)
	route := &routers.Route{Spec: k.doc, Path: c.pattern, PathItem: item, Method: c.method, Operation: op}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: c.params, Route: route},
		Status:                 status, Header: h, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	return openapi3filter.ValidateResponse(context.Background(), in)
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResponsesMatchTheDocument calls every operation of the document
// against a real server, first as it is meant to be called (each must
// succeed), then without credentials, with malformed JSON, with the wrong
// media type and on resources that do not exist. Every answer must have a
// status the operation declares and a body that validates against the
// declared schema (kin-openapi, JSON Schema 2020-12), so a field the
// document forgets, a wrong type, an undeclared error status or a list
// answered as null fails here.
func TestResponsesMatchTheDocument(t *testing.T) {
	t.Parallel()
	doc := loadDocument(t)
	s := testutil.StartServer(t)
	adm := s.AdminToken(t)
	k := &docChecker{t: t, doc: doc, s: s, adm: adm, ms: map[string]*testutil.Machine{}, seen: map[string][]int{}}

	// Fixtures made through the API as the admin.
	for _, rg := range []string{"rg1", "rg-del"} {
		s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/"+rg, adm, wire.ResourceGroupCreate{}, nil)
	}
	props := wire.MachineProperties{OSName: "debian", OSVersion: "12", Environment: wire.EnvOnPrem, IPAddresses: []string{"192.0.2.7"},
		Cloud: &wire.CloudMetadata{Region: "eu"}}
	// m2 disconnects, m3 is deleted, m5 renews its certificate, m6 takes
	// the refused calls below (one of which disconnects it).
	for _, name := range []string{"m1", "m2", "m3", "m5", "m6"} {
		k.ms[name] = s.OnboardMachine(t, adm, "rg1", name, props)
	}
	m1ID := "/subscriptions/default/resourceGroups/rg1/machines/m1"
	m1 := "/api/v1" + m1ID
	s.MustDo(t, http.StatusCreated, "PUT", m1+"/extensions/rc", adm, wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand",
		Settings: json.RawMessage(`{"a":1}`)}, nil)
	s.MustDo(t, http.StatusCreated, "PUT", m1+"/runCommands/r1", adm, wire.RunCommandCreate{Command: "true", Timeout: wire.Duration(time.Minute)}, nil)
	var ds wire.DesiredState
	if st, b := s.DoMachine(t, k.ms["m1"], "GET", wire.PathDesiredState, nil); st != http.StatusOK || json.Unmarshal(b, &ds) != nil || len(ds.Extensions) != 1 {
		t.Fatalf("desired state: %d %s", st, b)
	}
	var ra wire.RoleAssignment
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", adm, wire.RoleAssignmentCreate{Principal: "admin", Role: "Reader", Scope: m1ID}, &ra)
	var ra2 wire.RoleAssignment
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", adm, wire.RoleAssignmentCreate{Principal: "admin", Role: "Contributor", Scope: m1ID}, &ra2)
	var sp1, sp2 wire.ServicePrincipalCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", adm, wire.ServicePrincipalCreate{DisplayName: "sp1"}, &sp1)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", adm, wire.ServicePrincipalCreate{DisplayName: "sp2"}, &sp2)
	var tok2 wire.APITokenCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/tokens", adm, wire.APITokenCreate{Name: "t2"}, &tok2)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/users", adm, wire.UserCreate{Name: "u1", Password: "a-long-password-1234"}, nil)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/roleDefinitions/custom2", adm, wire.RoleDefinition{Name: "Custom Two",
		Actions: []string{"Corral.HybridCompute/machines/read"}}, nil)
	contoso := s.NewPublisher(t, "Contoso")
	man := wire.ExtensionManifest{Publisher: "Contoso", Type: "Agent", Version: "1.0.0",
		Handlers: wire.ExtensionHandlers{Install: "true", Enable: "true"}}
	archive, err := extpkg.BuildArchive(&man)
	if err != nil {
		t.Fatal(err)
	}
	fabrikamKey, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, renewCSR, err := machinekey.New("m5")
	if err != nil {
		t.Fatal(err)
	}
	_, connectCSR, err := machinekey.New("m4")
	if err != nil {
		t.Fatal(err)
	}
	dc, err := s.Client.PostForm(s.URL+wire.PathDeviceCode, url.Values{"subscription_id": {"default"}, "resource_group": {"rg1"}})
	if err != nil {
		t.Fatal(err)
	}
	var code wire.DeviceCodeResponse
	if err := json.NewDecoder(dc.Body).Decode(&code); err != nil {
		t.Fatal(err)
	}
	dc.Body.Close()

	jit := accessFixtures(t, s, k.ms["m1"], m1, adm)

	const (
		sub     = "/api/v1/subscriptions/{sub}"
		rg      = sub + "/resourceGroups/{rg}"
		machine = rg + "/machines/{name}"
		js      = "application/json"
		form    = "application/x-www-form-urlencoded"
	)
	at := func(kv ...string) map[string]string {
		p := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p[kv[i]] = kv[i+1]
		}
		return p
	}
	inRG := at("sub", "default", "rg", "rg1")
	onM1 := at("sub", "default", "rg", "rg1", "name", "m1")
	with := func(p map[string]string, kv ...string) map[string]string {
		out := at(kv...)
		for k, v := range p {
			out[k] = v
		}
		return out
	}

	// Every operation as it is meant to be called, in an order where
	// deletions and identity changes come last.
	happy := []apiCall{
		{method: "GET", pattern: "/api/v1/openapi.json", as: "none"},
		{method: "POST", pattern: wire.PathToken, as: "none", contentType: form,
			body: []byte(url.Values{"grant_type": {wire.GrantPassword}, "username": {"admin"}, "password": {s.AdminPassword}}.Encode())},
		{method: "POST", pattern: wire.PathDeviceCode, as: "none", contentType: form,
			body: []byte(url.Values{"subscription_id": {"default"}, "resource_group": {"rg1"}, "machine_name": {"m9"}}.Encode())},
		{method: "GET", pattern: "/api/v1/me", as: "admin"},
		{method: "GET", pattern: "/api/v1/subscriptions", as: "admin"},
		{method: "GET", pattern: sub, params: at("sub", "default"), as: "admin"},
		{method: "PUT", pattern: sub, params: at("sub", "sub2"), as: "admin", contentType: js, body: jsonBody(t, wire.SubscriptionCreate{DisplayName: "Two"})},
		{method: "GET", pattern: sub + "/resourceGroups", params: at("sub", "default"), query: "$top=1", as: "admin"},
		{method: "GET", pattern: rg, params: inRG, as: "admin"},
		{method: "PUT", pattern: rg, params: at("sub", "default", "rg", "rg2"), as: "admin", contentType: js, body: []byte(`{"tags":{"a":"b"}}`)},
		{method: "GET", pattern: sub + "/machines", params: at("sub", "default"), query: "status=Connected&$top=2", as: "admin"},
		{method: "GET", pattern: rg + "/machines", params: inRG, query: "environment=onprem&tag=x", as: "admin"},
		{method: "GET", pattern: machine, params: onM1, as: "admin"},
		{method: "PATCH", pattern: machine, params: onM1, as: "admin", contentType: js, body: []byte(`{"tags":{"tier":"web"}}`)},
		{method: "GET", pattern: "/api/v1/deviceCodes", as: "admin"},
		{method: "POST", pattern: "/api/v1/deviceCodes/{code}/approve", params: at("code", code.UserCode), as: "admin"},
		{method: "GET", pattern: "/api/v1/roleDefinitions", as: "admin"},
		{method: "GET", pattern: "/api/v1/roleDefinitions/{id}", params: at("id", "Owner"), as: "admin"},
		{method: "PUT", pattern: "/api/v1/roleDefinitions/{id}", params: at("id", "custom1"), as: "admin", contentType: js,
			body: jsonBody(t, wire.RoleDefinition{Name: "Custom One", Actions: []string{"Corral.HybridCompute/machines/read"}})},
		{method: "GET", pattern: "/api/v1/roleAssignments", query: "scope=/subscriptions/default", as: "admin"},
		{method: "POST", pattern: "/api/v1/roleAssignments", as: "admin", contentType: js,
			body: jsonBody(t, wire.RoleAssignmentCreate{Principal: sp1.ClientID, Role: "Reader", Scope: "/subscriptions/default"})},
		{method: "GET", pattern: "/api/v1/roleAssignments/{id}", params: at("id", ra.ID), as: "admin"},
		{method: "GET", pattern: "/api/v1/users", as: "admin"},
		{method: "POST", pattern: "/api/v1/users", as: "admin", contentType: js, body: jsonBody(t, wire.UserCreate{Name: "u2", Password: "another-long-password-1"})},
		{method: "PUT", pattern: "/api/v1/users/{name}/password", params: at("name", "u2"), as: "admin", contentType: js,
			body: jsonBody(t, wire.PasswordSet{Password: "a-third-long-password-3", MustChangePassword: true})},
		{method: "PATCH", pattern: "/api/v1/users/{name}", params: at("name", "u2"), as: "admin", contentType: js, body: []byte(`{"disabled":true}`)},
		{method: "GET", pattern: "/api/v1/servicePrincipals", as: "admin"},
		{method: "POST", pattern: "/api/v1/servicePrincipals", as: "admin", contentType: js, body: []byte(`{"displayName":"sp3","expiresIn":"48h"}`)},
		{method: "GET", pattern: "/api/v1/servicePrincipals/{id}", params: at("id", sp1.ClientID), as: "admin"},
		{method: "GET", pattern: "/api/v1/tokens", as: "admin"},
		{method: "POST", pattern: "/api/v1/tokens", as: "admin", contentType: js, body: []byte(`{"name":"t3","expiresIn":"1h"}`)},
		{method: "GET", pattern: "/api/v1/activityLogs", query: "$top=3&result=Succeeded&from=2020-01-01T00:00:00Z", as: "admin"},
		{method: "GET", pattern: "/api/v1/activityLogs", query: "$top=2&order=asc", as: "admin"},
		{method: "GET", pattern: "/api/v1/activityChain", query: "after=0&$top=2", as: "admin"},
		{method: "GET", pattern: "/api/v1/publishers", as: "admin"},
		{method: "GET", pattern: "/api/v1/publishers/{name}", params: at("name", "Contoso"), as: "admin"},
		{method: "PUT", pattern: "/api/v1/publishers/{name}", params: at("name", "Fabrikam"), as: "admin", contentType: js,
			body: jsonBody(t, wire.PublisherCreate{PublicKey: fabrikamKey})},
		{method: "POST", pattern: "/api/v1/publishers/{name}/packages", params: at("name", "Contoso"), as: "admin", contentType: "application/gzip", body: archive},
		{method: "GET", pattern: "/api/v1/publishers/{name}/catalog", params: at("name", wire.PublisherCorral), as: "admin"},
		{method: "GET", pattern: "/api/v1/extensionPackages", query: "publisher=Corral&$top=1", as: "admin"},
		{method: "GET", pattern: machine + "/extensions", params: onM1, as: "admin"},
		{method: "GET", pattern: machine + "/extensions/{ext}", params: with(onM1, "ext", "rc"), as: "admin"},
		{method: "PUT", pattern: machine + "/extensions/{ext}", params: with(onM1, "ext", "rc"), as: "admin", contentType: js,
			body: []byte(`{"publisher":"Corral","type":"RunCommand","settings":{"a":2}}`)},
		{method: "GET", pattern: machine + "/runCommands", params: onM1, query: "$top=5", as: "admin"},
		{method: "GET", pattern: machine + "/runCommands/{run}", params: with(onM1, "run", "r1"), as: "admin"},
		{method: "PUT", pattern: machine + "/runCommands/{run}", params: with(onM1, "run", "r2"), as: "admin", contentType: js,
			body: []byte(`{"script":"echo hi","parameters":{"A":"1"},"timeout":"5m"}`)},
		{method: "PUT", pattern: "/api/v1/jitPolicy", query: "scope=" + url.QueryEscape(m1ID), as: "admin", contentType: js,
			body: []byte(`{"ports":["22","53/udp"],"allowedSources":["192.0.2.0/24"],"maxDuration":"3h","requireApproval":true}`)},
		{method: "GET", pattern: "/api/v1/jitPolicy", query: "scope=" + url.QueryEscape(m1ID), as: "admin"},
		{method: "GET", pattern: "/api/v1/jitPolicies", query: "scope=/subscriptions/default", as: "admin"},
		{method: "GET", pattern: machine + "/jitStatus", params: onM1, as: "admin"},
		{method: "POST", pattern: machine + "/jitRequests", params: onM1, as: "admin", contentType: js,
			body: []byte(`{"port":"22","sourceIp":"192.0.2.9","duration":"1h","justification":"deploy"}`)},
		{method: "GET", pattern: machine + "/jitRequests", params: onM1, query: "active=true&$top=10", as: "admin"},
		{method: "GET", pattern: "/api/v1/jitRequests", query: "scope=/subscriptions/default&$top=10", as: "admin"},
		{method: "GET", pattern: "/api/v1/jitRequests/{id}", params: at("id", jit.approve), as: "admin"},
		{method: "POST", pattern: "/api/v1/jitRequests/{id}/approve", params: at("id", jit.approve), as: "admin"},
		{method: "POST", pattern: "/api/v1/jitRequests/{id}/reject", params: at("id", jit.reject), as: "admin"},
		{method: "POST", pattern: "/api/v1/jitRequests/{id}/revoke", params: at("id", jit.approve), as: "admin"},
		{method: "POST", pattern: machine + "/sshCertificate", params: onM1, as: "admin", contentType: js, body: jsonBody(t, wire.SSHCertificateRequest{PublicKey: jit.publicKey})},
		{method: "GET", pattern: "/api/v1/sshSessions", query: "active=false", as: "admin"},
		{method: "GET", pattern: machine + "/sshSessions", params: onM1, as: "admin"},
		{method: "POST", pattern: wire.PathConnect, as: "admin", contentType: js, body: jsonBody(t, wire.ConnectRequest{ProtocolVersion: wire.ProtocolVersion,
			SubscriptionID: "default", ResourceGroup: "rg1", Name: "m4", CSR: string(connectCSR), AgentVersion: "2026.11.0", Properties: props,
			AgentConfig: wire.AgentConfig{Mode: "full"}})},
		{method: "GET", pattern: wire.PathDesiredState, as: "m1"},
		{method: "POST", pattern: wire.PathReports, as: "m1", contentType: js, body: jsonBody(t, wire.ReportBatch{Reports: []wire.Report{{ID: "r-1",
			Kind: wire.ReportApplied, TakenAt: time.Now().UTC(), Body: jsonBody(t, wire.AppliedState{Generation: ds.Generation})}}})},
		{method: "GET", pattern: wire.PathCatalogs + "{publisher}", params: at("publisher", wire.PublisherCorral), as: "m1"},
		{method: "GET", pattern: wire.PathPackages + "{digest}", params: at("digest", ds.Extensions[0].Digest), as: "m1"},
		{method: "POST", pattern: wire.PathCertificate, as: "m5", contentType: js, body: jsonBody(t, wire.RenewRequest{CSR: string(renewCSR)})},
		{method: "DELETE", pattern: wire.PathMachine, as: "m2"},
		{method: "DELETE", pattern: "/api/v1/jitPolicy", query: "scope=" + url.QueryEscape(m1ID), as: "admin"},
		{method: "DELETE", pattern: machine, params: at("sub", "default", "rg", "rg1", "name", "m3"), as: "admin"},
		{method: "DELETE", pattern: machine + "/extensions/{ext}", params: with(onM1, "ext", "rc"), as: "admin"},
		{method: "DELETE", pattern: rg, params: at("sub", "default", "rg", "rg-del"), as: "admin"},
		{method: "DELETE", pattern: "/api/v1/roleDefinitions/{id}", params: at("id", "custom2"), as: "admin"},
		{method: "DELETE", pattern: "/api/v1/roleAssignments/{id}", params: at("id", ra2.ID), as: "admin"},
		{method: "DELETE", pattern: "/api/v1/users/{name}", params: at("name", "u1"), as: "admin"},
		{method: "DELETE", pattern: "/api/v1/servicePrincipals/{id}", params: at("id", sp2.ClientID), as: "admin"},
		{method: "DELETE", pattern: "/api/v1/tokens/{id}", params: at("id", tok2.ID), as: "admin"},
	}
	// The signed catalog needs the package uploaded above: sign it after.
	var signed []byte
	for _, c := range happy {
		st, b := k.do(c)
		if st < 200 || st > 299 {
			t.Errorf("%s %s (as %s): %d, want success: %s", c.method, c.pattern, c.as, st, b)
		}
		if c.pattern == "/api/v1/publishers/{name}/packages" {
			var pkg wire.ExtensionPackage
			if err := json.Unmarshal(b, &pkg); err != nil {
				t.Fatal(err)
			}
			signed = jsonBody(t, contoso.Sign(t, []wire.CatalogEntry{{Type: "Agent", Version: "1.0.0", Digest: pkg.Digest, Size: pkg.Size}}))
		}
	}
	if st, b := k.do(apiCall{method: "PUT", pattern: "/api/v1/publishers/{name}/catalog", params: at("name", "Contoso"), as: "admin",
		contentType: js, body: signed}); st != http.StatusOK {
		t.Errorf("put catalog: %d %s", st, b)
	}
	k.checkStream(at())
	k.protectionCalls(onM1)
	k.updatesCalls(onM1)
	k.bulkCalls()
	k.policyCalls()

	// Every operation refused: no credentials, a malformed or mistyped
	// body, resources that do not exist.
	for _, path := range sortedKeys(doc.Paths.Map()) {
		item := doc.Paths.Value(path)
		for method, op := range item.Operations() {
			params := map[string]string{}
			for _, p := range op.Parameters {
				if p.Value.In == "path" {
					params[p.Value.Name] = "no-such-" + strings.ToLower(p.Value.Name)
				}
			}
			if _, ok := params["sub"]; ok {
				params["sub"] = "default"
			}
			secured := op.Security == nil || len(*op.Security) > 0
			if secured {
				k.do(apiCall{method: method, pattern: path, params: params, as: "none"})
			}
			as := "admin"
			for _, req := range *op.Security {
				if _, ok := req["machineCertificate"]; ok {
					as = "m6"
				}
			}
			if !secured {
				as = "none"
			}
			if path == wire.PathStream {
				continue // a WebSocket: checked above
			}
			k.do(apiCall{method: method, pattern: path, params: params, as: as})
			if op.RequestBody == nil {
				continue
			}
			for ct := range op.RequestBody.Value.Content {
				bad := "text/plain"
				if ct == form {
					bad = js
				}
				k.do(apiCall{method: method, pattern: path, params: params, as: as, contentType: bad, body: []byte("x")})
				if ct == js {
					k.do(apiCall{method: method, pattern: path, params: params, as: as, contentType: js, body: []byte(`{"unknown":`)})
				}
			}
		}
	}

	// The admin changes its own password last: that ends its sessions, so
	// the checks below sign in again.
	const newPassword = "the-admin-password-after-the-sweep"
	if st, b := k.do(apiCall{method: "PUT", pattern: wire.PathMyPassword, as: "admin", contentType: js,
		body: jsonBody(t, wire.PasswordChange{CurrentPassword: s.AdminPassword, NewPassword: newPassword})}); st != http.StatusNoContent {
		t.Fatalf("change the admin's password: %d %s", st, b)
	}
	k.adm = passwordToken(t, s, "admin", newPassword)

	// Coverage: every operation answered, at least once, with success.
	var missed []string
	for _, path := range sortedKeys(doc.Paths.Map()) {
		for method := range doc.Paths.Value(path).Operations() {
			ok := false
			for _, st := range k.seen[method+" "+path] {
				ok = ok || (st >= 200 && st < 300) || st == http.StatusSwitchingProtocols
			}
			if _, excused := uncoveredOps[method+" "+path]; !ok && !excused {
				missed = append(missed, method+" "+path)
			}
		}
	}
	if len(missed) > 0 {
		sort.Strings(missed)
		t.Errorf("operations never called with success here (add them to the happy calls, or to uncoveredOps with why): %v", missed)
	}
	// The check can fail: once the document forgets a field, or says an
	// error status is not possible, a real answer no longer validates.
	get := apiCall{method: "GET", pattern: machine, params: onM1, as: "admin"}
	forget := func(name string, change func()) {
		change()
		st, b, req := k.send(get)
		if err := k.check(get, req, st, http.Header{"Content-Type": {js}}, b); err == nil {
			t.Errorf("a document that %s still validates GET %s: %d %s", name, m1, st, b)
		}
	}
	forget("forgets Machine.agentVersion", func() { delete(doc.Components.Schemas["Machine"].Value.Properties, "agentVersion") })
	_, getMachine := k.operation("GET", machine)
	get.params = at("sub", "default", "rg", "rg1", "name", "no-such-machine")
	forget("says GET machine cannot answer 404", func() { getMachine.Responses.Delete("404") })

	n := 0
	for _, sts := range k.seen {
		n += len(sts)
	}
	t.Logf("%d responses of %d operations validated against the document", n, len(k.seen))
}

// checkStream opens the push channel as m1: the upgrade answers 101, and
// the server's welcome frame validates against the message schema of
// x-corral-websocket.
func (k *docChecker) checkStream(map[string]string) {
	t := k.t
	t.Helper()
	_, op := k.operation("GET", wire.PathStream)
	if op.Responses.Status(http.StatusSwitchingProtocols) == nil {
		t.Fatal("the stream declares no 101")
	}
	ext, ok := op.Extensions["x-corral-websocket"].(map[string]any)
	if !ok {
		t.Fatalf("the stream has no x-corral-websocket: %#v", op.Extensions)
	}
	var schema openapi3.Schema
	if err := json.Unmarshal(jsonBody(t, ext["message"]), &schema); err != nil {
		t.Fatal(err)
	}
	for name, p := range schema.Properties {
		if p.Ref != "" {
			c := k.doc.Components.Schemas[strings.TrimPrefix(p.Ref, "#/components/schemas/")]
			if c == nil {
				t.Fatalf("message property %s refers to %s, which is not a component", name, p.Ref)
			}
			p.Value = c.Value
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(k.s.URL, "https")+wire.PathStream,
		&websocket.DialOptions{HTTPClient: k.ms["m1"].Client})
	if err != nil {
		t.Fatalf("dial the stream: %v", err)
	}
	defer conn.CloseNow()
	k.seen["GET "+wire.PathStream] = append(k.seen["GET "+wire.PathStream], resp.StatusCode)
	hello := wire.StreamMessage{Type: wire.MsgHello, ProtocolVersion: wire.ProtocolVersion, AgentVersion: "2026.11.0"}
	if err := schema.VisitJSON(toJSONValue(t, hello), openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("hello does not validate: %v", err)
	}
	if err := wsjson.Write(ctx, conn, hello); err != nil {
		t.Fatal(err)
	}
	var welcome json.RawMessage
	if err := wsjson.Read(ctx, conn, &welcome); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(welcome, &v); err != nil {
		t.Fatal(err)
	}
	if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("the welcome frame %s does not validate against the documented message: %v", welcome, err)
	}
	// A message that breaks the schema is refused by it (the check can fail).
	if err := schema.VisitJSON(map[string]any{"type": "hello", "heartbeatInterval": "soon"}, openapi3.EnableJSONSchema2020()); err == nil {
		t.Error("the message schema accepts a heartbeatInterval that is not a duration")
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

func toJSONValue(t *testing.T, v any) any {
	t.Helper()
	var out any
	if err := json.Unmarshal(jsonBody(t, v), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// protectionCalls makes the endpoint protection operations succeed, in the
// order they depend on each other: enable a scope, import a signature set
// the machine downloads, a detection and a quarantined file reported by
// the machine, then the alert, scan and restore operations on them.
func (k *docChecker) protectionCalls(onM1 map[string]string) {
	t := k.t
	const (
		js      = "application/json"
		sub     = "/api/v1/subscriptions/{sub}"
		rg      = sub + "/resourceGroups/{rg}"
		machine = rg + "/machines/{name}"
	)
	must := func(c apiCall) []byte {
		t.Helper()
		st, b := k.do(c)
		if st < 200 || st > 299 {
			t.Fatalf("%s %s (as %s): %d, want success: %s", c.method, c.pattern, c.as, st, b)
		}
		return b
	}
	inRG := map[string]string{"sub": "default", "rg": "rg1"}
	onSub2 := map[string]string{"sub": "sub2"}
	with := func(p map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for k, v := range p {
			out[k] = v
		}
		return out
	}
	must(apiCall{method: "PUT", pattern: rg + "/protection", params: inRG, as: "admin", contentType: js, body: []byte(`{}`)})
	must(apiCall{method: "GET", pattern: rg + "/protection", params: inRG, as: "admin"})
	must(apiCall{method: "PUT", pattern: sub + "/protection", params: onSub2, as: "admin", contentType: js, body: []byte(`{}`)})
	must(apiCall{method: "GET", pattern: sub + "/protection", params: onSub2, as: "admin"})
	must(apiCall{method: "DELETE", pattern: sub + "/protection", params: onSub2, as: "admin"})
	must(apiCall{method: "GET", pattern: machine + "/protection", params: onM1, as: "admin"})

	// A signature set (one MD5 signature), downloaded by the machine.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("files", "corral.hdb")
	io.WriteString(part, "44d88612fea8a8f36de82e1278abb02f:68:Corral.Test.Sig\n")
	mw.Close()
	var set wire.SignatureSet
	if err := json.Unmarshal(must(apiCall{method: "POST", pattern: "/api/v1/protection/signatureSets", as: "admin",
		contentType: mw.FormDataContentType(), body: body.Bytes()}), &set); err != nil {
		t.Fatal(err)
	}
	must(apiCall{method: "GET", pattern: wire.PathProtectionSignatures + "{version}", params: map[string]string{"version": fmt.Sprint(set.Version)}, as: "m1"})

	// The machine reports a detection and the file it quarantined.
	now := time.Now().UTC()
	qid := "00112233445566aa"
	must(apiCall{method: "POST", pattern: wire.PathReports, as: "m1", contentType: js, body: jsonBody(t, wire.ReportBatch{Reports: []wire.Report{
		{ID: "p-1", Kind: wire.ReportProtectionDetection, TakenAt: now, Body: jsonBody(t, wire.ProtectionDetection{ID: "d-1", Time: now,
			Path: "/tmp/eicar.com", SHA256: strings.Repeat("ab", 32), Signature: "Eicar-Signature", Kind: "signature", Source: "realtime",
			Event: "close-write", Action: "quarantined", QuarantineID: qid})},
		{ID: "p-2", Kind: wire.ReportProtectionQuarantine, TakenAt: now, Body: jsonBody(t, wire.ProtectionQuarantineReport{Entries: []wire.QuarantineEntry{
			{ID: qid, Path: "/tmp/eicar.com", SHA256: strings.Repeat("ab", 32), Signature: "Eicar-Signature", Size: 68, Mode: 0o644, Time: now}}})},
	}})})

	var alerts wire.List[wire.Alert]
	if err := json.Unmarshal(must(apiCall{method: "GET", pattern: "/api/v1/protection/alerts", query: "machine=m1", as: "admin"}), &alerts); err != nil || len(alerts.Value) == 0 {
		t.Fatalf("alerts after a detection: %+v %v", alerts, err)
	}
	alert := map[string]string{"id": alerts.Value[0].ID}
	must(apiCall{method: "GET", pattern: "/api/v1/protection/alerts/{id}", params: alert, as: "admin"})
	must(apiCall{method: "POST", pattern: "/api/v1/protection/alerts/{id}/acknowledge", params: alert, as: "admin"})

	var scan wire.Scan
	if err := json.Unmarshal(must(apiCall{method: "POST", pattern: machine + "/scans", params: onM1, as: "admin", contentType: js,
		body: []byte(`{"type":"custom","paths":["/srv"]}`)}), &scan); err != nil {
		t.Fatal(err)
	}
	must(apiCall{method: "GET", pattern: machine + "/scans", params: onM1, query: "$top=5", as: "admin"})
	must(apiCall{method: "GET", pattern: machine + "/scans/{id}", params: with(onM1, "id", scan.ID), as: "admin"})

	must(apiCall{method: "GET", pattern: machine + "/quarantine", params: onM1, as: "admin"})
	var restore wire.Restore
	if err := json.Unmarshal(must(apiCall{method: "POST", pattern: machine + "/quarantine/{qid}/restore", params: with(onM1, "qid", qid), as: "admin",
		contentType: js, body: []byte(`{"noExclusion":true}`)}), &restore); err != nil {
		t.Fatal(err)
	}
	must(apiCall{method: "GET", pattern: machine + "/restores/{id}", params: with(onM1, "id", restore.ID), as: "admin"})
	must(apiCall{method: "DELETE", pattern: rg + "/protection", params: inRG, as: "admin"})
}

// passwordToken signs in with the password grant.
func passwordToken(t *testing.T, s *testutil.Server, user, password string) string {
	t.Helper()
	resp, err := s.Client.PostForm(s.URL+wire.PathToken, url.Values{"grant_type": {wire.GrantPassword}, "username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok wire.TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("sign in as %s: %d %v", user, resp.StatusCode, err)
	}
	return tok.AccessToken
}

// updatesCalls makes the update management operations succeed: an
// assessment, a run and a schedule over the machines of rg1.
func (k *docChecker) updatesCalls(onM1 map[string]string) {
	t := k.t
	const (
		js      = "application/json"
		sub     = "/api/v1/subscriptions/{sub}"
		machine = sub + "/resourceGroups/{rg}/machines/{name}"
	)
	must := func(c apiCall) []byte {
		t.Helper()
		st, b := k.do(c)
		if st < 200 || st > 299 {
			t.Fatalf("%s %s (as %s): %d, want success: %s", c.method, c.pattern, c.as, st, b)
		}
		return b
	}
	onSub := map[string]string{"sub": "default"}
	with := func(p map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for k, v := range p {
			out[k] = v
		}
		return out
	}
	scope := `"scope":"/subscriptions/default/resourceGroups/rg1"`
	var batch wire.UpdateAssessmentBatch
	if err := json.Unmarshal(must(apiCall{method: "POST", pattern: sub + "/updateAssessments", params: onSub, as: "admin", contentType: js,
		body: []byte("{" + scope + "}")}), &batch); err != nil {
		t.Fatal(err)
	}
	must(apiCall{method: "GET", pattern: sub + "/updateAssessments/{id}", params: with(onSub, "id", batch.ID), as: "admin"})
	must(apiCall{method: "GET", pattern: machine + "/updates", params: onM1, query: "name=lib", as: "admin"})
	must(apiCall{method: "GET", pattern: machine + "/updateAssessments", params: onM1, as: "admin"})
	deploy := `"classifications":["Security"],"reboot":"Never","window":"2h"`
	var run wire.UpdateRun
	if err := json.Unmarshal(must(apiCall{method: "POST", pattern: sub + "/updateRuns", params: onSub, as: "admin", contentType: js,
		body: []byte("{" + scope + "," + deploy + "}")}), &run); err != nil {
		t.Fatal(err)
	}
	runID := run.ID[strings.LastIndex(run.ID, "/")+1:]
	must(apiCall{method: "GET", pattern: sub + "/updateRuns/{id}", params: with(onSub, "id", runID), as: "admin"})
	must(apiCall{method: "GET", pattern: sub + "/updateRuns/{id}/machines", params: with(onSub, "id", runID), as: "admin"})
	must(apiCall{method: "GET", pattern: machine + "/updateRuns", params: onM1, as: "admin"})
	nightly := with(onSub, "schedule", "nightly")
	must(apiCall{method: "PUT", pattern: sub + "/updateSchedules/{schedule}", params: nightly, as: "admin", contentType: js,
		body: []byte(`{` + scope + `,"cron":"0 3 * * *","timeZone":"Europe/Paris",` + deploy + `}`)})
	must(apiCall{method: "GET", pattern: sub + "/updateSchedules/{schedule}", params: nightly, as: "admin"})
	must(apiCall{method: "DELETE", pattern: sub + "/updateSchedules/{schedule}", params: nightly, as: "admin"})
}

// bulkCalls makes the bulk operation routes succeed: a run on every
// machine of rg1, read back whole and by machine.
func (k *docChecker) bulkCalls() {
	t := k.t
	const bulk = "/api/v1/subscriptions/{sub}/bulkOperations"
	onSub := map[string]string{"sub": "default"}
	must := func(c apiCall) []byte {
		t.Helper()
		st, b := k.do(c)
		if st < 200 || st > 299 {
			t.Fatalf("%s %s (as %s): %d, want success: %s", c.method, c.pattern, c.as, st, b)
		}
		return b
	}
	var op wire.BulkOperation
	if err := json.Unmarshal(must(apiCall{method: "POST", pattern: bulk, params: onSub, as: "admin", contentType: "application/json",
		body: []byte(`{"kind":"runCommand","scope":"/subscriptions/default/resourceGroups/rg1","name":"bulk-hello","runCommand":{"command":"echo hi"}}`)}),
		&op); err != nil {
		t.Fatal(err)
	}
	byID := map[string]string{"sub": "default", "id": op.Name}
	must(apiCall{method: "GET", pattern: bulk, params: onSub, query: "$top=5", as: "admin"})
	must(apiCall{method: "GET", pattern: bulk + "/{id}", params: byID, as: "admin"})
	must(apiCall{method: "GET", pattern: bulk + "/{id}/machines", params: byID, query: "result=Pending&$top=10", as: "admin"})
}
