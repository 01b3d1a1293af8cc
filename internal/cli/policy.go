package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/policy/builtin"
	"github.com/corralhq/corral/internal/policy/guest"
)

// policyCommand is the "corral policy" group: server-backed subcommands
// (definition, assignment, exemption, evaluate, state, remediation) and
// "test", which runs locally, without a server.
func (a *app) policyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Policy definitions and machine configurations",
	}
	cmd.AddCommand(a.policyServerCommands()...)
	cmd.AddCommand(a.policyTestCommand())
	return cmd
}

// PolicyTestState is one line of `corral policy test -o json`: the same
// fields as `corral policy state list`, for one rule evaluated locally.
type PolicyTestState struct {
	Assignment      string    `json:"assignment"`
	Definition      string    `json:"definition"`
	Configuration   string    `json:"configuration"`
	Machine         string    `json:"machine"`
	Rule            string    `json:"rule"`
	Title           string    `json:"title"`
	Severity        string    `json:"severity"`
	ComplianceState string    `json:"complianceState"`
	Evidence        string    `json:"evidence"`
	Timestamp       time.Time `json:"timestamp"`
	SSGRuleID       string    `json:"ssgRuleId,omitempty"`
}

// Exit codes of corral policy test.
const (
	policyTestNotCompliant = 1
	policyTestError        = 2
)

func (a *app) policyTestCommand() *cobra.Command {
	var ref, root, output string
	cmd := &cobra.Command{
		Use:   "test --definition NAME|FILE --root DIR [-o json]",
		Short: "Evaluate a definition's guest rules against a directory tree, without a server",
		Long: `Evaluate the machine configuration of a policy definition against an OS tree,
locally, as the agent would inside the machine. --definition is a built-in
definition (linux-passwd-0644, linux-security-baseline), a built-in machine
configuration, or a file holding a definition or a machine configuration (JSON).

--root / evaluates the running system, including its runtime state (live sysctl
values, mounts, loaded modules, listening sockets); any other directory is
evaluated as a tree, and rules that need runtime state are Unknown.

Exit status: 0 when every rule is Compliant, 1 when any rule is NonCompliant
or Unknown, 2 on an error (bad definition, unreadable root).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fail := func(err error) error {
				cmd.SilenceErrors = true
				fmt.Fprintln(cmd.ErrOrStderr(), "Error:", err)
				return &ExitError{Code: policyTestError}
			}
			if err := checkOutput(output); err != nil {
				return fail(err)
			}
			if err := requireFlag("definition", ref); err != nil {
				return fail(err)
			}
			if err := requireFlag("root", root); err != nil {
				return fail(err)
			}
			abs, err := filepath.Abs(root)
			if err != nil {
				return fail(err)
			}
			if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
				return fail(fmt.Errorf("--root %s is not a directory", root))
			}
			cat, err := builtin.Load()
			if err != nil {
				return fail(err)
			}
			cfg, defName, err := cat.Resolve(ref)
			if err != nil {
				return fail(err)
			}
			if defName == "" {
				defName = cfg.Name
			}
			env := guest.NewEnv(abs)
			env.Now = a.now
			results := cfg.Evaluate(ctxOf(cmd), env)
			states := make([]PolicyTestState, len(results))
			counts := map[guest.State]int{}
			for i, r := range results {
				counts[r.State]++
				states[i] = PolicyTestState{
					Assignment: "local", Definition: defName, Configuration: cfg.Name, Machine: abs,
					Rule: r.Rule, Title: r.Title, Severity: r.Severity, ComplianceState: string(r.State),
					Evidence: r.Evidence, Timestamp: r.Time, SSGRuleID: r.SSGRuleID,
				}
			}
			w := cmd.OutOrStdout()
			if output == outJSON {
				if err := writeJSON(w, states); err != nil {
					return fail(err)
				}
			} else {
				if err := table(w, []string{"RULE", "STATE", "SEVERITY", "EVIDENCE"}, rowsOf(states)); err != nil {
					return fail(err)
				}
				fmt.Fprintf(w, "\n%s on %s: %d rules, %d Compliant, %d NonCompliant, %d Unknown\n", defName, abs,
					len(results), counts[guest.Compliant], counts[guest.NonCompliant], counts[guest.Unknown])
			}
			if counts[guest.Compliant] != len(results) {
				cmd.SilenceErrors = true
				return &ExitError{Code: policyTestNotCompliant}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ref, "definition", "", "built-in definition or machine configuration name, or a JSON file")
	cmd.Flags().StringVar(&root, "root", "", "OS tree to evaluate (/ for the running system)")
	addOutputFlag(cmd, &output)
	return cmd
}

func rowsOf(states []PolicyTestState) [][]string {
	rows := make([][]string, len(states))
	for i, s := range states {
		rows[i] = []string{s.Rule, s.ComplianceState, s.Severity, s.Evidence}
	}
	return rows
}
