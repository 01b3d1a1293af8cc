package onboard_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/onboard"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func options(t *testing.T, s *testutil.Server, rg, name string) onboard.Options {
	return onboard.Options{Server: s.URL, SubscriptionID: "default", ResourceGroup: rg, Name: name,
		StateDir: t.TempDir(), Host: hostinfo.Host{Root: t.TempDir()}, Version: "2026.11.0", Timeout: 20 * time.Second}
}

func machineCount(t *testing.T, s *testutil.Server) int {
	var l wire.List[wire.Machine]
	s.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/machines", s.AdminToken(t), nil, &l)
	return len(l.Value)
}

func TestConnectWithPinnedFingerprint(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	o := options(t, s, "rg1", "pinned")
	o.ServicePrincipalID, o.ServicePrincipalSecret = id, secret
	o.CAFingerprint = strings.ToUpper(s.Srv.Bootstrap.CAFingerprint[len("sha256:"):]) // bare upper-case hex works too
	o.CAFingerprint = "sha256:" + o.CAFingerprint
	st, err := onboard.Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if st.ResourceID != "/subscriptions/default/resourceGroups/rg1/machines/pinned" {
		t.Errorf("resource id %s", st.ResourceID)
	}
	loaded, err := identity.Load(o.StateDir)
	if err != nil || len(loaded.CAPEM) == 0 {
		t.Fatalf("identity not stored with the pinned CA: %v", err)
	}
	// Connecting again is refused: disconnect first.
	if _, err := onboard.Connect(context.Background(), o); err == nil || !strings.Contains(err.Error(), "already connected") {
		t.Errorf("second connect: %v", err)
	}
}

func TestConnectRefusals(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	tests := []struct {
		name    string
		change  func(*onboard.Options)
		wantErr string
	}{
		{"wrong secret", func(o *onboard.Options) {
			o.ServicePrincipalID, o.ServicePrincipalSecret = id, "wrong"
			o.CAFile = s.CAFile
		}, "service principal sign-in"},
		{"wrong fingerprint", func(o *onboard.Options) {
			o.ServicePrincipalID, o.ServicePrincipalSecret = id, secret
			o.CAFingerprint = "sha256:" + strings.Repeat("ab", 32)
		}, "fingerprint"},
		{"no trust", func(o *onboard.Options) { o.ServicePrincipalID, o.ServicePrincipalSecret = id, secret }, "not trusted"},
		{"outside its scope", func(o *onboard.Options) {
			o.ServicePrincipalID, o.ServicePrincipalSecret, o.CAFile, o.ResourceGroup = id, secret, s.CAFile, "rg2"
		}, "onboarding refused"},
		{"forged token", func(o *onboard.Options) { o.AccessToken, o.CAFile = "eyJhbGciOiJFZERTQSJ9.e30.bad", s.CAFile }, "onboarding refused"},
		{"two credentials", func(o *onboard.Options) {
			o.ServicePrincipalID, o.ServicePrincipalSecret, o.AccessToken = id, secret, "x"
		}, "exactly one credential"},
		{"no credential", func(o *onboard.Options) {}, "exactly one credential"},
		{"bad fingerprint syntax", func(o *onboard.Options) { o.AccessToken, o.CAFingerprint = "x", "md5:1234" }, "64 hex digits"},
		{"missing group", func(o *onboard.Options) { o.AccessToken, o.ResourceGroup = "x", "" }, "--resource-group is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options(t, s, "rg1", "m-"+strings.ReplaceAll(tt.name, " ", "-"))
			tt.change(&o)
			_, err := onboard.Connect(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if identity.Exists(o.StateDir) {
				t.Error("an identity was stored after a refusal")
			}
		})
	}
	if n := machineCount(t, s); n != 0 {
		t.Errorf("%d machines created by refused onboardings", n)
	}
}

func TestConnectWithApprovedDeviceCode(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	s.OnboardingPrincipal(t, "rg1") // creates the group
	o := options(t, s, "rg1", "dc-machine")
	o.UseDeviceCode, o.CAFile = true, s.CAFile
	pr, pw := io.Pipe()
	o.Prompt = pw
	var wg sync.WaitGroup
	var approveErr error
	wg.Go(func() {
		// Read the prompt for the user code and approve it as admin.
		buf := make([]byte, 4096)
		n, _ := io.ReadAtLeast(pr, buf, 20)
		text := string(buf[:n])
		_, after, ok := strings.Cut(text, "corral machine approve ")
		if !ok {
			approveErr = errors.New("no code in prompt: " + text)
			return
		}
		code := strings.Fields(after)[0]
		status, b := s.Do(t, http.MethodPost, "/api/v1/deviceCodes/"+code+"/approve", s.AdminToken(t), nil)
		if status != 200 {
			approveErr = errors.New(string(b))
		}
		go io.Copy(io.Discard, pr)
	})
	st, err := onboard.Connect(context.Background(), o)
	pw.Close()
	wg.Wait()
	if approveErr != nil {
		t.Fatal(approveErr)
	}
	if err != nil {
		t.Fatal(err)
	}
	var m wire.Machine
	s.MustDo(t, 200, "GET", "/api/v1"+st.ResourceID, s.AdminToken(t), nil, &m)
	if m.CreatedBy != "admin" {
		t.Errorf("created by %q, want the approver", m.CreatedBy)
	}
}

func TestParseTags(t *testing.T) {
	t.Parallel()
	got, err := onboard.ParseTags(" env=prod, team = web ,empty=")
	if err != nil || got["env"] != "prod" || got["team"] != "web" || got["empty"] != "" || len(got) != 3 {
		t.Errorf("ParseTags = %v, %v", got, err)
	}
	for _, bad := range []string{"novalue", "=x", "a=1,a=2"} {
		if _, err := onboard.ParseTags(bad); err == nil {
			t.Errorf("ParseTags(%q) accepted", bad)
		}
	}
}

// TestConnectThroughTheProxyOnly: with proxy.url set, every onboarding call
// — the fingerprint pin included — goes through the proxy. The server's
// name resolves only at the proxy, so a call that went around it fails.
func TestConnectThroughTheProxyOnly(t *testing.T) {
	t.Parallel()
	const name = "corral-cp.invalid"
	s := testutil.StartServer(t, func(c *server.Config) { c.Hosts = []string{name} })
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "https://"))
	proxy, tunnels := testutil.ConnectProxy(t, func(hostport string) string {
		return strings.Replace(hostport, name, "127.0.0.1", 1)
	})
	id, secret := s.OnboardingPrincipal(t, "rg1")
	o := options(t, s, "rg1", "behind-proxy")
	o.Server = "https://" + net.JoinHostPort(name, port)
	o.ServicePrincipalID, o.ServicePrincipalSecret, o.CAFingerprint = id, secret, s.Srv.Bootstrap.CAFingerprint
	var c localconfig.Config
	if err := c.Set(localconfig.KeyProxyURL, proxy); err != nil {
		t.Fatal(err)
	}
	if err := localconfig.Save(o.StateDir, c); err != nil {
		t.Fatal(err)
	}
	if _, err := onboard.Connect(context.Background(), o); err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	if tunnels.Load() < 2 { // the pin check and the onboarding calls
		t.Errorf("%d tunnels through the proxy", tunnels.Load())
	}
}
