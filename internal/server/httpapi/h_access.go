package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/server/access"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/wire"
)

// Secure access routes (DESIGN §9): JIT policies and requests, SSH
// certificates and sessions. The tunnel itself is in h_tunnel.go.

const (
	jitRequestPath = "/api/v1/jitRequests/{id}"
	sessionPath    = "/api/v1/sshSessions/{id}"
)

func (a *API) accessRoutes() []Route {
	api := func(m, p, action string, scope func(*http.Request) string, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: action, Auth: AuthBearer, Scope: scope, Summary: summary, Handle: h}
	}
	inHandler := func(rt Route) Route { rt.CheckInHandler = true; return rt }
	d := func(rt Route, req, resp any, status int, query []QueryParam, errs ...int) Route {
		rt.Request, rt.Response, rt.Status, rt.Query, rt.Errors = req, resp, status, query, errs
		return rt
	}
	also := func(status int, rt Route) Route { rt.AlsoStatus = []int{status}; return rt }
	const (
		ok      = http.StatusOK
		created = http.StatusCreated
		e409    = http.StatusConflict
	)
	scopeParam := QueryParam{Name: "scope", Type: "string", Default: "/",
		Description: "The scope: / or /subscriptions/S[/resourceGroups/RG[/machines/M]]."}
	listScope := QueryParam{Name: "scope", Type: "string", Default: "/", Description: "Only what is at or below this scope."}
	active := QueryParam{Name: "active", Type: "boolean", Description: "true: only requests waiting for approval and grants still open (sessions still running)."}
	return []Route{
		d(inHandler(api("GET", "/api/v1/jitPolicies", authz.ActJITPoliciesRead, scopeQuery, "List the JIT policies at or below a scope that the caller may read.", a.listJITPolicies)),
			nil, wire.List[wire.JITPolicy]{}, ok, []QueryParam{listScope}),
		d(api("GET", "/api/v1/jitPolicy", authz.ActJITPoliciesRead, scopeQuery, "Get the JIT policy at exactly a scope.", a.getJITPolicy),
			nil, wire.JITPolicy{}, ok, []QueryParam{scopeParam}, http.StatusNotFound),
		also(ok, d(api("PUT", "/api/v1/jitPolicy", authz.ActJITPoliciesWrite, scopeQuery,
			"Create or replace the JIT policy at a scope: managed ports, allowed source ranges, maximum duration (default 3h), approval.", a.putJITPolicy),
			wire.JITPolicySet{}, wire.JITPolicy{}, created, []QueryParam{scopeParam}, http.StatusNotFound)),
		d(api("DELETE", "/api/v1/jitPolicy", authz.ActJITPoliciesDelete, scopeQuery, "Delete the JIT policy at a scope.", a.deleteJITPolicy),
			nil, nil, http.StatusNoContent, []QueryParam{scopeParam}, http.StatusNotFound),
		d(api("GET", machinePath+"/jitStatus", authz.ActJITPoliciesRead, scopeMachine, "The machine's effective JIT policy and what its agent reported about it.", a.getJITStatus),
			nil, wire.JITMachineStatus{}, ok, nil),
		d(api("POST", machinePath+"/jitRequests", authz.ActJITRequestsWrite, scopeMachine,
			"Request a just-in-time opening of one port of the machine for one source address (default: the caller's) and a duration.", a.postJITRequest),
			wire.JITRequestCreate{}, wire.JITRequest{}, created, nil, e409),
		d(api("GET", machinePath+"/jitRequests", authz.ActJITRequestsRead, scopeMachine, "List the machine's JIT requests, newest first.", a.listMachineJITRequests),
			nil, wire.List[wire.JITRequest]{}, ok, pageQuery(active)),
		d(inHandler(api("GET", "/api/v1/jitRequests", authz.ActJITRequestsRead, scopeQuery, "List the JIT requests at or below a scope that the caller may read, newest first.", a.listJITRequests)),
			nil, wire.List[wire.JITRequest]{}, ok, pageQuery(listScope, active)),
		d(inHandler(api("GET", jitRequestPath, authz.ActJITRequestsRead, scopeRoot, "Get a JIT request.", a.getJITRequest)),
			nil, wire.JITRequest{}, ok, nil),
		d(inHandler(api("POST", jitRequestPath+"/approve", authz.ActJITRequestsApprove, scopeRoot, "Approve a JIT request waiting for approval (not the requester's own).", a.approveJITRequest)),
			NoBody{}, wire.JITRequest{}, ok, nil, e409),
		d(inHandler(api("POST", jitRequestPath+"/reject", authz.ActJITRequestsApprove, scopeRoot, "Reject a JIT request waiting for approval.", a.rejectJITRequest)),
			NoBody{}, wire.JITRequest{}, ok, nil, e409),
		d(inHandler(api("POST", jitRequestPath+"/revoke", authz.ActJITRequestsWrite, scopeRoot,
			"Revoke a JIT request or close its grant early (the requester's own, or any with jitRequests/approve/action).", a.revokeJITRequest)),
			NoBody{}, wire.JITRequest{}, ok, nil, e409),

		d(api("POST", machinePath+"/sshCertificate", authz.ActMachinesLogin, scopeMachine,
			"Sign the caller's SSH public key into a short-lived certificate for the machine's administrator account (Virtual Machine Administrator Login) or unprivileged account (User Login).", a.postSSHCertificate),
			wire.SSHCertificateRequest{}, wire.SSHCertificate{}, ok, nil, e409),
		d(inHandler(api("GET", "/api/v1/sshSessions", authz.ActSSHSessionsRead, scopeQuery, "List the SSH sessions (relayed connections) at or below a scope that the caller may read, newest first.", a.listSSHSessions)),
			nil, wire.List[wire.SSHSession]{}, ok, pageQuery(listScope, active)),
		d(api("GET", machinePath+"/sshSessions", authz.ActSSHSessionsRead, scopeMachine, "List the machine's SSH sessions, newest first.", a.listMachineSSHSessions),
			nil, wire.List[wire.SSHSession]{}, ok, pageQuery(active)),
		d(inHandler(api("GET", sessionPath, authz.ActSSHSessionsRead, scopeRoot, "Get an SSH session with its bytes so far.", a.getSSHSession)),
			nil, wire.SSHSession{}, ok, nil),
		d(inHandler(api("POST", sessionPath+"/end", authz.ActSSHSessionsEnd, scopeRoot, "End a running SSH session, whichever server replica relays it.", a.endSSHSession)),
			NoBody{}, wire.SSHSession{}, ok, nil, e409),
	}
}

func accessCaller(r *http.Request, c *Caller) access.Caller {
	return access.Caller{ID: c.ID, Name: c.Name, SourceIP: info(r).sourceIP}
}

// activeQuery reads ?active=.
func (a *API) activeQuery(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("active")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errValidation("active", "active must be true or false")
	}
	return b, nil
}

func (a *API) listJITPolicies(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAnywhere(r.Context(), c, authz.ActJITPoliciesRead); err != nil {
		return err
	}
	ps, err := a.Access.ListPolicies(r.Context(), scopeQuery(r))
	if err != nil {
		return err
	}
	out := wire.List[wire.JITPolicy]{Value: []wire.JITPolicy{}}
	for _, p := range ps {
		if ok, err := a.allowed(r.Context(), c, authz.ActJITPoliciesRead, p.Scope); err != nil {
			return err
		} else if ok {
			out.Value = append(out.Value, p)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getJITPolicy(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := a.Access.GetPolicy(r.Context(), scopeQuery(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (a *API) putJITPolicy(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.JITPolicySet
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	p, created, err := a.Access.SetPolicy(r.Context(), scopeQuery(r), body, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, p.Scope)
	setAuditMessage(r, "JIT policy at "+p.Scope+": ports "+joinComma(p.Ports)+", sources "+orAny(p.AllowedSources)+
		", at most "+time.Duration(p.MaxDuration).String()+approvalText(p.RequireApproval))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, p)
	return nil
}

func (a *API) deleteJITPolicy(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := a.Access.DeletePolicy(r.Context(), scopeQuery(r))
	if err != nil {
		return err
	}
	setAuditScope(r, p.Scope)
	setAuditMessage(r, "delete the JIT policy at "+p.Scope)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) getJITStatus(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	st, err := a.Access.MachineStatus(r.Context(), machineRef(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (a *API) postJITRequest(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.JITRequestCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	req, err := a.Access.RequestGrant(r.Context(), machineRef(r), accessCaller(r, c), body)
	if err != nil {
		return err
	}
	setAuditMessage(r, access.GrantSummary(req))
	writeJSON(w, http.StatusCreated, req)
	return nil
}

func (a *API) listMachineJITRequests(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	act, err := a.activeQuery(r)
	if err != nil {
		return err
	}
	ref := machineRef(r)
	page, err := a.Access.ListGrants(r.Context(), access.RequestFilter{Machine: &ref, Active: act, Page: p})
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) listJITRequests(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAnywhere(r.Context(), c, authz.ActJITRequestsRead); err != nil {
		return err
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	act, err := a.activeQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Access.ListGrants(r.Context(), access.RequestFilter{Scope: scopeQuery(r), Active: act, Page: p})
	if err != nil {
		return err
	}
	out := wire.List[wire.JITRequest]{Value: []wire.JITRequest{}}
	for _, g := range page.Items {
		if ok, err := a.allowed(r.Context(), c, authz.ActJITRequestsRead, g.Machine); err != nil {
			return err
		} else if ok {
			out.Value = append(out.Value, g)
		}
	}
	if page.After != "" {
		out.NextLink = nextLink(r, page.After)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// jitRequest finds a request and checks that the caller holds action at
// its machine. A caller who holds the action nowhere learns nothing
// (403 before the lookup); one who holds it elsewhere gets 404, so ids of
// other machines' requests are not confirmed.
func (a *API) jitRequest(r *http.Request, c *Caller, action string) (wire.JITRequest, error) {
	return lookupAt(a, r, c, action, func(ctx context.Context) (wire.JITRequest, error) { return a.Access.Grant(ctx, r.PathValue("id")) },
		func(g wire.JITRequest) found {
			return found{scope: g.Machine, readAction: authz.ActJITRequestsRead,
				hidden: func() error { return errNotFound("there is no JIT request %q", g.ID) }}
		})
}

func (a *API) getJITRequest(w http.ResponseWriter, r *http.Request, c *Caller) error {
	g, err := a.jitRequest(r, c, authz.ActJITRequestsRead)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *API) approveJITRequest(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if _, err := a.jitRequest(r, c, authz.ActJITRequestsApprove); err != nil {
		return err
	}
	g, err := a.Access.Approve(r.Context(), r.PathValue("id"), accessCaller(r, c))
	if err != nil {
		return err
	}
	setAuditMessage(r, "approve "+access.GrantSummary(g))
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *API) rejectJITRequest(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if _, err := a.jitRequest(r, c, authz.ActJITRequestsApprove); err != nil {
		return err
	}
	g, err := a.Access.Reject(r.Context(), r.PathValue("id"), accessCaller(r, c))
	if err != nil {
		return err
	}
	setAuditMessage(r, "reject "+access.GrantSummary(g))
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *API) revokeJITRequest(w http.ResponseWriter, r *http.Request, c *Caller) error {
	g, err := a.jitRequest(r, c, authz.ActJITRequestsWrite)
	if err != nil {
		return err
	}
	// Someone else's grant takes the approver's right.
	if g.RequestedByID != c.ID {
		if err := a.authorize(r.Context(), c, authz.ActJITRequestsApprove, g.Machine); err != nil {
			return err
		}
	}
	g, err = a.Access.Revoke(r.Context(), g.ID, accessCaller(r, c))
	if err != nil {
		return err
	}
	setAuditMessage(r, "revoke "+access.GrantSummary(g))
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *API) postSSHCertificate(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.SSHCertificateRequest
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	canAdmin, err := a.allowed(r.Context(), c, authz.ActMachinesLoginAsAdmin, scopeMachine(r))
	if err != nil {
		return err
	}
	cert, err := a.Access.IssueCertificate(r.Context(), machineRef(r), accessCaller(r, c), canAdmin, body)
	if errors.Is(err, access.ErrAdminLogin) {
		return errForbidden("%v", err)
	}
	if err != nil {
		return err
	}
	setAuditMessage(r, access.CertificateSummary(cert, r.PathValue("name")))
	writeJSON(w, http.StatusOK, cert)
	return nil
}

func (a *API) listSSHSessions(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAnywhere(r.Context(), c, authz.ActSSHSessionsRead); err != nil {
		return err
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	act, err := a.activeQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Access.ListSessions(r.Context(), access.SessionFilter{Scope: scopeQuery(r), Active: act, Page: p})
	if err != nil {
		return err
	}
	out := wire.List[wire.SSHSession]{Value: []wire.SSHSession{}}
	for _, x := range page.Items {
		if ok, err := a.allowed(r.Context(), c, authz.ActSSHSessionsRead, x.Machine); err != nil {
			return err
		} else if ok {
			out.Value = append(out.Value, x)
		}
	}
	if page.After != "" {
		out.NextLink = nextLink(r, page.After)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) listMachineSSHSessions(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	act, err := a.activeQuery(r)
	if err != nil {
		return err
	}
	ref := machineRef(r)
	page, err := a.Access.ListSessions(r.Context(), access.SessionFilter{Machine: &ref, Active: act, Page: p})
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

// sshSession finds a session and checks the caller holds action at its
// machine (as jitRequest does for requests).
func (a *API) sshSession(r *http.Request, c *Caller, action string) (wire.SSHSession, error) {
	return lookupAt(a, r, c, action, func(ctx context.Context) (wire.SSHSession, error) { return a.Access.Session(ctx, r.PathValue("id")) },
		func(x wire.SSHSession) found {
			return found{scope: x.Machine, readAction: authz.ActSSHSessionsRead,
				hidden: func() error { return errNotFound("there is no SSH session %q", x.ID) }}
		})
}

func (a *API) getSSHSession(w http.ResponseWriter, r *http.Request, c *Caller) error {
	x, err := a.sshSession(r, c, authz.ActSSHSessionsRead)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, x)
	return nil
}

func (a *API) endSSHSession(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if _, err := a.sshSession(r, c, authz.ActSSHSessionsEnd); err != nil {
		return err
	}
	x, err := a.Access.EndSession(r.Context(), r.PathValue("id"), accessCaller(r, c))
	if err != nil {
		return err
	}
	setAuditMessage(r, "end SSH session "+x.ID+" of "+x.User+" on "+x.MachineName)
	writeJSON(w, http.StatusOK, x)
	return nil
}

func joinComma(l []string) string {
	out := ""
	for i, s := range l {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

func orAny(l []string) string {
	if len(l) == 0 {
		return "any"
	}
	return joinComma(l)
}

func approvalText(b bool) string {
	if b {
		return ", approval required"
	}
	return ""
}
