package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// AdminPasswordFile is where a generated first-admin password is written
// (in the data directory, mode 0600).
const AdminPasswordFile = "admin-password"

// bootstrap creates the default subscription and, once in the life of the
// store, the admin user: a marker in the store records that bootstrap
// happened, so an admin deleted later stays deleted across restarts, even
// with CORRAL_ADMIN_PASSWORD still set. It is safe to run on every start
// and on several replicas at once.
func (s *Server) bootstrap(ctx context.Context, now time.Time) error {
	err := s.Store.CreateSubscription(ctx, store.Subscription{Name: DefaultSubscription, DisplayName: "Default subscription", CreatedAt: now, CreatedBy: "system"})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("bootstrap subscription: %w", err)
	}
	users, err := s.Store.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if len(users) > 0 {
		// A store bootstrapped before the marker existed: record it now.
		if _, err := s.Store.MarkBootstrapped(ctx, now); err != nil {
			return fmt.Errorf("bootstrap marker: %w", err)
		}
		return nil
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
	var pwFile string
	if generated {
		// Written before the user exists: a start that fails after this
		// leaves a file naming a password nobody can use, never a user
		// whose password nobody knows.
		pwFile = filepath.Join(s.cfg.DataDir, AdminPasswordFile)
		if err := writeSecretFile(pwFile, pw+"\n"); err != nil {
			return fmt.Errorf("bootstrap admin password: %w", err)
		}
	}
	// The admin and its Owner role are stored together: a failed start
	// never leaves an admin without rights.
	u := store.User{ID: "usr-" + uuid.NewString(), Name: AdminUser, PasswordHash: hash, CreatedAt: now,
		MustChangePassword: s.cfg.AdminMustChangePassword}
	owner := store.RoleAssignment{ID: uuid.NewString(), PrincipalID: u.ID, PrincipalType: wire.PrincipalUser,
		RoleID: authz.RoleOwner, Scope: "/", CreatedAt: now, CreatedBy: "system"}
	made, err := s.Store.BootstrapUser(ctx, u, []store.RoleAssignment{owner}, now)
	if err != nil || !made {
		if pwFile != "" {
			_ = os.Remove(pwFile)
		}
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return nil // another replica won the race
	case err != nil:
		return fmt.Errorf("bootstrap admin: %w", err)
	case !made:
		return nil // bootstrapped before (every user deleted since): not again
	}
	s.Bootstrap.AdminCreated = true
	s.Bootstrap.AdminPasswordFile = pwFile
	return nil
}

// writeSecretFile writes content to a new file readable by its owner only,
// replacing an older one (a password of an earlier, failed start).
func writeSecretFile(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secret-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
