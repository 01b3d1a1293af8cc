package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/corralhq/corral/internal/wire"
)

// Policy: definitions, assignments, exemptions, compliance states,
// evaluations and remediations.

// CreatePolicyDefinition creates a custom definition from its Azure Policy JSON.
func (c *Client) CreatePolicyDefinition(ctx context.Context, doc json.RawMessage) (wire.PolicyDefinition, error) {
	var d wire.PolicyDefinition
	err := c.do(ctx, http.MethodPost, "/api/v1/policyDefinitions", doc, &d)
	return d, err
}

// ListPolicyDefinitions lists the custom definitions, or the built-in ones.
func (c *Client) ListPolicyDefinitions(ctx context.Context, builtIn bool) ([]wire.PolicyDefinition, error) {
	q := url.Values{}
	if builtIn {
		q.Set("builtin", "true")
	}
	return listAll[wire.PolicyDefinition](ctx, c, withQuery("/api/v1/policyDefinitions", q), 0)
}

// GetPolicyDefinition reads a definition with its document.
func (c *Client) GetPolicyDefinition(ctx context.Context, name string) (wire.PolicyDefinition, error) {
	var d wire.PolicyDefinition
	err := c.do(ctx, http.MethodGet, "/api/v1/policyDefinitions/"+seg(name), nil, &d)
	return d, err
}

// DeletePolicyDefinition deletes a custom definition.
func (c *Client) DeletePolicyDefinition(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/policyDefinitions/"+seg(name), nil, nil)
}

// CreatePolicyAssignment assigns a definition.
func (c *Client) CreatePolicyAssignment(ctx context.Context, name string, in wire.PolicyAssignmentCreate) (wire.PolicyAssignment, error) {
	var a wire.PolicyAssignment
	err := c.do(ctx, http.MethodPut, "/api/v1/policyAssignments/"+seg(name), in, &a)
	return a, err
}

// ListPolicyAssignments lists assignments at or below scope ("" is "/").
func (c *Client) ListPolicyAssignments(ctx context.Context, scope string) ([]wire.PolicyAssignment, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", scope)
	}
	return listAll[wire.PolicyAssignment](ctx, c, withQuery("/api/v1/policyAssignments", q), 0)
}

// GetPolicyAssignment reads an assignment.
func (c *Client) GetPolicyAssignment(ctx context.Context, name string) (wire.PolicyAssignment, error) {
	var a wire.PolicyAssignment
	err := c.do(ctx, http.MethodGet, "/api/v1/policyAssignments/"+seg(name), nil, &a)
	return a, err
}

// DeletePolicyAssignment deletes an assignment.
func (c *Client) DeletePolicyAssignment(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/policyAssignments/"+seg(name), nil, nil)
}

// CreatePolicyExemption exempts a scope from an assignment.
func (c *Client) CreatePolicyExemption(ctx context.Context, name string, in wire.PolicyExemptionCreate) (wire.PolicyExemption, error) {
	var e wire.PolicyExemption
	err := c.do(ctx, http.MethodPut, "/api/v1/policyExemptions/"+seg(name), in, &e)
	return e, err
}

// ListPolicyExemptions lists exemptions (of one assignment when given).
func (c *Client) ListPolicyExemptions(ctx context.Context, assignment string) ([]wire.PolicyExemption, error) {
	q := url.Values{}
	if assignment != "" {
		q.Set("assignment", assignment)
	}
	var out wire.List[wire.PolicyExemption]
	err := c.do(ctx, http.MethodGet, withQuery("/api/v1/policyExemptions", q), nil, &out)
	return out.Value, err
}

// DeletePolicyExemption deletes an exemption.
func (c *Client) DeletePolicyExemption(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/policyExemptions/"+seg(name), nil, nil)
}

// ListPolicyStates lists compliance states at or below scope, of one
// assignment when given.
func (c *Client) ListPolicyStates(ctx context.Context, scope, assignment string) ([]wire.PolicyState, error) {
	q := url.Values{"$top": {"1000"}}
	if scope != "" {
		q.Set("scope", scope)
	}
	if assignment != "" {
		q.Set("assignment", assignment)
	}
	return listAll[wire.PolicyState](ctx, c, withQuery("/api/v1/policyStates", q), 0)
}

// PolicySummary rolls compliance up per assignment for a scope.
func (c *Client) PolicySummary(ctx context.Context, scope string) ([]wire.PolicyComplianceSummary, error) {
	var out wire.List[wire.PolicyComplianceSummary]
	err := c.do(ctx, http.MethodGet, withQuery("/api/v1/policyStates/summary", url.Values{"scope": {scope}}), nil, &out)
	return out.Value, err
}

// EvaluatePolicy starts an on-demand evaluation of a scope.
func (c *Client) EvaluatePolicy(ctx context.Context, scope string) (wire.PolicyEvaluation, error) {
	var e wire.PolicyEvaluation
	err := c.do(ctx, http.MethodPost, "/api/v1/policyEvaluations", wire.PolicyEvaluationCreate{Scope: scope}, &e)
	return e, err
}

// GetPolicyEvaluation reads how far an evaluation got.
func (c *Client) GetPolicyEvaluation(ctx context.Context, id string) (wire.PolicyEvaluation, error) {
	var e wire.PolicyEvaluation
	err := c.do(ctx, http.MethodGet, "/api/v1/policyEvaluations/"+seg(id), nil, &e)
	return e, err
}

// ListPolicyRemediations lists remediations at or below scope, newest first.
func (c *Client) ListPolicyRemediations(ctx context.Context, scope string) ([]wire.PolicyRemediation, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", scope)
	}
	return listAll[wire.PolicyRemediation](ctx, c, withQuery("/api/v1/policyRemediations", q), 0)
}

// GetPolicyRemediation reads a remediation.
func (c *Client) GetPolicyRemediation(ctx context.Context, id string) (wire.PolicyRemediation, error) {
	var r wire.PolicyRemediation
	err := c.do(ctx, http.MethodGet, "/api/v1/policyRemediations/"+seg(id), nil, &r)
	return r, err
}

// RollbackPolicyRemediation asks the machine to undo a remediation.
func (c *Client) RollbackPolicyRemediation(ctx context.Context, id string, force bool) (wire.PolicyRemediation, error) {
	var r wire.PolicyRemediation
	err := c.do(ctx, http.MethodPost, "/api/v1/policyRemediations/"+seg(id)+"/rollback", wire.PolicyRollbackCreate{Force: force}, &r)
	return r, err
}
