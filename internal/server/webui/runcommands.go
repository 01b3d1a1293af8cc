package webui

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// runsPerPage is how many runs the machine page lists at a time.
const runsPerPage = 10

// runsData is the run command section of the machine page: the form and
// the machine's runs, newest first.
type runsData struct {
	Runs []runRow
	// RunsErr says why the runs could not be read (the API's answer).
	RunsErr *uiError
	// RunError is a run that was not created, shown next to the form.
	RunError      *uiError
	RunForm       runForm
	RunURL        string
	OlderRunsURL  string // the next page of runs, "" on the last
	NewestRunsURL string // set when not on the first page
}

// runRow is one run in the list.
type runRow struct {
	Name, URL, Kind, RunAs, State, ExitCode, CreatedBy string
	CreatedAt, FinishedAt                              time.Time
}

// runForm is the run command form as typed.
type runForm struct {
	Script, Command, RunAs, Timeout, Parameters string
}

// runBusy is true until the agent reports a run finished.
func runBusy(state string) bool { return state == wire.RunPending || state == wire.RunRunning }

func runKind(rc wire.RunCommand) string {
	if rc.Script != "" {
		return "script"
	}
	return "command"
}

func runAs(rc wire.RunCommand) string {
	if rc.RunAsUser == "" {
		return "root"
	}
	return rc.RunAsUser
}

func exitCode(rc wire.RunCommand) string {
	if rc.ExitCode == nil {
		return "—"
	}
	return strconv.Itoa(*rc.ExitCode)
}

// runStarted is when a run in progress last moved: created, or started.
func runStarted(rc wire.RunCommand) time.Time {
	if rc.StartedAt.After(rc.CreatedAt) {
		return rc.StartedAt
	}
	return rc.CreatedAt
}

// loadRuns fills the run command section and returns when the newest run
// still in progress was created or started (zero if none is).
func (h *Handler) loadRuns(u *uiRequest, m wire.Machine, d *machineData, v machineView) time.Time {
	base := machineURL(m)
	d.RunURL = base + "/runCommands"
	d.RunError = v.runErr
	if v.runForm != nil {
		d.RunForm = *v.runForm
	}
	q := url.Values{"$top": {strconv.Itoa(runsPerPage)}}
	if v.runsSkip != "" {
		q.Set("$skipToken", v.runsSkip)
		d.NewestRunsURL = base + "#runs"
	}
	var list wire.List[wire.RunCommand]
	if err := u.api.Do(u.ctx(), http.MethodGet, withQuery(machinePath(u.r)+"/"+resource.RunCommands, q), nil, &list); err != nil {
		d.RunsErr = h.toUIError(u.r, err)
		return time.Time{}
	}
	var since time.Time
	for _, rc := range list.Value {
		d.Runs = append(d.Runs, runRow{Name: rc.Name, URL: base + "/runCommands/" + url.PathEscape(rc.Name), Kind: runKind(rc),
			RunAs: runAs(rc), State: rc.State, ExitCode: exitCode(rc), CreatedBy: rc.CreatedBy, CreatedAt: rc.CreatedAt, FinishedAt: rc.FinishedAt})
		if t := runStarted(rc); runBusy(rc.State) && t.After(since) {
			since = t
		}
	}
	if next := skipTokenOf(list.NextLink); next != "" {
		d.OlderRunsURL = base + "?" + url.Values{"runs": {next}}.Encode() + "#runs"
	}
	return since
}

// createRunCommand starts a run through the API's PUT under a generated
// name, then shows the run's page, which follows it to the end.
func (h *Handler) createRunCommand(u *uiRequest) {
	pf := u.r.PostForm
	form := runForm{Script: pf.Get("script"), Command: strings.TrimSpace(pf.Get("command")), RunAs: strings.TrimSpace(pf.Get("runAs")),
		Timeout: strings.TrimSpace(pf.Get("timeout")), Parameters: pf.Get("parameters")}
	name := newRunName(h.cfg.Clock())
	body, err := form.request()
	if err == nil {
		err = u.api.Do(u.ctx(), http.MethodPut, client.ResourcePath(machineRef(u.r).ID().RunCommand(name)), json.RawMessage(body), nil)
	}
	if err != nil {
		ue := h.toUIError(u.r, err)
		ue.Message = "The command was not run: " + ue.Message
		h.showMachine(u, machineView{status: ue.Status, runErr: ue, runForm: &form})
		return
	}
	http.Redirect(u.w, u.r, machinePageURL(u.r)+"/runCommands/"+name+"?created=1", http.StatusSeeOther)
}

// newRunName names a run like `corral machine run-command` does.
func newRunName(now time.Time) string {
	var r [2]byte
	_, _ = rand.Read(r[:])
	return "run-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(r[:])
}

// request checks the form and builds the API request. Browsers send
// textarea lines ending in CRLF, which a shell would take as part of each
// command, so lines are given back their Unix ends. Everything else (script
// or command, user name, timeout range, parameter names) is the API's to
// check.
func (f runForm) request() ([]byte, error) {
	req := wire.RunCommandCreate{Command: f.Command, RunAsUser: f.RunAs}
	if script := unixLines(f.Script); strings.TrimSpace(script) != "" {
		req.Script = script
	}
	if f.Timeout != "" {
		d, err := time.ParseDuration(f.Timeout)
		if err != nil {
			return nil, formError("Timeout must be a duration such as 30s, 10m or 1h30m.")
		}
		req.Timeout = wire.Duration(d)
	}
	params, err := parseParameters(f.Parameters)
	if err != nil {
		return nil, err
	}
	req.Parameters = params
	return json.Marshal(req)
}

func unixLines(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// parseParameters reads KEY=VALUE lines; blank lines are skipped. Values
// are kept as typed; messages name lines and keys, never values.
func parseParameters(text string) (map[string]string, error) {
	var out map[string]string
	for i, line := range strings.Split(unixLines(text), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, formError("Parameters: line " + strconv.Itoa(i+1) + " is not KEY=VALUE.")
		}
		if _, dup := out[k]; dup {
			return nil, formError("Parameters: " + k + " is given twice.")
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out, nil
}

// runData is the page of one run.
type runData struct {
	Machine    wire.Machine
	MachineURL string
	URL        string // this page
	Run        wire.RunCommand
	Kind       string
	RunAs      string
	ExitCode   string
	Timeout    string
	// ParamNames lists the parameters by name only: their values often
	// are secrets, and the page is easily seen over a shoulder.
	ParamNames     []string
	StdoutCapped   bool
	StderrCapped   bool
	OutputCapLabel string
	Busy           bool
	RefreshNote    string
}

// outputCapped tells whether the agent cut a run's output: it then ends
// with its note "[output truncated: N more bytes]" and fits in
// MaxHandlerOutputBytes (an older agent's output was cut at the cap).
func outputCapped(s string) bool {
	if len(s) >= wire.MaxHandlerOutputBytes {
		return true
	}
	i := strings.LastIndex(s, "\n[output truncated: ")
	return i >= 0 && strings.HasSuffix(s, " more bytes]") && !strings.Contains(s[i+1:], "\n")
}

// runCommandDetail shows one run: its state, exit code, output and message.
// Output is rendered as text by html/template, so whatever the machine
// printed is shown, never interpreted.
func (h *Handler) runCommandDetail(u *uiRequest) {
	ref := machineRef(u.r)
	m, err := u.api.GetMachine(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name)
	if err != nil {
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	rc, err := u.api.GetRunCommand(u.ctx(), ref.Subscription, ref.ResourceGroup, ref.Name, u.r.PathValue("run"))
	if err != nil {
		h.renderError(u.w, u.r, &u.me, err)
		return
	}
	d := &runData{Machine: m, MachineURL: machineURL(m), URL: machineURL(m) + "/runCommands/" + url.PathEscape(rc.Name), Run: rc, Kind: runKind(rc), RunAs: runAs(rc), ExitCode: exitCode(rc),
		Timeout: time.Duration(rc.Timeout).String(), ParamNames: slices.Sorted(maps.Keys(rc.Parameters)), StdoutCapped: outputCapped(rc.Stdout),
		StderrCapped: outputCapped(rc.Stderr), OutputCapLabel: formatBytes(wire.MaxHandlerOutputBytes),
		Busy: runBusy(rc.State)}
	p := &page{Title: rc.Name + " on " + m.Name, Nav: "machines", Me: &u.me, Data: d}
	if u.r.URL.Query().Get("created") != "" {
		p.Notice = "The run was requested. The agent picks it up at its next sync and reports its output here."
	}
	switch {
	case !d.Busy:
	case m.Status != wire.StatusConnected:
		if rc.State == wire.RunPending {
			d.RefreshNote = "The machine is " + m.Status + ": the run starts if its agent connects again within its timeout (" +
				d.Timeout + " from when it was asked for); after that it fails without running."
		} else {
			d.RefreshNote = "The machine is " + m.Status + ": the run's result comes back when its agent connects again; without a result within its timeout and 2 more minutes, the run fails."
		}
	default:
		p.Refresh = refreshAfter(h.cfg.Clock(), runStarted(rc))
		d.RefreshNote = "This page reloads itself every " + seconds(p.Refresh) + " until the run ends."
	}
	h.render(u.w, u.r, http.StatusOK, "run", p)
}
