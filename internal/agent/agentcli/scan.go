package agentcli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/protection"
	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/quarantine"
	"github.com/corralhq/corral/internal/scan/sigset"
)

// ScanReport is `corral-agent scan -o json`.
type ScanReport struct {
	Findings   []scan.Finding    `json:"findings"`
	Errors     []scan.FileResult `json:"errors"`
	Skipped    []scan.FileResult `json:"skipped"`
	Notes      []scan.FileResult `json:"notes"`
	Excluded   []string          `json:"excluded"`
	Summary    scan.Summary      `json:"summary"`
	Signatures scan.LoadStats    `json:"signatures"`
	// SignatureSet is the version of the installed signature set used (0:
	// none).
	SignatureSet uint64 `json:"signatureSet"`
}

// usageError exits 2, as clamscan does on bad usage.
func usageError(err error) error { return &ExitError{Code: 2, Err: err} }

func scanCommand(g *globals) *cobra.Command {
	var output string
	var sigs []string
	var noBuiltin, noSet bool
	cmd := &cobra.Command{
		Use:   "scan PATH... [--signatures FILE...] [--no-builtin] [-o json]",
		Short: "Scan files and directories for malware, offline, like clamscan",
		Long: `Scan files and directories with the built-in EICAR test signature and ClamAV
signature files (.hdb, .hsb, .ndb; --signatures takes files or directories, repeatable).
zip, tar, gzip and bzip2 archives are scanned inside, within limits; a decompression
bomb is reported, not followed. Symbolic links inside a directory are never followed;
special files are skipped; unreadable files are reported and the scan goes on.

When endpoint protection installed a signature set on this machine (STATE-DIR/features/
protection/signatures), it is used too, after verifying it with the trusted key
(protection.signaturekey or the key pinned when protection was enabled); --no-signature-set
leaves it out.

Files whose SHA-256 is on the quarantine's exclusion list (STATE-DIR/quarantine/
exclusions.json, added by "corral-agent quarantine restore") are not reported.

Exit codes are clamscan's: 0 nothing found, 1 something found, 2 an error occurred
(and nothing was found).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError(errors.New("scan needs at least one PATH"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return usageError(err)
			}
			files, err := signatureFiles(sigs)
			if err != nil {
				return usageError(err)
			}
			errw := cmd.ErrOrStderr()
			db, set, err := loadScanSignatures(g, noBuiltin, noSet, files)
			if err != nil {
				return usageError(err)
			}
			if set.warning != "" {
				fmt.Fprintf(errw, "warning: %s\n", set.warning)
			}
			if db.Stats().Total() == 0 {
				return usageError(errors.New("no signatures loaded (--no-builtin without --signatures)"))
			}
			if st := db.Stats(); st.Unsupported > 0 {
				u := st.UnsupportedLines[0]
				fmt.Fprintf(errw, "warning: %d signature lines use features this scanner does not support and were not loaded (first: %s:%d: %s)\n",
					st.Unsupported, u.File, u.Line, u.Reason)
			}
			qdir := filepath.Join(g.stateDir, "quarantine")
			excl := quarantine.NewExclusions(qdir)
			if err := excl.Err(); err != nil && !errors.Is(err, fs.ErrPermission) {
				fmt.Fprintf(errw, "warning: %v (no exclusions applied)\n", err)
			}
			eng := scan.New(db, scan.Options{ExcludeSHA256: excl.Contains, ExcludePaths: []string{qdir}})
			rep := ScanReport{Findings: []scan.Finding{}, Errors: []scan.FileResult{}, Skipped: []scan.FileResult{},
				Notes: []scan.FileResult{}, Excluded: []string{}, Signatures: db.Stats(), SignatureSet: set.version}
			var mu sync.Mutex
			out := cmd.OutOrStdout()
			sum, err := eng.Scan(cmd.Context(), args, func(r scan.FileResult) {
				mu.Lock()
				defer mu.Unlock()
				rep.Findings = append(rep.Findings, r.Findings...)
				switch {
				case r.Error != "":
					rep.Errors = append(rep.Errors, r)
				case r.Skipped != "":
					rep.Skipped = append(rep.Skipped, r)
				case len(r.Notes) > 0:
					rep.Notes = append(rep.Notes, r)
				}
				if r.Excluded {
					rep.Excluded = append(rep.Excluded, r.Path)
				}
				if output == "json" {
					return
				}
				for _, f := range r.Findings {
					where := f.Path
					if f.Member != "" {
						where += " (" + f.Member + ")"
					}
					fmt.Fprintf(out, "%s: %s FOUND\n", where, f.Signature)
				}
				if r.Error != "" {
					fmt.Fprintf(errw, "%s: ERROR: %s\n", r.Path, r.Error)
				}
			})
			rep.Summary = sum
			if err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("scan interrupted: %w", err)}
			}
			if output == "json" {
				slices.SortFunc(rep.Findings, func(a, b scan.Finding) int { return strings.Compare(a.Path, b.Path) })
				if err := writeJSON(out, rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "Scanned %d files (%.1f MiB) in %s with %d signatures: %d infected, %d errors\n",
					sum.Files, float64(sum.Bytes)/(1<<20), sum.Duration.Round(1e6), db.Stats().Total(), sum.Infected, sum.Errors)
			}
			switch {
			case sum.Infected > 0:
				return &ExitError{Code: 1, Err: fmt.Errorf("%d infected files found", sum.Infected)}
			case sum.Errors > 0:
				return &ExitError{Code: 2, Err: fmt.Errorf("%d files could not be scanned", sum.Errors)}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	cmd.Flags().StringSliceVar(&sigs, "signatures", nil, "ClamAV signature files (.hdb, .hsb, .ndb) or directories of them")
	cmd.Flags().BoolVar(&noBuiltin, "no-builtin", false, "do not use the built-in EICAR test signature")
	cmd.Flags().BoolVar(&noSet, "no-signature-set", false, "do not use the signature set endpoint protection installed")
	outputFlag(cmd, &output)
	return cmd
}

// signatureFiles expands directories into the signature files they hold.
func signatureFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("signatures: %w", err)
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		entries, err := os.ReadDir(a)
		if err != nil {
			return nil, fmt.Errorf("signatures: %w", err)
		}
		for _, e := range entries {
			if _, err := scan.FormatOf(e.Name()); err == nil && !e.IsDir() {
				out = append(out, filepath.Join(a, e.Name()))
			}
		}
	}
	return out, nil
}

// installedSet says which installed signature set a scan used.
type installedSet struct {
	version uint64
	warning string
}

// loadScanSignatures builds the scan's signatures: the built-in one
// (unless noBuiltin), the installed signature set (unless noSet; verified
// with the trusted key, left out with a warning when it does not verify)
// and the ClamAV files given.
func loadScanSignatures(g *globals, noBuiltin, noSet bool, files []string) (*scan.DB, installedSet, error) {
	var set installedSet
	build := func(withSet []byte) (*scan.DB, error) {
		b := scan.NewBuilder(noBuiltin)
		if withSet != nil {
			cfg, _ := localconfig.Current(g.stateDir)
			key, _ := protection.TrustedKey(g.stateDir, cfg)
			h, err := sigset.AddVerified(b, key, withSet)
			if err != nil {
				return nil, err
			}
			set.version = h.Version
		}
		for _, f := range files {
			if err := b.AddFile(f); err != nil {
				return nil, &ExitError{Code: 2, Err: err}
			}
		}
		return b.Build(), nil
	}
	var data []byte
	if !noSet {
		path := filepath.Join(protection.FeatureDir(g.stateDir), "signatures", "current.sigset")
		if b, err := os.ReadFile(path); err == nil {
			data = b
		} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			set.warning = fmt.Sprintf("the installed signature set was not used: %v", err)
		}
	}
	db, err := build(data)
	var ee *ExitError
	if err != nil && data != nil && !errors.As(err, &ee) {
		set = installedSet{warning: fmt.Sprintf("the installed signature set was not used: %v", err)}
		db, err = build(nil)
	}
	if errors.As(err, &ee) {
		return nil, set, ee.Err
	}
	return db, set, err
}
