package identity

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Authenticate resolves a bearer credential — an access token (JWT) or an
// API token — to a principal that still exists and may sign in.
func (s *Service) Authenticate(ctx context.Context, bearer string) (authn.Principal, error) {
	switch {
	case authn.LooksLikeJWT(bearer):
		return s.fromAccessToken(ctx, bearer)
	case strings.HasPrefix(bearer, APITokenPrefix):
		return s.fromAPIToken(ctx, bearer)
	}
	return authn.Principal{}, refusal.Unauthenticated("the bearer token is not valid")
}

func (s *Service) fromAccessToken(ctx context.Context, tok string) (authn.Principal, error) {
	claims, err := s.tokens.Verify(tok, s.now())
	if errors.Is(err, authn.ErrTokenExpired) {
		return authn.Principal{}, refusal.Unauthenticated("the access token has expired; request a new one").WithCode(wire.CodeExpiredToken)
	}
	if err != nil {
		return authn.Principal{}, refusal.Unauthenticated("the bearer token is not valid")
	}
	p, err := s.principal(ctx, claims.Subject, claims.PrincipalType, claims.IssuedAt)
	if err != nil {
		return p, err
	}
	p.Restriction = claims.Restriction
	return p, nil
}

func (s *Service) fromAPIToken(ctx context.Context, tok string) (authn.Principal, error) {
	t, err := s.store.GetAPITokenByHash(ctx, authn.HashSecret(tok))
	if errors.Is(err, store.ErrNotFound) {
		return authn.Principal{}, refusal.Unauthenticated("the bearer token is not valid")
	}
	if err != nil {
		return authn.Principal{}, err
	}
	if !s.now().Before(t.ExpiresAt) {
		return authn.Principal{}, refusal.Unauthenticated("the API token has expired").WithCode(wire.CodeExpiredToken)
	}
	p, err := s.principal(ctx, t.PrincipalID, principalType(t.PrincipalID), time.Time{})
	p.ViaAPIToken = true
	return p, err
}

// principal loads a user or service principal and checks it may still sign
// in with a credential issued at issuedAt (zero: an API token, which a
// password change does not end): the user is enabled and its sessions did
// not end after issuedAt, the service principal's secret has not expired.
func (s *Service) principal(ctx context.Context, id, typ string, issuedAt time.Time) (authn.Principal, error) {
	gone := refusal.Unauthenticated("the principal of this token no longer exists")
	switch typ {
	case wire.PrincipalUser:
		u, err := s.store.GetUser(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return authn.Principal{}, gone
		}
		if err != nil {
			return authn.Principal{}, err
		}
		if u.Disabled {
			return authn.Principal{}, refusal.Unauthenticated("the user is disabled")
		}
		// Token times have whole seconds: a token issued in the second of
		// the change still holds, one issued before it does not.
		if !issuedAt.IsZero() && issuedAt.Before(u.SessionsValidAfter.Truncate(time.Second)) {
			return authn.Principal{}, refusal.Unauthenticated("this session ended when the password was changed or the user disabled; sign in again").WithCode(wire.CodeExpiredToken)
		}
		return authn.Principal{ID: u.ID, Name: u.Name, Type: wire.PrincipalUser}, nil
	case wire.PrincipalServicePrincipal:
		sp, err := s.store.GetServicePrincipal(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return authn.Principal{}, gone
		}
		if err != nil {
			return authn.Principal{}, err
		}
		// A token never outlives the secret it was minted with.
		if !s.now().Before(sp.ExpiresAt) {
			return authn.Principal{}, refusal.Unauthenticated("the service principal's secret has expired, and with it every token it minted").WithCode(wire.CodeExpiredToken)
		}
		return authn.Principal{ID: sp.ClientID, Name: sp.DisplayName, Type: wire.PrincipalServicePrincipal}, nil
	}
	return authn.Principal{}, refusal.Unauthenticated("the bearer token is not valid")
}

// issue signs an access token acting as p for ttl.
func (s *Service) issue(p authn.Principal, ttl time.Duration) (wire.TokenResponse, error) {
	now := s.now()
	tok, err := s.tokens.Issue(authn.Claims{Subject: p.ID, PrincipalType: p.Type, Name: p.Name, Restriction: p.Restriction,
		ID: uuid.NewString(), IssuedAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		return wire.TokenResponse{}, err
	}
	return wire.TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(ttl.Seconds())}, nil
}

// PasswordGrant signs a user in (OAuth2 password grant). A missing user
// and a wrong password fail alike, in the same time.
func (s *Service) PasswordGrant(ctx context.Context, name, password string) (wire.TokenResponse, authn.Principal, error) {
	if name == "" || password == "" {
		return wire.TokenResponse{}, authn.Principal{}, refusal.Invalid("", "username and password are required").WithCode("invalid_request")
	}
	bad := refusal.Unauthenticated("wrong user name or password").WithCode(wire.CodeInvalidGrant)
	u, err := s.store.GetUserByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		_, _ = authn.VerifyPassword(dummyHash(), password)
		return wire.TokenResponse{}, authn.Principal{}, bad
	}
	if err != nil {
		return wire.TokenResponse{}, authn.Principal{}, err
	}
	ok, err := authn.VerifyPassword(u.PasswordHash, password)
	if err != nil {
		return wire.TokenResponse{}, authn.Principal{}, err
	}
	if !ok || u.Disabled {
		return wire.TokenResponse{}, authn.Principal{}, bad
	}
	p := authn.Principal{ID: u.ID, Name: u.Name, Type: wire.PrincipalUser}
	ttl := s.settings.UserTokenTTL
	if u.MustChangePassword {
		// The password was set by someone else: this session may only
		// change it (see RestrictPasswordChange).
		p.Restriction, ttl = RestrictPasswordChange, passwordChangeTTL
	}
	tr, err := s.issue(p, ttl)
	return tr, p, err
}

// ClientCredentialsGrant signs a service principal in (OAuth2
// client_credentials grant); the token never outlives the secret.
func (s *Service) ClientCredentialsGrant(ctx context.Context, clientID, secret string) (wire.TokenResponse, authn.Principal, error) {
	if clientID == "" || secret == "" {
		return wire.TokenResponse{}, authn.Principal{}, refusal.Invalid("", "client_id and client_secret are required").WithCode("invalid_request")
	}
	bad := refusal.Unauthenticated("client authentication failed: unknown client or wrong secret").WithCode(wire.CodeInvalidClient)
	sp, err := s.store.GetServicePrincipal(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return wire.TokenResponse{}, authn.Principal{}, bad
	}
	if err != nil {
		return wire.TokenResponse{}, authn.Principal{}, err
	}
	if !subtleEqual(authn.HashSecret(secret), sp.SecretHash) {
		return wire.TokenResponse{}, authn.Principal{}, bad
	}
	now := s.now()
	if !now.Before(sp.ExpiresAt) {
		return wire.TokenResponse{}, authn.Principal{}, refusal.Unauthenticated("the client secret has expired; create a new service principal secret").WithCode(wire.CodeInvalidClient)
	}
	p := authn.Principal{ID: sp.ClientID, Name: sp.DisplayName, Type: wire.PrincipalServicePrincipal}
	tr, err := s.issue(p, min(s.settings.ServiceTokenTTL, sp.ExpiresAt.Sub(now)))
	return tr, p, err
}

// IssueAs issues an access token acting as the existing principal id,
// limited by restriction, for ttl (the device-code grant: a token acting as
// the approver). A principal that no longer exists is refused.
func (s *Service) IssueAs(ctx context.Context, id, restriction string, ttl time.Duration) (wire.TokenResponse, authn.Principal, error) {
	p, err := s.principal(ctx, id, principalType(id), time.Time{})
	if err != nil {
		return wire.TokenResponse{}, authn.Principal{}, err
	}
	p.Restriction = restriction
	tr, err := s.issue(p, ttl)
	return tr, p, err
}
