package testutil

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// SSHTree is a private Debian 12 tree with openssh-server and sudo and host
// keys of its own (the cached tree's are shared by every copy), for a
// chrooted sshd.
func SSHTree(t testing.TB) string {
	t.Helper()
	NeedTool(t, "chroot")
	keygen := NeedTool(t, "ssh-keygen")
	tree := DebianRoot(t, "openssh-server", "sudo")
	keys, _ := filepath.Glob(filepath.Join(tree, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		os.Remove(k)
	}
	if out, err := exec.Command(keygen, "-A", "-f", tree).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -A: %v\n%s", err, out)
	}
	return tree
}

// SSHD is the tree's own sshd, chrooted into the tree and running in a
// network namespace of the test, listening on port 22 of that namespace,
// with its pid in TREE/run/sshd.pid (so a reload by pid file works).
type SSHD struct {
	cmd *exec.Cmd
	// Log is everything sshd logged (-e).
	Log *SyncBuffer
}

// StartSSHD starts sshd in ns and waits until it listens. /proc is mounted
// for it (pam_loginuid needs it) in the private mount namespace `ip netns
// exec` makes, so the host never sees that mount. It is stopped when the
// test ends.
func StartSSHD(t testing.TB, ns *NetNS, tree string) *SSHD {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(tree, "run/sshd"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &SSHD{Log: &SyncBuffer{}}
	s.cmd = ns.Command("sh", "-c", `mount -t proc proc "$1/proc" && exec chroot "$1" /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config -o PidFile=/run/sshd.pid`, "sh", tree)
	s.cmd.Stdout, s.cmd.Stderr = s.Log, s.Log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.Log)
		}
	})
	Eventually(t, 10*time.Second, func() string {
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:22", time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			return fmt.Sprintf("sshd not listening: %v; log: %s", err, s.Log)
		}
		return ""
	})
	return s
}

// ForwardToNetNS listens on 127.0.0.1 of the test process's own stack and
// forwards every connection to addr inside ns (dialled from a thread in
// the namespace): an agent running in the test process reaches a daemon of
// the namespace through it. It returns the port; the listener closes when
// the test ends.
func ForwardToNetNS(t testing.TB, ns *NetNS, addr string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go forward(ln, func() (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", addr, 5*time.Second)
			return err
		})
		return c, err
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// ForwardFromNetNS listens on 127.0.0.1 inside ns and forwards every
// connection to addr on the test process's own stack: a process run in the
// namespace (an agent binary) reaches a control plane on the host's
// loopback through it, and no interface of the host is touched. It returns
// the port inside the namespace.
func ForwardFromNetNS(t testing.TB, ns *NetNS, addr string) int {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go forward(ln, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
	return ln.Addr().(*net.TCPAddr).Port
}

func forward(ln net.Listener, dial func() (net.Conn, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			d, err := dial()
			if err != nil {
				return
			}
			defer d.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(d, c)
			go pipe(c, d)
			<-done
			<-done
		}()
	}
}

// Addr is "127.0.0.1:PORT".
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// ServeEcho listens on port (all addresses) inside ns and echoes every byte
// back, until the test ends.
func ServeEcho(t testing.TB, ns *NetNS, port int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
}

// BlockedAfter is how long CanConnect waits before calling a port closed: a
// dropped SYN never answers, an open port on a veth pair answers in well
// under a millisecond.
const BlockedAfter = 400 * time.Millisecond

// CanConnect reports whether a TCP connection from src (an address of ns)
// to dst ("ip:port") is accepted. A dropped SYN (what a port managed by JIT
// does) and a refusal (nothing listening, e.g. a daemon restarting) are
// both "no"; the refusal is logged, so a test can tell them apart.
func CanConnect(t testing.TB, ns *NetNS, src, dst string) bool {
	t.Helper()
	var ok bool
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: BlockedAfter, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", dst)
		if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
			return nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			t.Logf("connect from %s to %s: refused (nothing listening)", src, dst)
			return nil
		}
		if err != nil {
			return err
		}
		c.Close()
		ok = true
		return nil
	})
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", src, dst, err)
	}
	return ok
}
