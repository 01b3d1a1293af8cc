package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/sshcert"
	"github.com/corralhq/corral/internal/wire"
)

// sshTarget is the MACHINE argument: NAME or RG/NAME, with -g and
// --subscription.
func sshTarget(m *machineRef, arg string) error {
	if rg, name, ok := strings.Cut(arg, "/"); ok {
		if m.rg != "" && !strings.EqualFold(m.rg, rg) {
			return fmt.Errorf("machine %q names resource group %s, but --resource-group says %s", arg, rg, m.rg)
		}
		m.rg, arg = rg, name
	}
	m.machine = arg
	return m.validate()
}

// findMachine is machineClient with a hint when the caller may not list
// the subscription's machines (a role held on one resource group only).
func (a *app) findMachine(ctx context.Context, m *machineRef) (*client.Client, error) {
	c, err := a.machineClient(ctx, m)
	var ae *wire.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
		return nil, fmt.Errorf("%w\n(you may not list the machines of subscription %s: name the machine as RG/NAME or give --resource-group)", err, m.sub)
	}
	return c, err
}

func sshTargetFlags(cmd *cobra.Command, m *machineRef) {
	cmd.Flags().StringVar(&m.sub, "subscription", defaultSubscription, "subscription")
	cmd.Flags().StringVarP(&m.rg, "resource-group", "g", "", "resource group of the machine (default: found by the machine's name)")
}

func (a *app) sshCommand() *cobra.Command {
	var m machineRef
	var login, sshPath string
	var port int
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "ssh MACHINE [--login USER] [-- ssh args]",
		Short: "Log in to a machine with OpenSSH through its agent, with no inbound port open",
		Long: `Log in to a machine with the system's ssh, through the control plane and the machine's
agent (its outbound connection): no inbound port of the machine needs to be open.

corral ssh generates a key pair, has the control plane sign it into a certificate valid
for 5 minutes for one of the machine's two accounts — the administrator account (may
sudo) with Virtual Machine Administrator Login, the unprivileged one with Virtual
Machine User Login — pins the machine's sshd host keys as its agent reported them, and
runs ssh with a ProxyCommand of "corral ssh-proxy". Arguments after -- go to ssh (a
command to run, -L forwarding where sshd allows it, -v). MACHINE is NAME or RG/NAME.

The machine must allow it locally: ssh.manage true and the port in
incomingconnections.ports (corral-agent config set ...).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sshTarget(&m, args[0]); err != nil {
				return err
			}
			if dash := cmd.ArgsLenAtDash(); dash > 1 || dash < 0 && len(args) > 1 {
				return fmt.Errorf("unexpected argument %q: arguments for ssh go after --", args[1])
			}
			if port < 1 || port > 65535 {
				return fmt.Errorf("--port %d: port numbers run from 1 to 65535", port)
			}
			ssh, err := exec.LookPath(sshPath)
			if err != nil {
				return fmt.Errorf("the OpenSSH client is needed (%s): %w", sshPath, err)
			}
			c, err := a.findMachine(cmd.Context(), &m)
			if err != nil {
				return err
			}
			files, cert, err := a.sshCertificate(ctxOf(cmd), c, &m, login, validity, "")
			if err != nil {
				return err
			}
			defer files.Remove()
			self, err := os.Executable()
			if err != nil {
				return err
			}
			sshArgs := append(files.SSHArgs(), sshOptions(self, &m, port, cert, files.Dir)...)
			sshArgs = append(sshArgs, "-l", cert.Login, m.machine)
			sshArgs = append(sshArgs, args[1:]...)
			run := exec.CommandContext(ctxOf(cmd), ssh, sshArgs...)
			run.Stdin, run.Stdout, run.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			err = run.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &ExitError{Code: ee.ExitCode()}
			}
			return err
		},
	}
	sshTargetFlags(cmd, &m)
	f := cmd.Flags()
	f.StringVarP(&login, "login", "l", "", "the machine's account to log in as (default: the administrator account with Virtual Machine Administrator Login, else the user account)")
	f.IntVar(&port, "port", 22, "the machine's sshd port (must be in its incomingconnections.ports)")
	f.DurationVar(&validity, "validity", wire.DefaultSSHCertValidity, "how long the certificate is valid (it only has to outlive the login)")
	f.StringVar(&sshPath, "ssh", "ssh", "the OpenSSH client to run")
	return cmd
}

// sshCertificate generates a key, has it certified for the machine and
// writes key, certificate and a known_hosts file with the machine's host
// keys into a private directory (under dir, or $XDG_RUNTIME_DIR).
func (a *app) sshCertificate(ctx context.Context, c *client.Client, m *machineRef, login string, validity time.Duration, dir string) (*sshcert.Files, wire.SSHCertificate, error) {
	k, err := sshcert.NewKey()
	if err != nil {
		return nil, wire.SSHCertificate{}, err
	}
	cert, err := c.SSHCertificate(ctx, m.sub, m.rg, m.machine, wire.SSHCertificateRequest{PublicKey: string(k.AuthorizedKey()), Login: login,
		Validity: wire.Duration(validity)})
	if err != nil {
		return nil, cert, err
	}
	if len(cert.HostKeys) == 0 {
		return nil, cert, fmt.Errorf("machine %s did not report its sshd host keys, so its identity cannot be checked (is openssh-server installed under the agent's root?)", m.machine)
	}
	files, err := k.WriteFiles(dir, []byte(cert.Certificate))
	if err != nil {
		return nil, cert, err
	}
	var kh strings.Builder
	for _, hk := range cert.HostKeys {
		fmt.Fprintf(&kh, "%s %s\n", hostKeyAlias(cert.MachineID), hk)
	}
	if err := os.WriteFile(filepath.Join(files.Dir, "known_hosts"), []byte(kh.String()), 0o600); err != nil {
		files.Remove()
		return nil, cert, err
	}
	return files, cert, nil
}

func hostKeyAlias(machineID string) string { return "corral-" + machineID }

// sshOptions are the ssh options that route through corral ssh-proxy and
// pin the machine's host keys.
func sshOptions(self string, m *machineRef, port int, cert wire.SSHCertificate, dir string) []string {
	proxy := []string{self, "ssh-proxy", "--subscription", m.sub, "--resource-group", m.rg, "--port", fmt.Sprint(port),
		"--certificate", cert.ID, m.machine}
	quoted := make([]string, len(proxy))
	for i, p := range proxy {
		quoted[i] = shellQuote(p)
	}
	return []string{"-o", "ProxyCommand=" + strings.Join(quoted, " "),
		"-o", "HostKeyAlias=" + hostKeyAlias(cert.MachineID),
		"-o", "UserKnownHostsFile=" + filepath.Join(dir, "known_hosts"), "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no"}
}

// shellQuote quotes s for /bin/sh (ssh runs ProxyCommand through it).
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (a *app) sshProxyCommand() *cobra.Command {
	var m machineRef
	var port int
	var certificate string
	cmd := &cobra.Command{
		Use:   "ssh-proxy MACHINE [--port 22]",
		Short: "Connect standard input and output to a machine's port through its agent (OpenSSH ProxyCommand)",
		Long: `Connect standard input and output to a port of a machine (default 22) through the control
plane and the machine's agent, for OpenSSH:

  ssh -o ProxyCommand="corral ssh-proxy %h" corral-user@web-01

The machine must allow the port in incomingconnections.ports; the caller needs a login
role (Virtual Machine User or Administrator Login) at the machine. --certificate names
the certificate the session logs in with (corral ssh passes it), so the session's login
is recorded and an expired certificate is refused with that reason.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sshTarget(&m, args[0]); err != nil {
				return err
			}
			if port < 1 || port > 65535 {
				return fmt.Errorf("--port %d: port numbers run from 1 to 65535", port)
			}
			c, err := a.findMachine(cmd.Context(), &m)
			if err != nil {
				return err
			}
			tun, err := c.OpenStream(ctxOf(cmd), client.TunnelPath(m.sub, m.rg, m.machine, port, certificate))
			if err != nil {
				return fmt.Errorf("ssh-proxy to %s port %d: %w", m.machine, port, err)
			}
			defer tun.Close()
			return splice(cmd.InOrStdin(), cmd.OutOrStdout(), tun)
		},
	}
	sshTargetFlags(cmd, &m)
	cmd.Flags().IntVar(&port, "port", 22, "the machine's local port")
	cmd.Flags().StringVar(&certificate, "certificate", "", "id of the SSH certificate the session logs in with (from corral ssh or ssh-cert)")
	return cmd
}

// splice copies in to the tunnel and the tunnel to out until the tunnel
// ends (the end of in only half-closes it: the answer may still come).
func splice(in io.Reader, out io.Writer, tun *client.Tunnel) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(tun, in)
		_ = tun.CloseWrite()
	})
	_, err := io.Copy(out, tun)
	tun.Close()
	if f, ok := in.(*os.File); ok && f == os.Stdin {
		return ignoreClosed(err) // the copy from stdin ends with the process
	}
	wg.Wait()
	return ignoreClosed(err)
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (a *app) sshCertCommand() *cobra.Command {
	var m machineRef
	var login, dir string
	var validity time.Duration
	var port int
	cmd := &cobra.Command{
		Use:   "ssh-cert MACHINE [--login USER] [--dir DIR]",
		Short: "Write a short-lived SSH certificate, its key and the machine's host keys for plain OpenSSH, scp or rsync",
		Long: `Generate a key pair, have it certified for the machine (as corral ssh does) and write the
key, the certificate and a known_hosts file into a new private directory; print the ssh
options that use them through corral ssh-proxy. Delete the directory when done.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sshTarget(&m, args[0]); err != nil {
				return err
			}
			c, err := a.findMachine(cmd.Context(), &m)
			if err != nil {
				return err
			}
			files, cert, err := a.sshCertificate(ctxOf(cmd), c, &m, login, validity, dir)
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			opts := append(files.SSHArgs(), sshOptions(self, &m, port, cert, files.Dir)...)
			for i, o := range opts {
				opts[i] = shellQuote(o)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Directory:   %s\n", files.Dir)
			fmt.Fprintf(w, "Certificate: %s (login %s, principal %s)\n", cert.ID, cert.Login, cert.Principal)
			fmt.Fprintf(w, "Valid until: %s\n", formatTime(cert.ValidBefore))
			fmt.Fprintf(w, "Use:         ssh %s %s@%s\n", strings.Join(opts, " "), cert.Login, m.machine)
			return nil
		},
	}
	sshTargetFlags(cmd, &m)
	f := cmd.Flags()
	f.StringVarP(&login, "login", "l", "", "the machine's account (default: by your login role)")
	f.StringVar(&dir, "dir", "", "where to create the private directory (default $XDG_RUNTIME_DIR or the temp dir)")
	f.DurationVar(&validity, "validity", wire.DefaultSSHCertValidity, "how long the certificate is valid (at most 1h)")
	f.IntVar(&port, "port", 22, "the machine's sshd port")
	return cmd
}

func (a *app) sshSessionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "ssh-session", Aliases: []string{"ssh-sessions"}, Short: "List and end SSH sessions relayed to machines"}
	var scope, output string
	var active bool
	list := &cobra.Command{
		Use:   "list [--scope S] [--active] [-o json]",
		Short: "List sessions with their user, login, source, start, end and bytes each way",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			xs, err := c.ListSSHSessions(ctxOf(cmd), scope, active)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), output, xs, []string{"ID", "MACHINE", "PORT", "USER", "LOGIN", "SOURCE", "STATE", "STARTED", "ENDED", "TO MACHINE", "FROM MACHINE"},
				func(x wire.SSHSession) []string {
					return []string{x.ID, x.MachineName, fmt.Sprint(x.Port), x.User, x.Login, x.SourceIP, x.State, formatTime(x.StartedAt),
						formatTime(x.EndedAt), fmt.Sprint(x.BytesToMachine), fmt.Sprint(x.BytesFromMachine)}
				})
		},
	}
	list.Flags().StringVar(&scope, "scope", "", "only sessions at or below this scope")
	list.Flags().BoolVar(&active, "active", false, "only sessions still running")
	addOutputFlag(list, &output)
	end := &cobra.Command{
		Use:   "end ID",
		Short: "End a running session (whichever server replica relays it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			x, err := c.EndSSHSession(ctxOf(cmd), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Ending session %s of %s on %s.\n", x.ID, x.User, x.MachineName)
			return nil
		},
	}
	cmd.AddCommand(list, end)
	return cmd
}
