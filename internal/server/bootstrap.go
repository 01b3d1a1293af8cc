package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// DefaultSubscription is created on first start.
const DefaultSubscription = "default"

// AdminUser is the first user, created on first start with Owner at "/".
const AdminUser = "admin"

// bootstrap creates the default subscription and the admin user if missing.
// It is idempotent and safe to run on every start and on several replicas.
func (s *Server) bootstrap(ctx context.Context, now time.Time) error {
	err := s.Store.CreateSubscription(ctx, store.Subscription{Name: DefaultSubscription, DisplayName: "Default subscription", CreatedAt: now, CreatedBy: "system"})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("bootstrap subscription: %w", err)
	}
	if _, err := s.Store.GetUserByName(ctx, AdminUser); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	pw := s.cfg.AdminPassword
	generated := pw == ""
	if generated {
		pw = rand.Text() // 26 base32 characters, 130 bits
	}
	hash, err := authn.HashPassword(pw)
	if err != nil {
		return err
	}
	// The admin and its Owner role are stored together: a failed start
	// never leaves an admin without rights.
	u := store.User{ID: "usr-" + uuid.NewString(), Name: AdminUser, PasswordHash: hash, CreatedAt: now}
	owner := store.RoleAssignment{ID: uuid.NewString(), PrincipalID: u.ID, PrincipalType: wire.PrincipalUser,
		RoleID: authz.RoleOwner, Scope: "/", CreatedAt: now, CreatedBy: "system"}
	if err := s.Store.CreateUser(ctx, u, owner); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil // another replica won the race
		}
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	s.Bootstrap.AdminCreated = true
	if generated {
		s.Bootstrap.AdminPassword = pw
	}
	return nil
}
