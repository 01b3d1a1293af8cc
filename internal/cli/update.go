package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/schedule"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) updateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "update", Aliases: []string{"updates"}, Short: "Assess and deploy operating-system updates (Corral/PatchManagement)",
		Long: `Update management: assess machines' pending updates through their own package
manager (apt, dnf or zypper), deploy them inside a maintenance window with a
reboot setting, in waves, now or on a schedule, and read the per-machine and
per-package results.

The first assessment or deployment that targets a machine switches on the
first-party extension Corral/PatchManagement there; the machine's local
lock-down can refuse it, and then the machine reports that reason instead of
results.`}
	run := &cobra.Command{Use: "run", Aliases: []string{"runs"}, Short: "Read update runs (deployments)"}
	run.AddCommand(a.updateRunShowCommand(), a.updateRunListCommand())
	sched := &cobra.Command{Use: "schedule", Aliases: []string{"schedules"}, Short: "Schedule deployments and assessments"}
	sched.AddCommand(a.updateScheduleCreateCommand(), a.updateScheduleListCommand(), a.updateScheduleShowCommand(), a.updateScheduleDeleteCommand())
	cmd.AddCommand(a.updateAssessCommand(), a.updateListCommand(), a.updateDeployCommand(), run, sched)
	return cmd
}

// targetFlags are --machine / --scope / --tag.
type targetFlags struct {
	sub, rg, scope, tag string
	machines            []string
}

func (t *targetFlags) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.sub, "subscription", defaultSubscription, "subscription")
	f.StringArrayVarP(&t.machines, "machine", "m", nil, "machine name (repeatable)")
	f.StringVarP(&t.rg, "resource-group", "g", "", "resource group of the --machine machines (default: found by name)")
	f.StringVar(&t.scope, "scope", "", "every machine at or below a scope: /subscriptions/S[/resourceGroups/RG] (or just RG)")
	f.StringVar(&t.tag, "tag", "", "only machines with this tag KEY=VALUE (alone: the whole subscription)")
}

// resolve turns the flags into the API's targets, finding each machine's
// resource group by its name when --resource-group is not given.
func (t *targetFlags) resolve(ctx context.Context, a *app) (wire.UpdateTargets, error) {
	var out wire.UpdateTargets
	if err := requireFlag("subscription", t.sub); err != nil {
		return out, err
	}
	switch {
	case len(t.machines) > 0 && t.scope != "":
		return out, errors.New("give --machine or --scope, not both")
	case len(t.machines) > 0 && t.tag != "":
		return out, errors.New("--tag selects machines of a scope; it cannot narrow --machine")
	case len(t.machines) == 0 && t.scope == "" && t.tag == "":
		return out, errors.New("give --machine M, --scope S or --tag KEY=VALUE")
	}
	if t.tag != "" {
		if k, v, ok := strings.Cut(t.tag, "="); !ok || strings.TrimSpace(k) == "" || v == "" {
			return out, fmt.Errorf("invalid --tag %q: use KEY=VALUE", t.tag)
		}
		out.Tag = t.tag
	}
	if t.scope != "" {
		out.Scope = t.scope
		if !strings.HasPrefix(t.scope, "/") {
			if !resource.ValidName(t.scope) {
				return out, fmt.Errorf("invalid --scope %q: give /subscriptions/S[/resourceGroups/RG] or a resource group name", t.scope)
			}
			out.Scope = resource.ResourceGroup(t.sub, t.scope).String()
		}
	}
	for _, name := range t.machines {
		m := machineRef{sub: t.sub, rg: t.rg, machine: name}
		if _, err := a.machineClient(ctx, &m); err != nil {
			return out, err
		}
		out.Machines = append(out.Machines, resource.Machine(t.sub, m.rg, m.machine).String())
	}
	return out, nil
}

func (a *app) updateAssessCommand() *cobra.Command {
	var t targetFlags
	var wait bool
	var timeout time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "assess (--machine M | --scope S | --tag K=V) [--wait]",
		Short: "Assess machines' pending updates now",
		Long: `Ask the target machines for an assessment of their pending updates now: the
package manager refreshes its lists and says what it would upgrade, each update
classified Critical, Security or Other. Nothing is installed.

Without --wait the command prints the request's id and returns. With --wait it
waits for every machine's answer and prints the pending counts; it fails when
any machine's assessment failed (the reason is printed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			targets, err := t.resolve(ctx, a)
			if err != nil {
				return err
			}
			b, err := c.RequestUpdateAssessment(ctx, t.sub, wire.UpdateAssessmentCreate{UpdateTargets: targets})
			if err != nil {
				return err
			}
			if !wait {
				if output == outJSON {
					return writeJSON(cmd.OutOrStdout(), b)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Assessment %s requested on %d machine(s).\n", b.ID, b.Machines)
				return nil
			}
			err = poll(ctx, timeout, func() (bool, error) {
				var err error
				b, err = c.GetUpdateAssessment(ctx, t.sub, b.ID)
				return err == nil && b.Pending == 0, err
			})
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("assessment %s: %d of %d machines have not answered after %s (are their agents connected?)", b.ID, b.Pending, b.Machines, timeout)
			}
			if err != nil {
				return err
			}
			if output == outJSON {
				if err := writeJSON(cmd.OutOrStdout(), b); err != nil {
					return err
				}
			} else if err := a.printAssessed(ctx, cmd.OutOrStdout(), c, t.sub, targets, b); err != nil {
				return err
			}
			if b.Failed > 0 {
				var why []string
				for _, f := range b.Failures {
					why = append(why, fmt.Sprintf("%s: %s", lastSegment(f.MachineID), dash(f.Message)))
				}
				return fmt.Errorf("the assessment failed on %d of %d machines: %s", b.Failed, b.Machines, strings.Join(why, "; "))
			}
			return nil
		},
	}
	t.flags(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for every machine's answer")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "how long --wait waits")
	addOutputFlag(cmd, &output)
	return cmd
}

// printAssessed prints the pending counts of the assessed machines.
func (a *app) printAssessed(ctx context.Context, w io.Writer, c *client.Client, sub string, t wire.UpdateTargets, b wire.UpdateAssessmentBatch) error {
	fmt.Fprintf(w, "Assessment %s: %d succeeded, %d failed.\n", b.ID, b.Succeeded, b.Failed)
	rg := ""
	if id, err := resource.ParseScope(b.Scope); err == nil {
		rg = id.Name(resource.ResourceGroups)
	}
	sums, err := c.ListUpdateSummaries(ctx, sub, rg, nil)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, m := range t.Machines {
		want[strings.ToLower(m)] = true
	}
	var rows []wire.UpdateSummary
	for _, s := range sums {
		if len(want) == 0 || want[strings.ToLower(s.MachineID)] {
			rows = append(rows, s)
		}
	}
	return renderUpdateSummaries(w, outTable, rows)
}

func lastSegment(id string) string {
	if i := strings.LastIndex(id, "/"); i >= 0 {
		return id[i+1:]
	}
	return id
}

func renderUpdateSummaries(w io.Writer, output string, ss []wire.UpdateSummary) error {
	return render(w, output, ss, []string{"NAME", "RESOURCE GROUP", "STATE", "CRITICAL", "SECURITY", "OTHER", "REBOOT PENDING", "LAST ASSESSED", "MESSAGE"},
		func(s wire.UpdateSummary) []string {
			return []string{s.Name, s.ResourceGroup, s.State, strconv.Itoa(s.Critical), strconv.Itoa(s.Security), strconv.Itoa(s.Other),
				strconv.FormatBool(s.RebootPending), formatTime(s.AssessedAt), s.Message}
		})
}

// updateCounts is the inventory's update column: "C/S/O" pending, or why
// there are none to show.
func updateCounts(s wire.UpdateSummary, ok bool) string {
	switch {
	case !ok || s.State == wire.AssessmentNotAssessed:
		return "-"
	case s.State == wire.AssessmentPending && s.AssessedAt.IsZero():
		return "assessing"
	case s.State == wire.AssessmentFailed && s.AssessedAt.IsZero():
		return "failed"
	}
	out := fmt.Sprintf("%d/%d/%d", s.Critical, s.Security, s.Other)
	if s.State == wire.AssessmentFailed {
		out += " (last failed)"
	}
	return out
}

func (a *app) updateListCommand() *cobra.Command {
	var m machineRef
	var name, output string
	cmd := &cobra.Command{
		Use:   "list --machine M [--name SUBSTR] [-o json]",
		Short: "List a machine's pending updates as last assessed",
		Long: `List a machine's pending updates as its last assessment found them: name,
installed and candidate version, source (repository or suite) and
classification. -o json prints one JSON object per update.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openMachine(cmd, &m, output)
			if err != nil {
				return err
			}
			mu, err := c.GetMachineUpdates(ctxOf(cmd), m.sub, m.rg, m.machine, name)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), mu.Updates)
			}
			w := cmd.OutOrStdout()
			switch mu.State {
			case wire.AssessmentNotAssessed:
				fmt.Fprintf(w, "%s has not been assessed yet: run \"corral update assess --machine %s\".\n", m.machine, m.machine)
				return nil
			case wire.AssessmentFailed:
				fmt.Fprintf(w, "The last assessment of %s failed: %s\n", m.machine, dash(mu.Message))
			}
			if !mu.AssessedAt.IsZero() {
				fmt.Fprintf(w, "%s: %d critical, %d security, %d other pending (assessed %s).\n", m.machine, mu.Critical, mu.Security, mu.Other,
					formatTime(mu.AssessedAt))
			}
			return render(w, outTable, mu.Updates, []string{"NAME", "INSTALLED", "CANDIDATE", "CLASSIFICATION", "SOURCE", "REBOOT"},
				func(u wire.PendingUpdate) []string {
					reboot := ""
					if u.RebootRequired {
						reboot = "required"
					}
					return []string{u.Name, u.InstalledVersion, u.CandidateVersion, u.Classification, u.Source, reboot}
				})
		},
	}
	m.flags(cmd)
	cmd.Flags().StringVar(&name, "name", "", "only updates whose name contains this")
	addOutputFlag(cmd, &output)
	return cmd
}

// deployFlags are a deployment's settings.
type deployFlags struct {
	classifications []string
	reboot, window  string
	include         []string
	exclude         []string
	pre, post       string
	waves           []string
	maxFailed       int
}

func (d *deployFlags) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&d.classifications, "classification", nil, "classifications to install: Critical, Security, Other (comma-separated)")
	f.StringVar(&d.reboot, "reboot", wire.RebootIfRequired, "IfRequired, Never or Always")
	f.StringVar(&d.window, "window", "235m", "maintenance window, 60m to 235m: no install starts that would not end in it")
	f.StringArrayVar(&d.include, "include", nil, "only packages whose name matches this glob (repeatable)")
	f.StringArrayVar(&d.exclude, "exclude", nil, "never packages whose name matches this glob (repeatable)")
	f.StringVar(&d.pre, "pre-script", "", "script run before the installs: @FILE, @- or inline (a run command: Corral/RunCommand must be allowed)")
	f.StringVar(&d.post, "post-script", "", "script run after the installs: @FILE, @- or inline")
	f.StringArrayVar(&d.waves, "wave", nil, "roll out in waves: a scope (/subscriptions/S/resourceGroups/RG) or a percentage (10%), in order (repeatable)")
	f.IntVar(&d.maxFailed, "max-failed-percent", 0, "with --wave: halt when more than this share of a wave's machines failed")
}

// settings validates the flags and returns the API's settings and rollout.
func (d *deployFlags) settings(cmd *cobra.Command, sub string) (wire.UpdateDeploymentSettings, *wire.UpdateRollout, error) {
	var s wire.UpdateDeploymentSettings
	if len(d.classifications) == 0 {
		return s, nil, errors.New("--classification is required: Critical, Security and/or Other")
	}
	for _, c := range d.classifications {
		cc, ok := canonicalOf(c, wire.UpdateClassifications)
		if !ok {
			return s, nil, fmt.Errorf("unknown classification %q in --classification: want Critical, Security or Other", c)
		}
		s.Classifications = append(s.Classifications, cc)
	}
	rb, ok := canonicalOf(d.reboot, wire.RebootSettings)
	if !ok {
		return s, nil, fmt.Errorf("invalid --reboot %q: want IfRequired, Never or Always", d.reboot)
	}
	s.Reboot = rb
	w, err := schedule.ParseWindow(d.window)
	if err != nil {
		return s, nil, fmt.Errorf("--window: %w", err)
	}
	s.Window = wire.Duration(w)
	s.Include, s.Exclude = d.include, d.exclude
	if d.pre != "" {
		if s.PreScript, err = readScript(cmd, d.pre); err != nil {
			return s, nil, fmt.Errorf("--pre-script: %w", err)
		}
	}
	if d.post != "" {
		if s.PostScript, err = readScript(cmd, d.post); err != nil {
			return s, nil, fmt.Errorf("--post-script: %w", err)
		}
	}
	if len(d.waves) == 0 {
		if cmd.Flags().Changed("max-failed-percent") {
			return s, nil, errors.New("--max-failed-percent needs --wave")
		}
		return s, nil, nil
	}
	ro := &wire.UpdateRollout{MaxFailedPercent: d.maxFailed}
	for _, w := range d.waves {
		if p, ok := strings.CutSuffix(w, "%"); ok {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 100 {
				return s, nil, fmt.Errorf("invalid --wave %q: a percentage is 1%% to 100%%", w)
			}
			ro.Waves = append(ro.Waves, wire.UpdateWave{Percent: n})
			continue
		}
		scope := w
		if !strings.HasPrefix(w, "/") {
			if !resource.ValidName(w) {
				return s, nil, fmt.Errorf("invalid --wave %q: give a scope, a resource group name or a percentage", w)
			}
			scope = resource.ResourceGroup(sub, w).String()
		}
		ro.Waves = append(ro.Waves, wire.UpdateWave{Scope: scope})
	}
	return s, ro, nil
}

func canonicalOf(v string, allowed []string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSpace(v), a) {
			return a, true
		}
	}
	return v, false
}

func (a *app) updateDeployCommand() *cobra.Command {
	var t targetFlags
	var d deployFlags
	var wait bool
	var output string
	cmd := &cobra.Command{
		Use: "deploy (--machine M | --scope S | --tag K=V) --classification Security,Critical,Other --reboot IfRequired|Never|Always " +
			"[--window 120m] [--include GLOB]... [--exclude GLOB]... [--wait]",
		Short: "Deploy updates now; prints the run's id",
		Long: `Deploy updates to the target machines now. Each machine installs the pending
updates of the given classifications (and --include / --exclude name globs),
most important first, one at a time, while the maintenance window lasts: once
the time left is too short no new install starts and the machine's result is
Failed with reason MaintenanceWindowExceeded. A reboot runs the machine's own
update.rebootcommand: IfRequired when an installed update needs it, Always, or
Never (a needed reboot is then a warning).

--wave splits the run into waves (scopes or percentages) run one after the
other; the run halts when more than --max-failed-percent of a wave failed.

The command prints the run's id. With --wait it waits until the run ends,
prints its result and fails unless it Succeeded or CompletedWithWarnings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			set, ro, err := d.settings(cmd, t.sub)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			targets, err := t.resolve(ctx, a)
			if err != nil {
				return err
			}
			run, err := c.CreateUpdateRun(ctx, t.sub, wire.UpdateRunCreate{UpdateTargets: targets, UpdateDeploymentSettings: set, Rollout: ro})
			if err != nil {
				return err
			}
			if !wait {
				if output == outJSON {
					return writeJSON(cmd.OutOrStdout(), run)
				}
				fmt.Fprintln(cmd.OutOrStdout(), run.ID)
				return nil
			}
			if output != outJSON {
				fmt.Fprintln(cmd.OutOrStdout(), run.ID)
			}
			limit := time.Until(run.Deadline) + 35*time.Minute
			err = poll(ctx, limit, func() (bool, error) {
				var err error
				run, err = c.GetUpdateRun(ctx, t.sub, run.ID)
				return err == nil && run.Status != wire.UpdateInProgress, err
			})
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("run %s is still InProgress; check with \"corral update run show %s\"", run.ID, run.ID)
			}
			if err != nil {
				return err
			}
			if err := a.showRun(ctx, cmd.OutOrStdout(), c, t.sub, run, output); err != nil {
				return err
			}
			return runResult(run)
		},
	}
	t.flags(cmd)
	d.flags(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the run ends and print its result")
	addOutputFlag(cmd, &output)
	return cmd
}

// runResult is the process outcome of a finished run.
func runResult(r wire.UpdateRun) error {
	switch r.Status {
	case wire.UpdateSucceeded, wire.UpdateCompletedWithWarnings:
		return nil
	}
	msg := fmt.Sprintf("run %s %s", r.ID, r.Status)
	if r.Reason != "" {
		msg += " (" + r.Reason + ")"
	}
	return errors.New(msg + ": " + dash(r.Message))
}

// showRun prints a run with its machines and their packages.
func (a *app) showRun(ctx context.Context, w io.Writer, c *client.Client, sub string, run wire.UpdateRun, output string) error {
	ms, err := c.ListUpdateRunMachines(ctx, sub, run.ID)
	if err != nil {
		return err
	}
	run.Machines = ms
	if output == outJSON {
		return writeJSON(w, run)
	}
	fmt.Fprintf(w, "Run %s: %s", run.ID, run.Status)
	if run.Reason != "" {
		fmt.Fprintf(w, " (%s)", run.Reason)
	}
	fmt.Fprintf(w, "\n  %s\n  scope %s, %s, reboot %s, window %s (until %s)\n", dash(run.Message), run.Scope,
		strings.Join(run.Classifications, "+"), run.Reboot, time.Duration(run.Window), formatTime(run.Deadline))
	if len(run.Waves) > 1 {
		for _, wv := range run.Waves {
			fmt.Fprintf(w, "  wave %d: %d machines, %s (%d failed)\n", wv.Index+1, wv.Machines, wv.Status, wv.Failed)
		}
	}
	fmt.Fprintln(w)
	if err := render(w, outTable, ms, []string{"MACHINE", "RESOURCE GROUP", "WAVE", "STATUS", "REASON", "INSTALLED", "FAILED", "REBOOT", "MESSAGE"},
		func(m wire.UpdateRunMachine) []string {
			ins, fail := 0, 0
			for _, p := range m.Packages {
				switch p.Status {
				case wire.PackageInstalled:
					ins++
				case wire.PackageFailed:
					fail++
				}
			}
			return []string{m.Name, m.ResourceGroup, strconv.Itoa(m.Wave + 1), m.Status, m.Reason, strconv.Itoa(ins), strconv.Itoa(fail), m.Reboot, m.Message}
		}); err != nil {
		return err
	}
	for _, m := range ms {
		var touched []wire.UpdatePackageResult
		for _, p := range m.Packages {
			if p.Status != wire.PackageNotSelected {
				touched = append(touched, p)
			}
		}
		if len(touched) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", m.Name)
		if err := render(w, outTable, touched, []string{"PACKAGE", "CLASSIFICATION", "STATUS", "BEFORE", "AFTER", "MESSAGE"},
			func(p wire.UpdatePackageResult) []string {
				return []string{p.Name, p.Classification, p.Status, p.BeforeVersion, p.AfterVersion, p.Message}
			}); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) updateRunShowCommand() *cobra.Command {
	var sub, output string
	cmd := &cobra.Command{
		Use:   "show ID [-o json]",
		Short: "Show an update run: its status and reason, per machine the packages with their results",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			run, err := c.GetUpdateRun(ctxOf(cmd), sub, args[0])
			if err != nil {
				return err
			}
			return a.showRun(ctxOf(cmd), cmd.OutOrStdout(), c, sub, run, output)
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	addOutputFlag(cmd, &output)
	return cmd
}

func renderUpdateRuns(w io.Writer, output string, rs []wire.UpdateRun) error {
	return render(w, output, rs, []string{"ID", "STATUS", "REASON", "TRIGGER", "SCOPE", "MACHINES", "FAILED", "CREATED", "BY"},
		func(r wire.UpdateRun) []string {
			trigger := r.Trigger
			if r.Schedule != "" {
				trigger += " " + r.Schedule
			}
			return []string{r.ID, r.Status, r.Reason, trigger, r.Scope, strconv.Itoa(machinesOfRun(r)), strconv.Itoa(r.Counts.Failed + r.Counts.NotStarted),
				formatTime(r.CreatedAt), r.CreatedBy}
		})
}

func machinesOfRun(r wire.UpdateRun) int {
	c := r.Counts
	return c.Pending + c.InProgress + c.Succeeded + c.CompletedWithWarnings + c.Failed + c.NotStarted
}

func (a *app) updateRunListCommand() *cobra.Command {
	var sub, sched, output string
	var top int
	cmd := &cobra.Command{
		Use: "list [--schedule NAME] [--top N]", Short: "List update runs, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			rs, err := c.ListUpdateRuns(ctxOf(cmd), sub, sched, top)
			if err != nil {
				return err
			}
			return renderUpdateRuns(cmd.OutOrStdout(), output, rs)
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringVar(&sched, "schedule", "", "only this schedule's runs")
	cmd.Flags().IntVar(&top, "top", 50, "at most this many runs (0: all)")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) updateScheduleCreateCommand() *cobra.Command {
	var t targetFlags
	var d deployFlags
	var name, cronExpr, tz, at, kind, output string
	cmd := &cobra.Command{
		Use: `create --name N (--scope S | --machine M | --tag K=V) (--cron "0 3 * * SUN" [--time-zone TZ] | --at TIME) ` +
			"[--kind Deployment|Assessment] [deployment flags]",
		Short: "Schedule a deployment (or an assessment): recurring with a cron expression in a time zone, or once",
		Long: `Create a schedule. --cron takes five fields (minute hour day-of-month month
day-of-week, e.g. "0 3 * * SUN") read in --time-zone (an IANA name, default UTC);
--at fires once at an RFC 3339 time. A Deployment schedule takes the deployment
flags of "corral update deploy"; an Assessment schedule assesses its machines.

Each fire runs once across server replicas; a server that was down when a fire
was due catches up while the fire's maintenance window is still open.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := requireFlag("name", name); err != nil {
				return err
			}
			if (cronExpr == "") == (at == "") {
				return errors.New("give --cron or --at")
			}
			body := wire.UpdateScheduleCreate{Kind: kind, Cron: cronExpr, TimeZone: tz}
			if at != "" {
				ts, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return fmt.Errorf("invalid --at %q: want an RFC 3339 time such as 2026-12-06T03:00:00+01:00", at)
				}
				body.At = ts
			}
			if k, ok := canonicalOf(kind, []string{wire.ScheduleDeployment, wire.ScheduleAssessment}); ok {
				body.Kind = k
			} else {
				return fmt.Errorf("invalid --kind %q: want Deployment or Assessment", kind)
			}
			if body.Kind == wire.ScheduleDeployment {
				set, ro, err := d.settings(cmd, t.sub)
				if err != nil {
					return err
				}
				body.UpdateDeploymentSettings, body.Rollout = set, ro
			} else if cmd.Flags().Changed("window") {
				w, err := schedule.ParseWindow(d.window)
				if err != nil {
					return fmt.Errorf("--window: %w", err)
				}
				body.Window = wire.Duration(w)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			if body.UpdateTargets, err = t.resolve(ctx, a); err != nil {
				return err
			}
			sc, err := c.CreateUpdateSchedule(ctx, t.sub, name, body)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), sc)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created schedule %s; next fire %s.\n", sc.Name, formatTime(sc.NextFireAt))
			return nil
		},
	}
	t.flags(cmd)
	d.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "schedule name (required)")
	f.StringVar(&cronExpr, "cron", "", `cron expression, five fields, e.g. "0 3 * * SUN"`)
	f.StringVar(&tz, "time-zone", "", "IANA time zone of --cron, e.g. Europe/Paris (default UTC)")
	f.StringVar(&at, "at", "", "fire once at this RFC 3339 time instead")
	f.StringVar(&kind, "kind", wire.ScheduleDeployment, "Deployment or Assessment")
	addOutputFlag(cmd, &output)
	return cmd
}

func renderUpdateSchedules(w io.Writer, output string, ss []wire.UpdateSchedule) error {
	return render(w, output, ss, []string{"NAME", "KIND", "WHEN", "SCOPE", "SETTINGS", "NEXT FIRE", "LAST FIRED", "LAST RUN"},
		func(s wire.UpdateSchedule) []string {
			when := strings.TrimSpace(s.Cron + " " + s.TimeZone)
			if !s.At.IsZero() {
				when = "once " + formatTime(s.At)
			}
			set := ""
			if s.Kind == wire.ScheduleDeployment {
				set = strings.Join(s.Classifications, "+") + ", reboot " + s.Reboot + ", " + time.Duration(s.Window).String()
			}
			return []string{s.Name, s.Kind, when, s.Scope, set, formatTime(s.NextFireAt), formatTime(s.LastFiredAt), s.LastRunID}
		})
}

func (a *app) updateScheduleListCommand() *cobra.Command {
	var sub string
	cmd := listCommand(a, "List update schedules", func(c *client.Client, ctx context.Context) ([]wire.UpdateSchedule, error) {
		return c.ListUpdateSchedules(ctx, sub)
	}, renderUpdateSchedules)
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	return cmd
}

func (a *app) updateScheduleShowCommand() *cobra.Command {
	var sub string
	cmd := showCommand(a, "show NAME", "Show an update schedule", func(c *client.Client, ctx context.Context, name string) (wire.UpdateSchedule, error) {
		return c.GetUpdateSchedule(ctx, sub, name)
	}, renderUpdateSchedules)
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	return cmd
}

func (a *app) updateScheduleDeleteCommand() *cobra.Command {
	var sub string
	cmd := deleteCommand(a, "delete NAME", "Delete an update schedule (its runs stay in the history)",
		func(c *client.Client, ctx context.Context, name string) error {
			return c.DeleteUpdateSchedule(ctx, sub, name)
		},
		deleted("update schedule"))
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	return cmd
}

// renderMachinesWithUpdates is the machine table with the UPDATES column:
// pending Critical/Security/Other counts of each machine's last
// assessment ("-" never assessed). A caller who may not read update
// status gets the column empty, not an error.
func renderMachinesWithUpdates(ctx context.Context, w io.Writer, c *client.Client, sub string, ms []wire.Machine) error {
	sums := map[string]wire.UpdateSummary{}
	for i := 0; i < len(ms); i += 1000 {
		var ids []string
		for _, m := range ms[i:min(i+1000, len(ms))] {
			ids = append(ids, m.MachineID)
		}
		got, err := c.ListUpdateSummaries(ctx, sub, "", ids)
		if err != nil {
			break
		}
		for _, s := range got {
			sums[strings.ToLower(s.MachineID)] = s
		}
	}
	header := append(append([]string{}, machineHeader...), "UPDATES C/S/O")
	return render(w, outTable, ms, header, func(m wire.Machine) []string {
		s, ok := sums[strings.ToLower(m.ID)]
		return append(machineRow(m), updateCounts(s, ok))
	})
}
