package authn

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestPasswords(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("correct horse battery")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q %v", h, err)
	}
	if ok, err := VerifyPassword(h, "correct horse battery"); !ok || err != nil {
		t.Fatalf("verify: %v %v", ok, err)
	}
	if ok, _ := VerifyPassword(h, "wrong"); ok {
		t.Fatal("wrong password accepted")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$aaaa$bbbb", "$argon2id$v=19$m=x$a$b", h[:len(h)-30]} {
		if _, err := VerifyPassword(bad, "x"); err == nil {
			t.Errorf("malformed hash %q accepted", bad)
		}
	}
}

func TestSecretsAndCodes(t *testing.T) {
	t.Parallel()
	a, _ := NewSecret("crl_x_")
	b, _ := NewSecret("crl_x_")
	if a == b || len(a) != len("crl_x_")+43 {
		t.Fatalf("secrets %q %q", a, b)
	}
	if HashSecret(a) == HashSecret(b) || !strings.HasPrefix(HashSecret(a), "sha256:") {
		t.Fatal("hash")
	}
	c, _ := NewUserCode()
	if len(c) != 9 || c[4] != '-' || strings.ContainsAny(c, "AEIOU01") {
		t.Fatalf("user code %q", c)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	key, err := LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	iss := NewTokenIssuer(key, "corral")
	now := time.Now()
	tok, err := iss.Issue(Claims{Subject: "sp-1", PrincipalType: "ServicePrincipal", Name: "n", Restriction: "onboard:/x", ID: "j", IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil || !LooksLikeJWT(tok) {
		t.Fatal(err)
	}
	c, err := iss.Verify(tok, now)
	if err != nil || c.Subject != "sp-1" || c.Restriction != "onboard:/x" {
		t.Fatalf("verify %+v %v", c, err)
	}
	if _, err := iss.Verify(tok, now.Add(2*time.Hour)); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := NewTokenIssuer(other, "corral").Verify(tok, now); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("other key: %v", err)
	}
	parts := strings.Split(tok, ".")
	if _, err := iss.Verify(parts[0]+"."+parts[1]+"x."+parts[2], now); err == nil {
		t.Error("tampered payload accepted")
	}
	// alg=none and HS256 keyed with the public key are refused.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "iss": "corral", "aud": "corral", "exp": now.Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, err := iss.Verify(none, now); err == nil {
		t.Error("alg none accepted")
	}
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "iss": "corral", "aud": "corral", "exp": now.Add(time.Hour).Unix()}).SignedString([]byte(key.Public().(ed25519.PublicKey)))
	if _, err := iss.Verify(hs, now); err == nil {
		t.Error("HS256 accepted")
	}
	again, _ := LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "k2"))
	if again.Equal(key) {
		t.Error("new key equals old")
	}
}

func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		_, _ = HashPassword("benchmark password")
	}
}

func BenchmarkVerifyToken(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	iss := NewTokenIssuer(key, "corral")
	now := time.Now()
	tok, _ := iss.Issue(Claims{Subject: "s", IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	for b.Loop() {
		if _, err := iss.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
