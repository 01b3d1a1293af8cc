package agentcli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/localconfig"
)

func readFileCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

func configCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Get and set the local configuration (lock-down); root on this machine only",
		Long: `The local configuration is changed only here, by root, never from the control plane;
the control plane sees it read-only. A value is in force from the moment "config set" returns:
the agent reads this file before every decision it governs. Keys:

` + localconfig.Help() + `
Removing an extension is always allowed; extensions installed before a list was set are not
removed automatically.

Full mode with no lists (the default) lets whoever may run commands on this machine from the
control plane do anything root can — including rewrite this file. Lock it down with
"corral-agent config set config.mode monitor" or an allowlist. The file carries a marker written
by "config set"; the agent reports a file changed any other way to the control plane.`,
	}
	var output string
	get := &cobra.Command{
		Use: "get KEY [-o table|json]", Short: "Show one key's effective value", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := localconfig.Load(g.stateDir)
			if err != nil {
				return err
			}
			e, err := c.Get(args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), e)
			}
			fmt.Fprintln(cmd.OutOrStdout(), e.Value)
			return nil
		},
	}
	outputFlag(get, &output)
	var listOutput string
	list := &cobra.Command{
		Use: "list [-o table|json]", Short: "Show every key, its effective value and whether it is set", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(listOutput); err != nil {
				return err
			}
			c, err := localconfig.Load(g.stateDir)
			if err != nil {
				return err
			}
			entries := c.List()
			if why := c.Effective().ChangedOutside; why != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s; it is in force and the agent reports it to the control plane. "+
					"\"corral-agent config set\" of any key writes the marker again.\n", why)
			}
			if listOutput == "json" {
				return writeJSON(cmd.OutOrStdout(), entries)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%-34s %-8s %s\n", "KEY", "SOURCE", "VALUE")
			for _, e := range entries {
				src := "default"
				if e.Set {
					src = "set"
				}
				v := orDash(e.Value)
				if e.Note != "" {
					v += " (" + e.Note + ")"
				}
				fmt.Fprintf(w, "%-34s %-8s %s\n", e.Key, src, v)
			}
			return nil
		},
	}
	outputFlag(list, &listOutput)
	set := &cobra.Command{
		Use: "set KEY VALUE", Short: "Set a key", Args: cobra.ExactArgs(2),
		Example: `  corral-agent config set extensions.allowlist "Corral/EndpointProtection,Corral/PatchManagement"
  corral-agent config set config.mode monitor`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return changeConfig(g, cmd, func(c *localconfig.Config) error { return c.Set(args[0], args[1]) }, args[0])
		},
	}
	clear := &cobra.Command{
		Use: "clear KEY", Short: "Restore a key's default", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return changeConfig(g, cmd, func(c *localconfig.Config) error { return c.Clear(args[0]) }, args[0])
		},
	}
	// Shell completion of the keys.
	keyArg := func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return localconfig.Keys(), cobra.ShellCompDirectiveNoFileComp
	}
	get.ValidArgsFunction, set.ValidArgsFunction, clear.ValidArgsFunction = keyArg, keyArg, keyArg
	cmd.AddCommand(get, list, set, clear)
	return cmd
}

func changeConfig(g *globals, cmd *cobra.Command, change func(*localconfig.Config) error, key string) error {
	c, err := localconfig.Load(g.stateDir)
	if err != nil {
		return err
	}
	if err := change(&c); err != nil {
		return err
	}
	if err := localconfig.Save(g.stateDir, c); err != nil {
		return fmt.Errorf("save local configuration: %w", err)
	}
	e, _ := c.Get(key)
	fmt.Fprintf(cmd.OutOrStdout(), "%s = %s\n", key, strings.TrimSpace(orDash(e.Value)))
	return nil
}
