package onboarding_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/identity"
	"github.com/corralhq/corral/internal/server/onboarding"
	"github.com/corralhq/corral/internal/server/pki"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

type env struct {
	st       store.Store
	ids      *identity.Service
	svc      *onboarding.Service
	clock    *testutil.Clock
	approver wire.User
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := &testutil.Clock{}
	st := testutil.Store(t, "default/web")
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ids := identity.New(st, authn.NewTokenIssuer(key, "corral"), clock.Now, log, identity.Settings{ServiceTokenTTL: time.Hour, UserTokenTTL: time.Hour})
	svc := onboarding.New(st, ca, ids, clock.Now, log, onboarding.Settings{CertValidity: 24 * time.Hour, HeartbeatInterval: time.Minute, DeviceCodeTTL: 15 * time.Minute})
	u, err := ids.CreateUser(t.Context(), "operator", "correct horse battery", false)
	if err != nil {
		t.Fatal(err)
	}
	return &env{st: st, ids: ids, svc: svc, clock: clock, approver: u}
}

func connectRequest(t *testing.T, name string) wire.ConnectRequest {
	t.Helper()
	_, csr, err := machinekey.New(name)
	if err != nil {
		t.Fatal(err)
	}
	return wire.ConnectRequest{ProtocolVersion: wire.ProtocolVersion, SubscriptionID: "default", ResourceGroup: "web", Name: name,
		CSR: string(csr), AgentVersion: "2026.11.0", Properties: wire.MachineProperties{OSName: "Debian", Environment: wire.EnvOnPrem}}
}

func allow(scope resource.ID) error { return nil }

func TestConnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	var asked []string
	resp, err := e.svc.Connect(ctx, connectRequest(t, "vm1"), operator, func(scope resource.ID) error {
		asked = append(asked, scope.String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0] != "/subscriptions/default/resourceGroups/web" {
		t.Errorf("authorized at %v, want the resource group", asked)
	}
	m, err := e.st.GetMachineByID(ctx, resp.MachineID)
	if err != nil || m.CertSerial == "" || m.OSName != "debian" || m.Generation != 1 || resp.ResourceID != m.ResourceID().String() || resp.CACert == "" {
		t.Fatalf("machine %+v, response %+v, %v", m, resp, err)
	}
	renewed, err := e.svc.Renew(ctx, m.ID, wire.RenewRequest{CSR: connectRequest(t, "vm1").CSR})
	if err != nil || renewed.Certificate == resp.Certificate {
		t.Fatalf("renew: %v", err)
	}
	if m2, _ := e.st.GetMachineByID(ctx, m.ID); m2.CertSerial == m.CertSerial {
		t.Error("renewal kept the old serial")
	}
	if _, err := e.svc.Connect(ctx, connectRequest(t, "VM1"), operator, allow); !errors.Is(err, refusal.ErrConflict) {
		t.Errorf("second machine of the same name: %v", err)
	}
}

// TestConnectRefusalsCreateNothing: whatever is refused, no machine exists
// afterwards, and authorization is asked before anything is signed.
func TestConnectRefusalsCreateNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	denied := errors.New("denied")
	for _, tc := range []struct {
		name      string
		edit      func(*wire.ConnectRequest)
		authorize func(resource.ID) error
		want      error
		code      string
	}{
		{"protocol", func(r *wire.ConnectRequest) { r.ProtocolVersion = 99 }, allow, refusal.ErrInvalid, wire.CodeUnsupportedProtocol},
		{"name", func(r *wire.ConnectRequest) { r.Name = "bad name" }, allow, refusal.ErrInvalid, ""},
		{"not authorized", func(*wire.ConnectRequest) {}, func(resource.ID) error { return denied }, denied, ""},
		{"group", func(r *wire.ConnectRequest) { r.ResourceGroup = "nope" }, allow, refusal.ErrNotFound, ""},
		{"environment", func(r *wire.ConnectRequest) { r.Properties.Environment = "Mars" }, allow, refusal.ErrInvalid, ""},
		{"sealing key", func(r *wire.ConnectRequest) { r.SealingKey = []byte("short") }, allow, refusal.ErrInvalid, ""},
		{"csr", func(r *wire.ConnectRequest) {
			r.CSR = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
		}, allow, refusal.ErrInvalid, ""},
	} {
		req := connectRequest(t, "vm-"+tc.name[:3])
		tc.edit(&req)
		_, err := e.svc.Connect(ctx, req, operator, tc.authorize)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if re, ok := refusal.As(err); tc.code != "" && (!ok || re.Code != tc.code) {
			t.Errorf("%s: code of %v, want %s", tc.name, err, tc.code)
		}
	}
	ms, err := e.st.ListMachines(ctx, store.MachineFilter{Subscription: "default"})
	if err != nil || len(ms) != 0 {
		t.Errorf("refused onboardings left %d machines (%v)", len(ms), err)
	}
}

func TestDeviceCodeFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	dc, err := e.svc.RequestDeviceCode(ctx, onboarding.DeviceCodeRequest{Subscription: "default", ResourceGroup: "web", MachineName: "vm9",
		SourceIP: "192.0.2.1", VerificationURI: "https://cp/ui/devicecodes"})
	if err != nil {
		t.Fatal(err)
	}
	grantCode := func(err error) string {
		re, _ := refusal.As(err)
		if re == nil {
			return ""
		}
		return re.Code
	}
	if _, _, err := e.svc.RedeemDeviceCode(ctx, dc.DeviceCode); grantCode(err) != wire.CodeAuthorizationPending {
		t.Errorf("before approval: %v", err)
	}
	pending, err := e.svc.PendingDeviceCodes(ctx)
	if err != nil || len(pending) != 1 || pending[0].UserCode != dc.UserCode {
		t.Fatalf("pending %+v %v", pending, err)
	}
	approver := authn.Principal{ID: e.approver.ID, Name: e.approver.Name, Type: wire.PrincipalUser}
	refused := errors.New("no onboarding rights there")
	lower := dc.UserCode[:4] + dc.UserCode[5:] // typed without the dash, lower case
	if _, err := e.svc.ApproveDeviceCode(ctx, lower, approver, func(resource.ID) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("approval without rights: %v", err)
	}
	if _, err := e.svc.ApproveDeviceCode(ctx, lower, approver, allow); err != nil {
		t.Fatal(err)
	}
	tr, p, err := e.svc.RedeemDeviceCode(ctx, dc.DeviceCode)
	if err != nil || p.ID != e.approver.ID {
		t.Fatalf("redeem: %+v %v", p, err)
	}
	got, err := e.ids.Authenticate(ctx, tr.AccessToken)
	scope := resource.ResourceGroup("default", "web")
	if err != nil || got.Restriction != onboarding.OnboardRestriction(scope) || !onboarding.RestrictionAllows(got.Restriction, scope) ||
		onboarding.RestrictionAllows(got.Restriction, resource.ResourceGroup("default", "other")) {
		t.Errorf("the device-code token: %+v %v", got, err)
	}
	if _, _, err := e.svc.RedeemDeviceCode(ctx, dc.DeviceCode); grantCode(err) != wire.CodeInvalidGrant {
		t.Errorf("second redemption: %v", err)
	}
	if !onboarding.RestrictionAllows("", scope) {
		t.Error("an unrestricted token is refused")
	}

	late, _ := e.svc.RequestDeviceCode(ctx, onboarding.DeviceCodeRequest{Subscription: "default", ResourceGroup: "web"})
	e.clock.Advance(time.Hour)
	if _, err := e.svc.ApproveDeviceCode(ctx, late.UserCode, approver, allow); !errors.Is(err, refusal.ErrConflict) {
		t.Errorf("approving an expired code: %v", err)
	}
	if _, _, err := e.svc.RedeemDeviceCode(ctx, late.DeviceCode); grantCode(err) != wire.CodeExpiredToken {
		t.Errorf("redeeming an expired code: %v", err)
	}
}

// operator is who onboards in these tests.
var operator = authn.Principal{ID: "usr-operator", Name: "operator", Type: wire.PrincipalUser}
