package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NetNS is a network namespace a test created with `ip netns add` and that
// is deleted when the test ends. Tests use it for anything that touches a
// network stack (nftables, listeners on fixed ports, sshd) so the host's own
// stack is never changed.
type NetNS struct {
	Name string
	Path string // /run/netns/NAME
	file *os.File
}

// NewNetNS creates a namespace with its loopback up. It needs root and ip.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	NeedRoot(t)
	NeedTool(t, "ip")
	var b [4]byte
	rand.Read(b[:])
	name := "corral-t-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	ns := &NetNS{Name: name, Path: "/run/netns/" + name}
	t.Cleanup(func() {
		if ns.file != nil {
			ns.file.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ns.IP(t, "link", "set", "lo", "up")
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	ns.file = f
	return ns
}

// Fd is an open descriptor of the namespace, valid until the test ends.
func (n *NetNS) Fd() int { return int(n.file.Fd()) }

// IP runs `ip -n NAME args...` and fails the test on error.
func (n *NetNS) IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Command is a command run inside the namespace (`ip netns exec`).
func (n *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs f on an OS thread switched into the namespace: sockets f creates
// (listeners, dials) belong to the namespace and keep working from any
// goroutine afterwards. The thread is discarded when f returns, so no other
// goroutine ever runs in the namespace by accident.
func (n *NetNS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Setns(n.Fd(), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// ConnectNetNS links a and b with a veth pair and gives each end the
// addresses listed (CIDR form, IPv4 or IPv6; IPv6 without duplicate address
// detection so it is usable at once). The pair lives only in the two
// namespaces and disappears with them.
func ConnectNetNS(t testing.TB, a *NetNS, aAddrs []string, b *NetNS, bAddrs []string) {
	t.Helper()
	a.IP(t, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b", "netns", b.Name)
	for _, side := range []struct {
		ns    *NetNS
		dev   string
		addrs []string
	}{{a, "veth-a", aAddrs}, {b, "veth-b", bAddrs}} {
		for _, addr := range side.addrs {
			args := []string{"addr", "add", addr, "dev", side.dev}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			side.ns.IP(t, args...)
		}
		side.ns.IP(t, "link", "set", side.dev, "up")
	}
	// Permanent neighbour entries: the first IPv6 neighbour solicitation on
	// a fresh veth pair is lost, which would delay every first packet to a
	// new address by a second.
	macA, macB := a.linkAddr(t, "veth-a"), b.linkAddr(t, "veth-b")
	for _, addr := range bAddrs {
		ip, _, _ := strings.Cut(addr, "/")
		a.IP(t, "neigh", "replace", ip, "lladdr", macB, "dev", "veth-a", "nud", "permanent")
	}
	for _, addr := range aAddrs {
		ip, _, _ := strings.Cut(addr, "/")
		b.IP(t, "neigh", "replace", ip, "lladdr", macA, "dev", "veth-b", "nud", "permanent")
	}
}

func (n *NetNS) linkAddr(t testing.TB, dev string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", n.Name, "-j", "link", "show", dev).Output()
	if err != nil {
		t.Fatalf("ip -n %s link show %s: %v", n.Name, dev, err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show %s: %q, %v", dev, out, err)
	}
	return links[0].Address
}
