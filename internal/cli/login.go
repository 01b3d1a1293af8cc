package cli

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/capped"
	"github.com/corralhq/corral/internal/client"
)

func (a *app) loginCommand() *cobra.Command {
	var server, username, caFile string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login --server URL --username NAME --password-stdin [--ca-file FILE]",
		Short: "Sign in and save the credentials for the other commands",
		Long: `Sign in to a control plane with a user name and a password read from standard input,
and save the server, its CA, the token and its expiry for the other commands.

  echo "$PASSWORD" | corral login --server https://corral.example:8443 --username admin --password-stdin --ca-file ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" {
				return errors.New("--server is required")
			}
			if _, err := client.ParseServerURL(server); err != nil {
				return err
			}
			if err := requireFlag("username", username); err != nil {
				return err
			}
			if !passwordStdin {
				return errors.New("--password-stdin is required: pass the password on standard input (it is never taken as an argument)")
			}
			var caPEM []byte
			if caFile != "" {
				b, err := capped.ReadFile(caFile, client.MaxCABytes)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				if err := checkPEMCerts(b); err != nil {
					return fmt.Errorf("--ca-file %s: %w", caFile, err)
				}
				caPEM = b
			}
			password, err := readSecretLine(cmd.InOrStdin(), "password")
			if err != nil {
				return err
			}
			c, err := client.New(server, client.WithCAPEM(caPEM), client.WithUserAgent("corral-cli/"+a.version))
			if err != nil {
				return err
			}
			now := a.now()
			tr, err := c.PasswordToken(ctxOf(cmd), username, password)
			if err != nil {
				return err
			}
			creds := Credentials{Server: c.Server(), CAPEM: string(caPEM), Token: tr.AccessToken, Username: username}
			if tr.ExpiresIn > 0 {
				creds.ExpiresAt = now.Add(time.Duration(tr.ExpiresIn) * time.Second).UTC().Truncate(time.Second)
			}
			p, err := SaveCredentials(creds)
			if err != nil {
				return err
			}
			msg := fmt.Sprintf("Logged in to %s as %s.", creds.Server, username)
			if !creds.ExpiresAt.IsZero() {
				msg += fmt.Sprintf(" The session expires at %s.", creds.ExpiresAt.Format(time.RFC3339))
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			fmt.Fprintf(cmd.ErrOrStderr(), "Credentials saved to %s\n", p)
			authed, err := client.New(server, client.WithCAPEM(caPEM), client.WithToken(tr.AccessToken), client.WithUserAgent("corral-cli/"+a.version))
			if err == nil {
				if me, err := authed.Me(ctxOf(cmd)); err == nil && me.PasswordChangeRequired {
					io.WriteString(cmd.OutOrStdout(), passwordChangeAdvice)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "control plane URL, e.g. https://corral.example:8443")
	f.StringVar(&username, "username", "", "user name")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the server's CA (default: system roots)")
	return cmd
}

// passwordChangeAdvice is printed when a sign-in may only change the password.
const passwordChangeAdvice = "Your password was set by an administrator and must be changed before anything else:\n" +
	"  printf '%s\\n%s\\n' \"$CURRENT\" \"$NEW\" | corral user password --password-stdin\n"

func checkPEMCerts(b []byte) error {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("invalid certificate: %v", err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate found")
	}
	return nil
}

func (a *app) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the saved credentials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			removed, p, err := RemoveCredentials()
			if err != nil {
				return err
			}
			if !removed {
				fmt.Fprintln(cmd.OutOrStdout(), "Not logged in.")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged out (removed %s).\n", p)
			return nil
		},
	}
}
