package jit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/jit"
	"github.com/corralhq/corral/internal/testutil"
)

// Addresses of the two namespaces: "outside" has two IPv4 and two IPv6
// sources so a test can show that a grant is for one source only.
var (
	outA   = netip.MustParseAddr("10.77.0.1")
	outB   = netip.MustParseAddr("10.77.0.3")
	out6A  = netip.MustParseAddr("fd77::1")
	out6B  = netip.MustParseAddr("fd77::3")
	mach4  = netip.MustParseAddr("10.77.0.2")
	mach6  = netip.MustParseAddr("fd77::2")
	ssh    = jit.Port{Number: 22, Proto: jit.TCP}
	alt    = jit.Port{Number: 2222, Proto: jit.TCP}
	dns    = jit.Port{Number: 5353, Proto: jit.UDP}
	web    = jit.Port{Number: 8080, Proto: jit.TCP} // never managed
	policy = jit.Policy{Ports: []jit.Port{ssh, alt, dns}}
)

// blockedAfter is how long a dial waits before calling a port closed: a
// dropped SYN never answers, an open port answers in well under a
// millisecond on a veth pair.
const blockedAfter = 400 * time.Millisecond

type env struct {
	outside, machine *testutil.NetNS
	m                *jit.Manager
}

// newEnv builds two namespaces joined by a veth pair, with TCP echo
// listeners on 22, 2222 and 8080 and a UDP echo on 5353 in "machine", and a
// Manager for "machine" with the policy applied.
func newEnv(t testing.TB) *env {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "nft")
	e := &env{outside: testutil.NewNetNS(t), machine: testutil.NewNetNS(t)}
	testutil.ConnectNetNS(t, e.outside, []string{outA.String() + "/24", outB.String() + "/24", out6A.String() + "/64", out6B.String() + "/64"},
		e.machine, []string{mach4.String() + "/24", mach6.String() + "/64"})
	err := e.machine.Do(func() error {
		for _, p := range []jit.Port{ssh, alt, web} {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p.Number))
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			go serveEcho(ln)
		}
		pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", dns.Number))
		if err != nil {
			return err
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.m = jit.New(jit.Options{NetNS: e.machine.Fd()})
	if err := e.m.Apply(t.Context(), policy); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(func() {
		// The namespace goes away anyway; removing proves Remove works on a live table.
		if err := jit.New(jit.Options{NetNS: e.machine.Fd()}).Remove(context.Background()); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	return e
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func machineAddr(src netip.Addr) netip.Addr {
	if src.Is4() {
		return mach4
	}
	return mach6
}

// dial connects from src (an address of "outside") to the machine's port and
// returns the open connection, or nil when the port did not answer.
func (e *env) dial(t testing.TB, src netip.Addr, p jit.Port) net.Conn {
	t.Helper()
	var c net.Conn
	err := e.outside.Do(func() error {
		network := "tcp"
		if p.Proto == jit.UDP {
			network = "udp"
		}
		d := net.Dialer{Timeout: blockedAfter, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		if network == "udp" {
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		}
		conn, err := d.Dial(network, netip.AddrPortFrom(machineAddr(src), p.Number).String())
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil {
			return err
		}
		c = conn
		return nil
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", p, src, err)
	}
	if c != nil && p.Proto == jit.UDP {
		// UDP has no handshake: an echo answered in time means open.
		c.SetDeadline(time.Now().Add(blockedAfter))
		buf := make([]byte, 4)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			c.Close()
			return nil
		}
		c.SetDeadline(time.Time{})
	}
	return c
}

// open reports whether a new connection from src to p gets through.
func (e *env) open(t testing.TB, src netip.Addr, p jit.Port) bool {
	t.Helper()
	c := e.dial(t, src, p)
	if c == nil {
		return false
	}
	c.Close()
	return true
}

func (e *env) wantOpen(t testing.TB, src netip.Addr, p jit.Port, want bool) {
	t.Helper()
	if got := e.open(t, src, p); got != want {
		t.Fatalf("connection from %s to %s: open = %v, want %v", src, p, got, want)
	}
}

// eventuallyClosed waits for the kernel to close p to src on its own.
func (e *env) eventuallyClosed(t testing.TB, src netip.Addr, p jit.Port, within time.Duration) {
	t.Helper()
	testutil.Eventually(t, within, func() string {
		if e.open(t, src, p) {
			return fmt.Sprintf("%s still reaches %s", src, p)
		}
		return ""
	})
}
