package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/wire"
)

// parseProtectionScope reads --scope: a subscription or resource group id
// (/subscriptions/S[/resourceGroups/RG]) or, for short, a resource group
// name of --subscription.
func parseProtectionScope(s, sub string) (resource.ID, error) {
	if s == "" {
		return resource.ID{}, errors.New("--scope is required: /subscriptions/S, /subscriptions/S/resourceGroups/RG or a resource group name")
	}
	if !strings.HasPrefix(s, "/") {
		if !resource.ValidName(s) {
			return resource.ID{}, fmt.Errorf("--scope %q is neither a scope id nor a resource group name", s)
		}
		return resource.ResourceGroup(sub, s), nil
	}
	id, err := resource.ParseScope(s)
	if err != nil {
		return resource.ID{}, fmt.Errorf("--scope: %w", err)
	}
	if n := len(id.Segments()); n < 1 || n > 2 {
		return resource.ID{}, fmt.Errorf("--scope %q: protection is enabled on a subscription or a resource group", s)
	}
	return id, nil
}

func (a *app) protectionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "protection",
		Short: "Endpoint protection: enable it on a scope, see each machine's status and quarantine",
		Long: `Endpoint protection installs the first-party extension Corral/EndpointProtection on every
machine of a scope (a subscription or resource group), now and on machines that join later.
Each machine's local lock-down still decides: monitor mode allows it, extensions.blocklist
can refuse it. Detections become alerts ("corral alert list"); scans are started with
"corral scan start"; signature sets are imported with "corral signatures import".`,
	}
	cmd.AddCommand(a.protectionEnableCommand(), a.protectionDisableCommand(), a.protectionListCommand(),
		a.protectionStatusCommand(), a.protectionQuarantineCommand())
	return cmd
}

func (a *app) protectionEnableCommand() *cobra.Command {
	var scope, sub, action, output, scanType string
	var realtime, block bool
	var paths, exclPaths, exclExt []string
	var scanEvery time.Duration
	cmd := &cobra.Command{
		Use:   "enable --scope S [--realtime] [--action quarantine] [--block] [--path P]... [--exclude-path P]... [--exclude-extension E]... [--scan-every D [--scan-type quick|full]]",
		Short: "Turn endpoint protection on for a subscription or resource group",
		Long: `Turn endpoint protection on for a scope: every machine in it gets Corral/EndpointProtection
with these settings, and so do machines that join the scope later. Running it again on the
same scope changes the settings everywhere.

--realtime turns on real-time protection of --path (default /): files written and closed
are scanned at once and the --action is taken (quarantine, delete or report); --block also
denies opening or executing detected files (fanotify). Without --realtime machines are
scanned only on demand or on the --scan-every schedule.`,
		Example: `  corral protection enable --scope /subscriptions/default/resourceGroups/web --realtime --action quarantine
  corral protection enable --scope web --scan-every 24h --scan-type quick`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			id, err := parseProtectionScope(scope, sub)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("path") {
				paths = []string{"/"}
			}
			s := wire.ProtectionSettings{Realtime: wire.ProtectionRealtime{Enabled: realtime, Paths: paths, Block: block}, Action: action,
				Exclusions: wire.ProtectionExclusions{Paths: nonNilStrings(exclPaths), Extensions: nonNilStrings(exclExt)}}
			if block && !realtime {
				return errors.New("--block needs --realtime")
			}
			if err := s.Validate(); err != nil {
				return err
			}
			body := wire.ProtectionEnable{Settings: s}
			if scanEvery != 0 {
				body.Schedule = &wire.ProtectionSchedule{Type: scanType, Every: wire.Duration(scanEvery)}
				if err := body.Schedule.Validate(); err != nil {
					return err
				}
			} else if cmd.Flags().Changed("scan-type") {
				return errors.New("--scan-type needs --scan-every")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.EnableProtection(ctxOf(cmd), id, body)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), p)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Endpoint protection is on for %s (%d machines): %s.\n", p.Scope, p.Machines, describeSettings(p.Settings))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&scope, "scope", "", "subscription or resource group: /subscriptions/S[/resourceGroups/RG], or a resource group name")
	f.StringVar(&sub, "subscription", defaultSubscription, "subscription of a --scope given as a resource group name")
	f.BoolVar(&realtime, "realtime", false, "turn real-time protection on")
	f.StringVar(&action, "action", wire.ProtectionQuarantine, "what happens to a detected file: quarantine, delete or report")
	f.BoolVar(&block, "block", false, "deny opening and executing detected files (real time, fanotify)")
	f.StringArrayVar(&paths, "path", nil, "directory real-time protection watches (repeatable; default /)")
	f.StringArrayVar(&exclPaths, "exclude-path", nil, "path never scanned (repeatable)")
	f.StringArrayVar(&exclExt, "exclude-extension", nil, "file name extension never scanned, e.g. iso (repeatable)")
	f.DurationVar(&scanEvery, "scan-every", 0, "run a scan on every machine this often (1h to 744h)")
	f.StringVar(&scanType, "scan-type", wire.ScanQuick, "type of the scheduled scan: quick or full")
	addOutputFlag(cmd, &output)
	return cmd
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func describeSettings(s wire.ProtectionSettings) string {
	rt := "real-time off"
	if s.Realtime.Enabled {
		rt = "real-time on " + strings.Join(s.Realtime.Paths, ", ")
		if s.Realtime.Block {
			rt += " with blocking"
		}
	}
	return rt + ", action " + s.Action
}

func (a *app) protectionDisableCommand() *cobra.Command {
	var scope, sub string
	cmd := &cobra.Command{
		Use:   "disable --scope S",
		Short: "Turn endpoint protection off for a subscription or resource group",
		Long: `Turn endpoint protection off for a scope: its machines lose Corral/EndpointProtection,
unless a broader protected scope still covers them (they then get its settings). Quarantined
files stay in each machine's quarantine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := parseProtectionScope(scope, sub)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DisableProtection(ctxOf(cmd), id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Endpoint protection is off for %s.\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&scope, "scope", "", "subscription or resource group: /subscriptions/S[/resourceGroups/RG], or a resource group name")
	cmd.Flags().StringVar(&sub, "subscription", defaultSubscription, "subscription of a --scope given as a resource group name")
	return cmd
}

func (a *app) protectionListCommand() *cobra.Command {
	var scope, output string
	cmd := &cobra.Command{
		Use: "list [--scope S]", Short: "List the scopes endpoint protection is enabled on", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ps, err := c.ListProtection(ctxOf(cmd), scope)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), output, ps, []string{"SCOPE", "MACHINES", "SETTINGS", "SCHEDULE", "UPDATED BY", "UPDATED"},
				func(p wire.ProtectionAssignment) []string {
					sched := ""
					if p.Schedule != nil {
						sched = p.Schedule.Type + " every " + time.Duration(p.Schedule.Every).String()
					}
					return []string{p.Scope, strconv.Itoa(p.Machines), describeSettings(p.Settings), sched, p.UpdatedBy, formatTime(p.UpdatedAt)}
				})
		},
	}
	cmd.Flags().StringVar(&scope, "scope", "/", "only scopes at or below this one")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) protectionStatusCommand() *cobra.Command {
	var sub, rg, machine, output string
	cmd := &cobra.Command{
		Use:   "status [--resource-group RG | --machine M]",
		Short: "Show the endpoint protection status of machines",
		Long: `Show each machine's endpoint protection as its agent reported it: the daemon's state,
the engine and signature set versions, real-time protection (fanotify or inotify), the action
in force and the last scan.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var ps []wire.MachineProtection
			if machine != "" {
				m := machineRef{sub: sub, rg: rg, machine: machine}
				c, err := a.machineClient(cmd.Context(), &m)
				if err != nil {
					return err
				}
				p, err := c.GetMachineProtection(ctxOf(cmd), m.sub, m.rg, m.machine)
				if err != nil {
					return err
				}
				ps = []wire.MachineProtection{p}
			} else {
				c, err := a.client()
				if err != nil {
					return err
				}
				id := resource.Subscription(sub)
				if rg != "" {
					id = resource.ResourceGroup(sub, rg)
				}
				if ps, err = c.ListMachineProtection(ctxOf(cmd), id); err != nil {
					return err
				}
			}
			return render(cmd.OutOrStdout(), output, ps, []string{"MACHINE", "EXTENSION", "STATE", "SIGNATURES", "REAL TIME", "ACTION", "LAST SCAN", "ALERTS"},
				machineProtectionRow)
		},
	}
	f := cmd.Flags()
	f.StringVar(&sub, "subscription", defaultSubscription, "subscription")
	f.StringVarP(&rg, "resource-group", "g", "", "resource group (default: every machine of the subscription)")
	f.StringVarP(&machine, "machine", "m", "", "one machine")
	addOutputFlag(cmd, &output)
	return cmd
}

func machineProtectionRow(p wire.MachineProtection) []string {
	row := []string{p.Machine, p.ExtensionState, "", "", "", "", "", strconv.Itoa(p.ActiveAlerts)}
	if st := p.Status; st != nil {
		row[2] = st.State
		if st.Message != "" && st.State != wire.ProtectionRunning {
			row[2] += ": " + st.Message
		}
		row[3] = fmt.Sprintf("v%d (%d)", st.SignatureVersion, st.Signatures)
		if st.RealtimeEnabled {
			row[4] = st.RealtimeMode
			if st.Blocking {
				row[4] += " +block"
			}
		} else {
			row[4] = "off"
		}
		row[5] = st.Action
		if st.LastScan != nil {
			row[6] = fmt.Sprintf("%s %s %s", st.LastScan.Type, st.LastScan.State, formatTime(st.LastScan.FinishedAt))
		}
	}
	return row
}

func (a *app) protectionQuarantineCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "quarantine", Short: "List and restore a machine's quarantined files"}
	var m machineRef
	var output string
	list := &cobra.Command{
		Use: "list --machine M [--resource-group RG]", Short: "List the files a machine quarantined", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openMachine(cmd, &m, output)
			if err != nil {
				return err
			}
			q, err := c.ListQuarantine(ctxOf(cmd), m.sub, m.rg, m.machine)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), output, q, []string{"ID", "TIME", "SIGNATURE", "PATH", "SHA256"}, func(e wire.QuarantineEntry) []string {
				return []string{e.ID, formatTime(e.Time), e.Signature, e.Path, e.SHA256}
			})
		},
	}
	m.flags(list)
	addOutputFlag(list, &output)
	var rm machineRef
	var routput string
	var noExclusion, force, noWait bool
	restore := &cobra.Command{
		Use:   "restore ID --machine M [--resource-group RG] [--no-exclusion] [--force] [--no-wait]",
		Short: "Put a quarantined file back where it was",
		Long: `Ask the machine to put quarantine entry ID back at its path with its owner and mode. Its
SHA-256 is excluded from later detections unless --no-exclusion. The command waits for the
machine's answer unless --no-wait.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openMachine(cmd, &rm, routput)
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			r, err := c.RestoreQuarantined(ctx, rm.sub, rm.rg, rm.machine, args[0], wire.RestoreCreate{NoExclusion: noExclusion, Force: force})
			if err != nil {
				return err
			}
			if !noWait {
				err = poll(ctx, 2*time.Minute, func() (bool, error) {
					var err error
					r, err = c.GetRestore(ctx, rm.sub, rm.rg, rm.machine, r.ID)
					return err == nil && r.State != wire.ScanPending && r.State != wire.ScanRunning, err
				})
				if errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("restore %s is still %s (is the agent connected?)", r.ID, r.State)
				}
				if err != nil {
					return err
				}
			}
			if routput == outJSON {
				if err := writeJSON(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			}
			switch r.State {
			case wire.ScanFailed:
				return fmt.Errorf("restore of %s failed: %s", args[0], r.Message)
			case wire.ScanSucceeded:
				if routput != outJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "Restored %s (%s).\n", r.Path, r.Message)
				}
			default:
				if routput != outJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "Restore %s requested on machine %s.\n", r.ID, rm.machine)
				}
			}
			return nil
		},
	}
	rm.flags(restore)
	restore.Flags().BoolVar(&noExclusion, "no-exclusion", false, "do not exclude the file's SHA-256 from later detections")
	restore.Flags().BoolVar(&force, "force", false, "replace a file that now exists at the original path")
	restore.Flags().BoolVar(&noWait, "no-wait", false, "return once the restore is requested")
	addOutputFlag(restore, &routput)
	cmd.AddCommand(list, restore)
	return cmd
}

func (a *app) scanCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Scan machines for malware with their endpoint protection",
		Long: `Scans run on the machine by its endpoint protection daemon, under the local CPU limit:
quick covers the common drop locations (/tmp, /var/tmp, /dev/shm, home directories, web
roots, cron and service directories, /opt, /usr/local/bin); full covers every local
filesystem; custom covers the --path given. Detections become alerts and are handled with
the machine's configured action.`,
	}
	cmd.AddCommand(a.scanStartCommand(), a.scanListCommand(), a.scanShowCommand())
	return cmd
}

func (a *app) scanStartCommand() *cobra.Command {
	var m machineRef
	var typ, output string
	var paths []string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "start --machine M --type quick|full|custom [--path P]... [--wait]",
		Short: "Start a scan on a machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch typ {
			case wire.ScanQuick, wire.ScanFull:
				if len(paths) > 0 {
					return fmt.Errorf("--path is for --type custom, not %s", typ)
				}
			case wire.ScanCustom:
				if len(paths) == 0 {
					return errors.New("--type custom needs at least one --path")
				}
			default:
				return fmt.Errorf("--type must be quick, full or custom, not %q", typ)
			}
			c, err := a.openMachine(cmd, &m, output)
			if err != nil {
				return err
			}
			ctx := ctxOf(cmd)
			sc, err := c.StartScan(ctx, m.sub, m.rg, m.machine, wire.ScanCreate{Type: typ, Paths: paths})
			if err != nil {
				return err
			}
			if wait {
				err = poll(ctx, timeout, func() (bool, error) {
					var err error
					sc, err = c.GetScan(ctx, m.sub, m.rg, m.machine, sc.ID)
					return err == nil && (sc.State == wire.ScanSucceeded || sc.State == wire.ScanFailed), err
				})
				if errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("scan %s is still %s after %s; check later with \"corral scan show %s --machine %s\"", sc.ID, sc.State, timeout, sc.ID, m.machine)
				}
				if err != nil {
					return err
				}
			}
			if output == outJSON {
				if err := writeJSON(cmd.OutOrStdout(), sc); err != nil {
					return err
				}
			} else {
				printScan(cmd, sc)
			}
			if sc.State == wire.ScanFailed {
				return fmt.Errorf("scan %s failed: %s", sc.ID, sc.Message)
			}
			return nil
		},
	}
	m.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "quick, full or custom")
	f.StringArrayVar(&paths, "path", nil, "path to scan with --type custom (repeatable)")
	f.BoolVar(&wait, "wait", false, "wait for the scan to finish")
	f.DurationVar(&timeout, "timeout", time.Hour, "how long --wait waits")
	addOutputFlag(cmd, &output)
	return cmd
}

func printScan(cmd *cobra.Command, sc wire.Scan) {
	w := cmd.OutOrStdout()
	switch sc.State {
	case wire.ScanPending, wire.ScanRunning:
		fmt.Fprintf(w, "Scan %s (%s) of %s is %s.\n", sc.ID, sc.Type, sc.Machine, sc.State)
	default:
		fmt.Fprintf(w, "Scan %s (%s) of %s %s: %d files, %.1f MiB, %d infected, %d unreadable.\n", sc.ID, sc.Type, sc.Machine,
			strings.ToLower(sc.State), sc.Files, float64(sc.Bytes)/(1<<20), sc.Infected, sc.Errors)
		if sc.Message != "" {
			fmt.Fprintln(w, sc.Message)
		}
	}
}

func (a *app) scanListCommand() *cobra.Command {
	var m machineRef
	var output string
	var top int
	cmd := &cobra.Command{
		Use: "list --machine M [--top N]", Short: "List a machine's scans, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.openMachine(cmd, &m, output)
			if err != nil {
				return err
			}
			scs, err := c.ListScans(ctxOf(cmd), m.sub, m.rg, m.machine, top)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), output, scs, []string{"ID", "TYPE", "STATE", "FILES", "INFECTED", "REQUESTED BY", "FINISHED"},
				func(s wire.Scan) []string {
					by := s.CreatedBy
					if s.Scheduled {
						by = "schedule"
					}
					return []string{s.ID, s.Type, s.State, strconv.FormatInt(s.Files, 10), strconv.FormatInt(s.Infected, 10), by, formatTime(s.FinishedAt)}
				})
		},
	}
	m.flags(cmd)
	cmd.Flags().IntVar(&top, "top", 20, "how many scans (0: all)")
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) scanShowCommand() *cobra.Command {
	var m machineRef
	var output string
	cmd := &cobra.Command{
		Use: "show ID --machine M", Short: "Show a scan and its result", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.openMachine(cmd, &m, output)
			if err != nil {
				return err
			}
			sc, err := c.GetScan(ctxOf(cmd), m.sub, m.rg, m.machine, args[0])
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), sc)
			}
			printScan(cmd, sc)
			return nil
		},
	}
	m.flags(cmd)
	addOutputFlag(cmd, &output)
	return cmd
}

func (a *app) signaturesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "signatures",
		Short: "Import and list endpoint protection's signature sets",
		Long: `A signature set is what every protected machine scans with, besides the built-in EICAR test
signature. "import" takes ClamAV signature files as they are (.hdb: MD5 hashes, .hsb: SHA-1
and SHA-256 hashes, .ndb: body signatures with target type 0), checks every line (a
malformed line refuses the whole import, with its file and line), signs the set with the
server's signature key and sends it to every protected machine. Each agent verifies it with
the key it pinned when protection was first enabled (or protection.signaturekey) and keeps
its previous set if the new one does not verify.`,
	}
	var output string
	imp := &cobra.Command{
		Use: "import FILE...", Short: "Import ClamAV .hdb, .hsb and .ndb files as the next signature set", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s, err := a.resolveSession()
			if err != nil {
				return err
			}
			c, err := client.New(s.Server, client.WithCAPEM(s.CAPEM), client.WithToken(s.Token), client.WithUserAgent("corral-cli/"+a.version),
				client.WithTimeout(15*time.Minute))
			if err != nil {
				return err
			}
			set, err := c.ImportSignatures(ctxOf(cmd), args...)
			if err != nil {
				return err
			}
			if output == outJSON {
				return writeJSON(cmd.OutOrStdout(), set)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Imported signature set %d: %d hash and %d body signatures from %s (%.1f MiB signed).\n", set.Version,
				set.HashSignatures, set.BodySignatures, strings.Join(set.Sources, ", "), float64(set.Size)/(1<<20))
			if set.Unsupported > 0 {
				fmt.Fprintf(w, "%d lines use features this scanner does not support and were not imported, e.g.:\n", set.Unsupported)
				for _, l := range set.UnsupportedLines[:min(5, len(set.UnsupportedLines))] {
					fmt.Fprintln(w, "  "+l)
				}
			}
			return nil
		},
	}
	addOutputFlag(imp, &output)
	var loutput string
	list := &cobra.Command{
		Use: "list", Short: "List the imported signature sets, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(loutput); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sets, err := c.ListSignatureSets(ctxOf(cmd), 0)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), loutput, sets, []string{"VERSION", "HASH", "BODY", "UNSUPPORTED", "SOURCES", "IMPORTED BY", "IMPORTED"},
				func(s wire.SignatureSet) []string {
					return []string{strconv.FormatUint(s.Version, 10), strconv.Itoa(s.HashSignatures), strconv.Itoa(s.BodySignatures),
						strconv.Itoa(s.Unsupported), strings.Join(s.Sources, ","), s.CreatedBy, formatTime(s.CreatedAt)}
				})
		},
	}
	addOutputFlag(list, &loutput)
	cmd.AddCommand(imp, list)
	return cmd
}

func (a *app) alertCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use: "alert", Aliases: []string{"alerts"}, Short: "List and acknowledge endpoint protection alerts",
		Long: `Every detection on a protected machine is an alert: machine, path, SHA-256, signature, the
action taken (quarantined, deleted, reported, denied, or not-removed with why) and when.`,
	}
	var machine, scope, state, output string
	var top int
	list := &cobra.Command{
		Use: "list [--machine M] [--scope S] [--state Active|Acknowledged] [-o json]", Short: "List alerts, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			switch state {
			case "", wire.AlertActive, wire.AlertAcknowledged:
			default:
				return fmt.Errorf("--state must be %s or %s, not %q", wire.AlertActive, wire.AlertAcknowledged, state)
			}
			if scope != "" && !strings.HasPrefix(scope, "/") {
				scope = resource.ResourceGroup(defaultSubscription, scope).String()
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			as, err := c.ListAlerts(ctxOf(cmd), client.AlertFilter{Scope: scope, Machine: machine, State: state, Max: top})
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), output, as, []string{"ID", "TIME", "MACHINE", "SIGNATURE", "ACTION", "STATE", "PATH"},
				func(a wire.Alert) []string {
					action := a.Action
					if a.Error != "" {
						action += " (" + a.Error + ")"
					}
					return []string{a.ID, formatTime(a.Time), a.Machine, a.Signature, action, a.State, a.Path}
				})
		},
	}
	f := list.Flags()
	f.StringVarP(&machine, "machine", "m", "", "only alerts of machines with this name")
	f.StringVar(&scope, "scope", "", "only alerts of machines at or below this scope (an id, or a resource group name)")
	f.StringVar(&state, "state", "", "Active or Acknowledged")
	f.IntVar(&top, "top", 0, "at most this many (0: all)")
	addOutputFlag(list, &output)
	var aoutput string
	ack := &cobra.Command{
		Use: "ack ID", Aliases: []string{"acknowledge"}, Short: "Acknowledge an alert", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(aoutput); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			al, err := c.AcknowledgeAlert(ctxOf(cmd), args[0])
			if err != nil {
				return err
			}
			if aoutput == outJSON {
				return writeJSON(cmd.OutOrStdout(), al)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Alert %s (%s at %s on %s) acknowledged by %s.\n", al.ID, al.Signature, al.Path, al.Machine, al.AcknowledgedBy)
			return nil
		},
	}
	addOutputFlag(ack, &aoutput)
	var soutput string
	show := &cobra.Command{
		Use: "show ID", Short: "Show an alert", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(soutput); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			al, err := c.GetAlert(ctxOf(cmd), args[0])
			if err != nil {
				return err
			}
			if soutput == outJSON {
				return writeJSON(cmd.OutOrStdout(), al)
			}
			return table(cmd.OutOrStdout(), []string{"FIELD", "VALUE"}, [][]string{
				{"id", al.ID}, {"machine", al.MachineID}, {"path", al.Path}, {"member", al.Member}, {"sha256", al.SHA256},
				{"signature", al.Signature}, {"action", al.Action}, {"error", al.Error}, {"source", al.Source}, {"scan", al.ScanID},
				{"process", al.Process}, {"quarantine id", al.QuarantineID}, {"time", formatTime(al.Time)}, {"state", al.State},
				{"acknowledged by", al.AcknowledgedBy}, {"acknowledged", formatTime(al.AcknowledgedAt)},
			})
		},
	}
	addOutputFlag(show, &soutput)
	cmd.AddCommand(list, ack, show)
	return cmd
}
