package cli

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) userCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users"}
	cmd.AddCommand(a.userCreateCommand(), a.userListCommand(), a.userDeleteCommand())
	return cmd
}

func (a *app) userCreateCommand() *cobra.Command {
	var passwordStdin bool
	var output string
	cmd := &cobra.Command{
		Use: "create NAME --password-stdin", Short: "Create a user; the password is read from standard input", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !passwordStdin {
				return errors.New("--password-stdin is required: pass the password on standard input (it is never taken as an argument)")
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			password, err := readSecretLine(cmd.InOrStdin(), "password")
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			u, err := c.CreateUser(ctxOf(cmd), args[0], password)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), u)
			}
			return renderUsers(cmd.OutOrStdout(), output, []wire.User{u})
		},
	}
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) userListCommand() *cobra.Command {
	return listCommand(a, "List users", (*client.Client).ListUsers, renderUsers)
}

func (a *app) userDeleteCommand() *cobra.Command {
	return deleteCommand(a, "delete NAME", "Delete a user, their tokens and role assignments", (*client.Client).DeleteUser, deleted("user"))
}
