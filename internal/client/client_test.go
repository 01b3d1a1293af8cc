package client_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func fake(t *testing.T, h http.HandlerFunc) *client.Client {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := client.New(srv.URL, client.WithCAPEM(pemCA), client.WithToken("secret-token-123"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAPIErrorAndOAuthError(t *testing.T) {
	c := fake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/oauth2/token":
			if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "password" || r.PostForm.Get("password") != "pw-secret" {
				t.Errorf("bad form: %v", r.PostForm)
			}
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"wrong user name or password"}`)
		case "/api/v1/me":
			if r.Header.Get("Authorization") != "Bearer secret-token-123" {
				t.Errorf("authorization header %q", r.Header.Get("Authorization"))
			}
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error":{"code":"AuthorizationFailed","message":"no","target":"x"}}`)
		default:
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html>secret-token-123</html>")
		}
	})
	ctx := context.Background()
	_, err := c.PasswordToken(ctx, "admin", "pw-secret")
	var ae *wire.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != wire.CodeInvalidGrant || ae.Message != "wrong user name or password" {
		t.Fatalf("oauth error = %#v", err)
	}
	if strings.Contains(err.Error(), "pw-secret") {
		t.Error("password in error")
	}
	_, err = c.Me(ctx)
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != wire.CodeForbidden || err.Error() != "AuthorizationFailed: no (x)" {
		t.Fatalf("api error = %v", err)
	}
	_, err = c.ListUsers(ctx)
	if !errors.As(err, &ae) || ae.Status != 502 || strings.Contains(err.Error(), "secret-token-123") {
		t.Fatalf("non-JSON error = %v", err)
	}
}

func TestListFollowsNextLinkAndRefusesOtherHosts(t *testing.T) {
	var queries []string
	c := fake(t, func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		switch r.URL.Query().Get("$skipToken") {
		case "":
			json.NewEncoder(w).Encode(wire.List[wire.Machine]{Value: []wire.Machine{{Name: "a"}},
				NextLink: r.URL.Path + "?status=Connected&%24skipToken=p2"})
		case "p2":
			json.NewEncoder(w).Encode(wire.List[wire.Machine]{Value: []wire.Machine{{Name: "b"}}, NextLink: "https://evil.example/x"})
		}
	})
	_, err := c.ListMachines(context.Background(), client.MachineFilter{Subscription: "default", Status: "Connected"})
	if err == nil || !strings.Contains(err.Error(), "refusing to follow") {
		t.Fatalf("err = %v", err)
	}
	if len(queries) != 2 || queries[0] != "status=Connected" {
		t.Errorf("queries = %v", queries)
	}
	ms, err := c.ListMachines(context.Background(), client.MachineFilter{Subscription: "default", Max: 1})
	if err != nil || len(ms) != 1 {
		t.Errorf("max: %v %v", ms, err)
	}
}

func TestResponseCap(t *testing.T) {
	c := fake(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"value":[],"x":"`)
		chunk := strings.Repeat("a", 1<<20)
		for i := 0; i < client.MaxResponseBytes>>20+1; i++ {
			fmt.Fprint(w, chunk)
		}
		fmt.Fprint(w, `"}`)
	})
	if _, err := c.ListUsers(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	for _, s := range []string{"", "ftp://x", "https://", "https://u:p@host", "https://host?q=1"} {
		if _, err := client.New(s); err == nil {
			t.Errorf("client.New(%q) accepted", s)
		} else if strings.Contains(err.Error(), ":p@") {
			t.Errorf("password in error %v", err)
		}
	}
	if _, err := client.New("https://x", client.WithCAPEM([]byte("junk"))); err == nil {
		t.Error("junk CA accepted")
	}
	c, err := client.New("corral.example:8443/")
	if err != nil || c.Server() != "https://corral.example:8443" {
		t.Errorf("bare host: %v %v", c, err)
	}
	if _, err := client.New("https://x", client.WithCAFile(filepath.Join(t.TempDir(), "none"))); err == nil {
		t.Error("missing CA file accepted")
	}
}

func TestAgainstRealServer(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	anon, err := client.New(s.URL, client.WithCAFile(s.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := anon.PasswordToken(ctx, "admin", testutil.AdminPassword)
	if err != nil || tr.ExpiresIn <= 0 {
		t.Fatalf("password token: %+v %v", tr, err)
	}
	if _, err := anon.Me(ctx); err == nil || !strings.Contains(err.Error(), wire.CodeUnauthenticated) {
		t.Errorf("anonymous me: %v", err)
	}
	pemCA, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(s.URL, client.WithCAPEM(pemCA), client.WithToken(tr.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(ctx)
	if err != nil || me.Name != "admin" {
		t.Fatalf("me = %+v %v", me, err)
	}
	if _, err := c.CreateResourceGroup(ctx, "default", "rg1", map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	id, secret := s.OnboardingPrincipal(t, "rg1")
	tok := s.ClientToken(t, id, secret)
	for i := range 5 {
		s.OnboardMachine(t, tok, "rg1", fmt.Sprintf("m%d", i), wire.MachineProperties{OSName: "debian"})
	}
	ms, err := c.ListMachines(ctx, client.MachineFilter{Subscription: "default", ResourceGroup: "rg1", PageSize: 2})
	if err != nil || len(ms) != 5 {
		t.Fatalf("paged machines: %d %v", len(ms), err)
	}
	m, err := c.SetMachineTags(ctx, "default", "rg1", "m0", map[string]string{"k": "v"})
	if err != nil || m.Tags["k"] != "v" {
		t.Fatalf("tags: %+v %v", m, err)
	}
	if err := c.DeleteMachine(ctx, "default", "rg1", "m0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetMachine(ctx, "default", "rg1", "m0"); !client.IsNotFound(err) {
		t.Errorf("deleted machine: %v", err)
	}
	es, err := c.ListActivity(ctx, client.ActivityQuery{Max: 3})
	if err != nil || len(es) != 3 {
		t.Errorf("activity: %d %v", len(es), err)
	}
	if err := c.DeleteResourceGroup(ctx, "default", "rg1"); !client.IsConflict(err) {
		t.Errorf("delete non-empty group: %v", err)
	}
}

// A server reached by a name its certificate does not cover explains
// itself, naming the names it covers and how to fix it.
func TestCertificateNameMismatchExplainsItself(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	wrong := "https://corral-test.invalid:" + u.Port()
	c, err := client.New(wrong, client.WithCAFile(s.CAFile), client.WithHTTPClient(&http.Client{Transport: &http.Transport{
		TLSClientConfig: s.TLSConfig(t),
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, u.Host) // the name resolves to the test server
		},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Me(t.Context())
	if err == nil || !strings.Contains(err.Error(), "the server certificate is for") || !strings.Contains(err.Error(), "127.0.0.1") ||
		!strings.Contains(err.Error(), "--host corral-test.invalid") {
		t.Errorf("name mismatch: %v", err)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 2 ":                           2 * time.Second,
		"-5":                            0,
		"soon":                          0,
		"999999":                        client.MaxRetryAfter,
		"Sun, 29 Nov 2026 10:00:30 GMT": 30 * time.Second,
		"Sun, 29 Nov 2026 09:00:00 GMT": 0,
	} {
		if got := client.ParseRetryAfter(v, now); got != want {
			t.Errorf("Retry-After %q = %s, want %s", v, got, want)
		}
	}
}
