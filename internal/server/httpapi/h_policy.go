package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	policyctx "github.com/corralhq/corral/internal/server/policy"
	"github.com/corralhq/corral/internal/wire"
)

// Policy routes.
const (
	polDefPath   = "/api/v1/policyDefinitions"
	polAsgPath   = "/api/v1/policyAssignments"
	polExPath    = "/api/v1/policyExemptions"
	polStatePath = "/api/v1/policyStates"
	polEvalPath  = "/api/v1/policyEvaluations"
	polRemPath   = "/api/v1/policyRemediations"
)

func (a *API) policyRoutes() []Route {
	api := func(m, p, action string, scope func(*http.Request) string, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: action, Auth: AuthBearer, Scope: scope, Summary: summary, Handle: h}
	}
	inHandler := func(rt Route) Route { rt.CheckInHandler = true; return rt }
	d := func(rt Route, req, resp any, status int, query []QueryParam, errs ...int) Route {
		rt.Request, rt.Response, rt.Status, rt.Query, rt.Errors = req, resp, status, query, errs
		return rt
	}
	const (
		ok       = http.StatusOK
		created  = http.StatusCreated
		accepted = http.StatusAccepted
		e404     = http.StatusNotFound
		e409     = http.StatusConflict
	)
	listScope := QueryParam{Name: "scope", Type: "string", Default: "/", Description: "Only what is at or below this scope."}
	return []Route{
		d(api("GET", polDefPath, authz.ActPolicyDefinitionsRead, scopeRoot,
			"List policy definitions: the custom ones, or the built-in ones with ?builtin=true.", a.listPolicyDefinitions),
			nil, wire.List[wire.PolicyDefinition]{}, ok, pageQuery(QueryParam{Name: "builtin", Type: "boolean", Description: "true: the built-in definitions."}), 400),
		d(api("POST", polDefPath, authz.ActPolicyDefinitionsWrite, scopeRoot,
			"Create a custom policy definition from the Azure Policy JSON ({\"properties\":{...}} or the bare properties); anything unsupported is refused with its JSON path.",
			a.postPolicyDefinition),
			Raw{ContentTypes: []string{"application/json"}, Description: "A policy definition in the Azure Policy language, at most 256 KiB."},
			wire.PolicyDefinition{}, created, nil, 400, 409, 413),
		d(api("GET", polDefPath+"/{name}", authz.ActPolicyDefinitionsRead, scopeRoot, "Get a policy definition (built-in or custom) with its document.", a.getPolicyDefinition),
			nil, wire.PolicyDefinition{}, ok, nil, e404),
		d(api("DELETE", polDefPath+"/{name}", authz.ActPolicyDefinitionsDelete, scopeRoot, "Delete a custom policy definition no assignment uses.", a.deletePolicyDefinition),
			nil, nil, http.StatusNoContent, nil, 400, e404, e409),

		d(inHandler(api("GET", polAsgPath, authz.ActPolicyAssignmentsRead, scopeQuery, "List the policy assignments at or below a scope.", a.listPolicyAssignments)),
			nil, wire.List[wire.PolicyAssignment]{}, ok, pageQuery(listScope), 400),
		d(inHandler(api("PUT", polAsgPath+"/{name}", authz.ActPolicyAssignmentsWrite, scopeRoot,
			"Assign a definition at a subscription or resource group (PolicyAssignmentCreate): parameters, non-compliance message, excluded scopes, assignment type.",
			a.putPolicyAssignment)), wire.PolicyAssignmentCreate{}, wire.PolicyAssignment{}, created, nil, 400, e404, e409),
		d(inHandler(api("GET", polAsgPath+"/{name}", authz.ActPolicyAssignmentsRead, scopeRoot, "Get a policy assignment.", a.getPolicyAssignment)),
			nil, wire.PolicyAssignment{}, ok, nil, e404),
		d(inHandler(api("DELETE", polAsgPath+"/{name}", authz.ActPolicyAssignmentsDelete, scopeRoot,
			"Delete a policy assignment with its exemptions, compliance states and remediation records.", a.deletePolicyAssignment)),
			nil, nil, http.StatusNoContent, nil, e404),

		d(inHandler(api("GET", polExPath, authz.ActPolicyExemptionsRead, scopeRoot, "List the policy exemptions the caller may read (?assignment= one assignment's).", a.listPolicyExemptions)),
			nil, wire.List[wire.PolicyExemption]{}, ok, []QueryParam{{Name: "assignment", Type: "string", Description: "Only this assignment's exemptions."}}),
		d(inHandler(api("PUT", polExPath+"/{name}", authz.ActPolicyExemptionsWrite, scopeRoot,
			"Exempt a scope from an assignment as a Waiver or Mitigated, optionally until an expiry (PolicyExemptionCreate).", a.putPolicyExemption)),
			wire.PolicyExemptionCreate{}, wire.PolicyExemption{}, created, nil, 400, e409),
		d(inHandler(api("GET", polExPath+"/{name}", authz.ActPolicyExemptionsRead, scopeRoot, "Get a policy exemption.", a.getPolicyExemption)),
			nil, wire.PolicyExemption{}, ok, nil, e404),
		d(inHandler(api("DELETE", polExPath+"/{name}", authz.ActPolicyExemptionsDelete, scopeRoot, "Delete a policy exemption.", a.deletePolicyExemption)),
			nil, nil, http.StatusNoContent, nil, e404),

		d(api("GET", polStatePath, authz.ActPolicyStatesRead, scopeQuery,
			"Compliance states, one per assignment × machine × rule, with evidence, exemptions applied and the non-compliance message.", a.listPolicyStates),
			nil, wire.List[wire.PolicyState]{}, ok, pageQuery(listScope, QueryParam{Name: "assignment", Type: "string", Description: "Only this assignment's states (name or id)."}), 400),
		d(api("GET", polStatePath+"/summary", authz.ActPolicyStatesRead, scopeQuery,
			"Compliance rolled up per assignment for the machines at or below a scope.", a.getPolicySummary),
			nil, wire.List[wire.PolicyComplianceSummary]{}, ok, []QueryParam{listScope}, 400),
		d(inHandler(api("GET", polStatePath+"/history", authz.ActPolicyStatesRead, scopeRoot,
			"The changes of one rule's state on one machine for one assignment, newest first.", a.getPolicyStateHistory)),
			nil, wire.List[wire.PolicyStateChange]{}, ok, []QueryParam{
				{Name: "assignment", Type: "string", Description: "The assignment (name or id)."},
				{Name: "machineId", Type: "string", Description: "The machine's id (UUID)."},
				{Name: "rule", Type: "string", Description: "The rule id (or, for a definition the server evaluates, its name)."}}, 400, e404),
		d(inHandler(api("POST", polEvalPath, authz.ActPolicyEvaluate, scopeRoot,
			"Evaluate a scope now: the server's definitions at once, machine configurations by every agent in scope (PolicyEvaluationCreate).", a.postPolicyEvaluation)),
			wire.PolicyEvaluationCreate{}, wire.PolicyEvaluation{}, accepted, nil, 400, e404),
		d(inHandler(api("GET", polEvalPath+"/{id}", authz.ActPolicyStatesRead, scopeRoot, "How far an on-demand evaluation got.", a.getPolicyEvaluation)),
			nil, wire.PolicyEvaluation{}, ok, nil, e404),
		d(api("GET", polRemPath, authz.ActRemediationsRead, scopeQuery, "Remediations apply modes made on machines at or below a scope, newest first.", a.listPolicyRemediations),
			nil, wire.List[wire.PolicyRemediation]{}, ok, pageQuery(listScope), 400),
		d(inHandler(api("GET", polRemPath+"/{id}", authz.ActRemediationsRead, scopeRoot, "Get a remediation with the files it changed.", a.getPolicyRemediation)),
			nil, wire.PolicyRemediation{}, ok, nil, e404),
		d(inHandler(api("POST", polRemPath+"/{id}/rollback", authz.ActRemediationsWrite, scopeRoot,
			"Ask the machine to undo a remediation; it refuses over a file changed since unless force (PolicyRollbackCreate).", a.postPolicyRollback)),
			wire.PolicyRollbackCreate{}, wire.PolicyRemediation{}, accepted, nil, 400, e404, e409),
	}
}

// listScopeQuery validates ?scope=.
func listScopeQuery(r *http.Request) (string, error) {
	sc := scopeQuery(r)
	if _, err := resource.ParseScope(sc); err != nil {
		return "", errValidation("scope", "%v", err)
	}
	return sc, nil
}

func (a *API) listPolicyDefinitions(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	var builtIn bool
	if v := r.URL.Query().Get("builtin"); v != "" {
		if builtIn, err = strconv.ParseBool(v); err != nil {
			return errValidation("builtin", "builtin must be true or false")
		}
	}
	page, err := a.Policy.ListDefinitions(r.Context(), builtIn, p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) postPolicyDefinition(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var doc json.RawMessage
	if err := decodeJSON(w, r, policyctx.MaxDefinitionBytes, &doc); err != nil {
		return err
	}
	d, err := a.Policy.CreateDefinition(r.Context(), doc, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, d.ID)
	setAuditMessage(r, "create policy definition "+d.Name+" (effect "+d.Effect+")")
	writeJSON(w, http.StatusCreated, d)
	return nil
}

func (a *API) getPolicyDefinition(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	d, err := a.Policy.GetDefinition(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (a *API) deletePolicyDefinition(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	setAuditScope(r, policyctx.DefinitionPrefix+r.PathValue("name"))
	if err := a.Policy.DeleteDefinition(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listPolicyAssignments(w http.ResponseWriter, r *http.Request, c *Caller) error {
	scope, err := listScopeQuery(r)
	if err != nil {
		return err
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	if err := a.authorizeAnywhere(r.Context(), c, authz.ActPolicyAssignmentsRead); err != nil {
		return err
	}
	page, err := a.Policy.ListAssignments(r.Context(), scope, p)
	if err != nil {
		return err
	}
	out := wire.List[wire.PolicyAssignment]{Value: []wire.PolicyAssignment{}}
	for _, as := range page.Items {
		if ok, err := a.allowed(r.Context(), c, authz.ActPolicyAssignmentsRead, as.Scope); err != nil {
			return err
		} else if ok {
			out.Value = append(out.Value, as)
		}
	}
	if page.After != "" {
		out.NextLink = nextLink(r, page.After)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// authorizePolicyScope checks action at a scope from a body: a malformed
// scope is a 400 for a caller who holds the action somewhere.
func (a *API) authorizePolicyScope(r *http.Request, c *Caller, action, target, scope string) error {
	if err := a.authorizeAnywhere(r.Context(), c, action); err != nil {
		return err
	}
	if scope == "" {
		return errValidation(target, "%s is required", target)
	}
	id, err := resource.ParseScope(scope)
	if err != nil {
		return errValidation(target, "%v", err)
	}
	setAuditScope(r, id.String())
	return a.authorize(r.Context(), c, action, id.String())
}

func (a *API) putPolicyAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.PolicyAssignmentCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := a.authorizePolicyScope(r, c, authz.ActPolicyAssignmentsWrite, "scope", body.Scope); err != nil {
		return err
	}
	as, err := a.Policy.CreateAssignment(r.Context(), r.PathValue("name"), body, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, as.ID)
	msg := "assign " + as.Definition + " at " + as.Scope
	if as.AssignmentType != "" {
		msg += " (" + as.AssignmentType + ")"
	}
	setAuditMessage(r, msg)
	writeJSON(w, http.StatusCreated, as)
	return nil
}

// assignmentScopeFor authorizes action at the named assignment's scope; a
// caller without the action anywhere learns nothing of what exists.
func (a *API) assignmentScopeFor(r *http.Request, c *Caller, action string) (string, error) {
	name := r.PathValue("name")
	return lookupAt(a, r, c, action, func(ctx context.Context) (string, error) { return a.Policy.AssignmentScope(ctx, name) },
		func(scope string) found { return found{scope: scope, auditScope: policyctx.AssignmentID(scope, name)} })
}

func (a *API) getPolicyAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if _, err := a.assignmentScopeFor(r, c, authz.ActPolicyAssignmentsRead); err != nil {
		return err
	}
	as, err := a.Policy.GetAssignment(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, as)
	return nil
}

func (a *API) deletePolicyAssignment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if _, err := a.assignmentScopeFor(r, c, authz.ActPolicyAssignmentsDelete); err != nil {
		return err
	}
	as, err := a.Policy.DeleteAssignment(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	setAuditMessage(r, "delete the assignment of "+as.Definition+" at "+as.Scope)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listPolicyExemptions(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAnywhere(r.Context(), c, authz.ActPolicyExemptionsRead); err != nil {
		return err
	}
	es, err := a.Policy.ListExemptions(r.Context(), r.URL.Query().Get("assignment"))
	if err != nil {
		return err
	}
	out := wire.List[wire.PolicyExemption]{Value: []wire.PolicyExemption{}}
	for _, e := range es {
		if ok, err := a.allowed(r.Context(), c, authz.ActPolicyExemptionsRead, e.Scope); err != nil {
			return err
		} else if ok {
			out.Value = append(out.Value, e)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) putPolicyExemption(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.PolicyExemptionCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := a.authorizePolicyScope(r, c, authz.ActPolicyExemptionsWrite, "scope", body.Scope); err != nil {
		return err
	}
	e, err := a.Policy.CreateExemption(r.Context(), r.PathValue("name"), body, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, e.ID)
	setAuditMessage(r, "exempt "+e.Scope+" from assignment "+e.Assignment+" ("+e.Category+")")
	writeJSON(w, http.StatusCreated, e)
	return nil
}

func (a *API) exemptionFor(r *http.Request, c *Caller, action string) (wire.PolicyExemption, error) {
	return lookupAt(a, r, c, action, func(ctx context.Context) (wire.PolicyExemption, error) {
		return a.Policy.GetExemption(ctx, r.PathValue("name"))
	}, func(e wire.PolicyExemption) found { return found{scope: e.Scope, auditScope: e.ID} })
}

func (a *API) getPolicyExemption(w http.ResponseWriter, r *http.Request, c *Caller) error {
	e, err := a.exemptionFor(r, c, authz.ActPolicyExemptionsRead)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

func (a *API) deletePolicyExemption(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if _, err := a.exemptionFor(r, c, authz.ActPolicyExemptionsDelete); err != nil {
		return err
	}
	if err := a.Policy.DeleteExemption(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listPolicyStates(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	scope, err := listScopeQuery(r)
	if err != nil {
		return err
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Policy.ListStates(r.Context(), policyctx.StateQuery{Scope: scope, Assignment: r.URL.Query().Get("assignment"), Page: p})
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) getPolicySummary(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	scope, err := listScopeQuery(r)
	if err != nil {
		return err
	}
	sums, err := a.Policy.Summary(r.Context(), scope)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.PolicyComplianceSummary]{Value: sums})
	return nil
}

func (a *API) postPolicyEvaluation(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.PolicyEvaluationCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := a.authorizePolicyScope(r, c, authz.ActPolicyEvaluate, "scope", body.Scope); err != nil {
		return err
	}
	e, err := a.Policy.Evaluate(r.Context(), body.Scope, c.Name)
	if err != nil {
		return err
	}
	setAuditMessage(r, "evaluate policy compliance of "+e.Scope+" (evaluation "+e.ID+")")
	writeJSON(w, http.StatusAccepted, e)
	return nil
}

func (a *API) getPolicyEvaluation(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAnywhere(r.Context(), c, authz.ActPolicyStatesRead); err != nil {
		return err
	}
	scope, err := a.Policy.EvaluationScope(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.authorize(r.Context(), c, authz.ActPolicyStatesRead, scope); err != nil {
		return err
	}
	e, err := a.Policy.GetEvaluation(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

func (a *API) listPolicyRemediations(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	scope, err := listScopeQuery(r)
	if err != nil {
		return err
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Policy.ListRemediations(r.Context(), policyctx.RemediationQuery{Scope: scope, Page: p})
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) remediationFor(r *http.Request, c *Caller, action string) (wire.PolicyRemediation, error) {
	return lookupAt(a, r, c, action, func(ctx context.Context) (wire.PolicyRemediation, error) {
		return a.Policy.GetRemediation(ctx, r.PathValue("id"))
	}, func(rem wire.PolicyRemediation) found { return found{scope: rem.Machine} })
}

func (a *API) getPolicyRemediation(w http.ResponseWriter, r *http.Request, c *Caller) error {
	rem, err := a.remediationFor(r, c, authz.ActRemediationsRead)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rem)
	return nil
}

func (a *API) postPolicyRollback(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.PolicyRollbackCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if _, err := a.remediationFor(r, c, authz.ActRemediationsWrite); err != nil {
		return err
	}
	rem, err := a.Policy.RequestRollback(r.Context(), r.PathValue("id"), body.Force, c.Name)
	if err != nil {
		return err
	}
	msg := "roll back remediation " + rem.ID + " of rule " + rem.Rule
	if body.Force {
		msg += " (forced)"
	}
	setAuditMessage(r, msg)
	writeJSON(w, http.StatusAccepted, rem)
	return nil
}

func (a *API) getPolicyStateHistory(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAnywhere(r.Context(), c, authz.ActPolicyStatesRead); err != nil {
		return err
	}
	q := r.URL.Query()
	for _, k := range []string{"assignment", "machineId", "rule"} {
		if q.Get(k) == "" {
			return errValidation(k, "%s is required", k)
		}
	}
	scope, err := a.Policy.MachineScope(r.Context(), q.Get("machineId"))
	if err != nil {
		return err
	}
	if err := a.authorize(r.Context(), c, authz.ActPolicyStatesRead, scope); err != nil {
		return err
	}
	hs, err := a.Policy.StateHistory(r.Context(), q.Get("assignment"), q.Get("machineId"), q.Get("rule"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.List[wire.PolicyStateChange]{Value: hs})
	return nil
}
