package agentcli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/publishers"
	"github.com/corralhq/corral/internal/extpkg"
)

func publisherCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "publisher",
		Short: "Extension publisher keys this machine trusts; root on this machine only",
		Long: `Extensions are verified against their publisher's signed catalog. Which signing key
counts as a publisher's is decided here, never by the control plane:

  - a key root configured ("publisher trust") is the publisher's key; a publisher named
    in extensions.allowlist must have one;
  - otherwise the key the control plane presents is pinned the first time an allowed
    install of that publisher's extension starts, and a different key is refused later
    until root runs "publisher forget".`,
	}
	var output string
	list := &cobra.Command{
		Use: "list [-o table|json]", Short: "List the trusted publisher keys and where each comes from", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			cfg, err := localconfig.Current(g.stateDir)
			if err != nil {
				return err
			}
			entries, err := publishers.Open(g.stateDir).List(cfg)
			if err != nil {
				return err
			}
			if output == "json" {
				if entries == nil {
					entries = []publishers.Entry{}
				}
				return writeJSON(cmd.OutOrStdout(), entries)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%-24s %-20s %-8s %s\n", "PUBLISHER", "SOURCE", "SERIAL", "KEY")
			for _, e := range entries {
				fmt.Fprintf(w, "%-24s %-20s %-8s %s\n", e.Publisher, e.Source, strconv.FormatInt(e.Serial, 10), e.Key)
			}
			return nil
		},
	}
	outputFlag(list, &output)
	trust := &cobra.Command{
		Use: "trust PUBLISHER ed25519:KEY", Short: "Trust KEY as PUBLISHER's signing key (replaces any earlier one)", Args: cobra.ExactArgs(2),
		Example: `  corral-agent publisher trust Contoso ed25519:9bY2...=   # the key "corral publisher list" shows`,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := extpkg.ParsePublicKey(args[1])
			if err != nil {
				return err
			}
			return changeConfig(g, cmd, func(c *localconfig.Config) error {
				return c.Set(localconfig.KeyPublisherKeys, c.WithPublisherKey(args[0], key))
			}, localconfig.KeyPublisherKeys)
		},
	}
	forget := &cobra.Command{
		Use: "forget PUBLISHER", Short: "Forget PUBLISHER's configured and pinned keys (a new key can then be pinned)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := localconfig.Load(g.stateDir)
			if err != nil {
				return err
			}
			_, configured := c.Effective().PublisherKey(args[0])
			if configured {
				rest := c.WithPublisherKey(args[0], nil)
				if rest == "" {
					err = c.Clear(localconfig.KeyPublisherKeys)
				} else {
					err = c.Set(localconfig.KeyPublisherKeys, rest)
				}
				if err != nil {
					return err
				}
				if err := localconfig.Save(g.stateDir, c); err != nil {
					return fmt.Errorf("save local configuration: %w", err)
				}
			}
			pinned, err := publishers.Open(g.stateDir).Forget(args[0])
			if err != nil {
				return err
			}
			if !configured && !pinned {
				return fmt.Errorf("no key of publisher %s is configured or pinned on this machine", args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Forgot the signing key of %s.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, trust, forget)
	return cmd
}
