package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/capped"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

func (a *app) roleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Manage role definitions and role assignments"}
	cmd.AddCommand(a.roleListCommand(), a.roleCreateCommand(), a.roleDeleteCommand(), a.roleAssignmentCommand())
	return cmd
}

func (a *app) roleListCommand() *cobra.Command {
	return listCommand(a, "List built-in and custom roles", (*client.Client).ListRoleDefinitions, renderRoles)
}

// readRoleFile reads a custom role definition (JSON, wire.RoleDefinition).
func readRoleFile(path string) (wire.RoleDefinition, error) {
	var rd wire.RoleDefinition
	b, err := capped.ReadFile(path, 1<<20)
	if err != nil {
		return rd, fmt.Errorf("--file: %w", err)
	}
	if err := wire.DecodeStrict(b, &rd); err != nil {
		return rd, fmt.Errorf("--file %s: not a role definition: %v", path, err)
	}
	if strings.TrimSpace(rd.Name) == "" {
		return rd, fmt.Errorf("--file %s: \"name\" is required", path)
	}
	if len(rd.Actions) == 0 {
		return rd, fmt.Errorf("--file %s: \"actions\" must list at least one action", path)
	}
	if rd.BuiltIn {
		return rd, fmt.Errorf("--file %s: \"builtIn\" cannot be true for a custom role", path)
	}
	return rd, nil
}

func (a *app) roleCreateCommand() *cobra.Command {
	var file, output string
	cmd := &cobra.Command{
		Use:   "create --file ROLE.json",
		Short: "Create (or update) a custom role from a JSON file",
		Long: `Create a custom role from a JSON file such as

  {"name": "Machine Reader", "description": "...", "actions": ["Corral.HybridCompute/machines/read"],
   "assignableScopes": ["/subscriptions/default"]}

Without "id" a new id is generated; with the id of an existing custom role, it is updated.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("file", file); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			rd, err := readRoleFile(file)
			if err != nil {
				return err
			}
			if rd.ID == "" {
				rd.ID = uuid.NewString()
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, err := c.PutRoleDefinition(ctxOf(cmd), rd)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return renderRoles(cmd.OutOrStdout(), output, []wire.RoleDefinition{out})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "JSON file of the role definition")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) roleDeleteCommand() *cobra.Command {
	return deleteCommand(a, "delete ID", "Delete an unassigned custom role", (*client.Client).DeleteRoleDefinition, deleted("role"))
}

func (a *app) roleAssignmentCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "assignment", Short: "Manage role assignments"}
	cmd.AddCommand(a.assignmentCreateCommand(), a.assignmentListCommand(), a.assignmentDeleteCommand())
	return cmd
}

func checkScope(flag, s string) error {
	if s != "" && !strings.HasPrefix(s, "/") {
		return fmt.Errorf("invalid --%s %q: a scope starts with \"/\", e.g. /subscriptions/default/resourceGroups/web", flag, s)
	}
	return nil
}

func (a *app) assignmentCreateCommand() *cobra.Command {
	var assignee, role, scope, output string
	cmd := &cobra.Command{
		Use:   "create --assignee PRINCIPAL --role ROLE --scope SCOPE",
		Short: "Assign a role to a user or service principal at a scope",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range [][2]string{{"assignee", assignee}, {"role", role}, {"scope", scope}} {
				if err := requireFlag(f[0], f[1]); err != nil {
					return err
				}
			}
			if err := checkScope("scope", scope); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ra, err := c.CreateRoleAssignment(ctxOf(cmd), wire.RoleAssignmentCreate{Principal: assignee, Role: role, Scope: scope})
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), ra)
			}
			return renderAssignments(cmd.OutOrStdout(), output, []wire.RoleAssignment{ra})
		},
	}
	f := cmd.Flags()
	f.StringVar(&assignee, "assignee", "", "user name, service principal client id or principal id")
	f.StringVar(&role, "role", "", "role name or id")
	f.StringVar(&scope, "scope", "", "scope, e.g. /subscriptions/default/resourceGroups/web")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) assignmentListCommand() *cobra.Command {
	var assignee, scope, output string
	cmd := &cobra.Command{
		Use: "list [--scope SCOPE] [--assignee PRINCIPAL]", Short: "List role assignments at, above and below a scope", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkScope("scope", scope); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ras, err := c.ListRoleAssignments(ctxOf(cmd), scope, assignee)
			if err != nil {
				return err
			}
			return renderAssignments(cmd.OutOrStdout(), output, ras)
		},
	}
	f := cmd.Flags()
	f.StringVar(&assignee, "assignee", "", "only this principal")
	f.StringVar(&scope, "scope", "", "scope (default /)")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) assignmentDeleteCommand() *cobra.Command {
	cmd := deleteCommand(a, "delete ID", "Delete a role assignment", (*client.Client).DeleteRoleAssignment, deleted("role assignment"))
	cmd.PreRunE = func(_ *cobra.Command, args []string) error {
		if strings.TrimSpace(args[0]) == "" {
			return errors.New("the role assignment id is empty")
		}
		return nil
	}
	return cmd
}
