package identity_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/identity"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func newService(t *testing.T, clock *testutil.Clock) (*identity.Service, store.Store) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := testutil.Store(t)
	svc := identity.New(st, authn.NewTokenIssuer(key, "corral"), clock.Now, slog.New(slog.NewTextHandler(io.Discard, nil)),
		identity.Settings{ServiceTokenTTL: time.Hour, UserTokenTTL: 8 * time.Hour})
	return svc, st
}

func code(err error) string {
	if re, ok := refusal.As(err); ok {
		return re.Code
	}
	return ""
}

func TestSignInAndAuthenticate(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	svc, _ := newService(t, clock)
	ctx := t.Context()
	if _, err := svc.CreateUser(ctx, "alice", "short", false); !errors.Is(err, refusal.ErrInvalid) {
		t.Errorf("short password: %v", err)
	}
	alice, err := svc.CreateUser(ctx, "alice", "correct horse battery", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser(ctx, "ALICE", "correct horse battery", false); !errors.Is(err, refusal.ErrConflict) {
		t.Errorf("duplicate: %v", err)
	}
	for _, tc := range []struct{ user, pw string }{{"alice", "wrong password!"}, {"nobody", "correct horse battery"}} {
		_, _, err := svc.PasswordGrant(ctx, tc.user, tc.pw)
		if !errors.Is(err, refusal.ErrUnauthenticated) || code(err) != wire.CodeInvalidGrant || !strings.Contains(err.Error(), "wrong user name or password") {
			t.Errorf("%s/%s: %v, want the same refusal for both", tc.user, tc.pw, err)
		}
	}
	tr, p, err := svc.PasswordGrant(ctx, "alice", "correct horse battery")
	if err != nil || p.ID != alice.ID || tr.ExpiresIn != int((8*time.Hour).Seconds()) {
		t.Fatalf("%+v %+v %v", tr, p, err)
	}
	got, err := svc.Authenticate(ctx, tr.AccessToken)
	if err != nil || got != p {
		t.Errorf("authenticate: %+v %v, want %+v", got, err, p)
	}

	pat, err := svc.CreateToken(ctx, authn.Principal{ID: alice.ID, Name: alice.Name, Type: wire.PrincipalUser}, wire.APITokenCreate{Name: "ci", ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := svc.Authenticate(ctx, pat.Token); err != nil || got.ID != alice.ID {
		t.Errorf("API token: %+v %v", got, err)
	}
	clock.Advance(2 * time.Hour)
	if _, err := svc.Authenticate(ctx, pat.Token); code(err) != wire.CodeExpiredToken {
		t.Errorf("expired API token: %v", err)
	}
	if _, err := svc.Authenticate(ctx, "crl_pat_nothing"); !errors.Is(err, refusal.ErrUnauthenticated) {
		t.Errorf("unknown API token: %v", err)
	}
}

func TestDeletedPrincipalsCannotSignIn(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, &testutil.Clock{})
	ctx := t.Context()
	admin, _ := svc.CreateUser(ctx, "admin", "correct horse battery", false)
	bob, _ := svc.CreateUser(ctx, "bob", "correct horse battery", false)
	tr, _, err := svc.PasswordGrant(ctx, "bob", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.DeleteUser(ctx, "admin", admin.ID); !errors.Is(err, refusal.ErrInvalid) {
		t.Errorf("deleting oneself: %v", err)
	}
	if _, err := svc.DeleteUser(ctx, "bob", admin.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, tr.AccessToken); !errors.Is(err, refusal.ErrUnauthenticated) {
		t.Errorf("token of a deleted user: %v", err)
	}
	if _, _, err := svc.IssueAs(ctx, bob.ID, "onboard:/x", time.Minute); !errors.Is(err, refusal.ErrUnauthenticated) {
		t.Errorf("issuing as a deleted user: %v", err)
	}

	sp, err := svc.CreateServicePrincipal(ctx, wire.ServicePrincipalCreate{DisplayName: "deployer", ExpiresIn: "24h"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.ClientCredentialsGrant(ctx, sp.ClientID, sp.ClientSecret+"x"); code(err) != wire.CodeInvalidClient {
		t.Errorf("wrong secret: %v", err)
	}
	tr, p, err := svc.ClientCredentialsGrant(ctx, sp.ClientID, sp.ClientSecret)
	if err != nil || p.Type != wire.PrincipalServicePrincipal || tr.ExpiresIn != 3600 {
		t.Fatalf("%+v %+v %v", tr, p, err)
	}
	if err := svc.DeleteServicePrincipal(ctx, sp.ClientID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, tr.AccessToken); !errors.Is(err, refusal.ErrUnauthenticated) {
		t.Errorf("token of a deleted service principal: %v", err)
	}
	if err := svc.DeleteServicePrincipal(ctx, sp.ClientID); !errors.Is(err, refusal.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
}
