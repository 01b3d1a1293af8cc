package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// policyServerCommands are the server-backed subcommands of "corral policy".
func (a *app) policyServerCommands() []*cobra.Command {
	def := &cobra.Command{Use: "definition", Aliases: []string{"definitions"}, Short: "Policy definitions (Azure Policy language)"}
	def.AddCommand(a.policyDefinitionCreateCommand(), a.policyDefinitionListCommand(),
		showCommand(a, "show NAME", "Show a policy definition with its document", func(c *client.Client, ctx context.Context, name string) (wire.PolicyDefinition, error) {
			return c.GetPolicyDefinition(ctx, name)
		}, renderPolicyDefinitions),
		deleteCommand(a, "delete NAME", "Delete a custom policy definition no assignment uses", func(c *client.Client, ctx context.Context, name string) error {
			return c.DeletePolicyDefinition(ctx, name)
		}, deleted("policy definition")))
	asg := &cobra.Command{Use: "assignment", Aliases: []string{"assignments"}, Short: "Assign definitions to subscriptions and resource groups"}
	asg.AddCommand(a.policyAssignmentCreateCommand(), a.policyAssignmentListCommand(),
		showCommand(a, "show NAME", "Show a policy assignment", func(c *client.Client, ctx context.Context, name string) (wire.PolicyAssignment, error) {
			return c.GetPolicyAssignment(ctx, name)
		}, renderPolicyAssignments),
		deleteCommand(a, "delete NAME", "Delete a policy assignment with its exemptions, states and remediation records", func(c *client.Client, ctx context.Context, name string) error {
			return c.DeletePolicyAssignment(ctx, name)
		}, deleted("policy assignment")))
	ex := &cobra.Command{Use: "exemption", Aliases: []string{"exemptions"}, Short: "Exempt scopes from policy assignments"}
	ex.AddCommand(a.policyExemptionCreateCommand(),
		listCommand(a, "List policy exemptions", func(c *client.Client, ctx context.Context) ([]wire.PolicyExemption, error) {
			return c.ListPolicyExemptions(ctx, "")
		}, renderPolicyExemptions),
		deleteCommand(a, "delete NAME", "Delete a policy exemption", func(c *client.Client, ctx context.Context, name string) error {
			return c.DeletePolicyExemption(ctx, name)
		}, deleted("policy exemption")))
	state := &cobra.Command{Use: "state", Aliases: []string{"states"}, Short: "Compliance states per assignment, machine and rule"}
	state.AddCommand(a.policyStateListCommand(), a.policyStateSummaryCommand())
	rem := &cobra.Command{Use: "remediation", Aliases: []string{"remediations"}, Short: "Changes apply modes made on machines, and their rollback"}
	rem.AddCommand(a.policyRemediationListCommand(), a.policyRemediationRollbackCommand())
	return []*cobra.Command{def, asg, ex, a.policyEvaluateCommand(), state, rem}
}

// policyScope turns --scope into a scope id: /subscriptions/S[...] as
// given, or a resource group name in the default subscription.
func policyScope(s string) (string, error) {
	switch {
	case s == "" || strings.HasPrefix(s, "/"):
		return s, nil
	case resource.ValidName(s):
		return resource.ResourceGroup(defaultSubscription, s).String(), nil
	}
	return "", fmt.Errorf("invalid --scope %q: give /subscriptions/S[/resourceGroups/RG] or a resource group name", s)
}

func renderPolicyDefinitions(w io.Writer, output string, ds []wire.PolicyDefinition) error {
	return render(w, output, ds, []string{"NAME", "TYPE", "EFFECT", "MACHINE CONFIGURATION", "DISPLAY NAME"}, func(d wire.PolicyDefinition) []string {
		return []string{d.Name, d.PolicyType, d.Effect, d.GuestConfiguration, d.DisplayName}
	})
}

func renderPolicyAssignments(w io.Writer, output string, as []wire.PolicyAssignment) error {
	return render(w, output, as, []string{"NAME", "DEFINITION", "SCOPE", "EFFECT", "ASSIGNMENT TYPE", "MESSAGE"}, func(a wire.PolicyAssignment) []string {
		return []string{a.Name, a.Definition, a.Scope, a.Effect, a.AssignmentType, a.NonComplianceMessage}
	})
}

func renderPolicyExemptions(w io.Writer, output string, es []wire.PolicyExemption) error {
	return render(w, output, es, []string{"NAME", "ASSIGNMENT", "SCOPE", "CATEGORY", "EXPIRES"}, func(e wire.PolicyExemption) []string {
		exp := "never"
		if e.ExpiresOn != nil {
			exp = formatTime(*e.ExpiresOn)
		}
		return []string{e.Name, e.Assignment, e.Scope, e.Category, exp}
	})
}

func (a *app) policyDefinitionCreateCommand() *cobra.Command {
	var file, output string
	cmd := &cobra.Command{
		Use:   "create --file F [-o json]",
		Short: "Create a custom policy definition from a JSON file (as Azure exports it)",
		Long: `Create a custom policy definition from an Azure Policy JSON document:
{"properties":{...}} as Azure exports it, or the bare properties. Anything
Corral does not support is refused with its JSON path; nothing is stored.
A definition with metadata.guestConfiguration must name a machine
configuration built into the agent (see corral policy definition list --builtin).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := requireFlag("file", file); err != nil {
				return err
			}
			doc, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			if !json.Valid(doc) {
				var v any
				err := json.Unmarshal(doc, &v)
				return fmt.Errorf("%s is not valid JSON: %v", file, err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.CreatePolicyDefinition(ctxOf(cmd), doc)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), d)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created policy definition %s (effect %s).\n", d.Name, d.Effect)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the definition (JSON)")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) policyDefinitionListCommand() *cobra.Command {
	var builtIn bool
	cmd := listCommand(a, "List custom policy definitions (--builtin: the built-in ones)", func(c *client.Client, ctx context.Context) ([]wire.PolicyDefinition, error) {
		return c.ListPolicyDefinitions(ctx, builtIn)
	}, renderPolicyDefinitions)
	cmd.Flags().BoolVar(&builtIn, "builtin", false, "list the built-in definitions")
	return cmd
}

// paramsArg reads --params: @FILE or inline JSON.
func paramsArg(v string) (json.RawMessage, error) {
	if v == "" {
		return nil, nil
	}
	b := []byte(v)
	if strings.HasPrefix(v, "@") {
		var err error
		if b, err = os.ReadFile(v[1:]); err != nil {
			return nil, fmt.Errorf("--params: %w", err)
		}
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("--params must be a JSON object ({\"name\": value} or {\"name\": {\"value\": value}}): %v", err)
	}
	return b, nil
}

func (a *app) policyAssignmentCreateCommand() *cobra.Command {
	var name, def, scope, params, msg, typ, notScopes, output string
	cmd := &cobra.Command{
		Use:   "create --name N --definition NAME --scope S [--params @F|JSON] [--non-compliance-message TEXT] [--assignment-type Audit|ApplyAndMonitor|ApplyAndAutoCorrect] [--not-scopes S,...]",
		Short: "Assign a policy definition at a subscription or resource group",
		Long: `Assign a built-in or custom definition at a scope. Machines in scope are
evaluated at once: definitions with a machine configuration by each machine's
agent (its assignment type says whether it only audits, applies once
(ApplyAndMonitor) or corrects every drift (ApplyAndAutoCorrect), backing up
every file it changes), the others by the server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			for _, f := range [][2]string{{"name", name}, {"definition", def}, {"scope", scope}} {
				if err := requireFlag(f[0], f[1]); err != nil {
					return err
				}
			}
			sc, err := policyScope(scope)
			if err != nil {
				return err
			}
			p, err := paramsArg(params)
			if err != nil {
				return err
			}
			in := wire.PolicyAssignmentCreate{Definition: def, Scope: sc, Parameters: p, NonComplianceMessage: msg, AssignmentType: typ}
			for _, ns := range strings.Split(notScopes, ",") {
				if ns = strings.TrimSpace(ns); ns != "" {
					s, err := policyScope(ns)
					if err != nil {
						return err
					}
					in.NotScopes = append(in.NotScopes, s)
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			as, err := c.CreatePolicyAssignment(ctxOf(cmd), name, in)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), as)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Assigned %s at %s as %s.\n", as.Definition, as.Scope, as.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "assignment name")
	f.StringVar(&def, "definition", "", "definition name (built-in or custom)")
	f.StringVar(&scope, "scope", "", "/subscriptions/S[/resourceGroups/RG], or a resource group name")
	f.StringVar(&params, "params", "", "parameter values: @FILE or JSON")
	f.StringVar(&msg, "non-compliance-message", "", "message shown with non-compliant results and denials")
	f.StringVar(&typ, "assignment-type", "", "Audit, ApplyAndMonitor or ApplyAndAutoCorrect (machine configurations)")
	f.StringVar(&notScopes, "not-scopes", "", "comma-separated scopes excluded from the assignment")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) policyAssignmentListCommand() *cobra.Command {
	var scope string
	cmd := listCommand(a, "List policy assignments (--scope: at or below a scope)", func(c *client.Client, ctx context.Context) ([]wire.PolicyAssignment, error) {
		sc, err := policyScope(scope)
		if err != nil {
			return nil, err
		}
		return c.ListPolicyAssignments(ctx, sc)
	}, renderPolicyAssignments)
	cmd.Flags().StringVar(&scope, "scope", "", "only assignments at or below this scope")
	return cmd
}

func (a *app) policyExemptionCreateCommand() *cobra.Command {
	var name, asg, scope, category, expires, output string
	cmd := &cobra.Command{
		Use:   "create --name N --assignment A --scope S --category Waiver|Mitigated [--expires TIME]",
		Short: "Exempt a scope from a policy assignment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			for _, f := range [][2]string{{"name", name}, {"assignment", asg}, {"scope", scope}, {"category", category}} {
				if err := requireFlag(f[0], f[1]); err != nil {
					return err
				}
			}
			sc, err := policyScope(scope)
			if err != nil {
				return err
			}
			in := wire.PolicyExemptionCreate{Assignment: asg, Scope: sc, Category: category}
			if expires != "" {
				t, err := parseExpiry(expires, a.now())
				if err != nil {
					return err
				}
				in.ExpiresOn = &t
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			e, err := c.CreatePolicyExemption(ctxOf(cmd), name, in)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), e)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Exempted %s from %s (%s).\n", e.Scope, e.Assignment, e.Category)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "exemption name")
	f.StringVar(&asg, "assignment", "", "assignment name")
	f.StringVar(&scope, "scope", "", "scope exempted (at or below the assignment's)")
	f.StringVar(&category, "category", "", "Waiver or Mitigated")
	f.StringVar(&expires, "expires", "", "expiry: an RFC 3339 time or a duration from now (e.g. 720h)")
	addOutputFlag(cmd, &output)
	return cmd
}

// parseExpiry reads an RFC 3339 time or a duration from now.
func parseExpiry(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("invalid --expires %q: give an RFC 3339 time (2026-12-31T00:00:00Z) or a duration (720h)", v)
}

func (a *app) policyEvaluateCommand() *cobra.Command {
	var scope, output string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "evaluate --scope S [--wait]",
		Short: "Evaluate compliance of a scope now",
		Long: `Evaluate a scope now: the server evaluates its definitions at once and every
agent in scope evaluates its machine configurations. --wait waits until every
connected machine in scope answered for every assignment (at most --timeout).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := requireFlag("scope", scope); err != nil {
				return err
			}
			sc, err := policyScope(scope)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			e, err := c.EvaluatePolicy(ctx, sc)
			if err != nil {
				return err
			}
			deadline := time.Now().Add(timeout)
			for wait && !e.Done {
				if time.Now().After(deadline) {
					return fmt.Errorf("evaluation %s: %d of %d evaluated after %s", e.ID, e.Evaluated, e.Expected, timeout)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(500 * time.Millisecond):
				}
				if e, err = c.GetPolicyEvaluation(ctx, e.ID); err != nil {
					return err
				}
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), e)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Evaluation %s of %s: %d of %d assignment × machine pairs evaluated.\n", e.ID, e.Scope, e.Evaluated, e.Expected)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&scope, "scope", "", "/subscriptions/S[/resourceGroups/RG], or a resource group name")
	f.BoolVar(&wait, "wait", false, "wait until every connected machine in scope answered")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) policyStateListCommand() *cobra.Command {
	var scope, machine, asg string
	cmd := listCommand(a, "List compliance states: one per assignment × machine × rule, with evidence", func(c *client.Client, ctx context.Context) ([]wire.PolicyState, error) {
		sc, err := policyScope(scope)
		if err != nil {
			return nil, err
		}
		name := ""
		if machine != "" {
			if strings.HasPrefix(machine, "/") {
				sc = machine
			} else {
				name = machine
			}
		}
		states, err := c.ListPolicyStates(ctx, sc, asg)
		if err != nil || name == "" {
			return states, err
		}
		out := []wire.PolicyState{}
		for _, s := range states {
			if strings.EqualFold(s.Machine[strings.LastIndexByte(s.Machine, '/')+1:], name) {
				out = append(out, s)
			}
		}
		return out, nil
	}, func(w io.Writer, output string, ss []wire.PolicyState) error {
		return render(w, output, ss, []string{"ASSIGNMENT", "MACHINE", "RULE", "STATE", "EVIDENCE"}, func(s wire.PolicyState) []string {
			ev := s.Evidence
			if s.NonComplianceMessage != "" {
				ev += " — " + s.NonComplianceMessage
			}
			return []string{s.Assignment[strings.LastIndexByte(s.Assignment, '/')+1:], s.Machine[strings.LastIndexByte(s.Machine, '/')+1:], s.Rule, s.ComplianceState, ev}
		})
	})
	f := cmd.Flags()
	f.StringVar(&scope, "scope", "", "only machines at or below this scope")
	f.StringVar(&machine, "machine", "", "only this machine (name or resource id)")
	f.StringVar(&asg, "assignment", "", "only this assignment")
	return cmd
}

func (a *app) policyStateSummaryCommand() *cobra.Command {
	var scope string
	cmd := listCommand(a, "Compliance per assignment for the machines of a scope", func(c *client.Client, ctx context.Context) ([]wire.PolicyComplianceSummary, error) {
		sc, err := policyScope(scope)
		if err != nil {
			return nil, err
		}
		if sc == "" {
			sc = "/"
		}
		return c.PolicySummary(ctx, sc)
	}, func(w io.Writer, output string, ss []wire.PolicyComplianceSummary) error {
		return render(w, output, ss, []string{"ASSIGNMENT", "STATE", "COMPLIANT", "NONCOMPLIANT", "EXEMPT", "UNKNOWN", "NOT EVALUATED"}, func(s wire.PolicyComplianceSummary) []string {
			return []string{s.Assignment[strings.LastIndexByte(s.Assignment, '/')+1:], s.ComplianceState, strconv.Itoa(s.Compliant),
				strconv.Itoa(s.NonCompliant), strconv.Itoa(s.Exempt), strconv.Itoa(s.Unknown), strconv.Itoa(s.NotEvaluated)}
		})
	})
	cmd.Use = "summary"
	cmd.Flags().StringVar(&scope, "scope", "", "the scope (default /)")
	return cmd
}

func renderRemediations(w io.Writer, output string, rs []wire.PolicyRemediation) error {
	return render(w, output, rs, []string{"ID", "MACHINE", "RULE", "STATE", "BEFORE", "AFTER"}, func(r wire.PolicyRemediation) []string {
		return []string{r.ID, r.Machine[strings.LastIndexByte(r.Machine, '/')+1:], r.Rule, r.State, r.EvidenceBefore, r.EvidenceAfter}
	})
}

func (a *app) policyRemediationListCommand() *cobra.Command {
	var scope string
	cmd := listCommand(a, "List remediations apply modes made, newest first", func(c *client.Client, ctx context.Context) ([]wire.PolicyRemediation, error) {
		sc, err := policyScope(scope)
		if err != nil {
			return nil, err
		}
		return c.ListPolicyRemediations(ctx, sc)
	}, renderRemediations)
	cmd.Flags().StringVar(&scope, "scope", "", "only machines at or below this scope")
	return cmd
}

func (a *app) policyRemediationRollbackCommand() *cobra.Command {
	var force, noWait bool
	var timeout time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "rollback ID [--force]",
		Short: "Undo a remediation on its machine",
		Long: `Ask the machine to restore what a remediation changed, from the backup it
kept. The machine refuses when a file changed since the remediation, unless
--force. Waits for the machine's answer (at most --timeout) unless --no-wait;
exits 1 when the machine refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			r, err := c.RollbackPolicyRemediation(ctx, args[0], force)
			if err != nil {
				return err
			}
			deadline := time.Now().Add(timeout)
			for !noWait && r.State == wire.RemediationRollbackRequested {
				if time.Now().After(deadline) {
					return fmt.Errorf("remediation %s: the machine did not answer within %s (the rollback stays requested)", r.ID, timeout)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(300 * time.Millisecond):
				}
				if r, err = c.GetPolicyRemediation(ctx, r.ID); err != nil {
					return err
				}
			}
			if output == outJSON {
				if err := writeJSON(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			} else {
				switch r.State {
				case wire.RemediationRolledBack:
					fmt.Fprintf(cmd.OutOrStdout(), "Rolled back remediation %s: %s\n", r.ID, r.Message)
				case wire.RemediationRollbackRequested:
					fmt.Fprintf(cmd.OutOrStdout(), "Rollback of remediation %s requested.\n", r.ID)
				}
			}
			if r.State == wire.RemediationRollbackFailed {
				return errors.New("the machine refused the rollback: " + r.Message)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "restore even over files changed since the remediation")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the machine's answer")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the machine's answer")
	addOutputFlag(cmd, &output)
	return cmd
}
