package sshaccess_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/corralhq/corral/internal/agent/sshaccess"
	"github.com/corralhq/corral/internal/server/sshca"
	"github.com/corralhq/corral/internal/sshcert"
	"github.com/corralhq/corral/internal/testutil"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sshd is the tree's own sshd, chrooted into the tree and running in a
// namespace of the test, with the tree's configuration, host keys and pid
// file. /proc is mounted for it (pam_loginuid needs it) in the private mount
// namespace `ip netns exec` makes, so the host never sees that mount.
type sshd struct {
	cmd *exec.Cmd
	log *syncBuffer
}

func startSSHD(t *testing.T, ns *testutil.NetNS, tree string) *sshd {
	t.Helper()
	// What systemd's RuntimeDirectory=sshd does for the real service.
	if err := os.MkdirAll(filepath.Join(tree, "run/sshd"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &sshd{log: &syncBuffer{}}
	s.cmd = ns.Command("sh", "-c", `mount -t proc proc "$1/proc" && exec chroot "$1" /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config -o PidFile=/run/sshd.pid`, "sh", tree)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log)
		}
	})
	testutil.Eventually(t, 10*time.Second, func() string {
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:22", time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			return fmt.Sprintf("sshd not listening: %v; log: %s", err, s.log)
		}
		return ""
	})
	return s
}

func (s *sshd) reload(context.Context) error { return s.cmd.Process.Signal(syscall.SIGHUP) }

// client runs the host's OpenSSH client inside the namespace, with no
// configuration of the host's (-F /dev/null, no agent) and the tree's host
// key pinned.
type client struct {
	ns         *testutil.NetNS
	ssh        string
	knownHosts string
}

func newClient(t *testing.T, ns *testutil.NetNS, tree string) *client {
	t.Helper()
	hostKey, err := os.ReadFile(filepath.Join(tree, "etc/ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte("127.0.0.1 "+string(hostKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &client{ns: ns, ssh: testutil.NeedTool(t, "ssh"), knownHosts: kh}
}

func (c *client) run(keyArgs []string, login, command string) (string, error) {
	args := []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + c.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlgorithms=ssh-ed25519",
		"-o", "IdentityAgent=none", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
		"-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-p", "22"}
	args = append(append(args, keyArgs...), login+"@127.0.0.1", command)
	out, err := c.ns.Command(c.ssh, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

type issuer struct {
	t  *testing.T
	ca *sshca.CA
}

// cert makes a key, has the CA sign it for principal, and writes both for
// ssh -i.
func (is issuer) cert(principal string, change func(*sshca.Request)) []string {
	t := is.t
	t.Helper()
	k, err := sshcert.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	req := sshca.Request{PublicKey: k.AuthorizedKey(), Principal: principal,
		Identity: sshca.Identity{Session: "sess-" + strings.ReplaceAll(principal, "@", "-"), Caller: "alice@example.com", Machine: "m-1"}}
	if change != nil {
		change(&req)
	}
	cert, err := is.ca.Sign(req)
	if err != nil {
		t.Fatal(err)
	}
	f, err := k.WriteFiles(t.TempDir(), ssh.MarshalAuthorizedKey(cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Remove() })
	return f.SSHArgs()
}

func TestCertificateLoginsThroughRealSSHD(t *testing.T) {
	testutil.NeedRoot(t)
	tree := newTree(t, true)
	ns := testutil.NewNetNS(t)
	d := startSSHD(t, ns, tree)
	c := newClient(t, ns, tree)
	ca, err := sshca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := sshca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	is, rogue := issuer{t, ca}, issuer{t, otherCA}

	a, err := sshaccess.New(sshaccess.Host{Root: tree, Reload: d.reload})
	if err != nil {
		t.Fatal(err)
	}
	s := sshaccess.Settings{AdminPrincipals: []string{"admin@m-1"}, UserPrincipals: []string{"user@m-1"}, CAKeys: []string{ca.AuthorizedKey()}}
	if res, err := a.Enable(t.Context(), s); err != nil || !res.Reloaded {
		t.Fatalf("enable = %+v, %v", res, err)
	}

	admin := is.cert("admin@m-1", nil)
	const probe = `id -un; id -u; if sudo -n true 2>/dev/null; then echo SUDO-OK; else echo SUDO-REFUSED; fi`
	var out string
	// sshd re-executes itself on SIGHUP: wait for it to listen again.
	testutil.Eventually(t, 10*time.Second, func() string {
		out, err = c.run(admin, "corral-admin", probe)
		if err != nil {
			return fmt.Sprintf("admin login: %v: %s", err, out)
		}
		return ""
	})
	if f := strings.Fields(out); len(f) < 3 || f[0] != "corral-admin" || f[1] == "0" || f[len(f)-1] != "SUDO-OK" {
		t.Errorf("admin login printed %q; want corral-admin, a non-zero uid, SUDO-OK", out)
	}
	if out, err := c.run(admin, "corral-admin", "sudo -n id -u"); err != nil || !strings.HasSuffix(out, "0") {
		t.Errorf("sudo as admin: %q, %v", out, err)
	}

	out, err = c.run(is.cert("user@m-1", nil), "corral-user", probe)
	if f := strings.Fields(out); err != nil || len(f) < 3 || f[0] != "corral-user" || f[1] == "0" || f[len(f)-1] != "SUDO-REFUSED" {
		t.Errorf("user login printed %q, %v; want corral-user, a non-zero uid, SUDO-REFUSED", out, err)
	}

	plainKey := filepath.Join(t.TempDir(), "id_plain")
	if out, err := exec.Command(testutil.NeedTool(t, "ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", plainKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name   string
		key    []string
		login  string
		reason string // what sshd logs, when it says why
	}{
		{"expired certificate", is.cert("admin@m-1", func(r *sshca.Request) { r.Now = time.Now().Add(-time.Hour) }), "corral-admin", "Certificate invalid: expired"},
		{"certificate for another machine's principal", is.cert("admin@m-2", nil), "corral-admin", "does not contain an authorized principal"},
		{"user principal as the admin account", is.cert("user@m-1", nil), "corral-admin", "does not contain an authorized principal"},
		{"admin principal as root", admin, "root", "does not contain an authorized principal"},
		{"admin principal as an account without principals file", admin, "sshd", "does not contain an authorized principal"},
		{"certificate from another CA", rogue.cert("admin@m-1", nil), "corral-admin", ""},
		{"plain key, no certificate", []string{"-i", plainKey, "-o", "IdentitiesOnly=yes"}, "corral-admin", ""},
		{"certificate bound to other source addresses", is.cert("admin@m-1", func(r *sshca.Request) {
			r.SourceAddresses = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		}), "corral-admin", "not from a permitted source address"},
	} {
		before := len(d.log.String())
		out, err := c.run(tc.key, tc.login, "echo LOGGED-IN")
		if err == nil || strings.Contains(out, "LOGGED-IN") || !strings.Contains(out, "Permission denied") {
			t.Errorf("%s: ssh = %v, %q; want Permission denied", tc.name, err, out)
		}
		// sshd's pre-authentication child logs through its monitor, which
		// may write after the client has gone.
		testutil.Eventually(t, 5*time.Second, func() string {
			if logged := d.log.String()[before:]; !strings.Contains(logged, tc.reason) || strings.Contains(logged, "Accepted") {
				return fmt.Sprintf("%s: sshd logged %q; want %q", tc.name, logged, tc.reason)
			}
			return ""
		})
	}

	// sshd logs who logged in, with the certificate's KeyId.
	log := d.log.String()
	for _, want := range []string{
		"Accepted publickey for corral-admin from 127.0.0.1",
		"ID corral session=sess-admin-m-1 caller=alice@example.com machine=m-1",
		"Accepted publickey for corral-user from 127.0.0.1",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("sshd log lacks %q", want)
		}
	}

	// Disable: the same valid certificate no longer logs in.
	if res, err := a.Disable(t.Context()); err != nil || !res.Changed {
		t.Fatalf("disable = %+v, %v", res, err)
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		out, err := c.run(admin, "corral-admin", "echo LOGGED-IN")
		if err == nil || !strings.Contains(out, "Permission denied") {
			return fmt.Sprintf("after disable: %v, %q", err, out)
		}
		return ""
	})
}
