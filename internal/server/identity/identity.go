// Package identity is the control plane's identity context: users, service
// principals and API tokens, and the credentials they sign in with — the
// OAuth2 password and client_credentials grants, bearer access tokens and
// API tokens. Passwords are hashed and secrets made by package authn; this
// context decides who may sign in and issues the access tokens.
//
// Every secret (service principal secret, API token) is returned once, at
// creation, and stored only as a hash. Deleting a principal removes its API
// tokens and role assignments in the same store transaction.
//
// Refusals the caller can act on are *refusal.Error: ErrUnauthenticated for
// credentials that do not hold (the Code says which OAuth2 error), and the
// usual kinds for the administration calls. The Service is safe for
// concurrent use; it holds no state of its own.
package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Store is what the context needs from persistence.
type Store interface {
	CreateUser(ctx context.Context, u store.User, grants ...store.RoleAssignment) error
	GetUser(ctx context.Context, id string) (store.User, error)
	GetUserByName(ctx context.Context, name string) (store.User, error)
	ListUsers(ctx context.Context) ([]store.User, error)
	DeleteUser(ctx context.Context, id string) error
	SetUserPassword(ctx context.Context, id, hash string, mustChange bool, at time.Time) error
	SetUserDisabled(ctx context.Context, id string, disabled bool, at time.Time) error

	CreateServicePrincipal(ctx context.Context, sp store.ServicePrincipal) error
	GetServicePrincipal(ctx context.Context, clientID string) (store.ServicePrincipal, error)
	ListServicePrincipals(ctx context.Context) ([]store.ServicePrincipal, error)
	DeleteServicePrincipal(ctx context.Context, clientID string) error

	CreateAPIToken(ctx context.Context, t store.APIToken) error
	GetAPITokenByHash(ctx context.Context, hash string) (store.APIToken, error)
	ListAPITokens(ctx context.Context, principalID string) ([]store.APIToken, error)
	DeleteAPIToken(ctx context.Context, id string) error
}

// Settings are the identity tunables from the server config.
type Settings struct {
	ServiceTokenTTL time.Duration // client_credentials access tokens
	UserTokenTTL    time.Duration // password grant access tokens
}

// Secret prefixes: a leaked secret is recognisable by what it is.
const (
	APITokenPrefix         = "crl_pat_"
	servicePrincipalPrefix = "crl_sps_"
	userIDPrefix           = "usr-"
)

// MinPasswordLength is the shortest password a user may have;
// MaxPasswordLength the longest (argon2id hashes any length, but a
// megabyte-long "password" is only a way to burn CPU).
const (
	MinPasswordLength = 12
	MaxPasswordLength = 1024
)

// RestrictPasswordChange is the restriction of the access token a user
// gets while MustChangePassword is set: it may read /api/v1/me and change
// the password, nothing else.
const RestrictPasswordChange = "password-change"

// passwordChangeTTL is how long such a token lasts.
const passwordChangeTTL = 15 * time.Minute

// checkPassword explains what is wrong with a new password.
func checkPassword(target, pw string) error {
	if len(pw) < MinPasswordLength || len(pw) > MaxPasswordLength {
		return refusal.Invalid(target, "the password must have %d to %d characters", MinPasswordLength, MaxPasswordLength)
	}
	if strings.ContainsRune(pw, 0) {
		return refusal.Invalid(target, "the password must not contain a NUL character")
	}
	return nil
}

// Service implements the identity context.
type Service struct {
	store    Store
	tokens   *authn.TokenIssuer
	clock    func() time.Time
	log      *slog.Logger
	settings Settings
}

// New returns a Service. tokens signs and verifies access tokens; clock is
// the injected time source.
func New(st Store, tokens *authn.TokenIssuer, clock func() time.Time, log *slog.Logger, settings Settings) *Service {
	return &Service{store: st, tokens: tokens, clock: clock, log: log, settings: settings}
}

func (s *Service) now() time.Time { return s.clock().UTC() }

func notFoundAs(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return refusal.NotFound(format, args...)
	}
	return err
}

// principalType is the type of a principal id: user ids carry a prefix,
// service principal ids are bare UUIDs.
func principalType(id string) string {
	if strings.HasPrefix(id, userIDPrefix) {
		return wire.PrincipalUser
	}
	return wire.PrincipalServicePrincipal
}

// parseLifetime reads an optional Go duration between a minute and max.
func parseLifetime(target, v string, def, max time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute || d > max {
		return 0, refusal.Invalid(target, "%s must be a duration between 1m and %s (e.g. \"720h\")", target, max)
	}
	return d, nil
}

// Users.

func toWireUser(u store.User) wire.User {
	return wire.User{ID: u.ID, Name: u.Name, CreatedAt: u.CreatedAt, Disabled: u.Disabled, MustChangePassword: u.MustChangePassword}
}

// ListUsers lists every user by name.
func (s *Service) ListUsers(ctx context.Context) ([]wire.User, error) {
	us, err := s.store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.User, 0, len(us))
	for _, u := range us {
		out = append(out, toWireUser(u))
	}
	return out, nil
}

// CreateUser creates a user who signs in with password, to be changed at
// first sign-in if mustChange.
func (s *Service) CreateUser(ctx context.Context, name, password string, mustChange bool) (wire.User, error) {
	if err := resource.CheckName("user", name); err != nil {
		return wire.User{}, refusal.Invalid("name", "%v", err)
	}
	if err := checkPassword("password", password); err != nil {
		return wire.User{}, err
	}
	hash, err := authn.HashPassword(password)
	if err != nil {
		return wire.User{}, err
	}
	u := store.User{ID: userIDPrefix + uuid.NewString(), Name: name, PasswordHash: hash, CreatedAt: s.now(), MustChangePassword: mustChange}
	if err := s.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return wire.User{}, refusal.Conflict("user %q already exists", name)
		}
		return wire.User{}, err
	}
	return toWireUser(u), nil
}

// DeleteUser deletes the user name with its API tokens and role
// assignments. callerID may not delete itself.
func (s *Service) DeleteUser(ctx context.Context, name, callerID string) (wire.User, error) {
	u, err := s.store.GetUserByName(ctx, name)
	if err != nil {
		return wire.User{}, notFoundAs(err, "user %q was not found", name)
	}
	if u.ID == callerID {
		return wire.User{}, refusal.Invalid("name", "you cannot delete your own user")
	}
	if err := s.store.DeleteUser(ctx, u.ID); err != nil {
		return wire.User{}, notFoundAs(err, "user %q was not found", name)
	}
	return toWireUser(u), nil
}

// ChangeOwnPassword changes the password of the signed-in user p, who
// proves it with the current one. Every session of the user ends (the
// caller signs in again with the new password); API tokens stay.
func (s *Service) ChangeOwnPassword(ctx context.Context, p authn.Principal, current, next string) error {
	if p.Type != wire.PrincipalUser {
		return refusal.Invalid("", "only users have passwords; a service principal gets a new secret by being re-created")
	}
	if err := checkPassword("newPassword", next); err != nil {
		return err
	}
	if current == next {
		return refusal.Invalid("newPassword", "the new password must differ from the current one")
	}
	u, err := s.store.GetUser(ctx, p.ID)
	if err != nil {
		return notFoundAs(err, "user %q was not found", p.Name)
	}
	ok, err := authn.VerifyPassword(u.PasswordHash, current)
	if err != nil {
		return err
	}
	if !ok {
		return refusal.Invalid("currentPassword", "the current password is wrong").WithCode(wire.CodeInvalidGrant)
	}
	hash, err := authn.HashPassword(next)
	if err != nil {
		return err
	}
	return notFoundAs(s.store.SetUserPassword(ctx, u.ID, hash, false, s.now()), "user %q was not found", p.Name)
}

// SetPassword sets user name's password (an administrator's reset), to be
// changed at the next sign-in if mustChange; every session of the user
// ends.
func (s *Service) SetPassword(ctx context.Context, name, password string, mustChange bool) (wire.User, error) {
	if err := checkPassword("password", password); err != nil {
		return wire.User{}, err
	}
	u, err := s.store.GetUserByName(ctx, name)
	if err != nil {
		return wire.User{}, notFoundAs(err, "user %q was not found", name)
	}
	hash, err := authn.HashPassword(password)
	if err != nil {
		return wire.User{}, err
	}
	if err := s.store.SetUserPassword(ctx, u.ID, hash, mustChange, s.now()); err != nil {
		return wire.User{}, notFoundAs(err, "user %q was not found", name)
	}
	u.MustChangePassword = mustChange
	return toWireUser(u), nil
}

// SetDisabled disables or enables user name. Disabling ends the user's
// sessions and refuses its sign-ins and API tokens at once; callerID may
// not disable itself.
func (s *Service) SetDisabled(ctx context.Context, name string, disabled bool, callerID string) (wire.User, error) {
	u, err := s.store.GetUserByName(ctx, name)
	if err != nil {
		return wire.User{}, notFoundAs(err, "user %q was not found", name)
	}
	if u.ID == callerID && disabled {
		return wire.User{}, refusal.Invalid("disabled", "you cannot disable your own user")
	}
	if err := s.store.SetUserDisabled(ctx, u.ID, disabled, s.now()); err != nil {
		return wire.User{}, notFoundAs(err, "user %q was not found", name)
	}
	u.Disabled = disabled
	return toWireUser(u), nil
}

// Service principals.

func toWireSP(sp store.ServicePrincipal) wire.ServicePrincipal {
	return wire.ServicePrincipal{ID: resource.ServicePrincipal(sp.ClientID).String(), ClientID: sp.ClientID, DisplayName: sp.DisplayName,
		CreatedAt: sp.CreatedAt, CreatedBy: sp.CreatedBy, ExpiresAt: sp.ExpiresAt}
}

// ListServicePrincipals lists every service principal by display name.
func (s *Service) ListServicePrincipals(ctx context.Context) ([]wire.ServicePrincipal, error) {
	sps, err := s.store.ListServicePrincipals(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.ServicePrincipal, 0, len(sps))
	for _, sp := range sps {
		out = append(out, toWireSP(sp))
	}
	return out, nil
}

// CreateServicePrincipal creates a service principal whose secret expires
// after in.ExpiresIn (a year by default, two at most); the secret is in the
// result and nowhere else.
func (s *Service) CreateServicePrincipal(ctx context.Context, in wire.ServicePrincipalCreate, by string) (wire.ServicePrincipalCreated, error) {
	name := strings.TrimSpace(in.DisplayName)
	if name == "" || len(name) > 128 {
		return wire.ServicePrincipalCreated{}, refusal.Invalid("displayName", "displayName is required (at most 128 characters)")
	}
	if err := wire.CheckText(name, 128); err != nil {
		return wire.ServicePrincipalCreated{}, refusal.Invalid("displayName", "displayName %v", err)
	}
	life, err := parseLifetime("expiresIn", in.ExpiresIn, 365*24*time.Hour, 2*365*24*time.Hour)
	if err != nil {
		return wire.ServicePrincipalCreated{}, err
	}
	secret, err := authn.NewSecret(servicePrincipalPrefix)
	if err != nil {
		return wire.ServicePrincipalCreated{}, err
	}
	now := s.now()
	sp := store.ServicePrincipal{ClientID: uuid.NewString(), DisplayName: name, SecretHash: authn.HashSecret(secret),
		ExpiresAt: now.Add(life), CreatedAt: now, CreatedBy: by}
	if err := s.store.CreateServicePrincipal(ctx, sp); err != nil {
		return wire.ServicePrincipalCreated{}, err
	}
	return wire.ServicePrincipalCreated{ServicePrincipal: toWireSP(sp), ClientSecret: secret}, nil
}

// GetServicePrincipal reads one service principal.
func (s *Service) GetServicePrincipal(ctx context.Context, clientID string) (wire.ServicePrincipal, error) {
	sp, err := s.store.GetServicePrincipal(ctx, clientID)
	if err != nil {
		return wire.ServicePrincipal{}, notFoundAs(err, "service principal %q was not found", clientID)
	}
	return toWireSP(sp), nil
}

// DeleteServicePrincipal deletes a service principal with its API tokens
// and role assignments.
func (s *Service) DeleteServicePrincipal(ctx context.Context, clientID string) error {
	return notFoundAs(s.store.DeleteServicePrincipal(ctx, clientID), "service principal %q was not found", clientID)
}

// API tokens.

func toWireToken(t store.APIToken) wire.APIToken {
	return wire.APIToken{ID: t.ID, Name: t.Name, PrincipalID: t.PrincipalID, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
}

// ListTokens lists a principal's API tokens, oldest first.
func (s *Service) ListTokens(ctx context.Context, principalID string) ([]wire.APIToken, error) {
	ts, err := s.store.ListAPITokens(ctx, principalID)
	if err != nil {
		return nil, err
	}
	out := make([]wire.APIToken, 0, len(ts))
	for _, t := range ts {
		out = append(out, toWireToken(t))
	}
	return out, nil
}

// CreateToken creates an API token acting as p, expiring after
// in.ExpiresIn (30 days by default, a year at most) and never after the
// secret of the service principal p (a token cannot outlive the credential
// that minted it); the token is in the result and nowhere else. An API
// token cannot mint another: p must have signed in with its password or
// secret.
func (s *Service) CreateToken(ctx context.Context, p authn.Principal, in wire.APITokenCreate) (wire.APITokenCreated, error) {
	if p.ViaAPIToken {
		return wire.APITokenCreated{}, errTokenMintsToken
	}
	if err := resource.CheckName("token", in.Name); err != nil {
		return wire.APITokenCreated{}, refusal.Invalid("name", "%v", err)
	}
	life, err := parseLifetime("expiresIn", in.ExpiresIn, 30*24*time.Hour, 365*24*time.Hour)
	if err != nil {
		return wire.APITokenCreated{}, err
	}
	now := s.now()
	expires := now.Add(life)
	if p.Type == wire.PrincipalServicePrincipal {
		sp, err := s.store.GetServicePrincipal(ctx, p.ID)
		if err != nil {
			return wire.APITokenCreated{}, notFoundAs(err, "service principal %q was not found", p.ID)
		}
		expires = minTime(expires, sp.ExpiresAt)
	}
	secret, err := authn.NewSecret(APITokenPrefix)
	if err != nil {
		return wire.APITokenCreated{}, err
	}
	t := store.APIToken{ID: uuid.NewString(), Name: in.Name, PrincipalID: p.ID, Hash: authn.HashSecret(secret), CreatedAt: now, ExpiresAt: expires}
	if err := s.store.CreateAPIToken(ctx, t); err != nil {
		return wire.APITokenCreated{}, err
	}
	return wire.APITokenCreated{APIToken: toWireToken(t), Token: secret}, nil
}

// ErrTokenMintsToken refuses an API token that asks for another API token.
var errTokenMintsToken = refusal.Invalid("", "an API token cannot create API tokens: sign in with a password or client secret to create one")

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// DeleteToken deletes one of principalID's API tokens.
func (s *Service) DeleteToken(ctx context.Context, principalID, id string) error {
	ts, err := s.store.ListAPITokens(ctx, principalID)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if t.ID == id {
			return notFoundAs(s.store.DeleteAPIToken(ctx, id), "token %q was not found among your tokens", id)
		}
	}
	return refusal.NotFound("token %q was not found among your tokens", id)
}

// ResolvePrincipal finds a principal by id, user name or service principal
// client id, for role assignments.
func (s *Service) ResolvePrincipal(ctx context.Context, p string) (id, typ string, err error) {
	if strings.HasPrefix(p, userIDPrefix) {
		if u, err := s.store.GetUser(ctx, p); err == nil {
			return u.ID, wire.PrincipalUser, nil
		}
	}
	if sp, err := s.store.GetServicePrincipal(ctx, p); err == nil {
		return sp.ClientID, wire.PrincipalServicePrincipal, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", "", err
	}
	u, err := s.store.GetUserByName(ctx, p)
	if err == nil {
		return u.ID, wire.PrincipalUser, nil
	}
	return "", "", notFoundAs(err, "principal %q was not found (give a user name, user id or service principal client id)", p)
}

// dummyHash is verified when a user does not exist, so that a missing user
// and a wrong password take the same time. It is made once, on first use.
var dummyHash = sync.OnceValue(func() string {
	h, _ := authn.HashPassword("corral-timing-equalizer")
	return h
})

// subtleEqual compares two secret hashes in constant time.
func subtleEqual(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
