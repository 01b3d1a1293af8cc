package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// table writes rows aligned with text/tabwriter. Every cell is made safe
// for a terminal first (see cell): values come from agents, failed sign-ins
// and other people, and must never move the cursor, clear the screen or
// reorder what the operator reads.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		clean := make([]string, len(r))
		for i, c := range r {
			clean[i] = cell(dash(c))
		}
		fmt.Fprintln(tw, strings.Join(clean, "\t"))
	}
	return tw.Flush()
}

// cell is s as one table cell: tabs and line breaks become spaces; every
// other control character (C0, DEL, C1: ESC starts the terminal's escape
// sequences) and the bidirectional overrides are shown as \xNN or \uNNNN;
// invalid UTF-8 as \ufffd.
func cell(s string) string {
	if strings.IndexFunc(s, wire.UnsafeRune) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			b.WriteString(`\ufffd`)
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case r < 0x100 && wire.UnsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case wire.UnsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// render writes v as JSON, or as a table built by rows.
func render[T any](w io.Writer, output string, items []T, header []string, row func(T) []string) error {
	if items == nil {
		items = []T{}
	}
	if output == outJSON {
		return writeJSON(w, items)
	}
	rows := make([][]string, len(items))
	for i, it := range items {
		rows[i] = row(it)
	}
	return table(w, header, rows)
}

func osOf(m wire.Machine) string {
	p := m.Properties
	switch {
	case p.OSName != "" && p.OSVersion != "":
		return p.OSName + " " + p.OSVersion
	case p.OSName != "":
		return p.OSName
	}
	return p.OSType
}

func agentOf(m wire.Machine) string {
	if m.AgentVersion == "" {
		return ""
	}
	if !m.AgentSupported {
		return m.AgentVersion + " (unsupported)"
	}
	return m.AgentVersion
}

var machineHeader = []string{"NAME", "RESOURCE GROUP", "STATUS", "ENVIRONMENT", "OS", "AGENT", "LAST HEARTBEAT"}

func machineRow(m wire.Machine) []string {
	return []string{m.Name, m.ResourceGroup, m.Status, m.Properties.Environment, osOf(m), agentOf(m), formatTime(m.LastHeartbeat)}
}

// renderMachines prints machines as a table or a JSON array.
func renderMachines(w io.Writer, output string, ms []wire.Machine) error {
	return render(w, output, ms, machineHeader, machineRow)
}

func renderGroups(w io.Writer, output string, gs []wire.ResourceGroup) error {
	return render(w, output, gs, []string{"NAME", "SUBSCRIPTION", "TAGS", "CREATED"}, func(g wire.ResourceGroup) []string {
		return []string{g.Name, g.SubscriptionID, formatTags(g.Tags), formatTime(g.CreatedAt)}
	})
}

func renderSPs(w io.Writer, output string, sps []wire.ServicePrincipal) error {
	return render(w, output, sps, []string{"CLIENT ID", "DISPLAY NAME", "SECRET EXPIRES", "CREATED BY"}, func(s wire.ServicePrincipal) []string {
		return []string{s.ClientID, s.DisplayName, formatTime(s.ExpiresAt), s.CreatedBy}
	})
}

func renderRoles(w io.Writer, output string, rs []wire.RoleDefinition) error {
	return render(w, output, rs, []string{"ID", "NAME", "BUILT-IN", "DESCRIPTION"}, func(r wire.RoleDefinition) []string {
		return []string{r.ID, r.Name, strconv.FormatBool(r.BuiltIn), r.Description}
	})
}

func renderAssignments(w io.Writer, output string, ras []wire.RoleAssignment) error {
	return render(w, output, ras, []string{"ID", "PRINCIPAL", "TYPE", "ROLE", "SCOPE"}, func(r wire.RoleAssignment) []string {
		role := r.RoleName
		if role == "" {
			role = r.RoleID
		}
		return []string{r.ID, r.PrincipalID, r.PrincipalType, role, r.Scope}
	})
}

func renderDeviceCodes(w io.Writer, output string, ds []wire.PendingDeviceCode) error {
	return render(w, output, ds, []string{"CODE", "SUBSCRIPTION", "RESOURCE GROUP", "MACHINE", "SOURCE IP", "EXPIRES"}, func(d wire.PendingDeviceCode) []string {
		return []string{d.UserCode, d.Subscription, d.ResourceGroup, d.MachineName, d.SourceIP, formatTime(d.ExpiresAt)}
	})
}

func renderUsers(w io.Writer, output string, us []wire.User) error {
	return render(w, output, us, []string{"NAME", "ID", "CREATED", "DISABLED"}, func(u wire.User) []string {
		return []string{u.Name, u.ID, formatTime(u.CreatedAt), strconv.FormatBool(u.Disabled)}
	})
}

func renderTokens(w io.Writer, output string, ts []wire.APIToken) error {
	return render(w, output, ts, []string{"ID", "NAME", "CREATED", "EXPIRES"}, func(t wire.APIToken) []string {
		return []string{t.ID, t.Name, formatTime(t.CreatedAt), formatTime(t.ExpiresAt)}
	})
}

func renderActivity(w io.Writer, output string, es []wire.ActivityEntry) error {
	return render(w, output, es, []string{"TIME", "CALLER", "ACTION", "SCOPE", "RESULT", "STATUS"}, func(e wire.ActivityEntry) []string {
		caller := e.Caller
		if caller == "" {
			caller = e.CallerID
		}
		st := ""
		if e.Status != 0 {
			st = strconv.Itoa(e.Status)
		}
		return []string{formatTime(e.Time), caller, e.Action, e.Scope, e.Result, st}
	})
}

// listCommand is a "list" subcommand without arguments: fetch with the API
// client, render as a table or as JSON (-o).
func listCommand[T any](a *app, short string, fetch func(*client.Client, context.Context) ([]T, error), render func(io.Writer, string, []T) error) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: "list", Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			items, err := fetch(c, ctxOf(cmd))
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), output, items)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// showCommand is a "show NAME" subcommand: fetch one item with the API
// client, write it as a JSON object (-o json) or as a one-row table. Flags
// the caller adds are checked in the command's PreRunE, before any call.
func showCommand[T any](a *app, use, short string, get func(c *client.Client, ctx context.Context, name string) (T, error), render func(io.Writer, string, []T) error) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			item, err := get(c, ctxOf(cmd), args[0])
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), item)
			}
			return render(cmd.OutOrStdout(), output, []T{item})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// deleteCommand is a "delete NAME" subcommand: delete with the API client,
// then print done(NAME). Flags the caller adds are checked in the command's
// PreRunE, before any call.
func deleteCommand(a *app, use, short string, del func(c *client.Client, ctx context.Context, name string) error, done func(name string) string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := del(c, ctxOf(cmd), args[0]); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), done(args[0]))
			return nil
		},
	}
}

// deleted is the usual done message of deleteCommand: "Deleted <what> NAME."
func deleted(what string) func(string) string {
	return func(name string) string { return "Deleted " + what + " " + name + "." }
}
