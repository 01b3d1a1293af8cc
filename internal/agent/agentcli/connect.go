package agentcli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/onboard"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// maxSecretFile caps credential files.
const maxSecretFile = 64 << 10

// readSecretFile reads a credential from a file, trimmed. It warns when
// others may read the file; the value never reaches argv or a log.
func readSecretFile(cmd *cobra.Command, flag, path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	if fi.Size() > maxSecretFile {
		return "", fmt.Errorf("--%s: %s is larger than %d bytes", flag, path, maxSecretFile)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s can be read by other users; chmod 600 it\n", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("--%s: %s is empty", flag, path)
	}
	return s, nil
}

// LockdownAdvice is what connect prints while the machine is open to the
// control plane: full mode with no allowlist and run commands not blocked.
const LockdownAdvice = "Full mode with no lists: whoever may run commands on this machine from the control plane is root here.\n" +
	"To allow monitoring and security extensions only, as root: corral-agent config set config.mode monitor"

// LockdownOpen reports whether c lets the control plane run commands as
// root: full mode, extensions enabled, and Corral/RunCommand neither
// blocked nor left out of an allowlist.
func LockdownOpen(c localconfig.Effective) bool {
	return c.CheckExtension(localconfig.OpInstall, wire.ExtRunCommand) == nil && c.HostChangesRefused() == nil
}

func connectCommand(g *globals) *cobra.Command {
	var o onboard.Options
	var secretFile, tokenFile, tags string
	cmd := &cobra.Command{
		Use:   "connect --server URL --subscription-id S --resource-group RG (--service-principal-id ID --service-principal-secret-file F | --access-token-file F | --use-device-code)",
		Short: "Onboard this machine to a control plane",
		Long: `Onboard this machine: the agent makes its key pair here, the control plane signs a
client certificate, and the machine becomes a resource in the resource group.

Credentials are read from files (never from the command line) and used once:
a service principal holding the Connected Machine Onboarding role, an access token,
or a device code an operator approves with "corral machine approve CODE".
Trust the control plane with --ca-file or --ca-fingerprint (as "corral server" printed it).`,
		Example: `  corral-agent connect --server https://cp.example:8443 --subscription-id default \
      --resource-group web --service-principal-id 3f2c... --service-principal-secret-file /root/sp-secret \
      --ca-fingerprint sha256:9a1b... --tags env=prod,team=web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Tags, err = onboard.ParseTags(tags); err != nil {
				return err
			}
			if secretFile != "" {
				if o.ServicePrincipalSecret, err = readSecretFile(cmd, "service-principal-secret-file", secretFile); err != nil {
					return err
				}
			} else if o.ServicePrincipalID != "" {
				return errors.New("--service-principal-id needs --service-principal-secret-file (the secret is never taken on the command line)")
			}
			if tokenFile != "" {
				if o.AccessToken, err = readSecretFile(cmd, "access-token-file", tokenFile); err != nil {
					return err
				}
			}
			o.StateDir, o.Host, o.IMDS, o.Version, o.Prompt = g.stateDir, g.host(), g.imds, g.version, cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := onboard.Connect(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Connected %s\n  machine id %s\n  server     %s\n", st.ResourceID, st.MachineID, st.Server)
			// The flags that matter to the daemon are repeated, so the hint
			// works as printed.
			var flags []string
			if g.stateDir != DefaultStateDir {
				flags = append(flags, "--state-dir "+shellQuote(g.stateDir))
			}
			if g.root != "/" {
				flags = append(flags, "--root "+shellQuote(g.root))
			}
			if g.imds != "" {
				flags = append(flags, "--imds-endpoint "+shellQuote(g.imds))
			}
			if len(flags) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), `Start the agent with "systemctl enable --now corral-agent" (or "corral-agent run").`)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "Start the agent with \"corral-agent %s run\".\n", strings.Join(flags, " "))
			}
			if c, _ := localconfig.Current(g.stateDir); LockdownOpen(c) {
				fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", LockdownAdvice)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Server, "server", "", "control plane URL, e.g. https://cp.example:8443")
	f.StringVar(&o.SubscriptionID, "subscription-id", "", "subscription of the machine resource")
	f.StringVar(&o.ResourceGroup, "resource-group", "", "resource group of the machine resource")
	f.StringVar(&o.Name, "name", "", "machine resource name (default: the host name)")
	f.StringVar(&tags, "tags", "", "tags as key=value,key2=value2")
	f.StringVar(&o.ServicePrincipalID, "service-principal-id", "", "client id of an onboarding service principal")
	f.StringVar(&secretFile, "service-principal-secret-file", "", "file holding the service principal's secret")
	f.StringVar(&tokenFile, "access-token-file", "", "file holding an access token allowed to onboard")
	f.BoolVar(&o.UseDeviceCode, "use-device-code", false, "print a code for an operator to approve instead of using a secret")
	f.StringVar(&o.CAFile, "ca-file", "", "PEM file of the control plane CA")
	f.StringVar(&o.CAFingerprint, "ca-fingerprint", "", "sha256 fingerprint of the control plane CA (sha256:HEX)")
	f.DurationVar(&o.Timeout, "timeout", 0, "give up after this long (default 5m, covering device-code approval)")
	return cmd
}

func disconnectCommand(g *globals) *cobra.Command {
	var localOnly bool
	cmd := &cobra.Command{
		Use:   "disconnect [--force-local-only]",
		Short: "Delete this machine's resource and identity",
		Long: `Disconnect this machine: delete its resource on the control plane (with its own
certificate) and remove the identity from this machine. The local configuration stays.
With --force-local-only the identity is removed here even if the control plane cannot
be reached; the resource then remains until an operator deletes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := identity.Load(g.stateDir)
			if err != nil {
				return err
			}
			if !localOnly {
				tlsCfg, err := id.TLSConfig()
				if err != nil {
					return err
				}
				// Through the configured proxy, like every call of the agent.
				cfg, err := localconfig.Current(g.stateDir)
				if err != nil {
					return err
				}
				hc := localconfig.NewHTTPClient(tlsCfg, cfg.Proxy)
				c, err := client.New(id.State.Server, client.WithHTTPClient(hc), client.WithUserAgent("corral-agent/"+g.version))
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
				defer cancel()
				if err := c.Do(ctx, "DELETE", wire.PathMachine, nil, nil); err != nil && !client.IsNotFound(err) {
					return fmt.Errorf("delete the machine resource: %w (use --force-local-only to remove the local identity anyway)", err)
				}
			}
			if err := removeLocalState(g.stateDir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Disconnected %s\n", id.State.ResourceID)
			return nil
		},
	}
	cmd.Flags().BoolVar(&localOnly, "force-local-only", false, "remove the local identity without contacting the control plane")
	return cmd
}

// removeLocalState removes the identity and everything tied to it.
func removeLocalState(stateDir string) error {
	var errs []error
	errs = append(errs, identity.Remove(stateDir))
	for _, p := range []string{daemon.DesiredFile, daemon.StatusFile} {
		if err := os.Remove(stateDir + "/" + p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, os.RemoveAll(stateDir+"/outbox"))
	return errors.Join(errs...)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
