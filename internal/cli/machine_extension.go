package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/capped"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// machineRef is the --machine/--resource-group/--subscription of a command.
type machineRef struct{ sub, rg, machine string }

func (m *machineRef) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&m.sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringVarP(&m.rg, "resource-group", "g", "", "resource group of the machine (default: found by the machine's name)")
	cmd.Flags().StringVarP(&m.machine, "machine", "m", "", "machine name (required)")
}

func (m *machineRef) validate() error {
	if err := requireFlag("subscription", m.sub); err != nil {
		return err
	}
	return requireFlag("machine", m.machine)
}

// openMachine validates the machine flags and the output format and
// returns a client with the machine's resource group resolved.
func (a *app) openMachine(cmd *cobra.Command, m *machineRef, output string) (*client.Client, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	if err := checkOutput(output); err != nil {
		return nil, err
	}
	return a.machineClient(cmd.Context(), m)
}

// machineClient returns an API client and, when --resource-group was not
// given, finds the machine's resource group from its name: exactly one
// machine of that name in the subscription must exist.
func (a *app) machineClient(ctx context.Context, m *machineRef) (*client.Client, error) {
	c, err := a.client()
	if err != nil || m.rg != "" {
		return c, err
	}
	ms, err := c.ListMachines(ctx, client.MachineFilter{Subscription: m.sub, Name: m.machine})
	if err != nil {
		return nil, fmt.Errorf("find machine %q: %w", m.machine, err)
	}
	var groups []string
	for _, x := range ms {
		if strings.EqualFold(x.Name, m.machine) {
			groups = append(groups, x.ResourceGroup)
		}
	}
	switch len(groups) {
	case 0:
		return nil, fmt.Errorf("no machine named %q in subscription %q", m.machine, m.sub)
	case 1:
		m.rg = groups[0]
		return c, nil
	}
	return nil, fmt.Errorf("%d machines are named %q (resource groups %s): give --resource-group", len(groups), m.machine, strings.Join(groups, ", "))
}

func (a *app) machineExtensionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "extension", Aliases: []string{"extensions"}, Short: "Manage the extensions of a machine"}
	cmd.AddCommand(a.machineExtensionSetCommand(), a.machineExtensionDeleteCommand(), a.machineExtensionListCommand(),
		a.machineExtensionShowCommand())
	return cmd
}

// maxSettingsFile bounds a settings document read from a file.
const maxSettingsFile = 64 << 10

// readSettings reads a settings document given as "@FILE", "@-" (standard
// input) or literal JSON, and checks it is a JSON object.
func readSettings(cmd *cobra.Command, flag, v string) (json.RawMessage, error) {
	if v == "" {
		return nil, nil
	}
	var b []byte
	var err error
	switch {
	case v == "@-":
		b, err = capped.ReadAll(cmd.InOrStdin(), maxSettingsFile, "standard input")
	case strings.HasPrefix(v, "@"):
		b, err = capped.ReadFile(v[1:], maxSettingsFile)
	case flag == "protected-settings":
		return nil, fmt.Errorf("--%s takes @FILE or @- (standard input): a secret on the command line is visible to every user of this computer", flag)
	default:
		b = []byte(v)
	}
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	b = bytes.TrimSpace(b)
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		// Never echo the document: it may be secret. Where it breaks is fine.
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("--%s is not valid JSON: %s (at byte %d)", flag, se.Error(), se.Offset)
		}
		return nil, fmt.Errorf("--%s must be a JSON object", flag)
	}
	return json.RawMessage(b), nil
}

// poll calls check every interval (growing to 2s) until it reports done,
// ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	interval := 200 * time.Millisecond
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		interval = min(interval*3/2, 2*time.Second)
	}
}

func (a *app) machineExtensionSetCommand() *cobra.Command {
	var m machineRef
	var name, publisher, typ, version, settings, protected, output string
	var noWait, clearSettings bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "set --machine M [--resource-group RG] --name N --publisher P --type T [--version V] [--settings @FILE|JSON] [--protected-settings @FILE|@-]",
		Short: "Install, reconfigure or upgrade an extension on a machine",
		Long: `Install an extension on a machine, or change it: new settings are an update, a
new version an upgrade. Without --version the highest version listed in the
publisher's signed catalog is used.

Settings are a JSON object, given inline or as @FILE. Protected settings are sealed
to the machine by the control plane as soon as it receives them and are only ever
decrypted on the machine, for the handler; give them as @FILE or @- (standard input)
so they never appear in the process list. Omitting either on a change (an upgrade
with --version) keeps the current ones; --clear-settings removes the public settings
and {} as protected settings removes those.

By default the command waits until the agent reports Succeeded or Failed and exits
1 on Failed; --no-wait returns once the request is accepted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := m.validate(); err != nil {
				return err
			}
			for _, f := range []struct{ flag, v string }{{"name", name}, {"publisher", publisher}, {"type", typ}} {
				if err := requireFlag(f.flag, f.v); err != nil {
					return err
				}
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			body := wire.MachineExtensionSet{Publisher: publisher, Type: typ, Version: version}
			var err error
			if body.Settings, err = readSettings(cmd, "settings", settings); err != nil {
				return err
			}
			if clearSettings && settings != "" {
				return errors.New("--settings and --clear-settings cannot be used together")
			}
			if body.ProtectedSettings, err = readSettings(cmd, "protected-settings", protected); err != nil {
				return err
			}
			c, err := a.machineClient(cmd.Context(), &m)
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			if settings == "" && !clearSettings {
				// A change without --settings (an upgrade, new protected
				// settings) keeps the public settings, as it keeps the
				// protected ones.
				cur, err := c.GetMachineExtension(ctx, m.sub, m.rg, m.machine, name)
				switch {
				case err == nil:
					body.Settings = cur.Settings
				case !client.IsNotFound(err):
					return err
				}
			}
			ext, err := c.SetMachineExtension(ctx, m.sub, m.rg, m.machine, name, body)
			clear(body.ProtectedSettings)
			if err != nil {
				return err
			}
			if !noWait {
				fmt.Fprintf(cmd.ErrOrStderr(), "Extension %s (%s/%s %s) is %s; waiting for the agent...\n", ext.Name, ext.Publisher, ext.Type, ext.Version, ext.State)
				ext, err = waitExtension(ctx, c, m, name, ext.SeqNo, timeout)
				if err != nil {
					return err
				}
			}
			if output == outJSON {
				if err := writeJSON(cmd.OutOrStdout(), ext); err != nil {
					return err
				}
			} else {
				printExtensionState(cmd.OutOrStdout(), ext)
			}
			if ext.State == wire.ExtFailed {
				return fmt.Errorf("extension %s failed: %s", ext.Name, dash(ext.Message))
			}
			return nil
		},
	}
	m.flags(cmd)
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "extension name on the machine (required)")
	f.StringVar(&publisher, "publisher", "", "publisher, e.g. Corral (required)")
	f.StringVar(&typ, "type", "", "extension type, e.g. RunCommand (required)")
	f.StringVar(&version, "version", "", "version MAJOR.MINOR.PATCH (default: the latest listed)")
	f.StringVar(&settings, "settings", "", "public settings: a JSON object or @FILE")
	f.StringVar(&protected, "protected-settings", "", "protected settings: @FILE or @- (a JSON object, sealed to the machine)")
	f.BoolVar(&clearSettings, "clear-settings", false, "remove the public settings (without --settings they are kept)")
	f.BoolVar(&noWait, "no-wait", false, "return once the request is accepted")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the agent")
	addOutputFlag(cmd, &output)
	return cmd
}

// waitExtension polls until the extension's request seq has ended
// (Succeeded or Failed).
func waitExtension(ctx context.Context, c *client.Client, m machineRef, name string, seq int64, timeout time.Duration) (wire.MachineExtension, error) {
	var ext wire.MachineExtension
	err := poll(ctx, timeout, func() (bool, error) {
		var err error
		ext, err = c.GetMachineExtension(ctx, m.sub, m.rg, m.machine, name)
		if err != nil {
			return false, err
		}
		return ext.SeqNo >= seq && (ext.State == wire.ExtSucceeded || ext.State == wire.ExtFailed), nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return ext, fmt.Errorf("extension %s is still %s after %s (is the agent connected?); check later with \"corral machine extension show\"", name, ext.State, timeout)
	}
	return ext, err
}

func printExtensionState(w io.Writer, e wire.MachineExtension) {
	fmt.Fprintf(w, "Extension %s (%s/%s %s): %s", e.Name, e.Publisher, e.Type, e.Version, e.State)
	if e.Message != "" {
		fmt.Fprintf(w, ": %s", strings.TrimSpace(e.Message))
	}
	fmt.Fprintln(w)
}

func (a *app) machineExtensionDeleteCommand() *cobra.Command {
	var m machineRef
	var name string
	var noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "delete --machine M [--resource-group RG] --name N",
		Short: "Remove an extension from a machine (waits until it is gone)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := m.validate(); err != nil {
				return err
			}
			if err := requireFlag("name", name); err != nil {
				return err
			}
			c, err := a.machineClient(cmd.Context(), &m)
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			ext, err := c.DeleteMachineExtension(ctx, m.sub, m.rg, m.machine, name)
			if err != nil {
				return err
			}
			if noWait {
				fmt.Fprintf(cmd.OutOrStdout(), "Removal of extension %s requested.\n", ext.Name)
				return nil
			}
			err = poll(ctx, timeout, func() (bool, error) {
				cur, err := c.GetMachineExtension(ctx, m.sub, m.rg, m.machine, name)
				if client.IsNotFound(err) {
					return true, nil
				}
				if err != nil {
					return false, err
				}
				if cur.State == wire.ExtFailed {
					return false, fmt.Errorf("removal of extension %s failed: %s", name, dash(cur.Message))
				}
				ext = cur
				return false, nil
			})
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("extension %s is still %s after %s (is the agent connected?)", name, ext.State, timeout)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed extension %s from machine %s.\n", ext.Name, m.machine)
			return nil
		},
	}
	m.flags(cmd)
	cmd.Flags().StringVarP(&name, "name", "n", "", "extension name (required)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the removal is requested")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the agent")
	return cmd
}

func (a *app) machineExtensionListCommand() *cobra.Command {
	var m machineRef
	var output string
	cmd := &cobra.Command{
		Use: "list --machine M [--resource-group RG]", Short: "List the extensions of a machine", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openMachine(cmd, &m, output)
			if err != nil {
				return err
			}
			es, err := c.ListMachineExtensions(ctxOf(cmd), m.sub, m.rg, m.machine)
			if err != nil {
				return err
			}
			return renderExtensions(cmd.OutOrStdout(), output, es)
		},
	}
	m.flags(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) machineExtensionShowCommand() *cobra.Command {
	var m machineRef
	var name, output string
	cmd := &cobra.Command{
		Use: "show --machine M [--resource-group RG] --name N", Short: "Show an extension of a machine with its state and message", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := m.validate(); err != nil {
				return err
			}
			if err := requireFlag("name", name); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.machineClient(cmd.Context(), &m)
			if err != nil {
				return err
			}
			e, err := c.GetMachineExtension(ctxOf(cmd), m.sub, m.rg, m.machine, name)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), e)
			}
			return renderExtensionDetail(cmd.OutOrStdout(), e)
		},
	}
	m.flags(cmd)
	cmd.Flags().StringVarP(&name, "name", "n", "", "extension name (required)")
	addOutputFlag(cmd, &output)
	return cmd
}

var extensionHeader = []string{"NAME", "EXTENSION", "VERSION", "STATE", "MESSAGE", "UPDATED"}

func renderExtensions(w io.Writer, output string, es []wire.MachineExtension) error {
	return render(w, output, es, extensionHeader, func(e wire.MachineExtension) []string {
		return []string{e.Name, e.Publisher + "/" + e.Type, e.Version, e.State, ellipsis(e.Message, 60), formatTime(e.UpdatedAt)}
	})
}

func renderExtensionDetail(w io.Writer, e wire.MachineExtension) error {
	settings := "-"
	if len(e.Settings) > 0 {
		settings = string(e.Settings)
	}
	protected := "none"
	if e.HasProtectedSettings {
		protected = "sealed to the machine"
	}
	rows := [][]string{
		{"Name:", e.Name}, {"Extension:", e.Publisher + "/" + e.Type}, {"Version:", e.Version}, {"State:", e.State},
		{"Message:", e.Message}, {"Sequence:", fmt.Sprint(e.SeqNo)}, {"Settings:", settings}, {"Protected settings:", protected},
		{"Created:", formatTime(e.CreatedAt) + " by " + dash(e.CreatedBy)}, {"Updated:", formatTime(e.UpdatedAt) + " by " + dash(e.UpdatedBy)},
	}
	return keyValues(w, rows)
}

// keyValues prints aligned "Key: value" lines.
func keyValues(w io.Writer, rows [][]string) error {
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(w, "%-*s %s\n", width, r[0], dash(strings.TrimSpace(r[1]))); err != nil {
			return err
		}
	}
	return nil
}

// ellipsis shortens s to n runes for a table cell.
func ellipsis(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
