// Command driver is compiled by TestGeneratedClient together with the client
// oapi-codegen generated from api/openapi.json (package main, client.gen.go
// beside this file in a build overlay). It drives a running control plane
// only through that client, as a platform team's script would: sign in,
// create a resource group and a service principal, assign a role, onboard
// machines through the agent protocol, page through a filtered machine list
// by nextLink, install an extension and read its state, and get the
// documented error body back for a 404 and a 403. It prints a JSON Summary
// on standard output and exits 1 with the reasons when a step fails.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Summary is what the driver did, for the test to check against the server.
type Summary struct {
	ResourceGroupID      string     `json:"resourceGroupId"`
	ServicePrincipalID   string     `json:"servicePrincipalClientId"`
	RoleAssignmentID     string     `json:"roleAssignmentId"`
	Machines             []string   `json:"machines"`
	Pages                [][]string `json:"pages"`
	ExtensionStates      []string   `json:"extensionStates"`
	NotFoundCode         string     `json:"notFoundCode"`
	ForbiddenCode        string     `json:"forbiddenCode"`
	DesiredGeneration    int64      `json:"desiredGeneration"`
	AcceptedReports      []string   `json:"acceptedReports"`
	OAuthErrorCode       string     `json:"oauthErrorCode"`
	ServicePrincipalRead string     `json:"servicePrincipalCallerType"`
}

func main() {
	server := flag.String("server", "", "URL of the control plane")
	caFile := flag.String("ca", "", "PEM file of the control plane's CA")
	password := flag.String("admin-password", "", "password of the bootstrap user admin")
	flag.Parse()
	d, err := newDriver(*server, *caFile)
	if err == nil {
		err = d.run(context.Background(), *password)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(d.sum); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		os.Exit(1)
	}
}

type driver struct {
	server string
	roots  *x509.CertPool
	c      *ClientWithResponses
	sum    Summary
}

func newDriver(server, caFile string) (*driver, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	d := &driver{server: server, roots: roots}
	d.c, err = NewClientWithResponses(server, WithHTTPClient(d.httpClient(nil)))
	return d, err
}

func (d *driver) httpClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: d.roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func bearer(tok string) RequestEditorFn {
	return func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
}

// want fails unless the response has the status and decoded its body.
func want[T any](step string, status int, got int, body *T, raw []byte) error {
	if got != status || body == nil {
		return fmt.Errorf("%s: status %d, want %d with a body of the documented schema: %s", step, got, status, raw)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func (d *driver) token(ctx context.Context, form TokenRequest) (string, error) {
	r, err := d.c.PostOauth2TokenWithFormdataBodyWithResponse(ctx, form)
	if err != nil {
		return "", err
	}
	if err := want("token", http.StatusOK, r.StatusCode(), r.JSON200, r.Body); err != nil {
		return "", err
	}
	if r.JSON200.TokenType != Bearer {
		return "", fmt.Errorf("token type %q", r.JSON200.TokenType)
	}
	return r.JSON200.AccessToken, nil
}

func (d *driver) run(ctx context.Context, password string) error {
	const sub, rg = "default", "apiclient"
	admin, err := d.token(ctx, TokenRequest{GrantType: Password, Username: ptr("admin"), Password: &password})
	if err != nil {
		return err
	}
	as := bearer(admin)

	// A refused grant comes back in the OAuth2 error shape.
	bad, err := d.c.PostOauth2TokenWithFormdataBodyWithResponse(ctx, TokenRequest{GrantType: Password, Username: ptr("admin"), Password: ptr("wrong")})
	if err != nil {
		return err
	}
	if err := want("token with a wrong password", http.StatusUnauthorized, bad.StatusCode(), bad.JSON401, bad.Body); err != nil {
		return err
	}
	d.sum.OAuthErrorCode = bad.JSON401.Error

	group, err := d.c.PutSubscriptionsResourceGroupsByRgWithResponse(ctx, sub, rg,
		ResourceGroupCreate{Tags: &map[string]string{"owner": "platform"}}, as)
	if err != nil {
		return err
	}
	if err := want("create the resource group", http.StatusCreated, group.StatusCode(), group.JSON201, group.Body); err != nil {
		return err
	}
	d.sum.ResourceGroupID = group.JSON201.Id

	sp, err := d.c.PostServicePrincipalsWithResponse(ctx, ServicePrincipalCreate{DisplayName: "inventory-reader", ExpiresIn: ptr("24h")}, as)
	if err != nil {
		return err
	}
	if err := want("create the service principal", http.StatusCreated, sp.StatusCode(), sp.JSON201, sp.Body); err != nil {
		return err
	}
	clientID := sp.JSON201.ClientId.String()
	d.sum.ServicePrincipalID = clientID

	ra, err := d.c.PostRoleAssignmentsWithResponse(ctx, RoleAssignmentCreate{Principal: clientID, Role: "Reader", Scope: group.JSON201.Id}, as)
	if err != nil {
		return err
	}
	if err := want("assign Reader", http.StatusCreated, ra.StatusCode(), ra.JSON201, ra.Body); err != nil {
		return err
	}
	d.sum.RoleAssignmentID = ra.JSON201.Id

	// Onboard machines through the agent protocol: five on premises, one
	// in AWS that the filter must leave out.
	var first *ClientWithResponses
	for i, env := range []MachinePropertiesEnvironment{MachinePropertiesEnvironmentOnPrem, MachinePropertiesEnvironmentOnPrem,
		MachinePropertiesEnvironmentAWS, MachinePropertiesEnvironmentOnPrem, MachinePropertiesEnvironmentOnPrem, MachinePropertiesEnvironmentOnPrem} {
		name := fmt.Sprintf("web-%02d", i+1)
		mc, err := d.onboard(ctx, as, sub, rg, name, env)
		if err != nil {
			return err
		}
		if first == nil {
			first = mc
		}
		d.sum.Machines = append(d.sum.Machines, name)
	}

	spTok, err := d.token(ctx, TokenRequest{GrantType: ClientCredentials, ClientId: &clientID, ClientSecret: &sp.JSON201.ClientSecret})
	if err != nil {
		return err
	}
	asSP := bearer(spTok)
	me, err := d.c.GetMeWithResponse(ctx, asSP)
	if err != nil {
		return err
	}
	if err := want("me", http.StatusOK, me.StatusCode(), me.JSON200, me.Body); err != nil {
		return err
	}
	d.sum.ServicePrincipalRead = string(me.JSON200.Type)

	// Page through the on-premises machines, two at a time, by nextLink.
	params := &GetSubscriptionsResourceGroupsMachinesParams{Environment: ptr(GetSubscriptionsResourceGroupsMachinesParamsEnvironment("OnPrem")), Top: ptr(2)}
	for page := 0; ; page++ {
		if page > 10 {
			return fmt.Errorf("nextLink never ends")
		}
		r, err := d.c.GetSubscriptionsResourceGroupsMachinesWithResponse(ctx, sub, rg, params, asSP)
		if err != nil {
			return err
		}
		if err := want(fmt.Sprintf("list machines, page %d", page+1), http.StatusOK, r.StatusCode(), r.JSON200, r.Body); err != nil {
			return err
		}
		var names []string
		for _, m := range r.JSON200.Value {
			if m.Properties.Environment == nil || *m.Properties.Environment != MachinePropertiesEnvironmentOnPrem {
				return fmt.Errorf("the environment filter let %s through", m.Name)
			}
			names = append(names, m.Name)
		}
		d.sum.Pages = append(d.sum.Pages, names)
		if r.JSON200.NextLink == nil {
			break
		}
		next, err := url.Parse(*r.JSON200.NextLink)
		if err != nil {
			return fmt.Errorf("nextLink %q: %w", *r.JSON200.NextLink, err)
		}
		q := next.Query()
		if q.Get("$skipToken") == "" || q.Get("environment") != "OnPrem" || q.Get("$top") != "2" {
			return fmt.Errorf("nextLink %q does not carry the query on", *r.JSON200.NextLink)
		}
		params.SkipToken = ptr(q.Get("$skipToken"))
	}

	// Install the first-party RunCommand extension, report it installed as
	// the machine, and read its state as the Reader.
	set, err := d.c.PutSubscriptionsResourceGroupsMachinesExtensionsByExtWithResponse(ctx, sub, rg, "web-01", "rc",
		MachineExtensionSet{Publisher: "Corral", Type: "RunCommand", Settings: map[string]any{}}, as)
	if err != nil {
		return err
	}
	if err := want("install the extension", http.StatusCreated, set.StatusCode(), set.JSON201, set.Body); err != nil {
		return err
	}
	ext, err := d.extensionState(ctx, asSP, sub, rg)
	if err != nil {
		return err
	}
	d.sum.ExtensionStates = append(d.sum.ExtensionStates, string(ext.State))

	ds, err := first.GetAgentDesiredWithResponse(ctx)
	if err != nil {
		return err
	}
	if err := want("desired state", http.StatusOK, ds.StatusCode(), ds.JSON200, ds.Body); err != nil {
		return err
	}
	d.sum.DesiredGeneration = ds.JSON200.Generation
	if ds.JSON200.Extensions == nil || len(*ds.JSON200.Extensions) != 1 {
		return fmt.Errorf("desired state: want one extension: %s", ds.Body)
	}
	de := (*ds.JSON200.Extensions)[0]
	status, _ := json.Marshal(map[string]any{"name": de.Name, "publisher": de.Publisher, "type": de.Type, "version": de.Version,
		"seqNo": de.SeqNo, "operation": "install", "state": "Succeeded", "message": "installed by the API client test"})
	reports := []Report{{Id: "report-1", Kind: "extension", TakenAt: time.Now().UTC(), Body: status}}
	ack, err := first.PostAgentReportsWithResponse(ctx, ReportBatch{Reports: &reports})
	if err != nil {
		return err
	}
	if err := want("deliver the report", http.StatusOK, ack.StatusCode(), ack.JSON200, ack.Body); err != nil {
		return err
	}
	if ack.JSON200.Accepted != nil {
		d.sum.AcceptedReports = *ack.JSON200.Accepted
	}
	ext, err = d.extensionState(ctx, asSP, sub, rg)
	if err != nil {
		return err
	}
	d.sum.ExtensionStates = append(d.sum.ExtensionStates, string(ext.State))

	// The documented error body for a 404 and a 403.
	missing, err := d.c.GetSubscriptionsResourceGroupsByRgWithResponse(ctx, sub, "no-such-group", as)
	if err != nil {
		return err
	}
	if err := want("get a missing resource group", http.StatusNotFound, missing.StatusCode(), missing.JSON404, missing.Body); err != nil {
		return err
	}
	d.sum.NotFoundCode = missing.JSON404.Error.Code
	denied, err := d.c.PutSubscriptionsResourceGroupsByRgWithResponse(ctx, sub, "not-for-readers", ResourceGroupCreate{}, asSP)
	if err != nil {
		return err
	}
	if err := want("create a resource group as a Reader", http.StatusForbidden, denied.StatusCode(), denied.JSON403, denied.Body); err != nil {
		return err
	}
	d.sum.ForbiddenCode = denied.JSON403.Error.Code
	if !strings.Contains(denied.JSON403.Error.Message, "Corral.Resources/subscriptions/resourceGroups/write") {
		return fmt.Errorf("the 403 does not name the action: %s", denied.Body)
	}
	return nil
}

func (d *driver) extensionState(ctx context.Context, as RequestEditorFn, sub, rg string) (*MachineExtension, error) {
	r, err := d.c.GetSubscriptionsResourceGroupsMachinesExtensionsByExtWithResponse(ctx, sub, rg, "web-01", "rc", as)
	if err != nil {
		return nil, err
	}
	if err := want("read the extension", http.StatusOK, r.StatusCode(), r.JSON200, r.Body); err != nil {
		return nil, err
	}
	return r.JSON200, nil
}

// onboard connects a machine with a fresh key pair and returns a client
// that presents its certificate (the agent protocol).
func (d *driver) onboard(ctx context.Context, as RequestEditorFn, sub, rg, name string, env MachinePropertiesEnvironment) (*ClientWithResponses, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return nil, err
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	r, err := d.c.PostAgentConnectWithResponse(ctx, ConnectRequest{ProtocolVersion: 2, SubscriptionId: sub, ResourceGroup: rg, Name: name,
		Csr: string(csr), AgentVersion: "2026.11.0", Tags: &map[string]string{"tier": "web"},
		Properties:         MachineProperties{Environment: &env, OsName: ptr("debian"), Hostname: &name},
		AgentConfiguration: AgentConfig{ConfigMode: "full", ExtensionsEnabled: true, HostchangesEnabled: true}}, as)
	if err != nil {
		return nil, err
	}
	if err := want("onboard "+name, http.StatusCreated, r.StatusCode(), r.JSON201, r.Body); err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair([]byte(r.JSON201.Certificate), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return nil, fmt.Errorf("the certificate of %s: %w", name, err)
	}
	return NewClientWithResponses(d.server, WithHTTPClient(d.httpClient(&cert)))
}
