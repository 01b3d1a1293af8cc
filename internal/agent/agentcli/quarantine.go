package agentcli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/scan/quarantine"
)

func quarantineDir(g *globals) string { return filepath.Join(g.stateDir, "quarantine") }

func quarantineCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "List and restore files quarantined by endpoint protection (root only)",
		Long: `Files detected by endpoint protection are moved to STATE-DIR/quarantine (root only,
unreadable). "restore" puts a file back at its path with its owner and mode and adds
its SHA-256 to STATE-DIR/quarantine/exclusions.json, so that neither real-time
protection nor "corral-agent scan" detects that exact file again; --no-exclusion
restores it without that.`,
	}
	var output string
	list := &cobra.Command{
		Use: "list [-o table|json]", Short: "List quarantined files", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			recs := []quarantine.Record{}
			if _, err := os.Stat(quarantineDir(g)); err == nil {
				q, err := quarantine.Open(quarantineDir(g))
				if err != nil {
					return err
				}
				if recs, err = q.List(); err != nil {
					return err
				}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("quarantine: %w", err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(w, recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(w, "The quarantine is empty.")
				return nil
			}
			fmt.Fprintf(w, "%-16s  %-20s  %-32s  %s\n", "ID", "TIME", "SIGNATURE", "PATH")
			for _, r := range recs {
				fmt.Fprintf(w, "%-16s  %-20s  %-32s  %s\n", r.ID, r.Time.UTC().Format(time.RFC3339), r.Signature, r.Path)
			}
			return nil
		},
	}
	outputFlag(list, &output)
	var noExclusion, force bool
	restore := &cobra.Command{
		Use: "restore ID [--no-exclusion] [--force]", Short: "Put a quarantined file back where it was", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(quarantineDir(g)); err != nil {
				return fmt.Errorf("%w: %s (the quarantine is empty)", quarantine.ErrNotFound, args[0])
			}
			q, err := quarantine.Open(quarantineDir(g))
			if err != nil {
				return err
			}
			r, err := q.Restore(args[0], force)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Restored %s (%s, owner %d:%d, mode %04o)\n", r.Path, r.Signature, r.UID, r.GID, r.Mode)
			if noExclusion {
				return nil
			}
			err = q.AddExclusion(quarantine.Exclusion{SHA256: r.SHA256, Path: r.Path,
				Reason: "restored from quarantine " + r.ID, Time: time.Now().UTC()})
			if err != nil {
				return fmt.Errorf("the file is restored but its exclusion was not added: %w", err)
			}
			fmt.Fprintf(w, "Added an exclusion for SHA-256 %s\n", r.SHA256)
			return nil
		},
	}
	restore.Flags().BoolVar(&noExclusion, "no-exclusion", false, "do not exclude the file's SHA-256 from future detections")
	restore.Flags().BoolVar(&force, "force", false, "replace a file that now exists at the original path")
	cmd.AddCommand(list, restore)
	return cmd
}
