package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// Shell completion (corral completion bash|zsh|fish): names come from the
// control plane with the saved credentials, within a short time; anything
// that fails completes nothing rather than printing an error into the shell.

func (a *app) completionClient() (*client.Client, context.Context, context.CancelFunc, bool) {
	c, err := a.client()
	if err != nil {
		return nil, nil, nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	return c, ctx, cancel, true
}

// completeMachines completes machine names of the default subscription.
func (a *app) completeMachines(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	c, ctx, cancel, ok := a.completionClient()
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer cancel()
	ms, err := c.ListMachines(ctx, client.MachineFilter{Subscription: defaultSubscription, Name: prefix, PageSize: 200})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, m := range ms {
		if strings.HasPrefix(strings.ToLower(m.Name), strings.ToLower(prefix)) {
			out = append(out, m.Name+"\t"+m.ResourceGroup+", "+m.Status)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeMachineArg completes the first argument with machine names.
func (a *app) completeMachineArg(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeMachines(cmd, args, prefix)
}

// completeGroups completes resource group names.
func (a *app) completeGroups(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	c, ctx, cancel, ok := a.completionClient()
	if !ok {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer cancel()
	gs, err := c.ListResourceGroups(ctx, defaultSubscription)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, g := range gs {
		if strings.HasPrefix(strings.ToLower(g.Name), strings.ToLower(prefix)) {
			out = append(out, g.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// fixedCompletion completes one of values.
func fixedCompletion(values ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeMachineFlags registers the completions of a machine command's
// flags that exist on cmd.
func (a *app) completeMachineFlags(cmd *cobra.Command) {
	if cmd.Flags().Lookup("resource-group") != nil {
		_ = cmd.RegisterFlagCompletionFunc("resource-group", a.completeGroups)
	}
	if cmd.Flags().Lookup("machine") != nil {
		_ = cmd.RegisterFlagCompletionFunc("machine", a.completeMachines)
	}
	if cmd.Flags().Lookup("environment") != nil {
		_ = cmd.RegisterFlagCompletionFunc("environment", fixedCompletion(wire.Environments...))
	}
	if cmd.Flags().Lookup("status") != nil {
		_ = cmd.RegisterFlagCompletionFunc("status", fixedCompletion(statuses...))
	}
	if cmd.Flags().Lookup("output") != nil {
		_ = cmd.RegisterFlagCompletionFunc("output", fixedCompletion(outTable, outJSON))
	}
}

// registerCompletions walks the command tree and wires completion for
// every command with machine or resource-group flags and for the commands
// whose first argument is a machine name.
func (a *app) registerCompletions(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		a.completeMachineFlags(c)
		if c.ValidArgsFunction == nil && strings.Contains(c.Use, " NAME") && c.Parent() != nil &&
			(c.Parent().Name() == "machine" || c.Parent().Name() == "tag") {
			c.ValidArgsFunction = a.completeMachineArg
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
