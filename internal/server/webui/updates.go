package webui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// Update management pages: the subscription's update status with the
// "check for updates" and deploy forms, a machine's pending updates
// (searchable by name) with "check for updates" and "update now", runs with
// per-machine and per-package results, and schedules. Every read and write
// is an API call with the user's token.

// updatesRoutes registers the update pages on the UI's mux.
func (h *Handler) updatesRoutes() {
	h.mux.Handle("GET /ui/updates", h.authed(h.updatesOverview))
	h.mux.Handle("POST /ui/updates/assess", h.authedPost(h.updatesAssess))
	h.mux.Handle("POST /ui/updates/deploy", h.authedPost(h.updatesDeploy))
	h.mux.Handle("GET /ui/updates/runs/{sub}/{id}", h.authed(h.updateRunDetail))
	h.mux.Handle("GET /ui/updates/schedules", h.authed(h.updateSchedules))
	h.mux.Handle("POST /ui/updates/schedules", h.authedPost(h.createUpdateSchedule))
	h.mux.Handle("POST /ui/updates/schedules/{sub}/{name}/delete", h.authedPost(h.deleteUpdateSchedule))
	h.mux.Handle("GET /ui/machines/{sub}/{rg}/{name}/updates", h.authed(h.machineUpdates))
	h.mux.Handle("POST /ui/machines/{sub}/{rg}/{name}/updates/assess", h.authedPost(h.machineAssess))
	h.mux.Handle("POST /ui/machines/{sub}/{rg}/{name}/updates/deploy", h.authedPost(h.machineDeploy))
}

// updateClass is the badge of an update run, machine or assessment state.
func updateClass(s string) string {
	switch s {
	case wire.UpdateSucceeded:
		return "badge badge-ok"
	case wire.UpdateCompletedWithWarnings, wire.UpdateHalted, wire.UpdateNotStarted:
		return "badge badge-warn"
	case wire.UpdateFailed:
		return "badge badge-bad"
	case wire.UpdateInProgress, wire.UpdatePending:
		return "badge badge-busy"
	}
	return "badge"
}

// updateCell is a machine's update status as the inventory shows it.
type updateCell struct {
	Label, Title, Class string
}

func updateCellOf(s wire.UpdateSummary, ok bool) updateCell {
	switch {
	case !ok || s.State == wire.AssessmentNotAssessed:
		return updateCell{Label: "—", Title: "not assessed"}
	case s.AssessedAt.IsZero() && s.State == wire.AssessmentPending:
		return updateCell{Label: "assessing", Class: "badge badge-busy", Title: "the first assessment is on its way"}
	case s.AssessedAt.IsZero():
		return updateCell{Label: "failed", Class: "badge badge-bad", Title: s.Message}
	}
	c := updateCell{Label: fmt.Sprintf("%d / %d / %d", s.Critical, s.Security, s.Other),
		Title: fmt.Sprintf("%d critical, %d security, %d other pending, assessed %s", s.Critical, s.Security, s.Other, formatTime(s.AssessedAt))}
	switch {
	case s.State == wire.AssessmentFailed:
		c.Class, c.Title = "badge badge-warn", c.Title+"; the last assessment failed: "+s.Message
	case s.Critical+s.Security > 0:
		c.Class = "badge badge-bad"
	case s.Other > 0:
		c.Class = "badge badge-warn"
	default:
		c.Class, c.Label = "badge badge-ok", "up to date"
	}
	return c
}

// fillUpdates adds each inventory row's update status; a user who may not
// read update status sees the column empty.
func (h *Handler) fillUpdates(u *uiRequest, rows []machineRow, ms []wire.Machine, sub string) {
	if len(ms) == 0 {
		return
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.MachineID
	}
	sums, err := u.api.ListUpdateSummaries(u.ctx(), sub, "", ids)
	got := map[string]wire.UpdateSummary{}
	if err == nil {
		for _, s := range sums {
			got[strings.ToLower(s.MachineID)] = s
		}
	}
	for i, m := range ms {
		s, ok := got[strings.ToLower(m.ID)]
		rows[i].Updates = updateCellOf(s, ok)
		rows[i].UpdatesURL = machineURL(m) + "/updates"
	}
}

// machineUpdateSummary is the machine page's update card, nil when the
// user may not read it.
func (h *Handler) machineUpdateSummary(u *uiRequest, m wire.Machine) *updateCard {
	mu, err := u.api.GetMachineUpdates(u.ctx(), m.SubscriptionID, m.ResourceGroup, m.Name, "")
	if err != nil {
		return nil
	}
	return &updateCard{Summary: mu.UpdateSummary, Cell: updateCellOf(mu.UpdateSummary, true), URL: machineURL(m) + "/updates"}
}

// updateCard is the update status card of the machine page.
type updateCard struct {
	Summary wire.UpdateSummary
	Cell    updateCell
	URL     string
}

// deployForm is the "update now" form as typed.
type deployForm struct {
	Critical, Security, Other bool
	Reboot, Window            string
	Include, Exclude          string
	Scope, Tag, Waves         string
	MaxFailed                 string
	Name, Cron, TimeZone, At  string
	Kind                      string
}

func deployFormFrom(r *http.Request) deployForm {
	pf := r.PostForm
	return deployForm{Critical: pf.Get("critical") != "", Security: pf.Get("security") != "", Other: pf.Get("other") != "",
		Reboot: pf.Get("reboot"), Window: strings.TrimSpace(pf.Get("window")), Include: pf.Get("include"), Exclude: pf.Get("exclude"),
		Scope: strings.TrimSpace(pf.Get("scope")), Tag: strings.TrimSpace(pf.Get("tag")), Waves: pf.Get("waves"),
		MaxFailed: strings.TrimSpace(pf.Get("maxFailed")), Name: strings.TrimSpace(pf.Get("name")), Cron: strings.TrimSpace(pf.Get("cron")),
		TimeZone: strings.TrimSpace(pf.Get("timeZone")), At: strings.TrimSpace(pf.Get("at")), Kind: pf.Get("kind")}
}

func defaultDeployForm() deployForm {
	return deployForm{Critical: true, Security: true, Reboot: wire.RebootIfRequired, Window: "120m", Kind: wire.ScheduleDeployment}
}

// lines splits a textarea into its non-empty, trimmed lines (or words).
func lines(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' || r == ' ' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// settings builds the API's deployment settings; the API checks them.
func (f deployForm) settings() (wire.UpdateDeploymentSettings, *wire.UpdateRollout, error) {
	var s wire.UpdateDeploymentSettings
	for _, c := range []struct {
		on   bool
		name string
	}{{f.Critical, wire.UpdateCritical}, {f.Security, wire.UpdateSecurity}, {f.Other, wire.UpdateOther}} {
		if c.on {
			s.Classifications = append(s.Classifications, c.name)
		}
	}
	if len(s.Classifications) == 0 {
		return s, nil, formError("Choose at least one classification: Critical, Security or Other.")
	}
	s.Reboot = f.Reboot
	if f.Window != "" {
		d, err := time.ParseDuration(f.Window)
		if err != nil {
			if n, aerr := strconv.Atoi(f.Window); aerr == nil {
				d, err = time.Duration(n)*time.Minute, nil
			}
		}
		if err != nil {
			return s, nil, formError("Maintenance window must be minutes such as 120m.")
		}
		s.Window = wire.Duration(d)
	}
	s.Include, s.Exclude = lines(f.Include), lines(f.Exclude)
	waves := lines(f.Waves)
	if len(waves) == 0 {
		return s, nil, nil
	}
	ro := &wire.UpdateRollout{}
	if f.MaxFailed != "" {
		n, err := strconv.Atoi(f.MaxFailed)
		if err != nil {
			return s, nil, formError("Halt when more than … % failed: give a number from 0 to 100.")
		}
		ro.MaxFailedPercent = n
	}
	for _, w := range waves {
		if p, ok := strings.CutSuffix(w, "%"); ok {
			n, err := strconv.Atoi(p)
			if err != nil {
				return s, nil, formError("Waves: " + strconv.Quote(w) + " is not a percentage such as 10%.")
			}
			ro.Waves = append(ro.Waves, wire.UpdateWave{Percent: n})
		} else {
			ro.Waves = append(ro.Waves, wire.UpdateWave{Scope: w})
		}
	}
	return s, ro, nil
}

// targets reads the scope and tag fields of a subscription-wide form.
func (f deployForm) targets(sub string) wire.UpdateTargets {
	t := wire.UpdateTargets{Tag: f.Tag}
	switch {
	case f.Scope == "" && f.Tag == "":
		t.Scope = resource.Subscription(sub).String()
	case f.Scope != "" && !strings.HasPrefix(f.Scope, "/"):
		t.Scope = resource.ResourceGroup(sub, f.Scope).String()
	default:
		t.Scope = f.Scope
	}
	return t
}

// formFields is what the deployment fields of a form show: the form as
// typed and the reboot choices.
type formFields struct {
	deployForm
	Reboots []string
}

// runList is a list of runs with why it could not be read.
type runList struct {
	Runs []runListRow
	Err  *uiError
	Now  time.Time
}

// updatesData is the update overview of a subscription.
type updatesData struct {
	Sub        string
	Rows       []updateRow
	RowsErr    *uiError
	Runs       []runListRow
	RunsErr    *uiError
	Form       deployForm
	FormErr    *uiError
	AssessErr  *uiError
	Counts     wire.UpdateSummary // totals
	Fields     formFields
	RunList    runList
	InProgress bool
}

// updateRow is one machine of the overview.
type updateRow struct {
	Name, ResourceGroup, URL string
	Cell                     updateCell
	AssessedAt               time.Time
	State, StateClass        string
	Message                  string
}

// runListRow is one run in a list.
type runListRow struct {
	ID, URL, Status, StatusClass, Reason, Trigger, Scope, Classes, CreatedBy string
	Machines, Failed                                                         int
	CreatedAt                                                                time.Time
}

func runListRows(rs []wire.UpdateRun) []runListRow {
	out := make([]runListRow, 0, len(rs))
	for _, r := range rs {
		trigger := r.Trigger
		if r.Schedule != "" {
			trigger = "schedule " + r.Schedule
		}
		c := r.Counts
		out = append(out, runListRow{ID: r.ID, URL: runURL(r.SubscriptionID, r.ID), Status: r.Status, StatusClass: updateClass(r.Status),
			Reason: r.Reason, Trigger: trigger, Scope: r.Scope, Classes: strings.Join(r.Classifications, ", "), CreatedBy: r.CreatedBy,
			Machines: c.Pending + c.InProgress + c.Succeeded + c.CompletedWithWarnings + c.Failed + c.NotStarted,
			Failed:   c.Failed + c.NotStarted, CreatedAt: r.CreatedAt})
	}
	return out
}

func runURL(sub, id string) string {
	return "/ui/updates/runs/" + url.PathEscape(sub) + "/" + url.PathEscape(id)
}

func subOf(r *http.Request) (string, error) {
	sub := strings.TrimSpace(r.URL.Query().Get("sub"))
	if r.Method == http.MethodPost {
		sub = strings.TrimSpace(r.PostForm.Get("sub"))
	}
	if sub == "" {
		sub = defaultSubscription
	}
	if !resource.ValidName(sub) {
		return sub, formError("Subscription must be a name of 1-63 letters, digits, '.', '_' or '-'.")
	}
	return sub, nil
}

func (h *Handler) updatesOverview(u *uiRequest) {
	h.showUpdates(u, http.StatusOK, defaultDeployForm(), nil, nil, "")
}

// showUpdates renders the overview, with the forms as posted and their
// errors after a failed post.
func (h *Handler) showUpdates(u *uiRequest, status int, form deployForm, formErr, assessErr *uiError, notice string) {
	sub, err := subOf(u.r)
	d := &updatesData{Sub: sub, Form: form, FormErr: formErr, AssessErr: assessErr, Fields: formFields{form, wire.RebootSettings}}
	p := &page{Title: "Updates", Nav: "updates", Me: &u.me, Data: d, Notice: notice}
	if err != nil {
		p.Error = h.toUIError(u.r, err)
		h.render(u.w, u.r, p.Error.Status, "updates", p)
		return
	}
	sums, err := u.api.ListUpdateSummaries(u.ctx(), sub, "", nil)
	if err != nil {
		d.RowsErr = h.toUIError(u.r, err)
	}
	for _, s := range sums {
		id, _ := resource.ParseScope(s.MachineID)
		d.Rows = append(d.Rows, updateRow{Name: s.Name, ResourceGroup: s.ResourceGroup,
			URL:  "/ui/machines/" + url.PathEscape(sub) + "/" + url.PathEscape(id.Name(resource.ResourceGroups)) + "/" + url.PathEscape(s.Name) + "/updates",
			Cell: updateCellOf(s, true), AssessedAt: s.AssessedAt, State: s.State, StateClass: updateClass(s.State), Message: s.Message})
		d.Counts.Critical += s.Critical
		d.Counts.Security += s.Security
		d.Counts.Other += s.Other
		if s.State == wire.AssessmentPending {
			d.InProgress = true
		}
	}
	runs, err := u.api.ListUpdateRuns(u.ctx(), sub, "", 20)
	if err != nil {
		d.RunsErr = h.toUIError(u.r, err)
	}
	d.Runs = runListRows(runs)
	d.RunList = runList{Runs: d.Runs, Err: d.RunsErr, Now: h.cfg.Clock().UTC()}
	for _, r := range runs {
		if r.Status == wire.UpdateInProgress {
			d.InProgress = true
		}
	}
	if d.InProgress && u.r.Method == http.MethodGet {
		p.Refresh = 5
	}
	h.render(u.w, u.r, status, "updates", p)
}

// updatesAssess asks the scope's (or tag's) machines for an assessment.
func (h *Handler) updatesAssess(u *uiRequest) {
	form := deployFormFrom(u.r)
	sub, err := subOf(u.r)
	if err == nil {
		var b wire.UpdateAssessmentBatch
		b, err = u.api.RequestUpdateAssessment(u.ctx(), sub, wire.UpdateAssessmentCreate{UpdateTargets: form.targets(sub)})
		if err == nil {
			http.Redirect(u.w, u.r, "/ui/updates?"+url.Values{"sub": {sub}, "assessed": {strconv.Itoa(b.Machines)}}.Encode(), http.StatusSeeOther)
			return
		}
	}
	ue := h.toUIError(u.r, err)
	ue.Message = "No assessment was requested: " + ue.Message
	def := defaultDeployForm()
	def.Scope, def.Tag = form.Scope, form.Tag
	h.showUpdates(u, ue.Status, def, nil, ue, "")
}

// updatesDeploy deploys to a scope or tag and shows the run.
func (h *Handler) updatesDeploy(u *uiRequest) {
	form := deployFormFrom(u.r)
	sub, err := subOf(u.r)
	var run wire.UpdateRun
	if err == nil {
		var set wire.UpdateDeploymentSettings
		var ro *wire.UpdateRollout
		if set, ro, err = form.settings(); err == nil {
			run, err = u.api.CreateUpdateRun(u.ctx(), sub, wire.UpdateRunCreate{UpdateTargets: form.targets(sub), UpdateDeploymentSettings: set, Rollout: ro})
		}
	}
	if err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "Nothing was deployed: " + ue.Message
		h.showUpdates(u, ue.Status, form, ue, nil, "")
		return
	}
	http.Redirect(u.w, u.r, runURL(sub, run.ID)+"?created=1", http.StatusSeeOther)
}

// updateRunData is one run's page.
type updateRunData struct {
	Run         wire.UpdateRun
	StatusClass string
	Machines    []runMachineRow
	Busy        bool
	RefreshNote string
	ScheduleURL string
}

// runMachineRow is one machine of a run with its packages.
type runMachineRow struct {
	Name, ResourceGroup, URL, Status, StatusClass, Reason, Message, Current, Reboot, Recovery string
	Wave                                                                                      int
	Installed, Failed                                                                         int
	Packages                                                                                  []packageRow
	Scripts                                                                                   []scriptRow
	StartedAt, FinishedAt                                                                     time.Time
}

type packageRow struct {
	Name, Classification, Status, StatusClass, Before, After, Message string
}

type scriptRow struct {
	Which, Output, Message string
	ExitCode               int
}

func packageClass(s string) string {
	switch s {
	case wire.PackageInstalled:
		return "badge badge-ok"
	case wire.PackageFailed:
		return "badge badge-bad"
	case wire.PackageNotStarted:
		return "badge badge-warn"
	}
	return "badge"
}

func (h *Handler) updateRunDetail(u *uiRequest) {
	sub, id := u.r.PathValue("sub"), u.r.PathValue("id")
	run, err := u.api.GetUpdateRun(u.ctx(), sub, id)
	if err != nil {
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	ms, err := u.api.ListUpdateRunMachines(u.ctx(), sub, id)
	if err != nil {
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	d := &updateRunData{Run: run, StatusClass: updateClass(run.Status), Busy: run.Status == wire.UpdateInProgress}
	if run.Schedule != "" {
		d.ScheduleURL = "/ui/updates/schedules?" + url.Values{"sub": {sub}}.Encode()
	}
	for _, m := range ms {
		id, _ := resource.ParseScope(m.MachineID)
		row := runMachineRow{Name: m.Name, ResourceGroup: m.ResourceGroup, Status: m.Status, StatusClass: updateClass(m.Status), Reason: m.Reason,
			Message: m.Message, Current: m.Current, Reboot: m.Reboot, Recovery: m.Recovery, Wave: m.Wave + 1, StartedAt: m.StartedAt,
			FinishedAt: m.FinishedAt,
			URL:        "/ui/machines/" + url.PathEscape(sub) + "/" + url.PathEscape(id.Name(resource.ResourceGroups)) + "/" + url.PathEscape(m.Name) + "/updates"}
		for _, p := range m.Packages {
			switch p.Status {
			case wire.PackageInstalled:
				row.Installed++
			case wire.PackageFailed:
				row.Failed++
			}
			row.Packages = append(row.Packages, packageRow{Name: p.Name, Classification: p.Classification, Status: p.Status,
				StatusClass: packageClass(p.Status), Before: p.BeforeVersion, After: p.AfterVersion, Message: p.Message})
		}
		for _, sc := range []struct {
			which string
			r     *wire.UpdateScriptResult
		}{{"pre script", m.PreScript}, {"post script", m.PostScript}} {
			if sc.r != nil {
				row.Scripts = append(row.Scripts, scriptRow{Which: sc.which, ExitCode: sc.r.ExitCode, Output: sc.r.Output, Message: sc.r.Message})
			}
		}
		d.Machines = append(d.Machines, row)
	}
	p := &page{Title: "Update run " + shortID(run.ID), Nav: "updates", Me: &u.me, Data: d}
	if u.r.URL.Query().Get("created") != "" {
		p.Notice = "The deployment was sent to the first wave's machines. Their agents report each package as it is installed."
	}
	if d.Busy {
		p.Refresh = refreshAfter(h.cfg.Clock(), run.CreatedAt)
		d.RefreshNote = "The run is in progress: this page reloads itself every " + seconds(p.Refresh) + "."
	}
	h.render(u.w, u.r, http.StatusOK, "updaterun", p)
}

// machineUpdatesData is a machine's update page.
type machineUpdatesData struct {
	Machine    wire.Machine
	MachineURL string
	URL        string
	Updates    wire.MachineUpdates
	Cell       updateCell
	Filter     string
	Err        *uiError
	Form       deployForm
	FormErr    *uiError
	AssessErr  *uiError
	Runs       []runListRow
	RunsErr    *uiError
	Fields     formFields
	RunList    runList
	Busy       bool
}

func (h *Handler) machineUpdates(u *uiRequest) {
	h.showMachineUpdates(u, http.StatusOK, defaultDeployForm(), nil, nil, "")
}

func (h *Handler) showMachineUpdates(u *uiRequest, status int, form deployForm, formErr, assessErr *uiError, notice string) {
	ref := machineRef(u.r)
	m, err := u.api.GetMachine(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name)
	if err != nil {
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	filter := strings.TrimSpace(u.r.URL.Query().Get("q"))
	if len(filter) > 100 {
		filter = filter[:100]
	}
	d := &machineUpdatesData{Machine: m, MachineURL: machineURL(m), URL: machineURL(m) + "/updates", Filter: filter, Form: form,
		FormErr: formErr, AssessErr: assessErr, Fields: formFields{form, wire.RebootSettings}}
	p := &page{Title: "Updates of " + m.Name, Nav: "machines", Me: &u.me, Data: d, Notice: notice}
	if q := u.r.URL.Query(); q.Get("assessed") != "" {
		p.Notice = "An assessment was requested; the machine's answer appears here."
	}
	d.Updates, err = u.api.GetMachineUpdates(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name, filter)
	if err != nil {
		d.Err = h.toUIError(u.r, err)
	} else {
		d.Cell = updateCellOf(d.Updates.UpdateSummary, true)
		d.Busy = d.Updates.State == wire.AssessmentPending
	}
	runs, err := u.api.ListMachineUpdateRuns(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name, 10)
	if err != nil {
		d.RunsErr = h.toUIError(u.r, err)
	}
	d.Runs = runListRows(runs)
	d.RunList = runList{Runs: d.Runs, Err: d.RunsErr, Now: h.cfg.Clock().UTC()}
	for _, r := range runs {
		if len(r.Machines) == 1 {
			d.Busy = d.Busy || r.Machines[0].Status == wire.UpdatePending || r.Machines[0].Status == wire.UpdateInProgress
		}
	}
	if d.Busy && u.r.Method == http.MethodGet {
		p.Refresh = 3
	}
	h.render(u.w, u.r, status, "machineupdates", p)
}

func (h *Handler) machineAssess(u *uiRequest) {
	ref := machineRef(u.r)
	_, err := u.api.RequestUpdateAssessment(u.ctx(), ref.Subscription,
		wire.UpdateAssessmentCreate{UpdateTargets: wire.UpdateTargets{Machines: []string{ref.ID().String()}}})
	if err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "No assessment was requested: " + ue.Message
		h.showMachineUpdates(u, ue.Status, defaultDeployForm(), nil, ue, "")
		return
	}
	http.Redirect(u.w, u.r, machinePageURL(u.r)+"/updates?assessed=1", http.StatusSeeOther)
}

func (h *Handler) machineDeploy(u *uiRequest) {
	ref := machineRef(u.r)
	form := deployFormFrom(u.r)
	set, ro, err := form.settings()
	var run wire.UpdateRun
	if err == nil {
		run, err = u.api.CreateUpdateRun(u.ctx(), ref.Subscription, wire.UpdateRunCreate{
			UpdateTargets: wire.UpdateTargets{Machines: []string{ref.ID().String()}}, UpdateDeploymentSettings: set, Rollout: ro})
	}
	if err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "Nothing was deployed: " + ue.Message
		h.showMachineUpdates(u, ue.Status, form, ue, nil, "")
		return
	}
	http.Redirect(u.w, u.r, runURL(ref.Subscription, run.ID)+"?created=1", http.StatusSeeOther)
}

// schedulesData is the schedules page.
type schedulesData struct {
	Sub       string
	Schedules []scheduleRow
	Err       *uiError
	Form      deployForm
	FormErr   *uiError
	Fields    formFields
	Kinds     []string
}

type scheduleRow struct {
	Name, Kind, When, Scope, Settings, DeleteURL, RunsURL string
	NextFire, LastFired                                   time.Time
}

func (h *Handler) updateSchedules(u *uiRequest) {
	f := defaultDeployForm()
	f.Cron, f.TimeZone = "0 3 * * SUN", "UTC"
	h.showSchedules(u, http.StatusOK, f, nil, "")
}

func (h *Handler) showSchedules(u *uiRequest, status int, form deployForm, formErr *uiError, notice string) {
	sub, err := subOf(u.r)
	d := &schedulesData{Sub: sub, Form: form, FormErr: formErr, Fields: formFields{form, wire.RebootSettings},
		Kinds: []string{wire.ScheduleDeployment, wire.ScheduleAssessment}}
	p := &page{Title: "Update schedules", Nav: "updates", Me: &u.me, Data: d, Notice: notice}
	if name := u.r.URL.Query().Get("deleted"); resource.ValidName(name) {
		p.Notice = "Schedule " + strconv.Quote(name) + " was deleted; its runs stay in the history."
	}
	if err != nil {
		p.Error = h.toUIError(u.r, err)
		h.render(u.w, u.r, p.Error.Status, "updateschedules", p)
		return
	}
	scs, err := u.api.ListUpdateSchedules(u.ctx(), sub)
	if err != nil {
		d.Err = h.toUIError(u.r, err)
	}
	for _, sc := range scs {
		when := strings.TrimSpace(sc.Cron + " " + sc.TimeZone)
		if !sc.At.IsZero() {
			when = "once at " + formatTime(sc.At)
		}
		set := "assess"
		if sc.Kind == wire.ScheduleDeployment {
			set = strings.Join(sc.Classifications, ", ") + "; reboot " + sc.Reboot + "; window " + time.Duration(sc.Window).String()
		}
		d.Schedules = append(d.Schedules, scheduleRow{Name: sc.Name, Kind: sc.Kind, When: when, Scope: sc.Scope, Settings: set,
			NextFire: sc.NextFireAt, LastFired: sc.LastFiredAt,
			DeleteURL: "/ui/updates/schedules/" + url.PathEscape(sub) + "/" + url.PathEscape(sc.Name) + "/delete"})
	}
	h.render(u.w, u.r, status, "updateschedules", p)
}

func (h *Handler) createUpdateSchedule(u *uiRequest) {
	form := deployFormFrom(u.r)
	sub, err := subOf(u.r)
	if err == nil {
		body := wire.UpdateScheduleCreate{Kind: form.Kind, UpdateTargets: form.targets(sub), Cron: form.Cron, TimeZone: form.TimeZone}
		if form.At != "" {
			body.Cron, body.TimeZone = "", ""
			body.At, err = time.Parse(time.RFC3339, form.At)
			if err != nil {
				err = formError("Once at must be a time such as 2026-12-06T03:00:00+01:00.")
			}
		}
		if err == nil && form.Kind != wire.ScheduleAssessment {
			body.UpdateDeploymentSettings, body.Rollout, err = form.settings()
		}
		if err == nil {
			_, err = u.api.CreateUpdateSchedule(u.ctx(), sub, form.Name, body)
		}
	}
	if err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "The schedule was not created: " + ue.Message
		h.showSchedules(u, ue.Status, form, ue, "")
		return
	}
	http.Redirect(u.w, u.r, "/ui/updates/schedules?"+url.Values{"sub": {sub}}.Encode(), http.StatusSeeOther)
}

func (h *Handler) deleteUpdateSchedule(u *uiRequest) {
	sub, name := u.r.PathValue("sub"), u.r.PathValue("name")
	if err := u.api.DeleteUpdateSchedule(u.ctx(), sub, name); err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "The schedule was not deleted: " + ue.Message
		f := defaultDeployForm()
		h.showSchedules(u, ue.Status, f, ue, "")
		return
	}
	http.Redirect(u.w, u.r, "/ui/updates/schedules?"+url.Values{"sub": {sub}, "deleted": {name}}.Encode(), http.StatusSeeOther)
}
