package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) spCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "sp", Aliases: []string{"service-principal"}, Short: "Manage service principals (non-human identities)"}
	cmd.AddCommand(a.spCreateCommand(), a.spListCommand(), a.spShowCommand(), a.spDeleteCommand())
	return cmd
}

func (a *app) spCreateCommand() *cobra.Command {
	var name, role, scope, expiresIn, output string
	cmd := &cobra.Command{
		Use:   "create --name NAME [--role ROLE --scope SCOPE] [--expires-in 8760h]",
		Short: "Create a service principal; its secret is shown once",
		Long: `Create a service principal and print its client id and secret. The secret is shown only
once. With --role and --scope the principal is also assigned that role; if the assignment
fails, the new principal is deleted again.

  corral sp create --name onboarding --role "Connected Machine Onboarding" --scope /subscriptions/default/resourceGroups/web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("name", name); err != nil {
				return err
			}
			if (role == "") != (scope == "") {
				return errors.New("--role and --scope must be given together")
			}
			if scope != "" && !strings.HasPrefix(scope, "/") {
				return fmt.Errorf("invalid --scope %q: a scope starts with \"/\", e.g. /subscriptions/default", scope)
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
			ctx := ctxOf(cmd)
			if err := scopeExists(ctx, c, scope); err != nil {
				return err
			}
			sp, err := c.CreateServicePrincipal(ctx, wire.ServicePrincipalCreate{DisplayName: name, ExpiresIn: expiresIn})
			if err != nil {
				return err
			}
			if role != "" {
				if _, err := c.CreateRoleAssignment(ctx, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: role, Scope: scope}); err != nil {
					if derr := c.DeleteServicePrincipal(ctx, sp.ClientID); derr != nil {
						return fmt.Errorf("assigning role %q at %q failed (%w); deleting the new service principal %s also failed: %v", role, scope, err, sp.ClientID, derr)
					}
					return fmt.Errorf("assigning role %q at %q failed, so the new service principal %s was deleted: %w", role, scope, sp.ClientID, err)
				}
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: save the client secret now; it is shown only once and cannot be retrieved later.")
			out := cmd.OutOrStdout()
			if output == outJSON {
				return writeJSON(out, sp)
			}
			rows := [][]string{{"clientId", sp.ClientID}, {"clientSecret", sp.ClientSecret}, {"displayName", sp.DisplayName},
				{"secretExpiresAt", formatTime(sp.ExpiresAt)}}
			if role != "" {
				rows = append(rows, []string{"role", role + " at " + scope})
			}
			return table(out, []string{"FIELD", "VALUE"}, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "display name")
	f.StringVar(&role, "role", "", "role to assign (name or id)")
	f.StringVar(&scope, "scope", "", "scope of the role assignment")
	f.StringVar(&expiresIn, "expires-in", "", "secret lifetime as a Go duration (default 1 year)")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) spListCommand() *cobra.Command {
	return listCommand(a, "List service principals", (*client.Client).ListServicePrincipals, renderSPs)
}

func (a *app) spShowCommand() *cobra.Command {
	return showCommand(a, "show CLIENT_ID", "Show a service principal", (*client.Client).GetServicePrincipal, renderSPs)
}

func (a *app) spDeleteCommand() *cobra.Command {
	return deleteCommand(a, "delete CLIENT_ID", "Delete a service principal, its tokens and role assignments",
		(*client.Client).DeleteServicePrincipal, deleted("service principal"))
}

// scopeExists refuses a --scope naming a subscription, resource group or
// machine that does not exist, before anything is created.
func scopeExists(ctx context.Context, c *client.Client, scope string) error {
	if scope == "" || scope == "/" {
		return nil
	}
	id, err := resource.ParseScope(scope)
	if err != nil {
		return fmt.Errorf("invalid --scope %q: %w", scope, err)
	}
	if err := c.Do(ctx, http.MethodGet, "/api/v1"+id.Path(), nil, nil); err != nil {
		if client.IsNotFound(err) {
			return fmt.Errorf("--scope %s does not exist (create it first, e.g. corral group create NAME)", scope)
		}
		return err
	}
	return nil
}
