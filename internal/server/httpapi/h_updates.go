package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/server/updates"
	"github.com/corralhq/corral/internal/wire"
)

const (
	updRunPath      = subPath + "/updateRuns/{id}"
	updSchedulePath = subPath + "/updateSchedules/{schedule}"
)

// updatesRoutes are the routes of update management.
func (a *API) updatesRoutes() []Route {
	api := func(m, p, action string, scope func(*http.Request) string, summary string, h func(http.ResponseWriter, *http.Request, *Caller) error) Route {
		return Route{Method: m, Pattern: p, Action: action, Auth: AuthBearer, Scope: scope, Summary: summary, Handle: h}
	}
	inHandler := func(rt Route) Route { rt.CheckInHandler = true; return rt }
	with := func(rt Route, req, resp any, status int, q []QueryParam, errs ...int) Route {
		rt.Request, rt.Response, rt.Status, rt.Query, rt.Errors = req, resp, status, q, errs
		return rt
	}
	return []Route{
		with(inHandler(api("POST", subPath+"/updateAssessments", authz.ActUpdatesAssess, scopeSub,
			"Assess the pending updates of machines, a scope or a tag now (UpdateAssessmentCreate); the answer is the request with its id.",
			a.postUpdateAssessment)), wire.UpdateAssessmentCreate{}, wire.UpdateAssessmentBatch{}, http.StatusAccepted, nil, 400, 404, 409),
		with(api("GET", subPath+"/updateAssessments/{id}", authz.ActUpdatesRead, scopeSub,
			"How far an assessment request got: counts by state and the machines that failed.", a.getUpdateAssessment),
			nil, wire.UpdateAssessmentBatch{}, 0, nil, 404),
		with(api("GET", subPath+"/updateSummaries", authz.ActUpdatesRead, scopeSub,
			"The update status of the subscription's enrolled machines (pending counts by classification, last assessed).", a.listUpdateSummaries),
			nil, wire.List[wire.UpdateSummary]{}, 0, summaryQuery, 400),
		with(api("GET", rgPath+"/updateSummaries", authz.ActUpdatesRead, scopeRG,
			"The update status of the resource group's enrolled machines.", a.listUpdateSummaries),
			nil, wire.List[wire.UpdateSummary]{}, 0, summaryQuery, 400),
		with(api("GET", machinePath+"/updates", authz.ActUpdatesRead, scopeMachine,
			"A machine's pending updates as last assessed (?name= filters by name).", a.getMachineUpdates),
			nil, wire.MachineUpdates{}, 0, []QueryParam{{Name: "name", Description: "only updates whose name contains this", Type: "string"}}, 404),
		with(api("GET", machinePath+"/updateAssessments", authz.ActUpdatesRead, scopeMachine,
			"A machine's assessments, newest first.", a.listMachineAssessments),
			nil, wire.List[wire.UpdateAssessment]{}, 0, pageQuery(), 404),
		with(api("GET", machinePath+"/updateRuns", authz.ActUpdateRunsRead, scopeMachine,
			"The update runs a machine took part in, newest first, each with the machine's result.", a.listMachineUpdateRuns),
			nil, wire.List[wire.UpdateRun]{}, 0, pageQuery(), 404),
		with(inHandler(api("POST", subPath+"/updateRuns", authz.ActUpdateRunsWrite, scopeSub,
			"Deploy updates now to machines, a scope or a tag (UpdateRunCreate); the answer is the run.", a.postUpdateRun)),
			wire.UpdateRunCreate{}, wire.UpdateRun{}, http.StatusCreated, nil, 400, 404, 409),
		with(api("GET", subPath+"/updateRuns", authz.ActUpdateRunsRead, scopeSub,
			"List the subscription's update runs, newest first (?schedule= only one schedule's).", a.listUpdateRuns),
			nil, wire.List[wire.UpdateRun]{}, 0, pageQuery(QueryParam{Name: "schedule", Description: "Only this schedule's runs.", Type: "string"}), 400),
		with(inHandler(api("GET", updRunPath, authz.ActUpdateRunsRead, scopeSub,
			"Get an update run with its counts and waves (its machines: .../machines).", a.getUpdateRun)),
			nil, wire.UpdateRun{}, 0, nil, 404),
		with(inHandler(api("GET", updRunPath+"/machines", authz.ActUpdateRunsRead, scopeSub,
			"The machines of an update run with their per-package results.", a.listUpdateRunMachines)),
			nil, wire.List[wire.UpdateRunMachine]{}, 0, pageQuery(), 404),
		with(api("GET", subPath+"/updateSchedules", authz.ActUpdateSchedulesRead, scopeSub,
			"List the subscription's update schedules.", a.listUpdateSchedules),
			nil, wire.List[wire.UpdateSchedule]{}, 0, pageQuery(), 400),
		with(api("GET", updSchedulePath, authz.ActUpdateSchedulesRead, scopeSub,
			"Get an update schedule with its next fire.", a.getUpdateSchedule), nil, wire.UpdateSchedule{}, 0, nil, 404),
		with(inHandler(api("PUT", updSchedulePath, authz.ActUpdateSchedulesWrite, scopeSub,
			"Create a schedule: a cron expression in a time zone or a one-time time, with deployment settings or Kind Assessment (UpdateScheduleCreate).",
			a.putUpdateSchedule)), wire.UpdateScheduleCreate{}, wire.UpdateSchedule{}, http.StatusCreated, nil, 400, 404, 409),
		with(inHandler(api("DELETE", updSchedulePath, authz.ActUpdateSchedulesDelete, scopeSub,
			"Delete an update schedule (its runs stay in the history).", a.deleteUpdateSchedule)), nil, nil, http.StatusNoContent, nil, 404),
	}
}

var summaryQuery = pageQuery(QueryParam{Name: "machineId", Description: "Only these machines (UUIDs, comma-separated, at most 1000).", Type: "string"})

// authorizeTargets checks the action at every scope the targets name.
func (a *API) authorizeTargets(r *http.Request, c *Caller, action string, t wire.UpdateTargets) error {
	for _, sc := range updates.TargetScopes(r.PathValue("sub"), t) {
		if err := a.authorize(r.Context(), c, action, sc); err != nil {
			return err
		}
	}
	return nil
}

// authorizeAt checks action at the scope scopeOf finds; when the resource
// does not exist the check is at the subscription, so a caller without
// the action learns nothing of what exists.
func (a *API) authorizeAt(r *http.Request, c *Caller, action string, scopeOf func(context.Context) (string, error)) error {
	sc, err := scopeOf(r.Context())
	if err != nil {
		if !errors.Is(err, refusal.ErrNotFound) {
			return err
		}
		if aerr := a.authorize(r.Context(), c, action, scopeSub(r)); aerr != nil {
			return aerr
		}
		return err
	}
	return a.authorize(r.Context(), c, action, sc)
}

func (a *API) postUpdateAssessment(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.UpdateAssessmentCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := a.authorizeTargets(r, c, authz.ActUpdatesAssess, body.UpdateTargets); err != nil {
		return err
	}
	b, err := a.Updates.RequestAssessment(r.Context(), r.PathValue("sub"), body, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, b.Scope)
	setAuditMessage(r, updates.AssessSummary(b))
	writeJSON(w, http.StatusAccepted, b)
	return nil
}

func (a *API) getUpdateAssessment(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	b, err := a.Updates.GetAssessmentBatch(r.Context(), r.PathValue("sub"), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

func (a *API) listUpdateSummaries(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	f := updates.SummaryFilter{Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Page: p}
	if v := r.URL.Query().Get("machineId"); v != "" {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				f.MachineIDs = append(f.MachineIDs, id)
			}
		}
	}
	page, err := a.Updates.Summaries(r.Context(), f)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) getMachineUpdates(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	mu, err := a.Updates.MachineUpdates(r.Context(), machineRef(r), r.URL.Query().Get("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mu)
	return nil
}

func (a *API) listMachineAssessments(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Updates.ListMachineAssessments(r.Context(), machineRef(r), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) listMachineUpdateRuns(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Updates.ListMachineRuns(r.Context(), machineRef(r), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) postUpdateRun(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.UpdateRunCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := a.authorizeTargets(r, c, authz.ActUpdateRunsWrite, body.UpdateTargets); err != nil {
		return err
	}
	run, err := a.Updates.CreateRun(r.Context(), r.PathValue("sub"), body, c.Name)
	if err != nil {
		return err
	}
	setAuditScope(r, updates.RunResourceID(run.SubscriptionID, run.ID))
	setAuditMessage(r, updates.RunSummary(run))
	writeJSON(w, http.StatusCreated, run)
	return nil
}

func (a *API) listUpdateRuns(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Updates.ListRuns(r.Context(), r.PathValue("sub"), r.URL.Query().Get("schedule"), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) runScope(r *http.Request) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		return a.Updates.RunScope(ctx, r.PathValue("sub"), r.PathValue("id"))
	}
}

func (a *API) getUpdateRun(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAt(r, c, authz.ActUpdateRunsRead, a.runScope(r)); err != nil {
		return err
	}
	run, err := a.Updates.GetRun(r.Context(), r.PathValue("sub"), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, run)
	return nil
}

func (a *API) listUpdateRunMachines(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.authorizeAt(r, c, authz.ActUpdateRunsRead, a.runScope(r)); err != nil {
		return err
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Updates.ListRunMachines(r.Context(), r.PathValue("sub"), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) listUpdateSchedules(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Updates.ListSchedules(r.Context(), r.PathValue("sub"), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) getUpdateSchedule(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sc, err := a.Updates.GetSchedule(r.Context(), r.PathValue("sub"), r.PathValue("schedule"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sc)
	return nil
}

func (a *API) putUpdateSchedule(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.UpdateScheduleCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if err := a.authorizeTargets(r, c, authz.ActUpdateSchedulesWrite, body.UpdateTargets); err != nil {
		return err
	}
	sub, name := r.PathValue("sub"), r.PathValue("schedule")
	setAuditScope(r, updates.ScheduleResourceID(sub, name))
	sc, err := a.Updates.CreateSchedule(r.Context(), sub, name, body, c.Name)
	if err != nil {
		return err
	}
	setAuditMessage(r, updates.ScheduleSummary(sc))
	writeJSON(w, http.StatusCreated, sc)
	return nil
}

func (a *API) deleteUpdateSchedule(w http.ResponseWriter, r *http.Request, c *Caller) error {
	sub, name := r.PathValue("sub"), r.PathValue("schedule")
	err := a.authorizeAt(r, c, authz.ActUpdateSchedulesDelete, func(ctx context.Context) (string, error) {
		return a.Updates.ScheduleScope(ctx, sub, name)
	})
	if err != nil {
		return err
	}
	setAuditScope(r, updates.ScheduleResourceID(sub, name))
	if err := a.Updates.DeleteSchedule(r.Context(), sub, name); err != nil {
		return err
	}
	setAuditMessage(r, "delete schedule "+name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
