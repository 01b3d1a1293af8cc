package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/store"
)

// Users.

func (s *Store) CreateUser(ctx context.Context, u store.User, grants ...store.RoleAssignment) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.insertUser(ctx, tx, u); err != nil {
			return err
		}
		for _, a := range grants {
			if err := s.insertRoleAssignment(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create user %q: %w", u.Name, err)
	}
	return nil
}

func (s *Store) insertUser(ctx context.Context, tx *sql.Tx, u store.User) error {
	_, err := s.exec(ctx, tx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Name, u.PasswordHash, u.Disabled, micros(u.CreatedAt), u.MustChangePassword, micros(u.SessionsValidAfter))
	return err
}

const userCols = `id, name, password_hash, disabled, created_at, must_change_password, sessions_valid_after`

func scanUser(r scanner) (store.User, error) {
	var u store.User
	var created, validAfter int64
	if err := r.Scan(&u.ID, &u.Name, &u.PasswordHash, &u.Disabled, &created, &u.MustChangePassword, &validAfter); err != nil {
		return u, err
	}
	u.CreatedAt, u.SessionsValidAfter = fromMicros(created), fromMicros(validAfter)
	return u, nil
}

func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	u, err := scanUser(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+userCols+` FROM users WHERE id = ?`), id))
	if err != nil {
		return u, fmt.Errorf("get user %s: %w", id, s.mapErr(err))
	}
	return u, nil
}

func (s *Store) GetUserByName(ctx context.Context, name string) (store.User, error) {
	u, err := scanUser(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+userCols+` FROM users WHERE lower(name) = lower(?)`), name))
	if err != nil {
		return u, fmt.Errorf("get user %q: %w", name, s.mapErr(err))
	}
	return u, nil
}

// ListUsers orders by name.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY lower(name)`)
	us, err := collect(rows, err, scanUser)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", s.mapErr(err))
	}
	return us, nil
}

func (s *Store) SetUserPassword(ctx context.Context, id, hash string, mustChange bool, at time.Time) error {
	err := affected1(s.exec(ctx, s.write, `UPDATE users SET password_hash = ?, must_change_password = ?, sessions_valid_after = ?
		WHERE id = ?`, hash, mustChange, micros(at), id))
	if err != nil {
		return fmt.Errorf("set user %s password: %w", id, err)
	}
	return nil
}

func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, at time.Time) error {
	query := `UPDATE users SET disabled = ? WHERE id = ?`
	args := []any{disabled, id}
	if disabled {
		query = `UPDATE users SET disabled = ?, sessions_valid_after = ? WHERE id = ?`
		args = []any{disabled, micros(at), id}
	}
	if err := affected1(s.exec(ctx, s.write, query, args...)); err != nil {
		return fmt.Errorf("set user %s disabled=%t: %w", id, disabled, err)
	}
	return nil
}

func (s *Store) DeleteUser(ctx context.Context, id string) error {
	if err := s.deletePrincipal(ctx, `DELETE FROM users WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete user %s: %w", id, err)
	}
	return nil
}

// deletePrincipal runs del (which deletes the principal row of id) and
// removes the principal's API tokens and role assignments, in one
// transaction that changes nothing when del matched no row.
func (s *Store) deletePrincipal(ctx context.Context, del, id string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := affected1(s.exec(ctx, tx, del, id)); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM api_tokens WHERE principal_id = ?`, id); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `DELETE FROM role_assignments WHERE principal_id = ?`, id)
		return err
	})
}

// Service principals.

func (s *Store) CreateServicePrincipal(ctx context.Context, sp store.ServicePrincipal) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO service_principals (client_id, display_name, secret_hash, expires_at, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, ?)`,
		sp.ClientID, sp.DisplayName, sp.SecretHash, micros(sp.ExpiresAt), micros(sp.CreatedAt), sp.CreatedBy)
	if err != nil {
		return fmt.Errorf("create service principal %s: %w", sp.ClientID, err)
	}
	return nil
}

const servicePrincipalCols = `client_id, display_name, secret_hash, expires_at, created_at, created_by`

func scanServicePrincipal(r scanner) (store.ServicePrincipal, error) {
	var sp store.ServicePrincipal
	var expires, created int64
	if err := r.Scan(&sp.ClientID, &sp.DisplayName, &sp.SecretHash, &expires, &created, &sp.CreatedBy); err != nil {
		return sp, err
	}
	sp.ExpiresAt, sp.CreatedAt = fromMicros(expires), fromMicros(created)
	return sp, nil
}

func (s *Store) GetServicePrincipal(ctx context.Context, clientID string) (store.ServicePrincipal, error) {
	sp, err := scanServicePrincipal(s.reader(ctx).QueryRowContext(ctx,
		s.q(`SELECT `+servicePrincipalCols+` FROM service_principals WHERE client_id = ?`), clientID))
	if err != nil {
		return sp, fmt.Errorf("get service principal %s: %w", clientID, s.mapErr(err))
	}
	return sp, nil
}

// ListServicePrincipals orders by display name, then client id.
func (s *Store) ListServicePrincipals(ctx context.Context) ([]store.ServicePrincipal, error) {
	rows, err := s.reader(ctx).QueryContext(ctx,
		`SELECT `+servicePrincipalCols+` FROM service_principals ORDER BY lower(display_name), client_id`)
	sps, err := collect(rows, err, scanServicePrincipal)
	if err != nil {
		return nil, fmt.Errorf("list service principals: %w", s.mapErr(err))
	}
	return sps, nil
}

func (s *Store) DeleteServicePrincipal(ctx context.Context, clientID string) error {
	if err := s.deletePrincipal(ctx, `DELETE FROM service_principals WHERE client_id = ?`, clientID); err != nil {
		return fmt.Errorf("delete service principal %s: %w", clientID, err)
	}
	return nil
}

// API tokens.

func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO api_tokens (id, name, principal_id, hash, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.PrincipalID, t.Hash, micros(t.CreatedAt), micros(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create API token %s: %w", t.ID, err)
	}
	return nil
}

const apiTokenCols = `id, name, principal_id, hash, created_at, expires_at`

func scanAPIToken(r scanner) (store.APIToken, error) {
	var t store.APIToken
	var created, expires int64
	if err := r.Scan(&t.ID, &t.Name, &t.PrincipalID, &t.Hash, &created, &expires); err != nil {
		return t, err
	}
	t.CreatedAt, t.ExpiresAt = fromMicros(created), fromMicros(expires)
	return t, nil
}

func (s *Store) GetAPITokenByHash(ctx context.Context, hash string) (store.APIToken, error) {
	t, err := scanAPIToken(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+apiTokenCols+` FROM api_tokens WHERE hash = ?`), hash))
	if err != nil {
		// The hash is a credential digest: keep it out of the message.
		return t, fmt.Errorf("get API token by hash: %w", s.mapErr(err))
	}
	return t, nil
}

// ListAPITokens returns the principal's tokens, oldest first.
func (s *Store) ListAPITokens(ctx context.Context, principalID string) ([]store.APIToken, error) {
	rows, err := s.reader(ctx).QueryContext(ctx,
		s.q(`SELECT `+apiTokenCols+` FROM api_tokens WHERE principal_id = ? ORDER BY created_at, id`), principalID)
	ts, err := collect(rows, err, scanAPIToken)
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", s.mapErr(err))
	}
	return ts, nil
}

func (s *Store) DeleteAPIToken(ctx context.Context, id string) error {
	if err := affected1(s.exec(ctx, s.write, `DELETE FROM api_tokens WHERE id = ?`, id)); err != nil {
		return fmt.Errorf("delete API token %s: %w", id, err)
	}
	return nil
}

// Device codes.

func (s *Store) CreateDeviceCode(ctx context.Context, d store.DeviceCode) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO device_codes (user_code, device_code_hash, subscription, resource_group,
		machine_name, source_ip, expires_at, approved_by, approved_at, consumed, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.UserCode, d.DeviceCodeHash, d.Subscription, d.ResourceGroup, d.MachineName, d.SourceIP,
		micros(d.ExpiresAt), d.ApprovedBy, micros(d.ApprovedAt), d.Consumed, micros(d.CreatedAt))
	if err != nil {
		return fmt.Errorf("create device code %s: %w", d.UserCode, err)
	}
	return nil
}

const deviceCodeCols = `user_code, device_code_hash, subscription, resource_group, machine_name, source_ip,
	expires_at, approved_by, approved_at, consumed, created_at`

func scanDeviceCode(r scanner) (store.DeviceCode, error) {
	var d store.DeviceCode
	var expires, approved, created int64
	err := r.Scan(&d.UserCode, &d.DeviceCodeHash, &d.Subscription, &d.ResourceGroup, &d.MachineName, &d.SourceIP,
		&expires, &d.ApprovedBy, &approved, &d.Consumed, &created)
	if err != nil {
		return d, err
	}
	d.ExpiresAt, d.ApprovedAt, d.CreatedAt = fromMicros(expires), fromMicros(approved), fromMicros(created)
	return d, nil
}

// GetDeviceCodeByUserCode matches the user code exactly; callers normalise
// it to the stored upper-case form.
func (s *Store) GetDeviceCodeByUserCode(ctx context.Context, userCode string) (store.DeviceCode, error) {
	d, err := scanDeviceCode(s.reader(ctx).QueryRowContext(ctx,
		s.q(`SELECT `+deviceCodeCols+` FROM device_codes WHERE user_code = ?`), userCode))
	if err != nil {
		return d, fmt.Errorf("get device code %s: %w", userCode, s.mapErr(err))
	}
	return d, nil
}

func (s *Store) GetDeviceCodeByHash(ctx context.Context, hash string) (store.DeviceCode, error) {
	d, err := scanDeviceCode(s.reader(ctx).QueryRowContext(ctx,
		s.q(`SELECT `+deviceCodeCols+` FROM device_codes WHERE device_code_hash = ?`), hash))
	if err != nil {
		return d, fmt.Errorf("get device code by hash: %w", s.mapErr(err))
	}
	return d, nil
}

// ListPendingDeviceCodes returns codes neither approved, consumed nor expired
// at now, oldest first.
func (s *Store) ListPendingDeviceCodes(ctx context.Context, now time.Time) ([]store.DeviceCode, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+deviceCodeCols+` FROM device_codes
		WHERE approved_by = '' AND consumed = FALSE AND expires_at > ? ORDER BY created_at, user_code`), micros(now))
	ds, err := collect(rows, err, scanDeviceCode)
	if err != nil {
		return nil, fmt.Errorf("list pending device codes: %w", s.mapErr(err))
	}
	return ds, nil
}

func (s *Store) ApproveDeviceCode(ctx context.Context, userCode, approvedBy string, at time.Time) error {
	err := affected1(s.exec(ctx, s.write, `UPDATE device_codes SET approved_by = ?, approved_at = ?
		WHERE user_code = ? AND approved_by = '' AND consumed = FALSE AND expires_at > ?`,
		approvedBy, micros(at), userCode, micros(at)))
	if err != nil {
		return fmt.Errorf("approve device code %s: %w", userCode, err)
	}
	return nil
}

func (s *Store) CountPendingDeviceCodes(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT count(*) FROM device_codes
		WHERE approved_by = '' AND consumed = FALSE AND expires_at > ?`), micros(now)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count pending device codes: %w", s.mapErr(err))
	}
	return n, nil
}

func (s *Store) DeleteExpiredDeviceCodes(ctx context.Context, before time.Time) (int, error) {
	n, err := s.exec(ctx, s.write, `DELETE FROM device_codes WHERE expires_at < ?`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("delete expired device codes: %w", err)
	}
	return int(n), nil
}

// ConsumeDeviceCode returns ErrNotFound for an unknown code and ErrConflict
// for one that is not approved or already consumed. It does not look at
// expiry: the caller checks that against its clock before consuming.
func (s *Store) ConsumeDeviceCode(ctx context.Context, hash string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.exec(ctx, tx, `UPDATE device_codes SET consumed = TRUE
			WHERE device_code_hash = ? AND approved_by <> '' AND consumed = FALSE`, hash)
		if err != nil || n == 1 {
			return err
		}
		var consumed bool
		var approvedBy string
		err = tx.QueryRowContext(ctx, s.q(`SELECT consumed, approved_by FROM device_codes WHERE device_code_hash = ?`), hash).
			Scan(&consumed, &approvedBy)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return s.mapErr(err)
		case consumed:
			return fmt.Errorf("%w: already consumed", store.ErrConflict)
		}
		return fmt.Errorf("%w: not approved", store.ErrConflict)
	})
	if err != nil {
		return fmt.Errorf("consume device code: %w", err)
	}
	return nil
}
