package agentcli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/bundle"
)

func logsCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "logs [--output FILE]",
		Short: "Write a support bundle (logs, configuration, status; secrets redacted)",
		Long: `Write a tar.gz support bundle: the agent's logs, its local configuration, identity
metadata, status and desired state, and "show" output. Private keys and report contents
are never included, and anything that looks like a secret is redacted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			if output == "" {
				output = fmt.Sprintf("corral-agent-logs-%s.tar.gz", now.UTC().Format("20060102T150405Z"))
			}
			var show bytes.Buffer
			s := collectShow(g)
			printShow(&show, s)
			js, _ := json.MarshalIndent(s, "", "  ")
			f, err := os.OpenFile(output, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("create %s: %w", output, err)
			}
			err = bundle.Write(f, g.stateDir, now, bundle.Extra{Name: "show.txt", Body: show.String()}, bundle.Extra{Name: "show.json", Body: string(js)})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(output)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Support bundle written to %s\n", output)
			return nil
		},
	}
	cmd.Flags().StringVar(&output, "output", "", "bundle file to create (default corral-agent-logs-TIME.tar.gz in the current directory)")
	return cmd
}
