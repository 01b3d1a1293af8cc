package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/corralhq/corral/internal/store"
)

// Role definitions.

// encodeRole encodes the three lists of a role definition.
func encodeRole(r store.RoleDefinition) (actions, notActions, scopes string, err error) {
	if actions, err = encodeList(r.Actions); err != nil {
		return
	}
	if notActions, err = encodeList(r.NotActions); err != nil {
		return
	}
	scopes, err = encodeList(r.AssignableScopes)
	return
}

func (s *Store) CreateRoleDefinition(ctx context.Context, r store.RoleDefinition) error {
	actions, notActions, scopes, err := encodeRole(r)
	if err == nil {
		_, err = s.exec(ctx, s.write, `INSERT INTO role_definitions (id, name, description, actions, not_actions,
			assignable_scopes, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Name, r.Description, actions, notActions, scopes, micros(r.CreatedAt), r.CreatedBy)
	}
	if err != nil {
		return fmt.Errorf("create role definition %q: %w", r.Name, err)
	}
	return nil
}

const roleDefinitionCols = `id, name, description, actions, not_actions, assignable_scopes, created_at, created_by`

func scanRoleDefinition(sc scanner) (store.RoleDefinition, error) {
	var r store.RoleDefinition
	var actions, notActions, scopes string
	var created int64
	err := sc.Scan(&r.ID, &r.Name, &r.Description, &actions, &notActions, &scopes, &created, &r.CreatedBy)
	if err != nil {
		return r, err
	}
	r.CreatedAt = fromMicros(created)
	if r.Actions, err = decodeList(actions); err != nil {
		return r, err
	}
	if r.NotActions, err = decodeList(notActions); err != nil {
		return r, err
	}
	r.AssignableScopes, err = decodeList(scopes)
	return r, err
}

func (s *Store) GetRoleDefinition(ctx context.Context, id string) (store.RoleDefinition, error) {
	r, err := scanRoleDefinition(s.reader(ctx).QueryRowContext(ctx,
		s.q(`SELECT `+roleDefinitionCols+` FROM role_definitions WHERE id = ?`), id))
	if err != nil {
		return r, fmt.Errorf("get role definition %s: %w", id, s.mapErr(err))
	}
	return r, nil
}

// ListRoleDefinitions orders by name.
func (s *Store) ListRoleDefinitions(ctx context.Context) ([]store.RoleDefinition, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, `SELECT `+roleDefinitionCols+` FROM role_definitions ORDER BY lower(name), id`)
	rs, err := collect(rows, err, scanRoleDefinition)
	if err != nil {
		return nil, fmt.Errorf("list role definitions: %w", s.mapErr(err))
	}
	return rs, nil
}

// UpdateRoleDefinition replaces name, description and the three lists;
// CreatedAt/CreatedBy are kept. ErrNotFound for an unknown id, ErrConflict
// when the new name is taken by another role.
func (s *Store) UpdateRoleDefinition(ctx context.Context, r store.RoleDefinition) error {
	actions, notActions, scopes, err := encodeRole(r)
	if err == nil {
		err = affected1(s.exec(ctx, s.write, `UPDATE role_definitions SET name = ?, description = ?, actions = ?,
			not_actions = ?, assignable_scopes = ? WHERE id = ?`,
			r.Name, r.Description, actions, notActions, scopes, r.ID))
	}
	if err != nil {
		return fmt.Errorf("update role definition %s: %w", r.ID, err)
	}
	return nil
}

// DeleteRoleDefinition checks for assignments in the same transaction. Role
// assignments may also name built-in roles, which live in code, so there is
// no foreign key to lean on; on PostgreSQL an assignment created
// concurrently with the delete can slip through, which the authorizer
// tolerates (an assignment of an unknown role grants nothing).
func (s *Store) DeleteRoleDefinition(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var assigned int
		err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM role_assignments WHERE role_id = ?`), id).Scan(&assigned)
		if err != nil {
			return s.mapErr(err)
		}
		if assigned > 0 {
			return fmt.Errorf("%w: the role has %d assignments", store.ErrNotEmpty, assigned)
		}
		return affected1(s.exec(ctx, tx, `DELETE FROM role_definitions WHERE id = ?`, id))
	})
	if err != nil {
		return fmt.Errorf("delete role definition %s: %w", id, err)
	}
	return nil
}

// Role assignments.

// CreateRoleAssignment treats scopes that differ only in case as the same.
func (s *Store) CreateRoleAssignment(ctx context.Context, a store.RoleAssignment) error {
	if err := s.insertRoleAssignment(ctx, s.write, a); err != nil {
		return fmt.Errorf("create role assignment %s: %w", a.ID, err)
	}
	return nil
}

func (s *Store) insertRoleAssignment(ctx context.Context, db querier, a store.RoleAssignment) error {
	_, err := s.exec(ctx, db, `INSERT INTO role_assignments (id, principal_id, principal_type, role_id, scope,
		created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.PrincipalID, a.PrincipalType, a.RoleID, a.Scope, micros(a.CreatedAt), a.CreatedBy)
	return err
}

const roleAssignmentCols = `id, principal_id, principal_type, role_id, scope, created_at, created_by`

func scanRoleAssignment(sc scanner) (store.RoleAssignment, error) {
	var a store.RoleAssignment
	var created int64
	if err := sc.Scan(&a.ID, &a.PrincipalID, &a.PrincipalType, &a.RoleID, &a.Scope, &created, &a.CreatedBy); err != nil {
		return a, err
	}
	a.CreatedAt = fromMicros(created)
	return a, nil
}

func (s *Store) GetRoleAssignment(ctx context.Context, id string) (store.RoleAssignment, error) {
	a, err := scanRoleAssignment(s.reader(ctx).QueryRowContext(ctx,
		s.q(`SELECT `+roleAssignmentCols+` FROM role_assignments WHERE id = ?`), id))
	if err != nil {
		return a, fmt.Errorf("get role assignment %s: %w", id, s.mapErr(err))
	}
	return a, nil
}

// ListRoleAssignments orders by scope, then creation. ScopePrefix is
// segment-aware and case-insensitive; "/" selects everything.
func (s *Store) ListRoleAssignments(ctx context.Context, f store.RoleAssignmentFilter) ([]store.RoleAssignment, error) {
	var w where
	if f.PrincipalID != "" {
		w.add(`principal_id = ?`, f.PrincipalID)
	}
	if f.RoleID != "" {
		w.add(`role_id = ?`, f.RoleID)
	}
	if cond, args := scopeCond("scope", f.ScopePrefix); cond != "" {
		w.add(cond, args...)
	}
	rows, err := s.reader(ctx).QueryContext(ctx,
		s.q(`SELECT `+roleAssignmentCols+` FROM role_assignments`+w.String()+` ORDER BY lower(scope), created_at, id`), w.args...)
	as, err := collect(rows, err, scanRoleAssignment)
	if err != nil {
		return nil, fmt.Errorf("list role assignments: %w", s.mapErr(err))
	}
	return as, nil
}

func (s *Store) DeleteRoleAssignment(ctx context.Context, id string) error {
	if err := affected1(s.exec(ctx, s.write, `DELETE FROM role_assignments WHERE id = ?`, id)); err != nil {
		return fmt.Errorf("delete role assignment %s: %w", id, err)
	}
	return nil
}
