package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/capped"
	"github.com/corralhq/corral/internal/wire"
)

// ExitError makes the corral process exit with Code (a remote command's exit
// code) without printing an error of its own.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// ExitCode is the process exit code for what a command returned: 0 on
// success, an ExitError's code (1-255), else 1.
func ExitCode(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Code > 0 && ee.Code < 256:
		return ee.Code
	}
	return 1
}

// maxScriptFile bounds a script read with --script @FILE.
const maxScriptFile = 256 << 10

// runWaitGrace is how much longer than the run's own timeout the command
// waits: for the agent to pick the run up and report back.
const runWaitGrace = 2 * time.Minute

func (a *app) machineRunCommandCommand() *cobra.Command {
	var m machineRef
	var script, command, runAs, name, output string
	var params, protectedParams []string
	var timeout time.Duration
	var noWait bool
	cmd := &cobra.Command{
		Use:   "run-command --machine M [--resource-group RG] (--script @FILE | --command STR) [--param K=V]... [--protected-param K=@FILE]... [--run-as USER] [--timeout D] [--name N]",
		Short: "Run a script or command on a machine and print its output",
		Long: `Run a script (--script @FILE, @- for standard input, or inline text) or one command
line (--command) on a machine through the Corral/RunCommand extension, as root unless
--run-as names another account. Parameters become environment variables.

Secrets go in protected parameters: --protected-param K=@FILE reads the value from a file,
K=@- from standard input (one at most, and not with --script @-); a value is never taken
from the command line, where every local user could read it. The server seals them to the
machine at once and stores only the ciphertext; no API answer returns them, and only the
agent opens them, to hand them to the process as environment variables.

The command waits for the run, prints its standard output and standard error, and
exits with the remote exit code (1 when the run failed to start or timed out).
The machine's local lock-down lists can refuse it like any extension.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := m.validate(); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			body, forget, err := runCommandBody(cmd, runSpec{command: command, script: script, runAs: runAs, timeout: timeout,
				params: params, protectedParams: protectedParams})
			if err != nil {
				return err
			}
			defer forget()
			if name == "" {
				name = newRunName(a.now())
			}
			c, err := a.machineClient(cmd.Context(), &m)
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			rc, err := c.CreateRunCommand(ctx, m.sub, m.rg, m.machine, name, body)
			if err != nil {
				return err
			}
			if noWait {
				if output == outJSON {
					return writeJSON(cmd.OutOrStdout(), rc)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Run %s requested on machine %s.\n", rc.Name, m.machine)
				return nil
			}
			wait := time.Duration(rc.Timeout) + runWaitGrace
			err = poll(ctx, wait, func() (bool, error) {
				var err error
				rc, err = c.GetRunCommand(ctx, m.sub, m.rg, m.machine, name)
				return err == nil && runFinished(rc.State), err
			})
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("run %s is still %s after %s (is the agent connected?); check later with \"corral machine run-command show %s\"", name, rc.State, wait, name)
			}
			if err != nil {
				return err
			}
			if output == outJSON {
				if err := writeJSON(cmd.OutOrStdout(), rc); err != nil {
					return err
				}
			} else {
				io.WriteString(cmd.OutOrStdout(), rc.Stdout)
				io.WriteString(cmd.ErrOrStderr(), rc.Stderr)
			}
			return runOutcome(cmd, rc)
		},
	}
	m.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&script, "script", "", "script to run with /bin/sh: @FILE, @- (standard input) or inline text")
	f.StringVar(&command, "command", "", "one command line to run with /bin/sh -c")
	f.StringArrayVar(&params, "param", nil, "parameter K=V, passed as an environment variable (repeatable); not for secrets")
	f.StringArrayVar(&protectedParams, "protected-param", nil, "secret parameter K=@FILE or K=@- (standard input), sealed to the machine (repeatable)")
	f.StringVar(&runAs, "run-as", "", "account to run as (default root)")
	f.DurationVar(&timeout, "timeout", wire.DefaultRunCommandTimeout, "how long the run may take on the machine")
	f.StringVarP(&name, "name", "n", "", "run name (default run-TIME-RANDOM)")
	f.BoolVar(&noWait, "no-wait", false, "return once the run is requested")
	addOutputFlag(cmd, &output)
	cmd.AddCommand(a.runCommandShowCommand(), a.runCommandListCommand())
	return cmd
}

func readScript(cmd *cobra.Command, v string) (string, error) {
	var b []byte
	var err error
	switch {
	case v == "@-":
		b, err = capped.ReadAll(cmd.InOrStdin(), maxScriptFile, "standard input")
	case strings.HasPrefix(v, "@"):
		b, err = capped.ReadFile(v[1:], maxScriptFile)
	default:
		return v, nil
	}
	if err != nil {
		return "", fmt.Errorf("--script: %w", err)
	}
	return string(b), nil
}

// parseParams reads --param KEY=VALUE items. Values are kept exactly as
// given (they are often secrets, so messages name positions and keys, never
// values); a key given twice is refused rather than silently replaced.
func parseParams(items []string) (map[string]string, error) {
	out := map[string]string{}
	for i, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--param %d is not KEY=VALUE", i+1)
		}
		k = strings.TrimSpace(k)
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--param %s is given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// maxProtectedParam bounds one protected parameter value (the server's limit).
const maxProtectedParam = 8 << 10

// readProtectedParams reads --protected-param K=@FILE and K=@- items. A
// literal value is refused: it would sit in argv, in the shell history and
// in every local user's ps. One trailing newline of a file or of standard
// input is dropped (files written with echo have one).
func readProtectedParams(cmd *cobra.Command, items []string, stdinTaken bool) (map[string]string, error) {
	out := map[string]string{}
	for i, it := range items {
		k, src, ok := strings.Cut(it, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--protected-param %d is not KEY=@FILE or KEY=@-", i+1)
		}
		if !strings.HasPrefix(src, "@") {
			return nil, fmt.Errorf("--protected-param %s: give the value as @FILE or @- (standard input), never on the command line", k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--protected-param %s is given twice", k)
		}
		var b []byte
		var err error
		if src == "@-" {
			if stdinTaken {
				return nil, fmt.Errorf("--protected-param %s: standard input is already taken (by --script @- or another protected parameter)", k)
			}
			stdinTaken = true
			b, err = capped.ReadAll(cmd.InOrStdin(), maxProtectedParam, "standard input")
		} else {
			b, err = capped.ReadFile(src[1:], maxProtectedParam)
		}
		if err != nil {
			return nil, fmt.Errorf("--protected-param %s: %w", k, err)
		}
		out[k] = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		clear(b)
	}
	return out, nil
}

// newRunName is run-YYYYMMDD-HHMMSS-XXXX (UTC), unique enough per machine.
func newRunName(now time.Time) string {
	var r [2]byte
	_, _ = rand.Read(r[:])
	return "run-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(r[:])
}

func runFinished(state string) bool {
	return state == wire.RunSucceeded || state == wire.RunFailed || state == wire.RunTimedOut
}

// runOutcome turns a finished run into the process outcome: the remote exit
// code, or an error naming why the run did not complete.
func runOutcome(cmd *cobra.Command, rc wire.RunCommand) error {
	switch {
	case rc.State == wire.RunSucceeded:
		return nil
	case rc.State == wire.RunFailed && rc.ExitCode != nil && *rc.ExitCode != 0:
		cmd.SilenceErrors = true
		return &ExitError{Code: *rc.ExitCode}
	}
	return fmt.Errorf("run %s %s: %s", rc.Name, rc.State, dash(rc.Message))
}

func (a *app) runCommandShowCommand() *cobra.Command {
	var m machineRef
	var output string
	cmd := &cobra.Command{
		Use: "show NAME --machine M [--resource-group RG]", Short: "Show a run with its result and output", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openMachine(cmd, &m, output)
			if err != nil {
				return err
			}
			rc, err := c.GetRunCommand(ctxOf(cmd), m.sub, m.rg, m.machine, args[0])
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), rc)
			}
			return renderRunDetail(cmd.OutOrStdout(), rc)
		},
	}
	m.flags(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) runCommandListCommand() *cobra.Command {
	var m machineRef
	var output string
	var top int
	cmd := &cobra.Command{
		Use: "list --machine M [--resource-group RG] [--top N]", Short: "List the runs of a machine, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openMachine(cmd, &m, output)
			if err != nil {
				return err
			}
			rcs, err := c.ListRunCommands(ctxOf(cmd), m.sub, m.rg, m.machine, top)
			if err != nil {
				return err
			}
			return renderRuns(cmd.OutOrStdout(), output, rcs)
		},
	}
	m.flags(cmd)
	cmd.Flags().IntVar(&top, "top", 50, "at most this many runs (0 = all)")
	addOutputFlag(cmd, &output)
	return cmd
}

func exitCodeText(c *int) string {
	if c == nil {
		return ""
	}
	return fmt.Sprint(*c)
}

func renderRuns(w io.Writer, output string, rcs []wire.RunCommand) error {
	return render(w, output, rcs, []string{"NAME", "STATE", "EXIT", "RUN AS", "CREATED", "FINISHED", "CREATED BY"}, func(rc wire.RunCommand) []string {
		runAs := rc.RunAsUser
		if runAs == "" {
			runAs = "root"
		}
		return []string{rc.Name, rc.State, exitCodeText(rc.ExitCode), runAs, formatTime(rc.CreatedAt), formatTime(rc.FinishedAt), rc.CreatedBy}
	})
}

func renderRunDetail(w io.Writer, rc wire.RunCommand) error {
	what := "Command:"
	body := rc.Command
	if rc.Script != "" {
		what, body = "Script:", fmt.Sprintf("%d bytes", len(rc.Script))
	}
	runAs := rc.RunAsUser
	if runAs == "" {
		runAs = "root"
	}
	rows := [][]string{
		{"Name:", rc.Name}, {"State:", rc.State}, {"Exit code:", exitCodeText(rc.ExitCode)}, {"Message:", rc.Message},
		{what, body}, {"Run as:", runAs}, {"Timeout:", time.Duration(rc.Timeout).String()},
		{"Created:", formatTime(rc.CreatedAt) + " by " + dash(rc.CreatedBy)}, {"Started:", formatTime(rc.StartedAt)},
		{"Finished:", formatTime(rc.FinishedAt)},
	}
	if err := keyValues(w, rows); err != nil {
		return err
	}
	for _, out := range []struct{ name, text string }{{"stdout", rc.Stdout}, {"stderr", rc.Stderr}} {
		if out.text == "" {
			continue
		}
		fmt.Fprintf(w, "--- %s ---\n%s", out.name, out.text)
		if !strings.HasSuffix(out.text, "\n") {
			fmt.Fprintln(w)
		}
	}
	return nil
}

// runSpec is what the run-command flags say (corral machine run-command,
// corral bulk run-command).
type runSpec struct {
	command, script, runAs  string
	timeout                 time.Duration
	params, protectedParams []string
}

// runCommandBody builds the run's request from its flags. forget clears the
// protected parameters' values once the request is sent.
func runCommandBody(cmd *cobra.Command, s runSpec) (body wire.RunCommandCreate, forget func(), err error) {
	forget = func() {}
	if (s.script == "") == (s.command == "") {
		return body, forget, errors.New("give exactly one of --script and --command")
	}
	body = wire.RunCommandCreate{Command: s.command, RunAsUser: s.runAs, Timeout: wire.Duration(s.timeout)}
	if s.script != "" {
		if body.Script, err = readScript(cmd, s.script); err != nil {
			return body, forget, err
		}
	}
	if len(s.params) > 0 {
		if body.Parameters, err = parseParams(s.params); err != nil {
			return body, forget, err
		}
	}
	if len(s.protectedParams) > 0 {
		p, err := readProtectedParams(cmd, s.protectedParams, s.script == "@-")
		if err != nil {
			return body, forget, err
		}
		body.ProtectedParameters = p
		forget = func() { clear(p) }
	}
	return body, forget, nil
}
