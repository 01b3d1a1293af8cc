package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage your long-lived API tokens"}
	cmd.AddCommand(a.tokenCreateCommand(), a.tokenListCommand(), a.tokenDeleteCommand())
	return cmd
}

func (a *app) tokenCreateCommand() *cobra.Command {
	var name, expiresIn, output string
	cmd := &cobra.Command{
		Use: "create --name NAME [--expires-in 720h]", Short: "Create an API token; it is shown once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("name", name); err != nil {
				return err
			}
			if err := validDuration("expires-in", expiresIn); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(ctxOf(cmd), wire.APITokenCreate{Name: name, ExpiresIn: expiresIn})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: save the token now; it is shown only once and cannot be retrieved later.")
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), t)
			}
			return table(cmd.OutOrStdout(), []string{"FIELD", "VALUE"}, [][]string{
				{"id", t.ID}, {"name", t.Name}, {"token", t.Token}, {"expiresAt", formatTime(t.ExpiresAt)}})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "token name")
	cmd.Flags().StringVar(&expiresIn, "expires-in", "", "lifetime as a Go duration (default 30 days, at most 1 year)")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) tokenListCommand() *cobra.Command {
	return listCommand(a, "List your API tokens", (*client.Client).ListTokens, renderTokens)
}

func (a *app) tokenDeleteCommand() *cobra.Command {
	return deleteCommand(a, "delete ID", "Delete one of your API tokens", (*client.Client).DeleteToken, deleted("token"))
}
