package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"

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

func machineTarget(sub, rg string) error {
	if err := requireFlag("subscription", sub); err != nil {
		return err
	}
	return requireFlag("resource-group", rg)
}

func (a *app) machineShowCommand() *cobra.Command {
	var sub, rg string
	cmd := showCommand(a, "show NAME --resource-group RG", "Show a machine",
		func(c *client.Client, ctx context.Context, name string) (wire.Machine, error) {
			return c.GetMachine(ctx, sub, rg, name)
		},
		renderMachines)
	cmd.PreRunE = func(*cobra.Command, []string) error { return machineTarget(sub, rg) }
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group (required)")
	return cmd
}

func (a *app) machineDeleteCommand() *cobra.Command {
	var sub, rg string
	cmd := deleteCommand(a, "delete NAME --resource-group RG", "Delete a machine (its agent is told to stop)",
		func(c *client.Client, ctx context.Context, name string) error {
			return c.DeleteMachine(ctx, sub, rg, name)
		},
		func(name string) string { return fmt.Sprintf("Deleted machine %s from resource group %s.", name, rg) })
	cmd.PreRunE = func(*cobra.Command, []string) error { return machineTarget(sub, rg) }
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group (required)")
	return cmd
}

func (a *app) machineTagSetCommand() *cobra.Command {
	var sub, rg, output string
	var replace bool
	cmd := &cobra.Command{
		Use:   "set NAME --resource-group RG KEY=VALUE...",
		Short: "Set tags on a machine (other tags are kept unless --replace)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := machineTarget(sub, rg); err != nil {
				return err
			}
			if len(args) < 2 && !replace {
				return errors.New("give at least one KEY=VALUE")
			}
			tags, err := parseKeyValues(args[1:], false)
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			if !replace {
				m, err := c.GetMachine(ctx, sub, rg, args[0])
				if err != nil {
					return err
				}
				merged := map[string]string{}
				for k, v := range m.Tags {
					merged[k] = v
				}
				for k, v := range tags {
					merged[k] = v
				}
				tags = merged
			}
			m, err := c.SetMachineTags(ctx, sub, rg, args[0], tags)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Tags of %s: %s\n", m.Name, formatTags(m.Tags))
			return nil
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group (required)")
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
