package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

const defaultSubscription = "default"

func (a *app) groupCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Aliases: []string{"rg"}, Short: "Manage resource groups"}
	cmd.AddCommand(a.groupCreateCommand(), a.groupListCommand(), a.groupDeleteCommand())
	return cmd
}

func (a *app) groupCreateCommand() *cobra.Command {
	var sub, output string
	var tags []string
	cmd := &cobra.Command{
		Use: "create NAME [--subscription default] [--tags k=v,...]", Short: "Create a resource group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("subscription", sub); err != nil {
				return err
			}
			tm, err := parseKeyValues(tags, true)
			if err != nil {
				return err
			}
			if len(tm) == 0 {
				tm = nil
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			g, err := c.CreateResourceGroup(ctxOf(cmd), sub, args[0], tm)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), g)
			}
			return renderGroups(cmd.OutOrStdout(), output, []wire.ResourceGroup{g})
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringSliceVar(&tags, "tags", nil, "tags as k=v,k2=v2")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) groupListCommand() *cobra.Command {
	var sub, output string
	cmd := &cobra.Command{
		Use: "list [--subscription default]", Short: "List resource groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("subscription", sub); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			gs, err := c.ListResourceGroups(ctxOf(cmd), sub)
			if err != nil {
				return err
			}
			return renderGroups(cmd.OutOrStdout(), output, gs)
		},
	}
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) groupDeleteCommand() *cobra.Command {
	var sub string
	cmd := deleteCommand(a, "delete NAME [--subscription default]", "Delete an empty resource group",
		func(c *client.Client, ctx context.Context, name string) error {
			return c.DeleteResourceGroup(ctx, sub, name)
		},
		deleted("resource group"))
	cmd.PreRunE = func(*cobra.Command, []string) error { return requireFlag("subscription", sub) }
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription")
	return cmd
}
