package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/store"
)

const policyDefCols = `name, display_name, description, mode, effect, guest_configuration, document, created_at, created_by`

func scanPolicyDef(r scanner) (store.PolicyDefinition, error) {
	var d store.PolicyDefinition
	var created int64
	err := r.Scan(&d.Name, &d.DisplayName, &d.Description, &d.Mode, &d.Effect, &d.GuestConfiguration, &d.Document, &created, &d.CreatedBy)
	d.CreatedAt = fromMicros(created)
	return d, err
}

func (s *Store) CreatePolicyDefinition(ctx context.Context, d store.PolicyDefinition) error {
	_, err := s.exec(ctx, s.write, `INSERT INTO policy_definitions (`+policyDefCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.Name, d.DisplayName, d.Description, d.Mode, d.Effect, d.GuestConfiguration, d.Document, micros(d.CreatedAt), d.CreatedBy)
	if err != nil {
		return fmt.Errorf("create policy definition %s: %w", d.Name, err)
	}
	return nil
}

func (s *Store) GetPolicyDefinition(ctx context.Context, name string) (store.PolicyDefinition, error) {
	d, err := scanPolicyDef(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+policyDefCols+` FROM policy_definitions WHERE lower(name) = lower(?)`), name))
	if err != nil {
		return d, fmt.Errorf("get policy definition %s: %w", name, s.mapErr(err))
	}
	return d, nil
}

func (s *Store) ListPolicyDefinitions(ctx context.Context, p store.Page) ([]store.PolicyDefinition, error) {
	var w where
	if p.After != "" {
		w.add(`lower(name) > lower(?)`, p.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+policyDefCols+` FROM policy_definitions`+w.String()+` ORDER BY lower(name) LIMIT ?`),
		append(w.args, limit(p))...)
	ds, err := collect(rows, err, scanPolicyDef)
	if err != nil {
		return nil, fmt.Errorf("list policy definitions: %w", s.mapErr(err))
	}
	return ds, nil
}

func (s *Store) DeletePolicyDefinition(ctx context.Context, name string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM policy_assignments WHERE lower(definition) = lower(?)`), name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %d assignments use it", store.ErrNotEmpty, n)
		}
		return affected1(s.exec(ctx, tx, `DELETE FROM policy_definitions WHERE lower(name) = lower(?)`, name))
	})
	if err != nil {
		return fmt.Errorf("delete policy definition %s: %w", name, err)
	}
	return nil
}

const policyAssignCols = `name, scope, definition, parameters, non_compliance_message, assignment_type, not_scopes, description, created_at, created_by`

func scanPolicyAssign(r scanner) (store.PolicyAssignment, error) {
	var a store.PolicyAssignment
	var notScopes string
	var created int64
	if err := r.Scan(&a.Name, &a.Scope, &a.Definition, &a.Parameters, &a.NonComplianceMessage, &a.AssignmentType, &notScopes,
		&a.Description, &created, &a.CreatedBy); err != nil {
		return a, err
	}
	a.CreatedAt = fromMicros(created)
	var err error
	a.NotScopes, err = decodeList(notScopes)
	return a, err
}

func (s *Store) CreatePolicyAssignment(ctx context.Context, a store.PolicyAssignment, builtIn bool) error {
	notScopes, err := encodeList(a.NotScopes)
	if err != nil {
		return err
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if !builtIn {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM policy_definitions WHERE lower(name) = lower(?)`), a.Definition).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("definition %s: %w", a.Definition, store.ErrNotFound)
			}
		}
		_, err := s.exec(ctx, tx, `INSERT INTO policy_assignments (`+policyAssignCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.Name, a.Scope, a.Definition, nilIfEmpty(a.Parameters), a.NonComplianceMessage, a.AssignmentType, notScopes, a.Description,
			micros(a.CreatedAt), a.CreatedBy)
		return err
	})
	if err != nil {
		return fmt.Errorf("create policy assignment %s: %w", a.Name, err)
	}
	return nil
}

func (s *Store) GetPolicyAssignment(ctx context.Context, name string) (store.PolicyAssignment, error) {
	a, err := scanPolicyAssign(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+policyAssignCols+` FROM policy_assignments WHERE lower(name) = lower(?)`), name))
	if err != nil {
		return a, fmt.Errorf("get policy assignment %s: %w", name, s.mapErr(err))
	}
	return a, nil
}

func (s *Store) ListPolicyAssignments(ctx context.Context, scopePrefix string, p store.Page) ([]store.PolicyAssignment, error) {
	var w where
	if cond, args := scopeCond("scope", scopePrefix); cond != "" {
		w.add(cond, args...)
	}
	if p.After != "" {
		w.add(`lower(name) > lower(?)`, p.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+policyAssignCols+` FROM policy_assignments`+w.String()+` ORDER BY lower(name) LIMIT ?`),
		append(w.args, limit(p))...)
	as, err := collect(rows, err, scanPolicyAssign)
	if err != nil {
		return nil, fmt.Errorf("list policy assignments: %w", s.mapErr(err))
	}
	return as, nil
}

func (s *Store) PolicyAssignmentsAt(ctx context.Context, scopes []string) ([]store.PolicyAssignment, error) {
	if len(scopes) == 0 {
		return []store.PolicyAssignment{}, nil
	}
	args := make([]any, len(scopes))
	for i, sc := range scopes {
		args[i] = strings.ToLower(sc)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+policyAssignCols+` FROM policy_assignments WHERE lower(scope) IN (`+marks(len(scopes))+`) ORDER BY lower(name)`), args...)
	as, err := collect(rows, err, scanPolicyAssign)
	if err != nil {
		return nil, fmt.Errorf("policy assignments at %v: %w", scopes, s.mapErr(err))
	}
	return as, nil
}

func (s *Store) DeletePolicyAssignment(ctx context.Context, name string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var stored string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT name FROM policy_assignments WHERE lower(name) = lower(?)`), name).Scan(&stored); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM policy_exemptions WHERE lower(assignment) = lower(?)`,
			`DELETE FROM policy_state_history WHERE skey IN (SELECT skey FROM policy_states WHERE assignment = ?)`,
			`DELETE FROM policy_states WHERE assignment = ?`,
			`DELETE FROM policy_machine_status WHERE assignment = ?`,
			`DELETE FROM policy_remediations WHERE assignment = ?`,
			`DELETE FROM policy_assignments WHERE name = ?`,
		} {
			if _, err := s.exec(ctx, tx, q, stored); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete policy assignment %s: %w", name, err)
	}
	return nil
}

const policyExemptCols = `name, assignment, scope, category, expires_at, description, created_at, created_by`

func scanPolicyExempt(r scanner) (store.PolicyExemption, error) {
	var e store.PolicyExemption
	var expires, created int64
	err := r.Scan(&e.Name, &e.Assignment, &e.Scope, &e.Category, &expires, &e.Description, &created, &e.CreatedBy)
	if expires != 0 {
		e.ExpiresAt = fromMicros(expires)
	}
	e.CreatedAt = fromMicros(created)
	return e, err
}

func microsOrZero(t interface{ IsZero() bool }, v int64) int64 {
	if t.IsZero() {
		return 0
	}
	return v
}

func (s *Store) CreatePolicyExemption(ctx context.Context, e store.PolicyExemption) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM policy_assignments WHERE lower(name) = lower(?)`), e.Assignment).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("assignment %s: %w", e.Assignment, store.ErrNotFound)
		}
		_, err := s.exec(ctx, tx, `INSERT INTO policy_exemptions (`+policyExemptCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			e.Name, e.Assignment, e.Scope, e.Category, microsOrZero(e.ExpiresAt, micros(e.ExpiresAt)), e.Description, micros(e.CreatedAt), e.CreatedBy)
		return err
	})
	if err != nil {
		return fmt.Errorf("create policy exemption %s: %w", e.Name, err)
	}
	return nil
}

func (s *Store) GetPolicyExemption(ctx context.Context, name string) (store.PolicyExemption, error) {
	e, err := scanPolicyExempt(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+policyExemptCols+` FROM policy_exemptions WHERE lower(name) = lower(?)`), name))
	if err != nil {
		return e, fmt.Errorf("get policy exemption %s: %w", name, s.mapErr(err))
	}
	return e, nil
}

func (s *Store) ListPolicyExemptions(ctx context.Context, assignment string) ([]store.PolicyExemption, error) {
	var w where
	if assignment != "" {
		w.add(`lower(assignment) = lower(?)`, assignment)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+policyExemptCols+` FROM policy_exemptions`+w.String()+` ORDER BY lower(name)`), w.args...)
	es, err := collect(rows, err, scanPolicyExempt)
	if err != nil {
		return nil, fmt.Errorf("list policy exemptions: %w", s.mapErr(err))
	}
	return es, nil
}

func (s *Store) DeletePolicyExemption(ctx context.Context, name string) error {
	if err := affected1(s.exec(ctx, s.write, `DELETE FROM policy_exemptions WHERE lower(name) = lower(?)`, name)); err != nil {
		return fmt.Errorf("delete policy exemption %s: %w", name, err)
	}
	return nil
}

const policyStatusCols = `assignment, machine_id, machine_scope, definition, compliance_state, reason, evaluation_request, evaluated_at`

func scanPolicyStatus(r scanner) (store.PolicyMachineStatus, error) {
	var st store.PolicyMachineStatus
	var at int64
	err := r.Scan(&st.Assignment, &st.MachineID, &st.MachineScope, &st.Definition, &st.ComplianceState, &st.Reason, &st.EvaluationRequest, &at)
	st.EvaluatedAt = fromMicros(at)
	return st, err
}

const policyStateCols = `assignment, machine_id, machine_scope, definition, rule, title, severity, compliance_state, evidence, ssg_rule_id, ts`

func scanPolicyState(r scanner) (store.PolicyRuleState, error) {
	var st store.PolicyRuleState
	var at int64
	err := r.Scan(&st.Assignment, &st.MachineID, &st.MachineScope, &st.Definition, &st.Rule, &st.Title, &st.Severity,
		&st.ComplianceState, &st.Evidence, &st.SSGRuleID, &at)
	st.Timestamp = fromMicros(at)
	return st, err
}

func (s *Store) PutPolicyStates(ctx context.Context, st store.PolicyMachineStatus, rules []store.PolicyRuleState) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var stored string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT name FROM policy_assignments WHERE lower(name) = lower(?)`), st.Assignment).Scan(&stored); err != nil {
			return fmt.Errorf("assignment %s: %w", st.Assignment, s.mapErr(err))
		}
		st.Assignment = stored
		if _, err := s.exec(ctx, tx, `INSERT INTO policy_machine_status (`+policyStatusCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (assignment, machine_id) DO UPDATE SET machine_scope = excluded.machine_scope, definition = excluded.definition,
			compliance_state = excluded.compliance_state, reason = excluded.reason, evaluation_request = excluded.evaluation_request,
			evaluated_at = excluded.evaluated_at`,
			st.Assignment, st.MachineID, st.MachineScope, st.Definition, st.ComplianceState, st.Reason, st.EvaluationRequest,
			micros(st.EvaluatedAt)); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.q(`SELECT skey, compliance_state, evidence, title, severity, ssg_rule_id, definition, machine_scope
			FROM policy_states WHERE assignment = ? AND machine_id = ?`), st.Assignment, st.MachineID)
		type prev struct{ state, evidence, title, severity, ssg, definition, scope string }
		old := map[string]prev{}
		_, err = collect(rows, err, func(r scanner) (struct{}, error) {
			var k string
			var p prev
			err := r.Scan(&k, &p.state, &p.evidence, &p.title, &p.severity, &p.ssg, &p.definition, &p.scope)
			old[k] = p
			return struct{}{}, err
		})
		if err != nil {
			return err
		}
		// The usual periodic evaluation changes nothing but the time.
		same := len(old) == len(rules) && len(rules) > 0
		for _, r := range rules {
			r.Assignment, r.MachineID = st.Assignment, st.MachineID
			p, ok := old[store.PolicyStateKey(r)]
			if !ok || p != (prev{r.ComplianceState, r.Evidence, r.Title, r.Severity, r.SSGRuleID, r.Definition, r.MachineScope}) || !r.Timestamp.Equal(rules[0].Timestamp) {
				same = false
				break
			}
		}
		if same {
			_, err := s.exec(ctx, tx, `UPDATE policy_states SET ts = ? WHERE assignment = ? AND machine_id = ?`, micros(rules[0].Timestamp), st.Assignment, st.MachineID)
			return err
		}
		if len(old) > 0 {
			if _, err := s.exec(ctx, tx, `DELETE FROM policy_states WHERE assignment = ? AND machine_id = ?`, st.Assignment, st.MachineID); err != nil {
				return err
			}
		}
		for _, r := range rules {
			r.Assignment, r.MachineID = st.Assignment, st.MachineID
			k := store.PolicyStateKey(r)
			if _, err := s.exec(ctx, tx, `INSERT INTO policy_states (skey, `+policyStateCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				k, r.Assignment, r.MachineID, r.MachineScope, r.Definition, r.Rule, r.Title, r.Severity, r.ComplianceState, r.Evidence,
				r.SSGRuleID, micros(r.Timestamp)); err != nil {
				return err
			}
			if p, ok := old[k]; ok && p.state == r.ComplianceState {
				continue
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO policy_state_history (skey, machine_id, compliance_state, evidence, ts) VALUES (?, ?, ?, ?, ?)`,
				k, r.MachineID, r.ComplianceState, r.Evidence, micros(r.Timestamp)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put policy states of %s on %s: %w", st.Assignment, st.MachineID, err)
	}
	return nil
}

func stateWhere(f store.PolicyStateFilter) where {
	var w where
	if cond, args := scopeCond("machine_scope", f.ScopePrefix); cond != "" {
		w.add(cond, args...)
	}
	if f.MachineID != "" {
		w.add(`machine_id = ?`, f.MachineID)
	}
	if f.Assignment != "" {
		w.add(`lower(assignment) = lower(?)`, f.Assignment)
	}
	return w
}

func (s *Store) ListPolicyStates(ctx context.Context, f store.PolicyStateFilter) ([]store.PolicyRuleState, error) {
	w := stateWhere(f)
	if f.Page.After != "" {
		w.add(`skey > ?`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+policyStateCols+` FROM policy_states`+w.String()+` ORDER BY skey LIMIT ?`),
		append(w.args, limit(f.Page))...)
	ss, err := collect(rows, err, scanPolicyState)
	if err != nil {
		return nil, fmt.Errorf("list policy states: %w", s.mapErr(err))
	}
	return ss, nil
}

func (s *Store) ListPolicyMachineStatus(ctx context.Context, f store.PolicyStateFilter) ([]store.PolicyMachineStatus, error) {
	w := stateWhere(f)
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+policyStatusCols+` FROM policy_machine_status`+w.String()+` ORDER BY assignment, machine_id`), w.args...)
	ss, err := collect(rows, err, scanPolicyStatus)
	if err != nil {
		return nil, fmt.Errorf("list policy machine status: %w", s.mapErr(err))
	}
	return ss, nil
}

func (s *Store) PolicyStateHistory(ctx context.Context, assignment, machineID, rule string, n int) ([]store.PolicyStateChange, error) {
	if n <= 0 || n > store.MaxStoreLimit {
		n = store.DefaultPageSize
	}
	var stored string
	if err := s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT name FROM policy_assignments WHERE lower(name) = lower(?)`), assignment).Scan(&stored); err != nil {
		return nil, fmt.Errorf("policy state history: %w", s.mapErr(err))
	}
	k := store.PolicyStateKey(store.PolicyRuleState{Assignment: stored, MachineID: machineID, Rule: rule})
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT compliance_state, evidence, ts FROM policy_state_history WHERE skey = ? ORDER BY ts DESC LIMIT ?`), k, n)
	hs, err := collect(rows, err, func(r scanner) (store.PolicyStateChange, error) {
		var c store.PolicyStateChange
		var at int64
		err := r.Scan(&c.ComplianceState, &c.Evidence, &at)
		c.Timestamp = fromMicros(at)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("policy state history: %w", s.mapErr(err))
	}
	return hs, nil
}

const policyRemCols = `id, assignment, machine_id, machine_scope, rule, state, result, message, evidence_before, evidence_after, files, created_at,
	rollback_requested_at, rollback_requested_by, force, origin, updated_at`

func scanPolicyRem(r scanner) (store.PolicyRemediation, error) {
	var m store.PolicyRemediation
	var created, requested, updated int64
	err := r.Scan(&m.ID, &m.Assignment, &m.MachineID, &m.MachineScope, &m.Rule, &m.State, &m.Result, &m.Message, &m.EvidenceBefore,
		&m.EvidenceAfter, &m.Files, &created, &requested, &m.RollbackRequestedBy, &m.Force, &m.Origin, &updated)
	m.CreatedAt, m.UpdatedAt = fromMicros(created), fromMicros(updated)
	if requested != 0 {
		m.RollbackRequestedAt = fromMicros(requested)
	}
	return m, err
}

func (s *Store) PutPolicyRemediation(ctx context.Context, m store.PolicyRemediation) (bool, error) {
	var created bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM policy_remediations WHERE id = ?`), m.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		created = true
		_, err := s.exec(ctx, tx, `INSERT INTO policy_remediations (`+policyRemCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.ID, m.Assignment, m.MachineID, m.MachineScope, m.Rule, m.State, m.Result, m.Message, m.EvidenceBefore, m.EvidenceAfter,
			nilIfEmpty(m.Files), micros(m.CreatedAt), microsOrZero(m.RollbackRequestedAt, micros(m.RollbackRequestedAt)),
			m.RollbackRequestedBy, m.Force, nilIfEmpty(m.Origin), micros(m.UpdatedAt))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("put policy remediation %s: %w", m.ID, err)
	}
	return created, nil
}

func (s *Store) GetPolicyRemediation(ctx context.Context, id string) (store.PolicyRemediation, error) {
	m, err := scanPolicyRem(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+policyRemCols+` FROM policy_remediations WHERE id = ?`), id))
	if err != nil {
		return m, fmt.Errorf("get policy remediation %s: %w", id, s.mapErr(err))
	}
	return m, nil
}

func (s *Store) ListPolicyRemediations(ctx context.Context, f store.PolicyRemediationFilter) ([]store.PolicyRemediation, error) {
	var w where
	if cond, args := scopeCond("machine_scope", f.ScopePrefix); cond != "" {
		w.add(cond, args...)
	}
	if f.MachineID != "" {
		w.add(`machine_id = ?`, f.MachineID)
	}
	if f.State != "" {
		w.add(`state = ?`, f.State)
	}
	if f.Page.After != "" {
		w.add(`id < ?`, f.Page.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+policyRemCols+` FROM policy_remediations`+w.String()+` ORDER BY id DESC LIMIT ?`),
		append(w.args, limit(f.Page))...)
	ms, err := collect(rows, err, scanPolicyRem)
	if err != nil {
		return nil, fmt.Errorf("list policy remediations: %w", s.mapErr(err))
	}
	return ms, nil
}

func (s *Store) UpdatePolicyRemediation(ctx context.Context, m store.PolicyRemediation) error {
	err := affected1(s.exec(ctx, s.write, `UPDATE policy_remediations SET state = ?, message = ?, rollback_requested_at = ?,
		rollback_requested_by = ?, force = ?, origin = ?, updated_at = ? WHERE id = ?`,
		m.State, m.Message, microsOrZero(m.RollbackRequestedAt, micros(m.RollbackRequestedAt)), m.RollbackRequestedBy, m.Force,
		nilIfEmpty(m.Origin), micros(m.UpdatedAt), m.ID))
	if err != nil {
		return fmt.Errorf("update policy remediation %s: %w", m.ID, err)
	}
	return nil
}

const policyEvalCols = `id, scope, requested_at, requested_by`

func scanPolicyEval(r scanner) (store.PolicyEvaluation, error) {
	var e store.PolicyEvaluation
	var at int64
	err := r.Scan(&e.ID, &e.Scope, &at, &e.RequestedBy)
	e.RequestedAt = fromMicros(at)
	return e, err
}

func (s *Store) CreatePolicyEvaluation(ctx context.Context, e store.PolicyEvaluation) error {
	if _, err := s.exec(ctx, s.write, `INSERT INTO policy_evaluations (`+policyEvalCols+`) VALUES (?, ?, ?, ?)`,
		e.ID, e.Scope, micros(e.RequestedAt), e.RequestedBy); err != nil {
		return fmt.Errorf("create policy evaluation %s: %w", e.ID, err)
	}
	return nil
}

func (s *Store) GetPolicyEvaluation(ctx context.Context, id string) (store.PolicyEvaluation, error) {
	e, err := scanPolicyEval(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+policyEvalCols+` FROM policy_evaluations WHERE id = ?`), id))
	if err != nil {
		return e, fmt.Errorf("get policy evaluation %s: %w", id, s.mapErr(err))
	}
	return e, nil
}

func (s *Store) LatestPolicyEvaluation(ctx context.Context, scopes []string) (store.PolicyEvaluation, error) {
	if len(scopes) == 0 {
		return store.PolicyEvaluation{}, store.ErrNotFound
	}
	args := make([]any, len(scopes))
	for i, sc := range scopes {
		args[i] = strings.ToLower(sc)
	}
	e, err := scanPolicyEval(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+policyEvalCols+` FROM policy_evaluations WHERE lower(scope) IN (`+
		marks(len(scopes))+`) ORDER BY id DESC LIMIT 1`), args...))
	if err != nil {
		err = s.mapErr(err)
		if !errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("latest policy evaluation: %w", err)
		}
		return e, err
	}
	return e, nil
}
