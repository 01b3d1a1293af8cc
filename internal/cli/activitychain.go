package cli

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/auditchain"
	"github.com/corralhq/corral/internal/wire"
)

// verifyResult is `activity verify -o json`.
type verifyResult struct {
	OK       bool           `json:"ok"`
	Verified int64          `json:"verified"`
	Base     wire.ChainLink `json:"base"`
	Head     wire.ChainLink `json:"head"`
	Break    string         `json:"break,omitempty"`
}

func (a *app) activityVerifyCommand() *cobra.Command {
	var anchors []string
	var output string
	cmd := &cobra.Command{
		Use:   "verify [--anchor SEQ:HASH]...",
		Short: "Check the activity log's hash chain here, and name the first entry where it breaks",
		Long: `Read the whole tamper-evident activity chain from the control plane and check every link on this
computer: each entry must follow the one before it, and its hash must match its content. A changed,
deleted or reordered entry is named with its sequence number and id, and the command fails.

Record the head it prints somewhere the control plane's administrators cannot write; later,
--anchor SEQ:HASH proves the chain up to that point was not rewritten since. Entries are sealed
into the chain about a second after they are written; newer ones are checked next time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var links []wire.ChainLink
			for _, s := range anchors {
				l, err := parseAnchor(s)
				if err != nil {
					return err
				}
				links = append(links, l)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var v *auditchain.Verifier
			base, head, err := c.WalkActivityChain(ctxOf(cmd), func(base, _ wire.ChainLink) {
				v = auditchain.NewVerifier(base)
				for _, l := range links {
					v.Anchor(l)
				}
			}, func(e wire.ActivityEntry) error { return v.Add(e) })
			if v == nil { // no page was read
				return err
			}
			var brk *auditchain.Break
			if err != nil && !errors.As(err, &brk) {
				return err
			}
			if err == nil {
				err = v.End(head)
			}
			res := verifyResult{OK: err == nil, Verified: v.Checked(), Base: base, Head: head}
			if err != nil {
				res.Break = err.Error()
			}
			if output == "json" {
				if werr := writeJSON(cmd.OutOrStdout(), res); werr != nil {
					return werr
				}
			} else if err == nil {
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "The activity chain holds: %d entries verified (%d to %d).\n", res.Verified, base.Seq+1, head.Seq)
				if base.Seq > 0 {
					fmt.Fprintf(out, "Entries up to %d were purged by retention; the chain starts after %d:%s.\n", base.Seq, base.Seq, base.Hash)
				}
				fmt.Fprintf(out, "Head: %d:%s\nRecord it; later, --anchor %d:%s proves nothing up to it was rewritten.\n", head.Seq, head.Hash, head.Seq, head.Hash)
			}
			return err
		},
	}
	cmd.Flags().StringArrayVar(&anchors, "anchor", nil, "SEQ:HASH of a head recorded earlier that must still be in the chain (repeatable)")
	addOutputFlag(cmd, &output)
	return cmd
}

func parseAnchor(s string) (wire.ChainLink, error) {
	seqS, hash, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqS, 10, 64)
	if !ok || err != nil || seq < 1 || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return wire.ChainLink{}, fmt.Errorf("invalid --anchor %q: use SEQ:HASH as printed by corral activity verify (a number and 64 hexadecimal digits)", s)
	}
	return wire.ChainLink{Seq: seq, Hash: hash}, nil
}

// csvColumns are the columns of an export in CSV.
var csvColumns = []string{"seq", "id", "time", "callerId", "caller", "callerType", "action", "scope", "result", "httpStatus",
	"message", "correlationId", "sourceIp", "method", "path", "prevHash", "hash"}

func (a *app) activityExportCommand() *cobra.Command {
	var f activityFlags
	var format, file string
	cmd := &cobra.Command{
		Use:   "export --from T --to T [--scope S] [--caller ID] [--action A] [--result R] --format jsonl|csv [--output-file FILE]",
		Short: "Export activity log entries of a time range, oldest first, for auditors",
		Long: `Write every activity entry of [--from, --to) that matches the filters, oldest first, as JSON Lines
(one entry per line, exactly as the API returns it, with its place in the hash chain) or CSV (one
header row; cells that a spreadsheet would run as a formula are prefixed with ', so use JSON Lines
to recompute hashes). The export is streamed page by page; with --output-file the file is created
(mode 0600, never overwritten) and removed again if the export fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.from == "" || f.to == "" {
				return errors.New("--from and --to are required: the time range to export (RFC 3339, e.g. --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z)")
			}
			if format != "jsonl" && format != "csv" {
				return fmt.Errorf("invalid --format %q: use jsonl or csv", format)
			}
			f.top, f.output = 1, "table" // validated apart: an export has its own --format
			q, err := f.validate(a.now())
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var fh *os.File
			if file != "" {
				if fh, err = os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
					return fmt.Errorf("create the export file: %w", err)
				}
				out = fh
			}
			n, err := exportActivity(out, format, func(fn func(wire.ActivityEntry) error) error {
				return c.EachActivity(ctxOf(cmd), q, fn)
			})
			if fh != nil {
				if err == nil {
					err = fh.Sync()
				}
				if cerr := fh.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					os.Remove(file)
					return fmt.Errorf("export failed after %d entries; %s was removed: %w", n, file, err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Exported %d entries to %s.\n", n, file)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scope, "scope", "", "scope and below (default /)")
	fl.StringVar(&f.caller, "caller", "", "caller principal id")
	fl.StringVar(&f.action, "action", "", "action, or a prefix ending in '*'")
	fl.StringVar(&f.result, "result", "", "Succeeded, Failed or Denied")
	fl.StringVar(&f.from, "from", "", "start of the range, inclusive (RFC 3339; required)")
	fl.StringVar(&f.to, "to", "", "end of the range, exclusive (RFC 3339; required)")
	fl.StringVar(&format, "format", "jsonl", "jsonl or csv")
	fl.StringVar(&file, "output-file", "", "write to this new file instead of standard output")
	return cmd
}

// exportActivity writes the entries each yields in format and returns how
// many it wrote.
func exportActivity(w io.Writer, format string, each func(func(wire.ActivityEntry) error) error) (int, error) {
	n := 0
	switch format {
	case "jsonl":
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		err := each(func(e wire.ActivityEntry) error {
			n++
			return enc.Encode(e)
		})
		return n, err
	default:
		cw := csv.NewWriter(w)
		if err := cw.Write(csvColumns); err != nil {
			return 0, err
		}
		err := each(func(e wire.ActivityEntry) error {
			n++
			row := []string{strconv.FormatInt(e.Seq, 10), e.ID, e.Time.UTC().Format(time.RFC3339Nano), e.CallerID, e.Caller, e.CallerType,
				e.Action, e.Scope, e.Result, strconv.Itoa(e.Status), e.Message, e.CorrelationID, e.SourceIP, e.Method, e.Path, e.PrevHash, e.Hash}
			for i, cell := range row {
				row[i] = csvSafe(cell)
			}
			return cw.Write(row)
		})
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
		return n, err
	}
}

// csvSafe keeps a spreadsheet from running a cell as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
