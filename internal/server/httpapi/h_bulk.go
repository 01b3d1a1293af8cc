package httpapi

import (
	"net/http"
	"strconv"

	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/wire"
)

const bulkPath = subPath + "/bulkOperations"

// bulkRoutes are the routes of bulk operations (docs/bulk.md).
func (a *API) bulkRoutes() []Route {
	api := func(m, p, action string, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: action, Auth: AuthBearer, Scope: scopeSub, Summary: summary, Handle: h}
	}
	inHandler := func(rt Route) Route { rt.CheckInHandler = true; return rt }
	with := func(rt Route, req, resp any, status int, q []QueryParam, errs ...int) Route {
		rt.Request, rt.Response, rt.Status, rt.Query, rt.Errors = req, resp, status, q, errs
		return rt
	}
	return []Route{
		with(inHandler(api("POST", bulkPath, authz.ActExtensionsWrite,
			"Set or delete an extension, or start a run, on every machine of a scope, optionally only those with a tag "+
				"(BulkOperationCreate; at most 50,000 machines). The caller needs the kind's action (extensions/write, "+
				"extensions/delete or runCommands/write) at the scope. Every machine is written before the answer, which "+
				"is the operation with its totals so far.", a.postBulkOperation)),
			wire.BulkOperationCreate{}, wire.BulkOperation{}, http.StatusCreated, nil, 400, 404),
		with(api("GET", bulkPath, authz.ActExtensionsRead,
			"List the subscription's bulk operations, newest first (without totals: GET one for those).", a.listBulkOperations),
			nil, wire.List[wire.BulkOperation]{}, 0, pageQuery(), 400),
		with(inHandler(api("GET", bulkPath+"/{id}", authz.ActExtensionsRead,
			"A bulk operation with its totals by result, read from the machines' extensions or runs as they are now "+
				"(authorized at the operation's scope: extensions/read, or runCommands/read for runs).", a.getBulkOperation)),
			nil, wire.BulkOperation{}, 0, nil, 404),
		with(inHandler(api("GET", bulkPath+"/{id}/machines", authz.ActExtensionsRead,
			"The machines of a bulk operation with each one's result, state and message (?result= only one result).",
			a.listBulkMachines)),
			nil, wire.List[wire.BulkMachineResult]{}, 0, pageQuery(QueryParam{Name: "result", Type: "string", Enum: wire.BulkResults,
				Description: "Only machines with this result."}), 400, 404),
	}
}

// bulkActions are the write and read actions of each kind.
func bulkActions(kind string) (write, read string) {
	switch kind {
	case wire.BulkExtensionDelete:
		return authz.ActExtensionsDelete, authz.ActExtensionsRead
	case wire.BulkRunCommand:
		return authz.ActRunCommandsWrite, authz.ActRunCommandsRead
	}
	return authz.ActExtensionsWrite, authz.ActExtensionsRead
}

func (a *API) postBulkOperation(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.BulkOperationCreate
	err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body)
	defer func() {
		if body.Extension != nil {
			clear(body.Extension.ProtectedSettings)
		}
		if body.RunCommand != nil {
			clear(body.RunCommand.ProtectedParameters)
		}
	}()
	if err != nil {
		return err
	}
	sub := r.PathValue("sub")
	scope := extensions.BulkScope(sub, body)
	setAuditScope(r, scope)
	kind, err := extensions.BulkKind(body.Kind)
	if err != nil {
		// Unknown kinds are refused only to callers who may change
		// extensions at the scope.
		if aerr := a.authorize(r.Context(), c, authz.ActExtensionsWrite, scope); aerr != nil {
			return aerr
		}
		return err
	}
	action, _ := bulkActions(kind)
	if err := a.authorize(r.Context(), c, action, scope); err != nil {
		return err
	}
	// The machines' outcomes are logged under the kind's action.
	o := capability.OriginFrom(r.Context())
	o.Action = action
	ctx := capability.WithOrigin(r.Context(), o)
	op, err := a.Extensions.CreateBulkOperation(ctx, sub, body, c.Name)
	if err != nil {
		return err
	}
	msg := "bulk " + op.Kind + " " + op.Target
	if op.Kind == wire.BulkExtensionSet {
		msg += " (" + op.Publisher + "/" + op.Type + " " + op.Version + ")"
	}
	msg += " on " + strconv.Itoa(op.Machines) + " machines"
	if op.Tag != "" {
		msg += " with tag " + op.Tag
	}
	setAuditMessage(r, msg+": operation "+op.Name)
	writeJSON(w, http.StatusCreated, op)
	return nil
}

func (a *API) listBulkOperations(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Extensions.ListBulkOperations(r.Context(), r.PathValue("sub"), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

// authorizeBulk checks the kind's read action at the operation's scope
// (at the subscription when there is no such operation).
func (a *API) authorizeBulk(r *http.Request, c *Caller) error {
	sub, id := r.PathValue("sub"), r.PathValue("id")
	scope, kind, err := a.Extensions.BulkOperationScope(r.Context(), sub, id)
	if err != nil {
		if aerr := a.authorize(r.Context(), c, authz.ActExtensionsRead, scopeSub(r)); aerr != nil {
			return aerr
		}
		return err
	}
	_, read := bulkActions(kind)
	return a.authorize(r.Context(), c, read, scope)
}

func (a *API) getBulkOperation(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeBulk(r, c); err != nil {
		return err
	}
	op, err := a.Extensions.GetBulkOperation(r.Context(), r.PathValue("sub"), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, op)
	return nil
}

func (a *API) listBulkMachines(w http.ResponseWriter, r *http.Request, c *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	if err := a.authorizeBulk(r, c); err != nil {
		return err
	}
	page, err := a.Extensions.ListBulkMachines(r.Context(), r.PathValue("sub"), r.PathValue("id"), r.URL.Query().Get("result"), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}
