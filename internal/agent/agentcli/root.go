// Package agentcli is the corral-agent command line: connect, disconnect,
// show, check, config get|set|list|clear, publisher list|trust|forget, scan,
// quarantine list|restore, logs, version and run (the daemon).
// Commands parse flags (each also readable from a CORRAL_<FLAG> environment
// variable) and call the agent packages; they hold no logic of their own.
package agentcli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/flagenv"
)

// DefaultStateDir is where a packaged agent keeps its state.
const DefaultStateDir = "/var/lib/corral-agent"

// globals are the flags every command takes.
type globals struct {
	stateDir string
	root     string
	imds     string
	logLevel string
	version  string
}

func (g *globals) host() hostinfo.Host { return hostinfo.Host{Root: g.root} }

func (g *globals) level() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(g.logLevel)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// NewRootCommand returns the corral-agent command tree.
func NewRootCommand(version string) *cobra.Command {
	g := &globals{version: version}
	root := &cobra.Command{
		Use:   "corral-agent",
		Short: "The Corral machine agent",
		Long: `corral-agent connects this machine to a Corral control plane over outbound HTTPS
and keeps it managed: inventory, status, extensions, configuration.

It never listens on a network port. Its local configuration (corral-agent config)
can only be changed by root on this machine, never from the control plane.
Every flag can also be set with an environment variable: --state-dir is CORRAL_STATE_DIR.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.InheritedFlags()} {
				if err := flagenv.Apply(fs, "CORRAL_"); err != nil {
					return err
				}
			}
			if g.stateDir == "" {
				return fmt.Errorf("--state-dir must not be empty")
			}
			return nil
		},
	}
	root.SetVersionTemplate("corral-agent {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return flagenv.Suggest(err, c.Flags(), c.InheritedFlags())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.stateDir, "state-dir", DefaultStateDir, "directory of the agent's identity, configuration, outbox and logs (root-only)")
	pf.StringVar(&g.root, "root", "/", "root directory of the host to inspect (inventory and detection read under it)")
	pf.StringVar(&g.imds, "imds-endpoint", "", `cloud instance metadata service base URL (default http://169.254.169.254, asked only when DMI names a cloud; "none": never ask)`)
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(
		connectCommand(g), disconnectCommand(g), runCommand(g), showCommand(g), checkCommand(g),
		configCommand(g), publisherCommand(g), logsCommand(g), versionCommand(g),
	)
	root.AddCommand(scanCommand(g), quarantineCommand(g))
	root.AddCommand(protectionDaemonCommand())
	return root
}

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the agent version", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "corral-agent %s\n", g.version)
			return nil
		},
	}
}

// outputFlag adds -o table|json.
func outputFlag(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVarP(out, "output", "o", "table", "output format: table or json")
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("--output must be table or json, not %q", o)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints aligned "key  value" rows.
func table(w io.Writer, rows [][2]string) {
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %s\n", width, r[0], r[1])
	}
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
