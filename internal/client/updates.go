package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// Update management calls (the updates context's routes).

func subPath(sub string) string { return resourcePath(resource.Subscription(sub)) }

func updateRunPath(sub, id string) string { return subPath(sub) + "/updateRuns/" + url.PathEscape(id) }

func updateSchedulePath(sub, name string) string {
	return subPath(sub) + "/updateSchedules/" + url.PathEscape(name)
}

// RequestUpdateAssessment asks the target machines for an assessment now.
func (c *Client) RequestUpdateAssessment(ctx context.Context, sub string, body wire.UpdateAssessmentCreate) (wire.UpdateAssessmentBatch, error) {
	var b wire.UpdateAssessmentBatch
	err := c.do(ctx, http.MethodPost, subPath(sub)+"/updateAssessments", body, &b)
	return b, err
}

// GetUpdateAssessment says how far an assessment request got.
func (c *Client) GetUpdateAssessment(ctx context.Context, sub, id string) (wire.UpdateAssessmentBatch, error) {
	var b wire.UpdateAssessmentBatch
	err := c.do(ctx, http.MethodGet, subPath(sub)+"/updateAssessments/"+url.PathEscape(id), nil, &b)
	return b, err
}

// GetMachineUpdates returns a machine's pending updates as last assessed,
// only those whose name contains name when it is not empty.
func (c *Client) GetMachineUpdates(ctx context.Context, sub, rg, machine, name string) (wire.MachineUpdates, error) {
	var mu wire.MachineUpdates
	p := resourcePath(resource.Machine(sub, rg, machine)) + "/updates"
	if name != "" {
		p = withQuery(p, url.Values{"name": {name}})
	}
	err := c.do(ctx, http.MethodGet, p, nil, &mu)
	return mu, err
}

// ListMachineUpdateAssessments lists a machine's assessments, newest first.
func (c *Client) ListMachineUpdateAssessments(ctx context.Context, sub, rg, machine string, max int) ([]wire.UpdateAssessment, error) {
	return listAll[wire.UpdateAssessment](ctx, c, resourcePath(resource.Machine(sub, rg, machine))+"/updateAssessments", max)
}

// ListMachineUpdateRuns lists the runs a machine took part in, newest
// first, each with the machine's result.
func (c *Client) ListMachineUpdateRuns(ctx context.Context, sub, rg, machine string, max int) ([]wire.UpdateRun, error) {
	return listAll[wire.UpdateRun](ctx, c, resourcePath(resource.Machine(sub, rg, machine))+"/updateRuns", max)
}

// ListUpdateSummaries lists the update status of enrolled machines of a
// subscription or resource group; machineIDs (UUIDs, at most 1000) narrow
// it to those machines.
func (c *Client) ListUpdateSummaries(ctx context.Context, sub, rg string, machineIDs []string) ([]wire.UpdateSummary, error) {
	p := subPath(sub)
	if rg != "" {
		p = rgPath(sub, rg)
	}
	q := url.Values{"$top": {"1000"}}
	if len(machineIDs) > 0 {
		q.Set("machineId", strings.Join(machineIDs, ","))
	}
	return listAll[wire.UpdateSummary](ctx, c, withQuery(p+"/updateSummaries", q), 0)
}

// CreateUpdateRun deploys updates now.
func (c *Client) CreateUpdateRun(ctx context.Context, sub string, body wire.UpdateRunCreate) (wire.UpdateRun, error) {
	var r wire.UpdateRun
	err := c.do(ctx, http.MethodPost, subPath(sub)+"/updateRuns", body, &r)
	return r, err
}

// GetUpdateRun reads a run with its counts and waves.
func (c *Client) GetUpdateRun(ctx context.Context, sub, id string) (wire.UpdateRun, error) {
	var r wire.UpdateRun
	err := c.do(ctx, http.MethodGet, updateRunPath(sub, id), nil, &r)
	return r, err
}

// ListUpdateRunMachines lists every machine of a run with its results.
func (c *Client) ListUpdateRunMachines(ctx context.Context, sub, id string) ([]wire.UpdateRunMachine, error) {
	return listAll[wire.UpdateRunMachine](ctx, c, withQuery(updateRunPath(sub, id)+"/machines", url.Values{"$top": {"1000"}}), 0)
}

// ListUpdateRuns lists a subscription's runs, newest first (schedule: only
// that schedule's); max bounds how many (0: all).
func (c *Client) ListUpdateRuns(ctx context.Context, sub, schedule string, max int) ([]wire.UpdateRun, error) {
	q := url.Values{}
	if schedule != "" {
		q.Set("schedule", schedule)
	}
	return listAll[wire.UpdateRun](ctx, c, withQuery(subPath(sub)+"/updateRuns", q), max)
}

// CreateUpdateSchedule creates a schedule named name.
func (c *Client) CreateUpdateSchedule(ctx context.Context, sub, name string, body wire.UpdateScheduleCreate) (wire.UpdateSchedule, error) {
	var s wire.UpdateSchedule
	err := c.do(ctx, http.MethodPut, updateSchedulePath(sub, name), body, &s)
	return s, err
}

// GetUpdateSchedule reads a schedule.
func (c *Client) GetUpdateSchedule(ctx context.Context, sub, name string) (wire.UpdateSchedule, error) {
	var s wire.UpdateSchedule
	err := c.do(ctx, http.MethodGet, updateSchedulePath(sub, name), nil, &s)
	return s, err
}

// ListUpdateSchedules lists a subscription's schedules.
func (c *Client) ListUpdateSchedules(ctx context.Context, sub string) ([]wire.UpdateSchedule, error) {
	return listAll[wire.UpdateSchedule](ctx, c, subPath(sub)+"/updateSchedules", 0)
}

// DeleteUpdateSchedule deletes a schedule.
func (c *Client) DeleteUpdateSchedule(ctx context.Context, sub, name string) error {
	return c.do(ctx, http.MethodDelete, updateSchedulePath(sub, name), nil, nil)
}
