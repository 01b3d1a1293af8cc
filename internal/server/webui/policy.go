package webui

import (
	"net/url"
	"sort"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// The policy pages: definitions, assignments and compliance per scope →
// assignment → machine → rule with evidence. They read through the API as
// the signed-in user (Reader and above read compliance); assignments are
// made with `corral policy assignment create` or the API.

type policyData struct {
	Scope       string
	Summaries   []summaryRow
	SummaryErr  *uiError
	Assignments []wire.PolicyAssignment
	AssignErr   *uiError
	Definitions []wire.PolicyDefinition
	DefErr      *uiError
}

type summaryRow struct {
	wire.PolicyComplianceSummary
	Name, URL, Class string
}

func complianceClass(state string) string {
	switch state {
	case wire.ComplianceCompliant:
		return "badge badge-ok"
	case wire.ComplianceNonCompliant:
		return "badge badge-bad"
	case wire.ComplianceExempt:
		return "badge"
	}
	return "badge badge-busy"
}

func lastSegment(id string) string { return id[strings.LastIndexByte(id, '/')+1:] }

// policyScope is ?scope= when it is a valid scope, else "/".
func policyScope(q url.Values) string {
	if s := q.Get("scope"); s != "" {
		if id, err := resource.ParseScope(s); err == nil {
			return id.String()
		}
	}
	return "/"
}

func (h *Handler) policy(u *uiRequest) {
	p := &page{Title: "Policy", Nav: "policy", Me: &u.me}
	d := &policyData{Scope: policyScope(u.r.URL.Query())}
	p.Data = d
	sums, err := u.api.PolicySummary(u.ctx(), d.Scope)
	if err != nil {
		d.SummaryErr = h.toUIError(u.r, err)
	}
	for _, s := range sums {
		name := lastSegment(s.Assignment)
		d.Summaries = append(d.Summaries, summaryRow{PolicyComplianceSummary: s, Name: name, Class: complianceClass(s.ComplianceState),
			URL: "/ui/policy/assignments/" + url.PathEscape(name) + "?" + url.Values{"scope": {d.Scope}}.Encode()})
	}
	if d.Assignments, err = u.api.ListPolicyAssignments(u.ctx(), d.Scope); err != nil {
		d.AssignErr = h.toUIError(u.r, err)
	}
	builtin, err := u.api.ListPolicyDefinitions(u.ctx(), true)
	if err != nil {
		d.DefErr = h.toUIError(u.r, err)
	}
	custom, err := u.api.ListPolicyDefinitions(u.ctx(), false)
	if err != nil && d.DefErr == nil {
		d.DefErr = h.toUIError(u.r, err)
	}
	d.Definitions = append(builtin, custom...)
	h.render(u.w, u.r, 200, "policy", p)
}

type assignmentData struct {
	Assignment wire.PolicyAssignment
	Scope      string
	Machines   []machineCompliance
	StatesErr  *uiError
}

type machineCompliance struct {
	Machine, Name, URL, State, Class string
	Rules                            []ruleRow
}

type ruleRow struct {
	wire.PolicyState
	Class string
}

// worst is a machine's state from its rules'.
func worst(a, b string) string {
	rank := map[string]int{wire.ComplianceExempt: 0, wire.ComplianceCompliant: 1, wire.ComplianceUnknown: 2, wire.ComplianceNonCompliant: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// groupByMachine turns states into machines with their rules.
func groupByMachine(states []wire.PolicyState) []machineCompliance {
	by := map[string]*machineCompliance{}
	var order []string
	for _, s := range states {
		mc, ok := by[s.Machine]
		if !ok {
			mc = &machineCompliance{Machine: s.Machine, Name: lastSegment(s.Machine), State: s.ComplianceState}
			if id, err := resource.Parse(s.Machine); err == nil {
				var sub, rg string
				for _, seg := range id.Segments() {
					switch seg.Type {
					case resource.Subscriptions:
						sub = seg.Name
					case resource.ResourceGroups:
						rg = seg.Name
					}
				}
				mc.URL = "/ui/machines/" + url.PathEscape(sub) + "/" + url.PathEscape(rg) + "/" + url.PathEscape(mc.Name)
			}
			by[s.Machine] = mc
			order = append(order, s.Machine)
		}
		mc.State = worst(mc.State, s.ComplianceState)
		mc.Rules = append(mc.Rules, ruleRow{PolicyState: s, Class: complianceClass(s.ComplianceState)})
	}
	sort.Strings(order)
	out := make([]machineCompliance, 0, len(order))
	for _, k := range order {
		mc := by[k]
		mc.Class = complianceClass(mc.State)
		out = append(out, *mc)
	}
	return out
}

func (h *Handler) policyAssignment(u *uiRequest) {
	name := u.r.PathValue("name")
	a, err := u.api.GetPolicyAssignment(u.ctx(), name)
	if err != nil {
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	d := &assignmentData{Assignment: a, Scope: policyScope(u.r.URL.Query())}
	if d.Scope == "/" {
		d.Scope = a.Scope
	}
	states, err := u.api.ListPolicyStates(u.ctx(), d.Scope, a.Name)
	if err != nil {
		d.StatesErr = h.toUIError(u.r, err)
	}
	d.Machines = groupByMachine(states)
	h.render(u.w, u.r, 200, "policyassignment", &page{Title: "Policy assignment " + a.Name, Nav: "policy", Me: &u.me, Data: d})
}

// machineCompliance is the machine page's policy card: its states.
func (h *Handler) machineComplianceOf(u *uiRequest, m wire.Machine) *machineCompliance {
	states, err := u.api.ListPolicyStates(u.ctx(), m.ID, "")
	if err != nil || len(states) == 0 {
		return nil
	}
	ms := groupByMachine(states)
	if len(ms) == 0 {
		return nil
	}
	return &ms[0]
}
