package authn

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Sentinel token errors.
var (
	ErrTokenExpired = errors.New("token expired")
	ErrTokenInvalid = errors.New("token invalid")
)

// audience of every Corral access token.
const audience = "corral"

// Claims are what an access token says.
type Claims struct {
	Subject       string // principal id
	PrincipalType string // "User" | "ServicePrincipal"
	Name          string
	// Restriction limits the token to one purpose, e.g.
	// "onboard:/subscriptions/s/resourceGroups/rg" for device-code tokens.
	Restriction string
	ID          string
	IssuedAt    time.Time
	ExpiresAt   time.Time
}

type jwtClaims struct {
	jwt.RegisteredClaims
	Type        string `json:"typ,omitempty"`
	Name        string `json:"name,omitempty"`
	Restriction string `json:"rst,omitempty"`
}

// TokenIssuer signs and verifies EdDSA JWTs. Safe for concurrent use.
type TokenIssuer struct {
	key    ed25519.PrivateKey
	issuer string
}

// NewTokenIssuer returns an issuer signing with key.
func NewTokenIssuer(key ed25519.PrivateKey, issuer string) *TokenIssuer {
	return &TokenIssuer{key: key, issuer: issuer}
}

// Issue signs c.
func (t *TokenIssuer) Issue(c Claims) (string, error) {
	jc := jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: t.issuer, Subject: c.Subject, Audience: jwt.ClaimStrings{audience}, ID: c.ID,
			IssuedAt: jwt.NewNumericDate(c.IssuedAt), NotBefore: jwt.NewNumericDate(c.IssuedAt.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
		},
		Type: c.PrincipalType, Name: c.Name, Restriction: c.Restriction,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jc).SignedString(t.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Verify checks signature (EdDSA only), issuer, audience and expiry at now.
func (t *TokenIssuer) Verify(token string, now time.Time) (Claims, error) {
	var jc jwtClaims
	_, err := jwt.ParseWithClaims(token, &jc, func(*jwt.Token) (any, error) { return t.key.Public(), nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithIssuer(t.issuer),
		jwt.WithAudience(audience), jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithExpirationRequired())
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, ErrTokenExpired
	case err != nil:
		return Claims{}, ErrTokenInvalid
	case jc.Subject == "":
		return Claims{}, ErrTokenInvalid
	}
	return Claims{Subject: jc.Subject, PrincipalType: jc.Type, Name: jc.Name, Restriction: jc.Restriction, ID: jc.ID,
		IssuedAt: jc.IssuedAt.Time, ExpiresAt: jc.ExpiresAt.Time}, nil
}

// LooksLikeJWT tells a JWT (three dot-separated parts) from an opaque token.
func LooksLikeJWT(s string) bool { return strings.Count(s, ".") == 2 && !strings.ContainsAny(s, " \t") }

// LoadOrCreateSigningKey loads an Ed25519 PKCS#8 PEM key or creates it (0600).
func LoadOrCreateSigningKey(path string) (ed25519.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, errors.New("token signing key: no PEM block")
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, errors.New("token signing key: malformed")
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, errors.New("token signing key: not Ed25519")
		}
		return ek, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read token signing key: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return nil, fmt.Errorf("write token signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	return key, nil
}

// Principal is who a credential proves the caller to be: a user or a
// service principal (wire.PrincipalUser, wire.PrincipalServicePrincipal),
// with the Restriction of the token it presented ("" for none; device-code
// tokens may only onboard, see package onboarding).
type Principal struct {
	ID, Name, Type string
	Restriction    string
	// ViaAPIToken says the credential was an API token (crl_pat_): such a
	// caller may not create further API tokens.
	ViaAPIToken bool
}
