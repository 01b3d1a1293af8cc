package cli

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) machineCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "machine", Aliases: []string{"machines"}, Short: "Manage connected machines"}
	tag := &cobra.Command{Use: "tag", Short: "Change a machine's tags"}
	tag.AddCommand(a.machineTagSetCommand())
	cmd.AddCommand(a.machineListCommand(), a.machineShowCommand(), a.machineDeleteCommand(), tag,
		a.machineApproveCommand(), a.machinePendingCommand(), a.machineExtensionCommand(), a.machineRunCommandCommand())
	return cmd
}

var tagFilterRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*(=.*)?$`)

// machineListFlags are the validated filters of "machine list".
type machineListFlags struct {
	sub, rg, env, status, os, tag, name, output string
}

func (f *machineListFlags) validate() (client.MachineFilter, error) {
	var mf client.MachineFilter
	if err := requireFlag("subscription", f.sub); err != nil {
		return mf, err
	}
	if err := checkOutput(f.output); err != nil {
		return mf, err
	}
	env, err := canonicalValue("environment", f.env, wire.Environments)
	if err != nil {
		return mf, err
	}
	st, err := canonicalValue("status", f.status, statuses)
	if err != nil {
		return mf, err
	}
	if f.tag != "" && !tagFilterRE.MatchString(f.tag) {
		return mf, fmt.Errorf("invalid --tag %q: use KEY or KEY=VALUE", f.tag)
	}
	return client.MachineFilter{Subscription: f.sub, ResourceGroup: f.rg, Environment: env, Status: st, OS: f.os,
		Tag: f.tag, Name: f.name, PageSize: 1000}, nil
}

func (a *app) machineListCommand() *cobra.Command {
	var f machineListFlags
	cmd := &cobra.Command{
		Use:   "list [--resource-group RG] [--environment E] [--status S] [--os OS] [--tag k[=v]] [--name SUBSTR]",
		Short: "List machines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mf, err := f.validate()
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ms, err := c.ListMachines(ctxOf(cmd), mf)
			if err != nil {
				return err
			}
			if f.output == outTable {
				return renderMachinesWithUpdates(ctxOf(cmd), cmd.OutOrStdout(), c, f.sub, ms)
			}
			return renderMachines(cmd.OutOrStdout(), f.output, ms)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.sub, "subscription", defaultSubscription, "subscription")
	fl.StringVarP(&f.rg, "resource-group", "g", "", "only this resource group")
	fl.StringVar(&f.env, "environment", "", "AWS, GCP, Azure, OCI, VMware or OnPrem")
	fl.StringVar(&f.status, "status", "", "Connected, Disconnected or Expired")
	fl.StringVar(&f.os, "os", "", "OS name, e.g. debian")
	fl.StringVar(&f.tag, "tag", "", "tag KEY or KEY=VALUE")
	fl.StringVar(&f.name, "name", "", "name contains")
	addOutputFlag(cmd, &f.output)
	return cmd
}

// machineByName is the positional NAME of a machine command, with the
// optional --resource-group (found from the name when it is unique in the
// subscription, as for every machine command).
type machineByName struct{ ref machineRef }

func (m *machineByName) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&m.ref.sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringVarP(&m.ref.rg, "resource-group", "g", "", "resource group of the machine (default: found by the machine's name)")
}

// open resolves NAME and returns a client.
func (a *app) openNamedMachine(cmd *cobra.Command, m *machineByName, name, output string) (*client.Client, error) {
	m.ref.machine = name
	return a.openMachine(cmd, &m.ref, output)
}

func (a *app) machineShowCommand() *cobra.Command {
	var m machineByName
	var output string
	cmd := &cobra.Command{
		Use: "show NAME [--resource-group RG]", Short: "Show a machine: status, agent, OS, environment, local configuration, tags",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openNamedMachine(cmd, &m, args[0], output)
			if err != nil {
				return err
			}
			mc, err := c.GetMachine(ctxOf(cmd), m.ref.sub, m.ref.rg, args[0])
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), mc)
			}
			return renderMachineDetail(cmd.OutOrStdout(), mc)
		},
	}
	m.flags(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

// renderMachineDetail is the readable view of one machine.
func renderMachineDetail(w io.Writer, m wire.Machine) error {
	p := m.Properties
	osName := strings.TrimSpace(p.OSPrettyName)
	if osName == "" {
		osName = strings.TrimSpace(p.OSName + " " + p.OSVersion)
	}
	agent := m.AgentVersion
	if agent != "" && !m.AgentSupported {
		agent += " (out of support: upgrade the agent)"
	}
	env := p.Environment
	if c := p.Cloud; c != nil {
		env = strings.TrimSpace(fmt.Sprintf("%s %s %s %s", env, c.InstanceID, c.Region, c.AccountID))
	}
	rows := [][]string{
		{"Name:", m.Name}, {"Resource ID:", m.ID}, {"Machine ID:", m.MachineID}, {"Status:", m.Status},
		{"Last heartbeat:", formatTime(m.LastHeartbeat)}, {"Agent:", agent}, {"OS:", osName}, {"Kernel:", p.Kernel},
		{"Hostname:", strings.TrimSpace(p.Hostname + " " + p.FQDN)}, {"IP addresses:", strings.Join(p.IPAddresses, ", ")},
		{"CPU / memory:", fmt.Sprintf("%d × %s, %s", p.CPUCount, dash(p.CPUModel), formatBytes(p.MemoryBytes))},
		{"Environment:", env}, {"Tags:", formatTags(m.Tags)},
		{"Created:", formatTime(m.CreatedAt) + " by " + dash(m.CreatedBy)}, {"Certificate until:", formatTime(m.CertificateNotAfter)},
	}
	if c := m.AgentConfig; c != nil {
		rows = append(rows,
			[]string{"Config mode:", c.Mode},
			[]string{"Extensions:", fmt.Sprintf("enabled %v; allowlist %s; blocklist %s", c.ExtensionsEnabled, dash(strings.Join(c.ExtensionsAllowlist, ",")), dash(strings.Join(c.ExtensionsBlocklist, ",")))},
			[]string{"Guest configuration:", fmt.Sprint(c.GuestConfigurationEnabled)},
			[]string{"Host changes:", fmt.Sprint(c.HostChangesEnabled)},
			[]string{"Incoming connections:", fmt.Sprintf("%v, ports %s", c.IncomingConnectionsEnabled, dash(strings.Join(c.IncomingConnectionsPorts, ",")))},
		)
	}
	return keyValues(w, rows)
}

func formatBytes(n uint64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

func (a *app) machineDeleteCommand() *cobra.Command {
	var m machineByName
	cmd := &cobra.Command{
		Use: "delete NAME [--resource-group RG]", Short: "Delete a machine (its agent is told to stop)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openNamedMachine(cmd, &m, args[0], outTable)
			if err != nil {
				return err
			}
			if err := c.DeleteMachine(ctxOf(cmd), m.ref.sub, m.ref.rg, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted machine %s from resource group %s.\n", args[0], m.ref.rg)
			return nil
		},
	}
	m.flags(cmd)
	return cmd
}

func (a *app) machineTagSetCommand() *cobra.Command {
	var m machineByName
	var output string
	var replace bool
	cmd := &cobra.Command{
		Use:   "set NAME [--resource-group RG] KEY=VALUE...",
		Short: "Set tags on a machine (other tags are kept unless --replace)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 && !replace {
				return errors.New("give at least one KEY=VALUE")
			}
			tags, err := parseKeyValues(args[1:], false)
			if err != nil {
				return err
			}
			c, err := a.openNamedMachine(cmd, &m, args[0], output)
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			sub, rg := m.ref.sub, m.ref.rg
			if !replace {
				cur, err := c.GetMachine(ctx, sub, rg, args[0])
				if err != nil {
					return err
				}
				merged := map[string]string{}
				for k, v := range cur.Tags {
					merged[k] = v
				}
				for k, v := range tags {
					merged[k] = v
				}
				tags = merged
			}
			mc, err := c.SetMachineTags(ctx, sub, rg, args[0], tags)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), mc)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Tags of %s: %s\n", mc.Name, formatTags(mc.Tags))
			return nil
		},
	}
	m.flags(cmd)
	cmd.Flags().BoolVar(&replace, "replace", false, "replace all tags with the given ones")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) machineApproveCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: "approve CODE", Short: "Approve a device-code onboarding (the code the agent printed)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ap, err := c.ApproveDeviceCode(ctxOf(cmd), args[0])
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), ap)
			}
			name := ap.MachineName
			if name == "" {
				name = "(unnamed)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Approved device code %s: machine %s may join resource group %s in subscription %s.\n",
				ap.UserCode, name, ap.ResourceGroup, ap.Subscription)
			return nil
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) machinePendingCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: "pending", Short: "List device-code onboardings waiting for approval", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ds, err := c.ListDeviceCodes(ctxOf(cmd))
			if err != nil {
				return err
			}
			return renderDeviceCodes(cmd.OutOrStdout(), output, ds)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}
