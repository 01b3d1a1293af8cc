package agentcli

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/agent/cloud"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// CheckResult is one line of `corral-agent check`.
type CheckResult struct {
	Check  string `json:"check"`
	Result string `json:"result"` // PASS, WARN, FAIL
	Detail string `json:"detail"`
}

func checkCommand(g *globals) *cobra.Command {
	var output, server, caFile string
	cmd := &cobra.Command{
		Use:   "check [--server URL --ca-file F] [-o table|json]",
		Short: "Check connectivity to the control plane and the agent's health",
		Long: `Check that this machine can reach the control plane over HTTPS (through the configured
proxy), that the control plane accepts the machine certificate, that the clock agrees
with the server's, and that the local configuration is readable. Before connecting, give
--server (and --ca-file) to test reachability alone. Exits 1 if any check fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			defer cancel()
			results := runChecks(ctx, g, server, caFile)
			if output == "json" {
				if err := writeJSON(cmd.OutOrStdout(), results); err != nil {
					return err
				}
			} else {
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "%-22s %-6s %s\n", "CHECK", "RESULT", "DETAIL")
				for _, r := range results {
					fmt.Fprintf(w, "%-22s %-6s %s\n", r.Check, r.Result, r.Detail)
				}
			}
			for _, r := range results {
				if r.Result == "FAIL" {
					return &ExitError{Code: 1, Err: fmt.Errorf("%s check failed: %s", r.Check, r.Detail)}
				}
			}
			return nil
		},
	}
	outputFlag(cmd, &output)
	cmd.Flags().StringVar(&server, "server", "", "control plane URL to test (default: the connected one)")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "PEM file of the control plane CA (with --server)")
	return cmd
}

func runChecks(ctx context.Context, g *globals, server, caFile string) []CheckResult {
	var out []CheckResult
	add := func(check, result, detail string) { out = append(out, CheckResult{check, result, detail}) }

	cfg, err := localconfig.Current(g.stateDir)
	if err != nil {
		add("local configuration", "FAIL", err.Error())
	} else {
		add("local configuration", "PASS", "mode "+cfg.Mode)
	}
	env, md := cloud.Detector{Host: g.host(), IMDS: g.imds}.Detect(ctx)
	switch {
	case md != nil:
		add("environment", "PASS", fmt.Sprintf("%s, instance %s in %s", env, md.InstanceID, md.Region))
	case env != wire.EnvOnPrem && env != wire.EnvVMware:
		add("environment", "WARN", env+" from DMI, but its instance metadata service did not answer")
	default:
		add("environment", "PASS", env)
	}

	id, idErr := identity.Load(g.stateDir)
	var caPEM []byte
	switch {
	case server == "" && idErr != nil:
		add("identity", "FAIL", idErr.Error())
		return out
	case server == "":
		server, caPEM = id.State.Server, id.CAPEM
		l := id.Leaf()
		left := time.Until(l.NotAfter)
		switch {
		case left <= 0:
			add("identity", "FAIL", "the machine certificate expired at "+l.NotAfter.UTC().Format(time.RFC3339))
		case left < 7*24*time.Hour:
			add("identity", "WARN", fmt.Sprintf("the machine certificate expires in %s; the running agent renews it", left.Round(time.Hour)))
		default:
			add("identity", "PASS", fmt.Sprintf("%s, certificate valid until %s", id.State.ResourceID, l.NotAfter.UTC().Format("2006-01-02")))
		}
		if id.State.Revoked != "" {
			add("identity", "FAIL", "revoked: "+id.State.Revoked)
		}
	case caFile != "":
		b, err := readFileCapped(caFile)
		if err != nil {
			add("server trust", "FAIL", err.Error())
			return out
		}
		caPEM = b
	}
	pool, err := identity.RootPool(caPEM)
	if err != nil {
		add("server trust", "FAIL", err.Error())
		return out
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if idErr == nil && server == id.State.Server {
		tlsCfg, _ = id.TLSConfig()
	}
	hc := localconfig.NewHTTPClient(tlsCfg, cfg.Proxy)
	if cfg.ProxyURL != "" {
		add("proxy", "PASS", cfg.ProxyURL)
	}
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+"/healthz", nil)
	resp, err := hc.Do(req)
	if err != nil {
		add("control plane", "FAIL", err.Error())
		return out
	}
	resp.Body.Close()
	add("control plane", map[bool]string{true: "PASS", false: "FAIL"}[resp.StatusCode == http.StatusOK],
		fmt.Sprintf("%s answered %d in %s over TLS", server, resp.StatusCode, time.Since(start).Round(time.Millisecond)))
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		skew := time.Since(d).Round(time.Second)
		if skew < 0 {
			skew = -skew
		}
		if skew > 5*time.Minute {
			add("clock", "FAIL", fmt.Sprintf("this clock differs from the server's by %s; certificates and tokens will fail", skew))
		} else {
			add("clock", "PASS", fmt.Sprintf("within %s of the server", max(skew, time.Second)))
		}
	}
	if idErr == nil && server == id.State.Server {
		c, _ := client.New(server, client.WithHTTPClient(hc))
		var ds wire.DesiredState
		if err := c.Do(ctx, http.MethodGet, wire.PathDesiredState, nil, &ds); err != nil {
			add("machine identity", "FAIL", "the control plane refused the machine certificate: "+err.Error())
		} else {
			add("machine identity", "PASS", fmt.Sprintf("accepted; desired state generation %d", ds.Generation))
		}
	}
	return out
}
