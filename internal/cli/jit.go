package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// jitWait is how long `jit request` waits for the machine to confirm.
const jitWait = 2 * time.Minute

func (a *app) jitCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "jit", Short: "Open management ports just in time (JIT policies and requests)",
		Long: `Just-in-time access: a JIT policy on a machine or a scope names the managed ports, which
the machine's agent keeps closed in its own nftables table except for granted sources.
A grant opens one port to one source address for a limited time; the machine's kernel
closes it on time even if the agent or the control plane is down.`}
	policy := &cobra.Command{Use: "policy", Short: "Set, show and delete JIT policies"}
	policy.AddCommand(a.jitPolicySetCommand(), a.jitPolicyShowCommand(), a.jitPolicyDeleteCommand())
	cmd.AddCommand(policy, a.jitRequestCommand(), a.jitListCommand(),
		a.jitDecisionCommand("revoke", "Revoke a JIT request or close its grant early"),
		a.jitDecisionCommand("approve", "Approve a JIT request waiting for approval (another user's)"),
		a.jitDecisionCommand("reject", "Reject a JIT request waiting for approval"))
	return cmd
}

// jitTarget is --machine M [-g RG] or --scope S.
type jitTarget struct {
	m     machineRef
	scope string
}

func (j *jitTarget) flags(cmd *cobra.Command) {
	j.m.flags(cmd)
	cmd.Flags().Lookup("machine").Usage = "the machine the policy is for"
	cmd.Flags().StringVar(&j.scope, "scope", "", "the scope the policy is for: / or /subscriptions/S[/resourceGroups/RG]")
}

// resolve returns the client and the scope (a machine's resource id for
// --machine).
func (a *app) resolveJITTarget(ctx context.Context, j *jitTarget, required bool) (*client.Client, string, error) {
	switch {
	case j.m.machine != "" && j.scope != "":
		return nil, "", errors.New("give --machine or --scope, not both")
	case j.m.machine == "" && j.scope == "":
		if required {
			return nil, "", errors.New("give --machine M or --scope S")
		}
		c, err := a.client()
		return c, "/", err
	case j.scope != "":
		if _, err := resource.ParseScope(j.scope); err != nil {
			return nil, "", fmt.Errorf("invalid --scope: %w", err)
		}
		c, err := a.client()
		return c, j.scope, err
	}
	c, err := a.findMachine(ctx, &j.m)
	if err != nil {
		return nil, "", err
	}
	return c, resource.Machine(j.m.sub, j.m.rg, j.m.machine).String(), nil
}

func (a *app) jitPolicySetCommand() *cobra.Command {
	var j jitTarget
	var ports, sources []string
	var maxDuration time.Duration
	var approval bool
	var output string
	cmd := &cobra.Command{
		Use:   "set (--machine M | --scope S) --port 22[/tcp] [--port ...] --max-duration 3h [--allowed-source CIDR]... [--require-approval]",
		Short: "Create or replace the JIT policy of a machine or scope",
		Long: `Set the JIT policy of a machine (--machine) or of a scope (--scope: /, a subscription or a
resource group): the managed ports (22, 22/tcp or 53/udp; repeat --port), the source ranges
a grant may open them to (repeat --allowed-source; none means any source), the longest
grant (--max-duration, default 3h) and whether each request waits for another user's
approval. A machine follows the most specific policy above it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			in := wire.JITPolicySet{MaxDuration: wire.Duration(maxDuration), RequireApproval: approval}
			if len(ports) == 0 {
				return errors.New("--port is required (e.g. --port 22)")
			}
			var problems []string
			for _, p := range ports {
				canon, err := wire.ParseJITPort(p)
				if err != nil {
					problems = append(problems, "--port: "+err.Error())
				}
				in.Ports = append(in.Ports, canon)
			}
			for _, s := range sources {
				pr, err := wire.ParseJITRange(s)
				if err != nil {
					problems = append(problems, "--allowed-source: "+err.Error())
					continue
				}
				in.AllowedSources = append(in.AllowedSources, pr.String())
			}
			if maxDuration <= 0 {
				problems = append(problems, fmt.Sprintf("--max-duration %s: must be positive", maxDuration))
			}
			if len(problems) > 0 {
				return errors.New(strings.Join(problems, "; "))
			}
			c, scope, err := a.resolveJITTarget(cmd.Context(), &j, true)
			if err != nil {
				return err
			}
			p, err := c.SetJITPolicy(ctxOf(cmd), scope, in)
			if err != nil {
				return err
			}
			return renderJITPolicies(cmd.OutOrStdout(), output, []wire.JITPolicy{p})
		},
	}
	j.flags(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&ports, "port", nil, "managed port: 22, 22/tcp or 53/udp (repeatable)")
	f.StringArrayVar(&sources, "allowed-source", nil, "CIDR range a grant's source must be in (repeatable; none: any)")
	f.DurationVar(&maxDuration, "max-duration", wire.DefaultJITMaxDuration, "longest grant")
	f.BoolVar(&approval, "require-approval", false, "each request waits for another user's approval")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) jitPolicyShowCommand() *cobra.Command {
	var j jitTarget
	var output string
	cmd := &cobra.Command{
		Use:   "show [--machine M | --scope S]",
		Short: "Show JIT policies: a machine's effective one with its state, or those at or below a scope",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, scope, err := a.resolveJITTarget(cmd.Context(), &j, false)
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			if j.m.machine != "" {
				st, err := c.JITStatus(ctx, j.m.sub, j.m.rg, j.m.machine)
				if err != nil {
					return err
				}
				if output == outJSON {
					return writeJSON(cmd.OutOrStdout(), st)
				}
				return renderJITStatus(cmd.OutOrStdout(), j.m.machine, st)
			}
			ps, err := c.ListJITPolicies(ctx, scope)
			if err != nil {
				return err
			}
			return renderJITPolicies(cmd.OutOrStdout(), output, ps)
		},
	}
	j.flags(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) jitPolicyDeleteCommand() *cobra.Command {
	var j jitTarget
	cmd := &cobra.Command{
		Use:   "delete (--machine M | --scope S)",
		Short: "Delete the JIT policy of a machine or scope (its ports are no longer managed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, scope, err := a.resolveJITTarget(cmd.Context(), &j, true)
			if err != nil {
				return err
			}
			if err := c.DeleteJITPolicy(ctxOf(cmd), scope); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted the JIT policy at %s.\n", scope)
			return nil
		},
	}
	j.flags(cmd)
	return cmd
}

func renderJITPolicies(w io.Writer, output string, ps []wire.JITPolicy) error {
	return render(w, output, ps, []string{"SCOPE", "PORTS", "ALLOWED SOURCES", "MAX DURATION", "APPROVAL", "UPDATED BY"}, func(p wire.JITPolicy) []string {
		approval := "no"
		if p.RequireApproval {
			approval = "required"
		}
		return []string{p.Scope, strings.Join(p.Ports, ","), orAnySource(p.AllowedSources), time.Duration(p.MaxDuration).String(), approval, p.UpdatedBy}
	})
}

func orAnySource(l []string) string {
	if len(l) == 0 {
		return "any"
	}
	return strings.Join(l, ",")
}

func renderJITStatus(w io.Writer, machine string, st wire.JITMachineStatus) error {
	if st.Policy == nil {
		fmt.Fprintf(w, "Machine %s has no JIT policy: none of its ports is managed.\n", machine)
	} else {
		if err := renderJITPolicies(w, outTable, []wire.JITPolicy{*st.Policy}); err != nil {
			return err
		}
	}
	if st.State != "" {
		fmt.Fprintf(w, "On the machine: %s", st.State)
		if st.Message != "" {
			fmt.Fprintf(w, ": %s", st.Message)
		}
		fmt.Fprintf(w, " (reported %s)\n", formatTime(st.ReportedAt))
	}
	return nil
}

func (a *app) jitRequestCommand() *cobra.Command {
	var m machineRef
	var port, source, justification, output string
	var duration time.Duration
	var noWait bool
	cmd := &cobra.Command{
		Use:   "request --machine M --port 22 [--source-ip IP] --duration 1h [--justification TEXT]",
		Short: "Request a just-in-time opening of a port; prints the grant id and expiry",
		Long: `Ask for one port of a machine to be opened to one source address (default: your address as
the control plane sees it) for a duration no longer than the policy's maximum. Unless the
policy requires approval, the command waits until the machine's kernel holds the opening
and prints its id and expiry; it fails with the machine's reason when the machine cannot
open it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := m.validate(); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			canon, err := wire.ParseJITPort(port)
			if err != nil {
				return fmt.Errorf("--port: %w", err)
			}
			if source != "" {
				if _, err := wire.ParseJITSource(source); err != nil {
					return fmt.Errorf("--source-ip: %w", err)
				}
			}
			if duration <= 0 {
				return fmt.Errorf("--duration %s: must be positive (e.g. 1h)", duration)
			}
			c, err := a.findMachine(cmd.Context(), &m)
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			r, err := c.RequestJIT(ctx, m.sub, m.rg, m.machine, wire.JITRequestCreate{Port: canon, SourceIP: source,
				Duration: wire.Duration(duration), Justification: justification})
			if err != nil {
				return err
			}
			if !noWait && r.State == wire.JITApproved {
				err = poll(ctx, jitWait, func() (bool, error) {
					var err error
					r, err = c.GetJITRequest(ctx, r.ID)
					return err == nil && r.State != wire.JITApproved, err
				})
				if errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("grant %s is approved but machine %s did not confirm it within %s (is its agent connected?); check with \"corral jit list\"", r.ID, m.machine, jitWait)
				}
				if err != nil {
					return err
				}
			}
			if output == outJSON {
				if err := writeJSON(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			} else {
				printJITRequest(cmd.OutOrStdout(), r)
			}
			if r.State == wire.JITFailed {
				return fmt.Errorf("machine %s could not open port %s: %s", m.machine, r.Port, r.Message)
			}
			return nil
		},
	}
	m.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&port, "port", "", "the port to open: 22 or 22/tcp (one of the policy's)")
	f.StringVar(&source, "source-ip", "", "the address to open it to (default: yours as the control plane sees it)")
	f.DurationVar(&duration, "duration", 0, "how long, at most the policy's maximum (e.g. 1h)")
	f.StringVar(&justification, "justification", "", "why (kept in the activity log, shown to approvers)")
	f.BoolVar(&noWait, "no-wait", false, "return once requested, without waiting for the machine")
	addOutputFlag(cmd, &output)
	return cmd
}

func printJITRequest(w io.Writer, r wire.JITRequest) {
	fmt.Fprintf(w, "Grant:   %s\n", r.ID)
	fmt.Fprintf(w, "Machine: %s\n", r.MachineName)
	fmt.Fprintf(w, "Port:    %s from %s\n", r.Port, r.SourceIP)
	fmt.Fprintf(w, "State:   %s\n", r.State)
	switch {
	case !r.ExpiresAt.IsZero():
		fmt.Fprintf(w, "Expires: %s\n", formatTime(r.ExpiresAt))
	case r.State == wire.JITPending:
		fmt.Fprintf(w, "Expires: %s after another user approves it (corral jit approve %s)\n", time.Duration(r.Duration), r.ID)
	}
	if r.Message != "" && r.State != wire.JITApplied {
		fmt.Fprintf(w, "Message: %s\n", r.Message)
	}
}

func timeLeft(r wire.JITRequest, now time.Time) string {
	if r.ExpiresAt.IsZero() || (r.State != wire.JITApplied && r.State != wire.JITApproved) {
		return "-"
	}
	return r.ExpiresAt.Sub(now).Round(time.Second).String()
}

func (a *app) jitListCommand() *cobra.Command {
	var scope, output string
	var active bool
	cmd := &cobra.Command{
		Use:   "list [--scope S] [--active] [-o json]",
		Short: "List JIT requests and grants, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			rs, err := c.ListJITRequests(ctxOf(cmd), scope, active)
			if err != nil {
				return err
			}
			now := a.now()
			return render(cmd.OutOrStdout(), output, rs, []string{"ID", "MACHINE", "PORT", "SOURCE", "STATE", "EXPIRES", "TIME LEFT", "REQUESTED BY"},
				func(r wire.JITRequest) []string {
					return []string{r.ID, r.MachineName, r.Port, r.SourceIP, r.State, formatTime(r.ExpiresAt), timeLeft(r, now), r.RequestedBy}
				})
		},
	}
	cmd.Flags().StringVar(&scope, "scope", "", "only requests at or below this scope")
	cmd.Flags().BoolVar(&active, "active", false, "only requests waiting for approval and grants still open")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) jitDecisionCommand(action, short string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   action + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.JITRequestAction(ctxOf(cmd), args[0], action)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			printJITRequest(cmd.OutOrStdout(), r)
			return nil
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}
