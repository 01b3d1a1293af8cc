package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// The namespaces of the secure-access journeys: the agent binary and a
// chrooted sshd run in "machine"; "outside" holds two source addresses
// joined to it by a veth pair. The control plane runs on this process's
// loopback; the agent reaches it through a forwarder inside its namespace,
// so no interface of the host is touched.
const (
	outA   = "10.81.0.1"
	outB   = "10.81.0.3"
	machIP = "10.81.0.2"
)

type accessWorld struct {
	c                *cluster
	outside, machine *testutil.NetNS
	tree             string
	sshd             *testutil.SSHD
	state            string
	agent            *proc
	agentEnv         []string
	serverInNS       string // the control plane's URL as the agent reaches it
}

func newAccessWorld(t testing.TB) *accessWorld {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "nft")
	testutil.NeedTool(t, "ssh")
	w := &accessWorld{c: startServer(t, "--disconnect-after", "30s")}
	w.outside, w.machine = testutil.NewNetNS(t), testutil.NewNetNS(t)
	testutil.ConnectNetNS(t, w.outside, []string{outA + "/24", outB + "/24"}, w.machine, []string{machIP + "/24"})
	w.tree = testutil.SSHTree(t)
	w.sshd = testutil.StartSSHD(t, w.machine, w.tree)
	host := strings.TrimPrefix(w.c.api.URL, "https://")
	w.serverInNS = "https://" + testutil.Addr(testutil.ForwardFromNetNS(t, w.machine, host))
	w.state = t.TempDir()
	clientID, secret := w.c.api.OnboardingPrincipal(t, "rg1")
	if out, err := w.agentCmd(t, "connect", "--server", w.serverInNS, "--subscription-id", "default", "--resource-group", "rg1",
		"--service-principal-id", clientID, "--service-principal-secret-file", testutil.WriteSecretFile(t, secret),
		"--ca-fingerprint", w.c.fingerprint(t), "--name", "web-01"); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	return w
}

// agentCmd runs corral-agent inside the machine namespace.
func (w *accessWorld) agentCmd(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return run(t, nil, nil, "ip", append([]string{"netns", "exec", w.machine.Name, w.c.agent, "--state-dir", w.state, "--root", w.tree}, args...)...)
}

// startAgent runs the daemon in the machine namespace; prefix runs it
// under another command (setpriv) first.
func (w *accessWorld) startAgent(t testing.TB, prefix ...string) *proc {
	t.Helper()
	args := append([]string{"netns", "exec", w.machine.Name}, prefix...)
	args = append(args, w.c.agent, "--state-dir", w.state, "--root", w.tree, "run", "--config-poll-interval", "200ms")
	w.agent = start(t, nil, "ip", args...)
	testutil.Eventually(t, 30*time.Second, func() string {
		if m, _ := w.c.machine(t, "rg1", "web-01"); m.Status != wire.StatusConnected {
			return "machine web-01 is " + m.Status
		}
		return ""
	})
	return w.agent
}

func (w *accessWorld) config(t testing.TB, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		if out, err := w.agentCmd(t, "config", "set", kv[i], kv[i+1]); err != nil {
			t.Fatalf("config set %s %s: %v\n%s", kv[i], kv[i+1], err, out)
		}
	}
}

func (w *accessWorld) open(t testing.TB, src string) bool {
	return testutil.CanConnect(t, w.outside, src, net.JoinHostPort(machIP, "22"))
}

func (w *accessWorld) eventually(t testing.TB, src string, want bool, within time.Duration) {
	t.Helper()
	testutil.Eventually(t, within, func() string {
		if got := w.open(t, src); got != want {
			return fmt.Sprintf("connection from %s to port 22: open = %v, want %v", src, got, want)
		}
		return ""
	})
}

// cli is the corral CLI signed in as one user, in a HOME of its own, with
// the binaries' directory on PATH (for ProxyCommand="corral ssh-proxy %h").
type cli struct {
	t   testing.TB
	bin string
	env []string
}

func (w *accessWorld) user(t testing.TB, name, role, scope string) *cli {
	t.Helper()
	const password = "a-long-e2e-password-42"
	adm := w.c.api.AdminToken(t)
	if name != "admin" {
		w.c.api.MustDo(t, http.StatusCreated, "POST", "/api/v1/users", adm, wire.UserCreate{Name: name, Password: password}, nil)
		w.c.api.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", adm, wire.RoleAssignmentCreate{Principal: name, Role: role, Scope: scope}, nil)
	}
	home := t.TempDir()
	c := &cli{t: t, bin: w.c.corral, env: []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_RUNTIME_DIR=" + home, "PATH=" + filepath.Dir(w.c.corral) + ":" + os.Getenv("PATH"), "SSH_AUTH_SOCK="}}
	pw := password
	if name == "admin" {
		pw = adminPassword
	}
	c.must(pw+"\n", "login", "--server", w.c.api.URL, "--username", name, "--password-stdin", "--ca-file", w.c.api.CAFile)
	return c
}

func (c *cli) run(stdin string, args ...string) (string, error) {
	c.t.Helper()
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	return run(c.t, in, c.env, c.bin, args...)
}

func (c *cli) must(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(stdin, args...)
	if err != nil {
		c.t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cli) fails(want string, args ...string) string {
	c.t.Helper()
	out, err := c.run("", args...)
	if err == nil || !strings.Contains(out, want) {
		c.t.Errorf("corral %s: %v, want a failure saying %q:\n%s", strings.Join(args, " "), err, want, out)
	}
	return out
}

var grantLine = regexp.MustCompile(`(?m)^Grant:\s+(\S+)$`)

// JIT with the real binaries: the managed port is closed to the outside;
// `corral jit request` opens it to one source and prints the grant and its
// expiry; the kernel closes it on time although the agent was killed with
// SIGKILL; after a reboot the agent rebuilds the table; bad input is
// refused with the reason; a machine whose agent cannot use nftables says
// so on the machine and in the request's error.
func TestJITWithTheBinaries(t *testing.T) {
	w := newAccessWorld(t)
	w.startAgent(t)
	admin := w.user(t, "admin", "", "")
	requester := w.user(t, "requester", "JIT Requester", "/subscriptions/default/resourceGroups/rg1")
	w.eventually(t, outA, true, 10*time.Second)

	out := admin.must("", "jit", "policy", "set", "--machine", "web-01", "--port", "22/tcp", "--max-duration", "1h", "--allowed-source", "10.81.0.0/24")
	if !strings.Contains(out, "/subscriptions/default/resourceGroups/rg1/machines/web-01") || !strings.Contains(out, "22/tcp") {
		t.Errorf("policy set:\n%s", out)
	}
	w.eventually(t, outA, false, 15*time.Second)
	if out := admin.must("", "jit", "policy", "show", "--machine", "web-01"); !strings.Contains(out, "On the machine: Applied") {
		t.Errorf("policy show:\n%s", out)
	}

	// Bad input, refused before anything is stored.
	requester.fails("outside the allowed source ranges", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "22", "--source-ip", "192.0.2.1", "--duration", "10m")
	requester.fails("is over the maximum of 1h0m0s", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "22", "--source-ip", outA, "--duration", "2h")
	requester.fails("must be positive", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "22", "--source-ip", outA, "--duration", "0s")
	requester.fails("must be positive", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "22", "--source-ip", outA, "--duration", "-5m")
	requester.fails("1 to 65535", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "70000", "--duration", "10m")
	requester.fails("not a range", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "22", "--source-ip", "10.81.0.0/24", "--duration", "10m")
	admin.fails("host bits set", "jit", "policy", "set", "--machine", "web-01", "--port", "22", "--max-duration", "1h", "--allowed-source", "10.81.0.1/24")
	admin.fails("not a CIDR range", "jit", "policy", "set", "--machine", "web-01", "--port", "22", "--max-duration", "1h", "--allowed-source", "10.81.0/24")
	admin.fails("1 to 65535", "jit", "policy", "set", "--machine", "web-01", "--port", "0", "--max-duration", "1h")
	admin.fails("tcp or udp", "jit", "policy", "set", "--machine", "web-01", "--port", "22/icmp", "--max-duration", "1h")
	admin.fails("must be positive", "jit", "policy", "set", "--machine", "web-01", "--port", "22", "--max-duration", "0s")
	if out := admin.must("", "jit", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("refused requests were stored:\n%s", out)
	}

	// A grant, then the agent is killed: the kernel still closes it on time.
	out = requester.must("", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "22", "--source-ip", outA, "--duration", "8s", "--justification", "hotfix")
	m := grantLine.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "State:   Applied") || !strings.Contains(out, "Expires: ") {
		t.Fatalf("jit request printed:\n%s", out)
	}
	grant := m[1]
	if !w.open(t, outA) || w.open(t, outB) {
		t.Fatal("the grant does not open the port to exactly its source")
	}
	if err := w.agent.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.agent.done
	w.eventually(t, outA, false, 15*time.Second)
	var list []wire.JITRequest
	if err := json.Unmarshal([]byte(admin.must("", "jit", "list", "-o", "json")), &list); err != nil || len(list) != 1 || list[0].ID != grant {
		t.Errorf("jit list: %+v, %v", list, err)
	}

	// "Reboot": the kernel forgets the table; the agent rebuilds it at start
	// with the grants still open.
	w.startAgent(t)
	out = requester.must("", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "22", "--source-ip", outB, "--duration", "30m")
	grantB := grantLine.FindStringSubmatch(out)[1]
	w.eventually(t, outB, true, 10*time.Second)
	w.agent.stop(t)
	if out, err := w.machine.Command("nft", "delete", "table", "inet", "corral").CombinedOutput(); err != nil {
		t.Fatalf("nft delete table: %v\n%s", err, out)
	}
	w.eventually(t, outA, true, 5*time.Second)
	w.startAgent(t)
	w.eventually(t, outA, false, 10*time.Second)
	w.eventually(t, outB, true, 5*time.Second)
	// A flushed ruleset is put back while the agent runs.
	if out, err := w.machine.Command("nft", "flush", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset: %v\n%s", err, out)
	}
	w.eventually(t, outA, false, 20*time.Second)

	// Revoking closes it early.
	if out := requester.must("", "jit", "revoke", grantB); !strings.Contains(out, "Revoked") {
		t.Errorf("revoke:\n%s", out)
	}
	w.eventually(t, outB, false, 10*time.Second)
	if out := admin.must("", "activity", "list", "--action", "Corral.Security/jitRequests/write", "-o", "json"); !strings.Contains(out, "open to "+outA) ||
		!strings.Contains(out, "revoke JIT request "+grantB) {
		t.Errorf("activity log lacks the grant's outcome or its revocation:\n%.3000s", out)
	}

	// An agent that cannot use nftables (no CAP_NET_ADMIN, as on a kernel
	// without nf_tables): reported on the machine and in the error.
	w.agent.stop(t)
	testutil.NeedTool(t, "setpriv")
	w.startAgent(t, "setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin")
	testutil.Eventually(t, 20*time.Second, func() string {
		out, _ := admin.run("", "jit", "policy", "show", "--machine", "web-01")
		if !strings.Contains(out, "On the machine: Failed") || !strings.Contains(out, "nftables is not available on this machine") {
			return "machine state:\n" + out
		}
		return ""
	})
	requester.fails("nftables is not available on this machine", "jit", "request", "--machine", "web-01", "-g", "rg1", "--port", "22", "--source-ip", outA, "--duration", "10m")
}

// SSH with the real binaries and a real sshd: `corral ssh` and plain
// OpenSSH with ProxyCommand="corral ssh-proxy %h" reach the namespace's sshd
// through the control plane and the agent while port 22 is closed to the
// outside; the login follows the role; refusals say why; the session is in
// the activity log with its bytes.
func TestSSHWithTheBinaries(t *testing.T) {
	w := newAccessWorld(t)
	w.config(t, "incomingconnections.ports", "22", "ssh.manage", "true")
	w.startAgent(t)
	admin := w.user(t, "admin", "", "")
	ops := w.user(t, "ops", "Virtual Machine Administrator Login", "/subscriptions/default/resourceGroups/rg1")
	dev := w.user(t, "dev", "Virtual Machine User Login", "/subscriptions/default/resourceGroups/rg1")
	nobody := w.user(t, "auditor", "Reader", "/")
	// No inbound port: the machine's port 22 is closed to the outside.
	admin.must("", "jit", "policy", "set", "--machine", "web-01", "--port", "22", "--max-duration", "1h")
	w.eventually(t, outA, false, 15*time.Second)

	const probe = `id -un; id -u; if sudo -n true 2>/dev/null; then echo SUDO-OK; else echo SUDO-REFUSED; fi`
	var out string
	testutil.Eventually(t, 60*time.Second, func() string { // sshd reloads once the agent put the CA in place
		var err error
		if out, err = dev.run("", "ssh", "rg1/web-01", "--", "-o", "BatchMode=yes", probe); err != nil {
			return fmt.Sprintf("corral ssh: %v\n%s", err, out)
		}
		return ""
	})
	if f := strings.Fields(out); len(f) < 3 || f[0] != "corral-user" || f[1] == "0" || f[len(f)-1] != "SUDO-REFUSED" {
		t.Errorf("User Login: %q, want corral-user, a non-zero uid and sudo refused", out)
	}
	out = ops.must("", "ssh", "rg1/web-01", "--", "-o", "BatchMode=yes", probe)
	if f := strings.Fields(out); len(f) < 3 || f[0] != "corral-admin" || f[1] == "0" || f[len(f)-1] != "SUDO-OK" {
		t.Errorf("Administrator Login: %q, want corral-admin who may sudo", out)
	}
	dev.fails("Virtual Machine Administrator Login", "ssh", "rg1/web-01", "--login", "corral-admin", "--", "true")

	// Plain OpenSSH with ProxyCommand="corral ssh-proxy %h", a certificate
	// from corral ssh-cert and the tree's host key pinned by hand.
	dir := t.TempDir()
	out = dev.must("", "ssh-cert", "rg1/web-01", "--dir", dir)
	certDir := strings.TrimSpace(regexp.MustCompile(`(?m)^Directory:\s+(.+)$`).FindStringSubmatch(out)[1])
	hostKey, err := os.ReadFile(filepath.Join(w.tree, "etc/ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("web-01 "+string(hostKey)+"rg1/web-01 "+string(hostKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := func(c *cli, extra ...string) (string, error) {
		args := append([]string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes",
			"-o", "HostKeyAlgorithms=ssh-ed25519", "-i", filepath.Join(certDir, "id_ed25519"), "-o", "CertificateFile=" + filepath.Join(certDir, "id_ed25519-cert.pub"),
			"-o", "IdentitiesOnly=yes", "-o", "ProxyCommand=corral ssh-proxy %h"}, extra...)
		return run(t, nil, c.env, "ssh", args...)
	}
	if out, err := plain(dev, "corral-user@rg1/web-01", "id -un"); err != nil || strings.TrimSpace(out) != "corral-user" {
		t.Errorf("plain OpenSSH through corral ssh-proxy: %v\n%s", err, out)
	}

	// Refusals, each with its reason.
	nobody.fails("login/action", "ssh", "web-01", "--", "true")
	if out, err := plain(nobody, "corral-user@web-01", "true"); err == nil || !strings.Contains(out, "login/action") {
		t.Errorf("plain OpenSSH as a Reader: %v\n%s", err, out)
	}
	dev.fails("port 2222 is not in incomingconnections.ports", "ssh-proxy", "rg1/web-01", "--port", "2222")
	w.config(t, "incomingconnections.enabled", "false")
	testutil.Eventually(t, 10*time.Second, func() string {
		out, err := dev.run("", "ssh", "rg1/web-01", "--", "-o", "BatchMode=yes", "true")
		if err == nil || !strings.Contains(out, "incomingconnections.enabled=false") {
			return fmt.Sprintf("with incoming connections off: %v\n%s", err, out)
		}
		return ""
	})
	w.config(t, "incomingconnections.enabled", "true")
	out = dev.must("", "ssh-cert", "rg1/web-01", "--dir", dir, "--validity", "1s")
	certID := regexp.MustCompile(`(?m)^Certificate:\s+(\S+)`).FindStringSubmatch(out)[1]
	expiredDir := strings.TrimSpace(regexp.MustCompile(`(?m)^Directory:\s+(.+)$`).FindStringSubmatch(out)[1])
	time.Sleep(2500 * time.Millisecond)
	dev.fails("certificate "+certID+" expired at", "ssh-proxy", "rg1/web-01", "--certificate", certID)
	before := len(w.sshd.Log.String())
	certDir = expiredDir
	if out, err := plain(dev, "corral-user@rg1/web-01", "true"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("plain OpenSSH with an expired certificate: %v\n%s", err, out)
	}
	testutil.Eventually(t, 5*time.Second, func() string {
		if !strings.Contains(w.sshd.Log.String()[before:], "expired") {
			return "sshd did not log why it refused the expired certificate"
		}
		return ""
	})

	// Sessions: listed with user, login, source, times and bytes; in the
	// activity log.
	var sessions []wire.SSHSession
	if err := json.Unmarshal([]byte(admin.must("", "ssh-session", "list", "-o", "json")), &sessions); err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, x := range sessions {
		if x.User == "dev" && x.Login == "corral-user" && x.State == wire.SessionEnded && x.BytesToMachine > 0 && x.BytesFromMachine > 0 && !x.EndedAt.IsZero() {
			seen = true
		}
	}
	if !seen {
		t.Errorf("no ended session of dev as corral-user with bytes:\n%+v", sessions)
	}
	out = admin.must("", "activity", "list", "--action", "Corral.HybridCompute/machines/login/action", "-o", "json")
	if !strings.Contains(out, "SSH session ") || !strings.Contains(out, "dev to port 22 of web-01 as corral-user from 127.0.0.1") ||
		!strings.Contains(out, "bytes to the machine") {
		t.Errorf("activity log lacks the sessions:\n%.3000s", out)
	}
	if w.open(t, outA) {
		t.Error("port 22 is open to the outside: the sessions must have needed no inbound port")
	}

	// Root takes it back: ssh.manage false undoes the certificate login at
	// once (a certificate still valid no longer logs in) and the control
	// plane refuses new ones with the reason.
	out = dev.must("", "ssh-cert", "rg1/web-01", "--dir", dir, "--validity", "10m")
	certDir = strings.TrimSpace(regexp.MustCompile(`(?m)^Directory:\s+(.+)$`).FindStringSubmatch(out)[1])
	w.config(t, "ssh.manage", "false")
	testutil.Eventually(t, 20*time.Second, func() string {
		if out, err := plain(dev, "corral-user@rg1/web-01", "true"); err == nil || !strings.Contains(out, "Permission denied") {
			return fmt.Sprintf("a valid certificate after ssh.manage false: %v\n%s", err, out)
		}
		return ""
	})
	testutil.Eventually(t, 20*time.Second, func() string {
		out, err := dev.run("", "ssh", "rg1/web-01", "--", "true")
		if err == nil || !strings.Contains(out, "does not accept corral SSH logins") {
			return fmt.Sprintf("corral ssh after ssh.manage false: %v\n%s", err, out)
		}
		return ""
	})
	if _, err := os.Stat(filepath.Join(w.tree, "etc/ssh/sshd_config.d/corral.conf")); err == nil {
		t.Error("the sshd drop-in is still there after ssh.manage false")
	}
}
