// Package testutil runs real Corral components for tests: a control plane on
// loopback with real TLS and a real store in t.TempDir(), and helpers to call
// its API as the bootstrap admin. Nothing here is a mock.
package testutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/wire"
)

// AdminPassword is the bootstrap admin password of test servers.
const AdminPassword = "test-admin-password-1234"

// Server is a control plane running in the test process.
type Server struct {
	Srv *server.Server
	*API
	DataDir string
	// Logs holds everything the server logged (JSON lines), for secret scans.
	Logs *SyncBuffer

	stop     func(testing.TB)
	stopOnce sync.Once
}

// Stop shuts the server down gracefully now (it is also stopped at cleanup).
func (s *Server) Stop(t testing.TB) { s.stop(t) }

// WithCAFrom makes a second replica: the same CA, token signing key,
// extension signing key, signature set signing key and SSH user CA as other.
func WithCAFrom(other *Server) Option {
	return func(c *server.Config) {
		c.CACertFile = filepath.Join(other.DataDir, "ca.crt")
		c.CAKeyFile = filepath.Join(other.DataDir, "ca.key")
		c.TokenKeyFile = filepath.Join(other.DataDir, "token-signing.key")
		c.ExtensionKeyFile = filepath.Join(other.DataDir, "extension-signing.key")
		c.SignatureKeyFile = filepath.Join(other.DataDir, "signature-signing.key")
		c.SSHCAKeyFile = filepath.Join(other.DataDir, "ssh-user-ca")
	}
}

// API calls a control plane over HTTPS, in-process or a separate process.
type API struct {
	URL    string
	CAFile string
	// AdminPassword is the bootstrap admin's password.
	AdminPassword string
	// Client trusts the server CA (no client certificate).
	Client *http.Client

	mu    sync.Mutex
	token string
}

// NewAPI returns a client of the control plane at url whose CA is in caFile.
func NewAPI(t testing.TB, url, caFile, adminPassword string) *API {
	t.Helper()
	a := &API{URL: url, CAFile: caFile, AdminPassword: adminPassword}
	a.Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: a.TLSConfig(t)}}
	return a
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Option changes the server config before start.
type Option func(*server.Config)

// WithStore sets the store DSN (e.g. PostgreSQL).
func WithStore(dsn string) Option { return func(c *server.Config) { c.Store = dsn } }

// FastLifecycle makes heartbeats, disconnect and sweep thresholds short so
// status transitions happen within seconds.
func FastLifecycle() Option {
	return func(c *server.Config) {
		c.HeartbeatInterval = 200 * time.Millisecond
		c.DisconnectAfter = 1500 * time.Millisecond
		c.SweepInterval = 200 * time.Millisecond
		c.HeartbeatFlush = 100 * time.Millisecond
	}
}

// StartServer starts a control plane on 127.0.0.1:0 with a SQLite store in a
// temp dir, and stops it when the test ends.
func StartServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	dir := t.TempDir()
	logs := &SyncBuffer{}
	cfg := server.Config{
		DataDir: dir, Listen: "127.0.0.1:0", AdminPassword: AdminPassword,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	s := &Server{Srv: srv, API: NewAPI(t, srv.URL(), srv.Bootstrap.CACertPath, AdminPassword), DataDir: dir, Logs: logs}
	s.stop = func(t testing.TB) {
		s.stopOnce.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server shutdown: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("server did not shut down within 30s")
			}
		})
	}
	t.Cleanup(func() { s.stop(t) })
	s.waitReady(t)
	return s
}

// waitReady waits until /readyz answers 200: a replica on PostgreSQL is
// ready once it hears the others' pushes (LISTEN), and a request made
// before that may be announced to nobody.
func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: s.API.TLSConfig(t)}, Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := c.Get(s.API.URL + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	t.Fatalf("the server was not ready within 30s: %s", last)
}

// TLSConfig trusts the server's CA.
func (s *API) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("CA file %s holds no certificate", s.CAFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// AdminToken returns a bearer token of the bootstrap admin (Owner at "/").
func (s *API) AdminToken(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == "" {
		s.token = s.PasswordToken(t, "admin", s.AdminPassword)
	}
	return s.token
}

// ForgetAdminToken drops the cached admin token (after moving a test clock
// past its expiry).
func (s *API) ForgetAdminToken() {
	s.mu.Lock()
	s.token = ""
	s.mu.Unlock()
}

// PasswordToken signs a user in through the OAuth2 password grant.
func (s *API) PasswordToken(t testing.TB, user, password string) string {
	t.Helper()
	return s.formToken(t, url.Values{"grant_type": {wire.GrantPassword}, "username": {user}, "password": {password}})
}

// ClientToken gets a service principal token through client_credentials.
func (s *API) ClientToken(t testing.TB, clientID, secret string) string {
	t.Helper()
	return s.formToken(t, url.Values{"grant_type": {wire.GrantClientCredentials}, "client_id": {clientID}, "client_secret": {secret}})
}

func (s *API) formToken(t testing.TB, form url.Values) string {
	t.Helper()
	resp, err := s.Client.PostForm(s.URL+wire.PathToken, form)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token request: status %d: %s", resp.StatusCode, body)
	}
	var tr wire.TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("token response: %v", err)
	}
	return tr.AccessToken
}

// Do calls the API with a bearer token and a JSON body (nil for none), and
// returns the status and raw response body.
func (s *API) Do(t testing.TB, method, path, token string, body any) (int, []byte) {
	t.Helper()
	return s.DoWith(t, s.Client, method, path, token, body)
}

// DoWith is Do through a given client (e.g. one with a machine certificate).
func (s *API) DoWith(t testing.TB, client *http.Client, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		case []byte:
			rd = bytes.NewReader(b)
		default:
			j, err := json.Marshal(b)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			rd = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// MustDo is Do that fails the test unless the status is want; it decodes the
// body into out when out is non-nil.
func (s *API) MustDo(t testing.TB, want int, method, path, token string, body, out any) {
	t.Helper()
	status, b := s.Do(t, method, path, token, body)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %T: %v", method, path, out, err)
		}
	}
}

// OnboardingPrincipal creates resource group rg (if needed) in the default
// subscription and a service principal holding Connected Machine Onboarding
// on it. It returns the client id and secret.
func (s *API) OnboardingPrincipal(t testing.TB, rg string) (clientID, secret string) {
	t.Helper()
	tok := s.AdminToken(t)
	scope := resource.ResourceGroup("default", rg)
	status, b := s.Do(t, "PUT", "/api/v1"+scope.Path(), tok, wire.ResourceGroupCreate{})
	if status != http.StatusCreated && status != http.StatusConflict {
		t.Fatalf("create resource group: %d %s", status, b)
	}
	var sp wire.ServicePrincipalCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", tok, wire.ServicePrincipalCreate{DisplayName: "onboard-" + rg}, &sp)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", tok, wire.RoleAssignmentCreate{
		Principal: sp.ClientID, Role: "Connected Machine Onboarding", Scope: scope.String()}, nil)
	return sp.ClientID, sp.ClientSecret
}

// RolePrincipal creates a service principal holding role at scope and
// returns an access token of it.
func (s *API) RolePrincipal(t testing.TB, role, scope string) string {
	t.Helper()
	tok := s.AdminToken(t)
	var sp wire.ServicePrincipalCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", tok, wire.ServicePrincipalCreate{DisplayName: "test-" + strings.ReplaceAll(role, " ", "-")}, &sp)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", tok, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: role, Scope: scope}, nil)
	return s.ClientToken(t, sp.ClientID, sp.ClientSecret)
}

// WriteSecretFile writes secret to a 0600 file in a temp dir and returns its path.
func WriteSecretFile(t testing.TB, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
