package agentcli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/cpulimit"
	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/publishers"
	"github.com/corralhq/corral/internal/wire"
)

// Show is `corral-agent show -o json`.
type Show struct {
	Status              string           `json:"status"` // Connected, Disconnected, Not connected, Revoked
	Detail              string           `json:"detail,omitempty"`
	ResourceID          string           `json:"resourceId,omitempty"`
	MachineID           string           `json:"machineId,omitempty"`
	Server              string           `json:"server,omitempty"`
	AgentVersion        string           `json:"agentVersion"`
	DaemonRunning       bool             `json:"daemonRunning"`
	LastHeartbeat       time.Time        `json:"lastHeartbeat,omitzero"`
	CertificateNotAfter time.Time        `json:"certificateNotAfter,omitzero"`
	CertificateSerial   string           `json:"certificateSerial,omitempty"`
	PendingReports      int              `json:"pendingReports"`
	AppliedGeneration   int64            `json:"appliedGeneration"`
	Configuration       wire.AgentConfig `json:"agentConfiguration"`
	ConfigurationError  string           `json:"configurationError,omitempty"`
	// Publishers are the extension signing keys this machine trusts.
	Publishers []publishers.Entry `json:"publishers"`
}

// collectShow gathers the agent's local view of itself.
func collectShow(g *globals) Show {
	s := Show{Status: "Not connected", AgentVersion: g.version}
	cfg, err := localconfig.Current(g.stateDir)
	if err != nil {
		s.ConfigurationError = err.Error()
	}
	s.Configuration = cfg.Wire()
	s.Publishers, _ = publishers.Open(g.stateDir).List(cfg)
	if s.Publishers == nil {
		s.Publishers = []publishers.Entry{}
	}
	id, err := identity.Load(g.stateDir)
	if err != nil {
		if !errors.Is(err, identity.ErrNotConnected) {
			s.Detail = err.Error()
		}
		return s
	}
	s.ResourceID, s.MachineID, s.Server = id.State.ResourceID, id.State.MachineID, id.State.Server
	if l := id.Leaf(); l != nil {
		s.CertificateNotAfter, s.CertificateSerial = l.NotAfter, l.SerialNumber.Text(16)
	}
	st, _ := daemon.ReadStatus(g.stateDir)
	s.DaemonRunning = st.PID > 0 && syscall.Kill(st.PID, 0) == nil
	s.LastHeartbeat, s.PendingReports, s.AppliedGeneration = st.LastHeartbeat, st.PendingReports, st.AppliedGeneration
	switch {
	case id.State.Revoked != "":
		s.Status, s.Detail = "Revoked", id.State.Revoked+`; run "corral-agent connect" again`
	case s.DaemonRunning && st.Connected:
		s.Status = "Connected"
	case !s.DaemonRunning:
		s.Status, s.Detail = "Disconnected", `the agent daemon is not running ("systemctl start corral-agent" or "corral-agent run")`
	default:
		s.Status, s.Detail = "Disconnected", st.LastError
	}
	return s
}

func showCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use: "show [-o table|json]", Short: "Show this machine's connection, identity and local configuration", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s := collectShow(g)
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			printShow(cmd.OutOrStdout(), s)
			return nil
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

func printShow(w io.Writer, s Show) {
	status := s.Status
	if s.Detail != "" {
		status += " (" + s.Detail + ")"
	}
	t := func(tm time.Time) string {
		if tm.IsZero() {
			return "-"
		}
		return tm.UTC().Format(time.RFC3339)
	}
	c := s.Configuration
	cpu := fmt.Sprintf("extensions %d%%, guest configuration %d%% of one CPU (%s)", c.ExtensionsCPULimit, c.GuestConfigurationCPULimit, cpuLimitEnforcement())
	rows := [][2]string{
		{"Status", status},
		{"Resource ID", orDash(s.ResourceID)},
		{"Machine ID", orDash(s.MachineID)},
		{"Server", orDash(s.Server)},
		{"Agent version", s.AgentVersion},
		{"Daemon running", fmt.Sprint(s.DaemonRunning)},
		{"Last heartbeat", t(s.LastHeartbeat)},
		{"Certificate expires", t(s.CertificateNotAfter)},
		{"Pending reports", fmt.Sprint(s.PendingReports)},
		{"Config mode", c.Mode},
		{"Extensions enabled", fmt.Sprint(c.ExtensionsEnabled)},
		{"Extensions allowlist", orDash(strings.Join(c.ExtensionsAllowlist, ","))},
		{"Extensions blocklist", orDash(strings.Join(c.ExtensionsBlocklist, ","))},
		{"Guest configuration", fmt.Sprint(c.GuestConfigurationEnabled)},
		{"Incoming connections", fmt.Sprintf("%v, ports %s", c.IncomingConnectionsEnabled, orDash(strings.Join(c.IncomingConnectionsPorts, ",")))},
		{"Proxy", orDash(c.ProxyURL)},
		{"CPU limits", cpu},
	}
	if s.ConfigurationError != "" {
		rows = append(rows, [2]string{"Configuration error", s.ConfigurationError + " (extensions and guest configuration are off)"})
	}
	for _, p := range s.Publishers {
		rows = append(rows, [2]string{"Publisher " + p.Publisher, p.Key + " (" + p.Source + ")"})
	}
	table(w, rows)
}

// cpuLimitEnforcement says whether extension handlers run under the CPU
// limit on this machine (cgroup v2 delegated to the agent).
func cpuLimitEnforcement() string {
	if _, why := cpulimit.Detect("/sys/fs/cgroup"); why != "" {
		return "not enforced: " + why
	}
	return "enforced with cgroup v2"
}
