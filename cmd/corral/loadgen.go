package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/flagenv"
	"github.com/corralhq/corral/internal/loadgen"
)

func newLoadgenCommand() *cobra.Command {
	o := loadgen.Options{Username: "admin", Agents: 1000, Concurrency: 32, HeartbeatInterval: 30 * time.Second,
		Steady: 60 * time.Second, Pushes: 500, PushTimeout: 10 * time.Second}
	var store, cpuProfile string
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Simulate many agents against a real control plane and print scale figures",
		Long: `Simulate N agents (real onboarding with CSRs, mTLS push channels, heartbeats) against a
control plane and print the onboarding rate, heartbeats per second, push latency p50/p99 (a tag change
through the API until the agent's stream receives it), the extension fan-out (Corral/RunCommand set on
--extension-fanout machines at once, each timed until its agent's Succeeded is recorded; like the real
agent, the simulated ones fetch and verify signed catalogs and packages for other publishers' extensions,
nothing for first-party ones, which ship with the agent; with --bulk through one bulk request
over the resource group, every onboarded machine), endpoint protection (a signature
set imported and protection enabled on the whole group: each machine timed until its status is recorded
after it downloaded and verified the set; one in 20 reports an alert) and the server's RSS.
Like corral-agent, each simulated agent fetches and answers its desired state when it first connects;
the measured phases start once every agent has.

Without --server it starts "corral server" as a child process on 127.0.0.1 with a fresh data dir
(SQLite by default, or --store), so its RSS is measured apart from the simulator's.
With --server, the admin password is read from stdin, and that server must allow the load: all
simulated agents connect from one address through one onboarding principal (raise or switch off
--max-connections-per-source, --machines-per-principal and --onboardings-per-minute there).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagenv.Apply(cmd.Flags(), "CORRAL_LOADGEN_"); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Log = cmd.ErrOrStderr()
			if err := o.Check(); err != nil {
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpu-profile: %w", err)
				}
				defer f.Close()
				o.CPUProfile = f
			}
			if o.Server == "" {
				child, err := startChildServer(ctx, o.HeartbeatInterval, store, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				defer child.stop()
				o.Server, o.CAFile, o.Password, o.ServerPID = child.url, child.caFile, child.password, child.cmd.Process.Pid
			} else {
				if o.CAFile == "" {
					return errors.New("--ca-file is required with --server")
				}
				pw, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4096))
				if err != nil {
					return err
				}
				o.Password = strings.TrimSpace(string(pw))
			}
			res, err := loadgen.Run(ctx, o)
			if err != nil {
				return err
			}
			res.Format(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Server, "server", "", "control plane URL (default: start one as a child process)")
	f.StringVar(&o.CAFile, "ca-file", "", "CA certificate of --server")
	f.StringVar(&o.Username, "username", o.Username, "admin user for --server (password on stdin)")
	f.StringVar(&store, "store", "", "store DSN for the child server (default: SQLite)")
	f.IntVar(&o.Agents, "agents", o.Agents, "number of simulated agents")
	f.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "parallel onboardings")
	f.DurationVar(&o.HeartbeatInterval, "heartbeat-interval", o.HeartbeatInterval, "agent heartbeat interval (also given to the child server)")
	f.DurationVar(&o.Steady, "steady", o.Steady, "how long to measure heartbeats once all agents are connected")
	f.IntVar(&o.Pushes, "pushes", o.Pushes, "number of timed pushes (tag changes)")
	f.IntVar(&o.ExtensionFanout, "extension-fanout", 1000, "set Corral/RunCommand on this many machines at once and time each until Succeeded (0 = skip)")
	f.BoolVar(&o.ExtensionBulk, "bulk", false, "do the extension fan-out through one bulk request over the whole resource group (every onboarded machine) instead of one PUT per machine")
	f.IntVar(&o.JITGrants, "jit-grants", 1000, "set a JIT policy on the resource group, then request a grant on this many machines at once and time each until Applied (0 = skip)")
	f.StringVar(&o.ResourceGroup, "resource-group", "loadgen", "resource group for the simulated machines")
	f.StringVar(&o.Transport, "transport", "agentmux", "how the simulated agents talk to the server: agentmux (requests and push channel on one connection in the agent's own protocol, as corral-agent), http2 (the same over HTTP/2, corral-agent's fallback) or websocket (the HTTP/1.1 fallback's channel)")
	f.BoolVar(&o.Storm, "storm", false, "last, drop every agent's connection at once (a network flap) and time until all are connected again, with the server's refusals, CPU and peak RSS")
	f.BoolVar(&o.Protection, "protection", true, "enable endpoint protection on every machine at once and time each until its status (after the signature set download) is recorded")
	f.BoolVar(&o.Updates, "updates", false, "assess every machine's pending updates, then deploy Security updates to all, each timed until every result is on the server")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of the simulator itself over the extension fan-out to this file (go tool pprof reads it)")
	f.BoolVar(&o.Policy, "policy", true, "assign the built-in linux-passwd-0644 to the resource group and time until the server shows every machine's compliance")
	return cmd
}

type childServer struct {
	cmd      *exec.Cmd
	dir      string
	url      string
	caFile   string
	password string
}

func startChildServer(ctx context.Context, hb time.Duration, store string, log io.Writer) (*childServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "corral-loadgen-")
	if err != nil {
		return nil, err
	}
	c := &childServer{dir: dir, caFile: filepath.Join(dir, "ca.crt"), password: "loadgen-" + fmt.Sprint(time.Now().UnixNano())}
	// Every simulated agent connects from 127.0.0.1 through one onboarding
	// principal: the per-address and per-principal limits are off.
	args := []string{"server", "--data-dir", dir, "--listen", "127.0.0.1:0", "--heartbeat-interval", hb.String(),
		"--disconnect-after", (4 * hb).String(), "--log-level", "warn",
		"--max-connections", "-1", "--max-connections-per-source", "-1", "--machines-per-principal", "-1", "--onboardings-per-minute", "-1",
		// Onboarding is measured at full speed; new channels keep the
		// production pacing (the storm phase measures it).
		"--connect-admit-rate", "-1"}
	if store != "" {
		args = append(args, "--store", store)
	}
	c.cmd = exec.Command(exe, args...)
	c.cmd.Env = append(os.Environ(), "CORRAL_ADMIN_PASSWORD="+c.password)
	c.cmd.Stderr = log
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start child server: %w", err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "Corral control plane at "); ok {
			c.url = strings.TrimSpace(u)
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	if c.url == "" {
		c.stop()
		return nil, errors.New("child server did not start; see its log above")
	}
	fmt.Fprintf(log, "child server %s (pid %d)\n", c.url, c.cmd.Process.Pid)
	return c, nil
}

func (c *childServer) stop() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
		}
	}
	_ = os.RemoveAll(c.dir)
}
