package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) userCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users"}
	cmd.AddCommand(a.userCreateCommand(), a.userListCommand(), a.userDeleteCommand(), a.userPasswordCommand(),
		a.userDisableCommand(true), a.userDisableCommand(false))
	return cmd
}

func (a *app) userCreateCommand() *cobra.Command {
	var passwordStdin, mustChange bool
	var output string
	cmd := &cobra.Command{
		Use: "create NAME --password-stdin [--must-change-password]", Short: "Create a user; the password is read from standard input", Args: cobra.ExactArgs(1),
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
			u, err := c.CreateUserWith(ctxOf(cmd), wire.UserCreate{Name: args[0], Password: password, MustChangePassword: mustChange})
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
	cmd.Flags().BoolVar(&mustChange, "must-change-password", false, "the user must change this password at first sign-in")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) userListCommand() *cobra.Command {
	return listCommand(a, "List users", (*client.Client).ListUsers, renderUsers)
}

func (a *app) userDeleteCommand() *cobra.Command {
	return deleteCommand(a, "delete NAME", "Delete a user, their tokens and role assignments", (*client.Client).DeleteUser, deleted("user"))
}

// readTwoSecretLines reads two secrets, one a line, from r.
func readTwoSecretLines(r io.Reader, first, second string) (string, string, error) {
	br := bufio.NewReader(io.LimitReader(r, 8192))
	var out [2]string
	for i, what := range []string{first, second} {
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", "", fmt.Errorf("read %s from standard input: %w", what, err)
		}
		if out[i] = strings.TrimRight(line, "\r\n"); out[i] == "" {
			return "", "", fmt.Errorf("no %s on standard input (give the current password on the first line, the new one on the second)", what)
		}
	}
	return out[0], out[1], nil
}

func (a *app) userPasswordCommand() *cobra.Command {
	var passwordStdin, mustChange bool
	cmd := &cobra.Command{
		Use:   "password [NAME] --password-stdin [--must-change-password]",
		Short: "Change your password, or set another user's",
		Long: `Without NAME, change your own password: standard input holds the current password on
the first line and the new one on the second. Every session of yours ends; when you are
signed in with "corral login", the CLI signs you in again with the new password.

With NAME (Corral.Identity/users/write), set that user's password from the first line of
standard input; --must-change-password makes them change it at their next sign-in. Every
session of theirs ends.

  printf '%s\n%s\n' "$OLD" "$NEW" | corral user password --password-stdin
  corral user password alice --password-stdin --must-change-password < initial-password`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !passwordStdin {
				return errors.New("--password-stdin is required: passwords are read from standard input, never taken as arguments")
			}
			if len(args) == 0 && mustChange {
				return errors.New("--must-change-password applies to another user's password (give NAME)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			if len(args) == 1 {
				pw, err := readSecretLine(cmd.InOrStdin(), "password")
				if err != nil {
					return err
				}
				if _, err := c.SetUserPassword(ctx, args[0], pw, mustChange); err != nil {
					return err
				}
				msg := "Set the password of user " + args[0] + "; their sessions ended."
				if mustChange {
					msg += " They must change it at their next sign-in."
				}
				fmt.Fprintln(cmd.OutOrStdout(), msg)
				return nil
			}
			current, next, err := readTwoSecretLines(cmd.InOrStdin(), "current password", "new password")
			if err != nil {
				return err
			}
			if err := c.ChangeMyPassword(ctx, current, next); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Password changed; your sessions ended.")
			return a.signInAgain(cmd, next)
		},
	}
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password(s) from standard input")
	cmd.Flags().BoolVar(&mustChange, "must-change-password", false, "with NAME: the user must change the password at the next sign-in")
	return cmd
}

// signInAgain replaces the saved session, which a password change ended,
// with a new one signed in with password. Without saved credentials (a
// token from the environment) it only says to sign in again.
func (a *app) signInAgain(cmd *cobra.Command, password string) error {
	creds, _, err := LoadCredentials()
	if err != nil || creds == nil || creds.Username == "" {
		fmt.Fprintln(cmd.OutOrStdout(), "Sign in again with \"corral login\".")
		return nil
	}
	c, err := client.New(creds.Server, client.WithCAPEM([]byte(creds.CAPEM)), client.WithUserAgent("corral-cli/"+a.version))
	if err != nil {
		return err
	}
	now := a.now()
	tr, err := c.PasswordToken(ctxOf(cmd), creds.Username, password)
	if err != nil {
		return fmt.Errorf("sign in again with the new password: %w", err)
	}
	creds.Token, creds.ExpiresAt = tr.AccessToken, time.Time{}
	if tr.ExpiresIn > 0 {
		creds.ExpiresAt = now.Add(time.Duration(tr.ExpiresIn) * time.Second).UTC().Truncate(time.Second)
	}
	if _, err := SaveCredentials(*creds); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Signed in again to %s as %s.\n", creds.Server, creds.Username)
	return nil
}

func (a *app) userDisableCommand(disable bool) *cobra.Command {
	use, short, done := "disable NAME", "Disable a user: their sessions, sign-ins and API tokens are refused", "Disabled"
	if !disable {
		use, short, done = "enable NAME", "Enable a disabled user", "Enabled"
	}
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.SetUserDisabled(ctxOf(cmd), args[0], disable); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s user %s.\n", done, args[0])
			return nil
		},
	}
}
