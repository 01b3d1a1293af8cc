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
	"github.com/corralhq/corral/internal/wire"
)

// bulkTarget is the scope and tag of a bulk command.
type bulkTarget struct{ sub, rg, scope, tag string }

func (b *bulkTarget) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&b.sub, "subscription", defaultSubscription, "subscription")
	f.StringVarP(&b.rg, "resource-group", "g", "", "only the machines of this resource group")
	f.StringVar(&b.scope, "scope", "", "the scope as a resource id, /subscriptions/S[/resourceGroups/RG] (instead of --subscription and --resource-group)")
	f.StringVar(&b.tag, "tag", "", "only the machines with this tag, KEY=VALUE")
}

// resolve returns the subscription and the body's scope.
func (b *bulkTarget) resolve() (sub, scope string, err error) {
	if b.scope != "" {
		if b.rg != "" {
			return "", "", errors.New("give --scope or --resource-group, not both")
		}
		id, err := resource.ParseScope(b.scope)
		if err != nil || id.IsRoot() || len(id.Segments()) > 2 {
			return "", "", fmt.Errorf("--scope %q is not /subscriptions/S or /subscriptions/S/resourceGroups/RG", b.scope)
		}
		return id.Name(resource.Subscriptions), id.String(), nil
	}
	if err := requireFlag("subscription", b.sub); err != nil {
		return "", "", err
	}
	if b.rg != "" {
		return b.sub, resource.ResourceGroup(b.sub, b.rg).String(), nil
	}
	return b.sub, resource.Subscription(b.sub).String(), nil
}

// bulkRequestTimeout bounds the bulk request itself (the server's write
// deadline is 10 minutes).
const bulkRequestTimeout = 10 * time.Minute

// bulkWait is the waiting behaviour of a bulk command.
type bulkWait struct {
	noWait  bool
	timeout time.Duration
	output  string
}

func (w *bulkWait) flags(cmd *cobra.Command, timeout time.Duration) {
	cmd.Flags().BoolVar(&w.noWait, "no-wait", false, "return once every machine got the change, without waiting for their agents")
	cmd.Flags().DurationVar(&w.timeout, "timeout", timeout, "how long to wait for the agents")
	addOutputFlag(cmd, &w.output)
}

func (a *app) bulkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bulk",
		Short: "Change an extension or run a command on every machine of a scope in one request",
		Long: `A bulk operation sets or removes an extension, or starts a run, on every machine of a
subscription or resource group (optionally only those with a tag) through one API request,
tracked as one operation with a result per machine: Pending, Succeeded, Failed (with the
machine's reason, e.g. its local lock-down) or Superseded (a later change replaced it).
At most 50,000 machines per operation; Expired machines are left out. You need the
operation's action (extensions/write, extensions/delete or runCommands/write) at the scope.

The commands wait until no machine is Pending, showing progress on standard error, and
exit 1 if any machine Failed; --no-wait returns the operation id at once.`,
	}
	ext := &cobra.Command{Use: "extension", Aliases: []string{"extensions"}, Short: "Set or delete an extension on every machine of a scope"}
	ext.AddCommand(a.bulkExtensionSetCommand(), a.bulkExtensionDeleteCommand())
	cmd.AddCommand(ext, a.bulkRunCommandCommand(), a.bulkShowCommand(), a.bulkListCommand(), a.bulkMachinesCommand())
	return cmd
}

func (a *app) bulkExtensionSetCommand() *cobra.Command {
	var t bulkTarget
	var w bulkWait
	var name, publisher, typ, version, settings, protected string
	cmd := &cobra.Command{
		Use:   "set [--resource-group RG | --scope S] [--tag K=V] --name N --publisher P --type T [--version V] [--settings @FILE|JSON] [--protected-settings @FILE|@-]",
		Short: "Install, reconfigure or upgrade an extension on every machine of a scope",
		Long: `Install an extension on every machine of the scope, or change it where it is already
installed (new settings are an update, a new version an upgrade), in one request. Without
--version the highest version in the publisher's signed catalog is used. Public settings
replace the machines' own; protected settings (@FILE or @-) are sealed to each machine.
A machine where the name is taken by another extension is Failed with that reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct{ flag, v string }{{"name", name}, {"publisher", publisher}, {"type", typ}} {
				if err := requireFlag(f.flag, f.v); err != nil {
					return err
				}
			}
			spec := &wire.MachineExtensionSet{Publisher: publisher, Type: typ, Version: version}
			var err error
			if spec.Settings, err = readSettings(cmd, "settings", settings); err != nil {
				return err
			}
			if spec.ProtectedSettings, err = readSettings(cmd, "protected-settings", protected); err != nil {
				return err
			}
			defer clear(spec.ProtectedSettings)
			return a.runBulk(cmd, t, w, wire.BulkOperationCreate{Kind: wire.BulkExtensionSet, Name: name, Extension: spec})
		},
	}
	t.flags(cmd)
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "extension name on the machines (required)")
	f.StringVar(&publisher, "publisher", "", "publisher, e.g. Corral (required)")
	f.StringVar(&typ, "type", "", "extension type (required)")
	f.StringVar(&version, "version", "", "version MAJOR.MINOR.PATCH (default: the latest listed)")
	f.StringVar(&settings, "settings", "", "public settings: a JSON object or @FILE")
	f.StringVar(&protected, "protected-settings", "", "protected settings: @FILE or @- (a JSON object, sealed to each machine)")
	w.flags(cmd, 30*time.Minute)
	return cmd
}

func (a *app) bulkExtensionDeleteCommand() *cobra.Command {
	var t bulkTarget
	var w bulkWait
	var name string
	cmd := &cobra.Command{
		Use:   "delete [--resource-group RG | --scope S] [--tag K=V] --name N",
		Short: "Remove an extension from every machine of a scope",
		Long: `Remove the extension of that name from every machine of the scope; machines without
it are Succeeded at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("name", name); err != nil {
				return err
			}
			return a.runBulk(cmd, t, w, wire.BulkOperationCreate{Kind: wire.BulkExtensionDelete, Name: name})
		},
	}
	t.flags(cmd)
	cmd.Flags().StringVarP(&name, "name", "n", "", "extension name (required)")
	w.flags(cmd, 30*time.Minute)
	return cmd
}

func (a *app) bulkRunCommandCommand() *cobra.Command {
	var t bulkTarget
	var w bulkWait
	var script, command, runAs, name string
	var params, protectedParams []string
	var runTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "run-command [--resource-group RG | --scope S] [--tag K=V] (--script @FILE | --command STR) [--param K=V]... [--protected-param K=@FILE]... [--run-as USER] [--run-timeout D] [--name N]",
		Short: "Run a script or command on every machine of a scope",
		Long: `Start the same run on every machine of the scope, as "corral machine run-command" does
on one (protected parameters are sealed to each machine). Each machine's output stays on
its run: "corral machine run-command show --machine M --name N" shows it; "corral bulk
machines ID" lists each machine's result and exit code.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, forget, err := runCommandBody(cmd, runSpec{command: command, script: script, runAs: runAs, timeout: runTimeout,
				params: params, protectedParams: protectedParams})
			if err != nil {
				return err
			}
			defer forget()
			if name == "" {
				name = newRunName(a.now())
			}
			return a.runBulk(cmd, t, w, wire.BulkOperationCreate{Kind: wire.BulkRunCommand, Name: name, RunCommand: &body})
		},
	}
	t.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&script, "script", "", "script: @FILE, @- (standard input) or inline text")
	f.StringVar(&command, "command", "", "one command line, run with /bin/sh -c")
	f.StringArrayVar(&params, "param", nil, "parameter K=V, an environment variable of the run (repeatable)")
	f.StringArrayVar(&protectedParams, "protected-param", nil, "protected parameter K=@FILE or K=@- (repeatable)")
	f.StringVar(&runAs, "run-as", "", "account to run as (default root)")
	f.DurationVar(&runTimeout, "run-timeout", 0, "the run's own timeout on each machine (default 10m)")
	f.StringVarP(&name, "name", "n", "", "run name on each machine (default: run-TIME-RANDOM)")
	w.flags(cmd, 30*time.Minute)
	return cmd
}

// runBulk creates the operation and, unless --no-wait, waits for it.
func (a *app) runBulk(cmd *cobra.Command, t bulkTarget, w bulkWait, body wire.BulkOperationCreate) error {
	if err := checkOutput(w.output); err != nil {
		return err
	}
	sub, scope, err := t.resolve()
	if err != nil {
		return err
	}
	body.Scope, body.Tag = scope, t.tag
	// The request answers once every machine is written: tens of
	// thousands take longer than the default minute on a busy server.
	c, err := a.client(client.WithTimeout(bulkRequestTimeout))
	if err != nil {
		return err
	}
	ctx := ctxOf(cmd)
	start := a.now()
	op, err := c.CreateBulkOperation(ctx, sub, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Bulk operation %s: %s %s on %d machines (written in %s).\n", op.Name, op.Kind, op.Target, op.Machines,
		a.now().Sub(start).Round(time.Millisecond))
	if !w.noWait {
		if op, err = waitBulk(ctx, c, sub, op, w.timeout, cmd.ErrOrStderr(), start, a.now); err != nil {
			return err
		}
	}
	return a.printBulk(cmd, c, sub, op, w.output)
}

// waitBulk polls until no machine is Pending, printing a line of progress
// each time the totals change.
func waitBulk(ctx context.Context, c *client.Client, sub string, op wire.BulkOperation, timeout time.Duration, progress io.Writer,
	start time.Time, now func() time.Time) (wire.BulkOperation, error) {
	last := wire.BulkTotals{Pending: -1}
	err := poll(ctx, timeout, func() (bool, error) {
		cur, err := c.GetBulkOperation(ctx, sub, op.Name)
		if err != nil {
			return false, err
		}
		op = cur
		if op.Totals != last {
			last = op.Totals
			fmt.Fprintf(progress, "%s  %s\n", now().Sub(start).Round(100*time.Millisecond), totalsText(op))
		}
		return op.Done, nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return op, fmt.Errorf("bulk operation %s: %d machines still Pending after %s (are their agents connected?); follow it with \"corral bulk show %s\"",
			op.Name, op.Totals.Pending, timeout, op.Name)
	}
	return op, err
}

func totalsText(op wire.BulkOperation) string {
	t := op.Totals
	s := fmt.Sprintf("%d/%d done: %d succeeded, %d failed, %d pending", t.Succeeded+t.Failed+t.Superseded, op.Machines, t.Succeeded, t.Failed, t.Pending)
	if t.Superseded > 0 {
		s += fmt.Sprintf(", %d superseded", t.Superseded)
	}
	return s
}

// maxFailedShown bounds the failed machines a table output lists.
const maxFailedShown = 20

func (a *app) printBulk(cmd *cobra.Command, c *client.Client, sub string, op wire.BulkOperation, output string) error {
	out := cmd.OutOrStdout()
	if output == outJSON {
		if err := writeJSON(out, op); err != nil {
			return err
		}
	} else {
		if err := renderBulkDetail(out, op); err != nil {
			return err
		}
		if op.Totals.Failed > 0 {
			failed, err := c.ListBulkMachines(ctxOf(cmd), sub, op.Name, wire.BulkFailed, maxFailedShown)
			if err != nil {
				return err
			}
			fmt.Fprintln(out)
			if err := renderBulkMachines(out, output, failed); err != nil {
				return err
			}
			if op.Totals.Failed > len(failed) {
				fmt.Fprintf(out, "... and %d more: corral bulk machines %s --result Failed\n", op.Totals.Failed-len(failed), op.Name)
			}
		}
	}
	if op.Done && op.Totals.Failed > 0 {
		return fmt.Errorf("bulk operation %s: %d of %d machines failed", op.Name, op.Totals.Failed, op.Machines)
	}
	return nil
}

func renderBulkDetail(w io.Writer, op wire.BulkOperation) error {
	what := op.Target
	if op.Kind == wire.BulkExtensionSet {
		what += " (" + op.Publisher + "/" + op.Type + " " + op.Version + ")"
	}
	state := "in progress"
	if op.Done {
		state = "done"
	}
	return keyValues(w, [][]string{
		{"Operation:", op.Name}, {"Kind:", op.Kind}, {"Target:", what}, {"Scope:", op.Scope}, {"Tag:", op.Tag},
		{"Machines:", strconv.Itoa(op.Machines)}, {"Status:", state + ": " + totalsText(op)},
		{"Created:", formatTime(op.CreatedAt) + " by " + dash(op.CreatedBy)},
	})
}

var bulkMachineHeader = []string{"MACHINE", "RESOURCE GROUP", "RESULT", "STATE", "EXIT", "MESSAGE"}

func renderBulkMachines(w io.Writer, output string, ms []wire.BulkMachineResult) error {
	return render(w, output, ms, bulkMachineHeader, func(m wire.BulkMachineResult) []string {
		exit := ""
		if m.ExitCode != nil {
			exit = strconv.Itoa(*m.ExitCode)
		}
		return []string{m.Name, m.ResourceGroup, m.Result, m.State, exit, ellipsis(m.Message, 80)}
	})
}

func (a *app) bulkShowCommand() *cobra.Command {
	var sub string
	var w bulkWait
	var wait bool
	cmd := &cobra.Command{
		Use: "show ID [--wait]", Short: "Show a bulk operation with its totals (and its failed machines)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(w.output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			op, err := c.GetBulkOperation(ctxOf(cmd), sub, args[0])
			if err != nil {
				return err
			}
			if wait && !op.Done {
				if op, err = waitBulk(ctxOf(cmd), c, sub, op, w.timeout, cmd.ErrOrStderr(), a.now(), a.now); err != nil {
					return err
				}
			}
			return a.printBulk(cmd, c, sub, op, w.output)
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until no machine is Pending")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 30*time.Minute, "how long --wait waits")
	addOutputFlag(cmd, &w.output)
	return cmd
}

func (a *app) bulkListCommand() *cobra.Command {
	var sub, output string
	var top int
	cmd := &cobra.Command{
		Use: "list", Short: "List the bulk operations of a subscription, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ops, err := c.ListBulkOperations(ctxOf(cmd), sub, top)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), output, ops, []string{"ID", "KIND", "TARGET", "SCOPE", "TAG", "MACHINES", "CREATED", "BY"},
				func(op wire.BulkOperation) []string {
					return []string{op.Name, op.Kind, op.Target, op.Scope, dash(op.Tag), strconv.Itoa(op.Machines), formatTime(op.CreatedAt), dash(op.CreatedBy)}
				})
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().IntVar(&top, "top", 50, "at most this many (0: all)")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) bulkMachinesCommand() *cobra.Command {
	var sub, result, output string
	cmd := &cobra.Command{
		Use: "machines ID [--result Pending|Succeeded|Failed|Superseded]", Short: "List the machines of a bulk operation with their results",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if result != "" {
				r, ok := wire.BulkResult(result)
				if !ok {
					return fmt.Errorf("--result %q is not one of %s", result, strings.Join(wire.BulkResults, ", "))
				}
				result = r
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ms, err := c.ListBulkMachines(ctxOf(cmd), sub, args[0], result, 0)
			if err != nil {
				return err
			}
			return renderBulkMachines(cmd.OutOrStdout(), output, ms)
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringVar(&result, "result", "", "only machines with this result")
	addOutputFlag(cmd, &output)
	return cmd
}
