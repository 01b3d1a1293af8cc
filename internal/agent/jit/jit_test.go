package jit_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/jit"
	"github.com/corralhq/corral/internal/testutil"
)

func TestGrantOpensOnlyThatSourceAndPortUntilExpiry(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name          string
		source, other netip.Addr
	}{{"ipv4", outA, outB}, {"ipv6", out6A, out6B}} {
		t.Run(tc.name, func(t *testing.T) {
			e.wantOpen(t, tc.source, ssh, false)
			e.wantOpen(t, tc.source, web, true) // not managed: untouched

			g, err := e.m.Grant(t.Context(), jit.GrantRequest{ID: "grant-" + tc.name, Source: tc.source, Port: ssh, Duration: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if g.Source != tc.source || g.Port != ssh || g.ID != "grant-"+tc.name {
				t.Fatalf("grant = %+v", g)
			}
			e.wantOpen(t, tc.source, ssh, true)
			e.wantOpen(t, tc.other, ssh, false)  // another source
			e.wantOpen(t, tc.source, alt, false) // another managed port
			e.wantOpen(t, tc.source, dns, false) // another protocol
			e.wantOpen(t, tc.source, web, true)

			list, err := e.m.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].Source != tc.source || list[0].Port != ssh || list[0].ID != "grant-"+tc.name {
				t.Fatalf("list = %+v, want the one grant", list)
			}
			if r := list[0].Remaining; r <= 0 || r > 2*time.Second {
				t.Fatalf("remaining read back from the kernel = %s, want in (0, 2s]", r)
			}

			e.eventuallyClosed(t, tc.source, ssh, 5*time.Second)
			if list, err := e.m.List(t.Context()); err != nil || len(list) != 0 {
				t.Fatalf("after expiry list = %+v, %v; want empty", list, err)
			}
		})
	}
}

func TestUDPGrant(t *testing.T) {
	e := newEnv(t)
	e.wantOpen(t, outA, dns, false)
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{Source: outA, Port: dns, Duration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	e.wantOpen(t, outA, dns, true)
	e.wantOpen(t, outB, dns, false)
}

// The grant is made by another process that is then SIGKILLed: the kernel
// still opens the port and closes it on time.
func TestGrantExpiresAfterAgentIsKilled(t *testing.T) {
	e := newEnv(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperGrantingAgent$")
	cmd.Env = append(os.Environ(), "CORRAL_JIT_HELPER_NETNS="+e.machine.Path, "CORRAL_JIT_HELPER_SOURCE="+outA.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "granted" {
		rest, _ := io.ReadAll(r) // the helper's reasons follow its FAIL line
		t.Fatalf("helper said %q%s, %v", line, rest, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	state, _ := cmd.Process.Wait()
	if ws, ok := state.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want killed", state)
	}
	e.wantOpen(t, outA, ssh, true)
	e.wantOpen(t, outB, ssh, false)
	e.eventuallyClosed(t, outA, ssh, 6*time.Second)
}

// TestHelperGrantingAgent is the "agent" of TestGrantExpiresAfterAgentIsKilled.
func TestHelperGrantingAgent(t *testing.T) {
	path := os.Getenv("CORRAL_JIT_HELPER_NETNS")
	if path == "" {
		t.Skip("helper process only")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m := jit.New(jit.Options{NetNS: int(f.Fd())})
	if err := m.Apply(t.Context(), policy); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Grant(t.Context(), jit.GrantRequest{Source: netip.MustParseAddr(os.Getenv("CORRAL_JIT_HELPER_SOURCE")), Port: ssh, Duration: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("granted")
	time.Sleep(time.Hour)
	// Without this the collector may close f while the Manager still names
	// its descriptor; the number is then reused by the netlink library's own
	// "current namespace" descriptor and the next request goes to the host's
	// namespace (seen as "table inet corral is missing" under load).
	runtime.KeepAlive(f)
}

func TestEstablishedConnectionOutlivesGrant(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{Source: outA, Port: ssh, Duration: time.Second}); err != nil {
		t.Fatal(err)
	}
	c := e.dial(t, outA, ssh)
	if c == nil {
		t.Fatal("granted port did not answer")
	}
	defer c.Close()
	e.eventuallyClosed(t, outA, ssh, 5*time.Second)
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "still" {
		t.Fatalf("established connection after expiry: %q, %v", buf, err)
	}
}

func TestRevokeClosesAtOnce(t *testing.T) {
	e := newEnv(t)
	for _, src := range []netip.Addr{outA, out6A} {
		if _, err := e.m.Grant(t.Context(), jit.GrantRequest{Source: src, Port: ssh, Duration: time.Hour}); err != nil {
			t.Fatal(err)
		}
		e.wantOpen(t, src, ssh, true)
		if ok, err := e.m.Revoke(t.Context(), src, ssh); err != nil || !ok {
			t.Fatalf("revoke = %v, %v", ok, err)
		}
		e.wantOpen(t, src, ssh, false)
		if ok, err := e.m.Revoke(t.Context(), src, ssh); err != nil || ok {
			t.Fatalf("second revoke = %v, %v; want false, nil", ok, err)
		}
	}
}

func TestGrantAgainReplacesTimer(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{ID: "long", Source: outA, Port: ssh, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{ID: "short", Source: outA, Port: ssh, Duration: time.Second}); err != nil {
		t.Fatal(err)
	}
	list, err := e.m.List(t.Context())
	if err != nil || len(list) != 1 || list[0].ID != "short" || list[0].Remaining > time.Second {
		t.Fatalf("list = %+v, %v; want the one replaced grant", list, err)
	}
	e.eventuallyClosed(t, outA, ssh, 5*time.Second)
}

func TestRestoreAfterReboot(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{ID: "g1", Source: outA, Port: ssh, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{ID: "g2", Source: out6A, Port: alt, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// An expired grant in the saved state must not come back.
	st.Grants = append(st.Grants, jit.Grant{ID: "old", Source: outB, Port: ssh, Expires: time.Now().Add(-time.Minute)})
	saved, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}

	// "Reboot": the kernel forgets the table and the agent its memory.
	if err := e.m.Remove(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.wantOpen(t, outB, ssh, true) // no table: nothing managed
	if err := e.m.Check(t.Context()); !errors.Is(err, jit.ErrNotApplied) {
		t.Fatalf("check without table = %v, want ErrNotApplied", err)
	}
	m := jit.New(jit.Options{NetNS: e.machine.Fd()})
	if _, err := m.Grant(t.Context(), jit.GrantRequest{Source: outA, Port: ssh, Duration: time.Minute}); !errors.Is(err, jit.ErrNotApplied) {
		t.Fatalf("grant before restore = %v, want ErrNotApplied", err)
	}
	var loaded jit.State
	if err := json.Unmarshal(saved, &loaded); err != nil {
		t.Fatal(err)
	}
	restored, err := m.Restore(t.Context(), loaded)
	if err != nil {
		t.Fatal(err)
	}
	if len(restored) != 2 {
		t.Fatalf("restored %+v, want g1 and g2", restored)
	}
	if err := m.Check(t.Context()); err != nil {
		t.Fatalf("check after restore: %v", err)
	}
	e.wantOpen(t, outA, ssh, true)
	e.wantOpen(t, out6A, alt, true)
	e.wantOpen(t, outB, ssh, false)
	list, err := m.List(t.Context())
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	for _, g := range list {
		if g.Remaining > time.Hour || g.Remaining < 50*time.Minute {
			t.Errorf("grant %s restored with %s left, want its remaining time (just under 1h)", g.ID, g.Remaining)
		}
	}
	// Restoring again on a live table replaces it without a gap in effect.
	if _, err := m.Restore(t.Context(), loaded); err != nil {
		t.Fatalf("restore over a live table: %v", err)
	}
	e.wantOpen(t, outA, ssh, true)
}

func TestApplyChangesManagedPorts(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{Source: outA, Port: ssh, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{Source: outA, Port: alt, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Apply(t.Context(), jit.Policy{Ports: []jit.Port{alt}}); err != nil {
		t.Fatal(err)
	}
	e.wantOpen(t, outB, ssh, true) // no longer managed
	e.wantOpen(t, outB, alt, false)
	e.wantOpen(t, outA, alt, true) // its grant kept
	list, err := e.m.List(t.Context())
	if err != nil || len(list) != 1 || list[0].Port != alt {
		t.Fatalf("list = %+v, %v; want only the grant on %s", list, err, alt)
	}
	// Managing 22 again does not bring its grant back.
	if err := e.m.Apply(t.Context(), policy); err != nil {
		t.Fatal(err)
	}
	e.wantOpen(t, outA, ssh, false)
}

func TestOtherTablesUntouched(t *testing.T) {
	e := newEnv(t)
	out, err := e.machine.Command("nft", "add table inet other; add chain inet other c { type filter hook input priority 0; policy accept; }; add rule inet other c tcp dport 9 counter").CombinedOutput()
	if err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	if err := e.m.Apply(t.Context(), policy); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Remove(t.Context()); err != nil {
		t.Fatal(err)
	}
	out, err = e.machine.Command("nft", "list", "table", "inet", "other").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tcp dport 9 counter") {
		t.Fatalf("other table after apply and remove: %v\n%s", err, out)
	}
	if out, _ := e.machine.Command("nft", "list", "table", "inet", "corral").CombinedOutput(); !strings.Contains(string(out), "No such file") {
		t.Fatalf("table still there after remove:\n%s", out)
	}
}

// A batch the kernel refuses changes nothing: here the managed set exists
// with another type, so creating it fails, and the rule already in the
// chain must still be there.
func TestFailedApplyChangesNothing(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "nft")
	ns := testutil.NewNetNS(t)
	out, err := ns.Command("nft", "add table inet corral; add set inet corral managed { type ipv4_addr; }; add chain inet corral input { type filter hook input priority -10; policy accept; }; add rule inet corral input tcp dport 9 counter").CombinedOutput()
	if err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	before, _ := ns.Command("nft", "list", "table", "inet", "corral").CombinedOutput()
	m := jit.New(jit.Options{NetNS: ns.Fd()})
	err = m.Apply(t.Context(), policy)
	if err == nil {
		t.Fatal("apply over an incompatible set succeeded")
	}
	t.Logf("apply: %v", err)
	after, _ := ns.Command("nft", "list", "table", "inet", "corral").CombinedOutput()
	if string(before) != string(after) {
		t.Fatalf("failed apply changed the table:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := m.Grant(t.Context(), jit.GrantRequest{Source: outA, Port: ssh, Duration: time.Minute}); !errors.Is(err, jit.ErrNotApplied) {
		t.Fatalf("grant after failed apply = %v, want ErrNotApplied", err)
	}
}

// Without CAP_NET_ADMIN (here: root with every capability dropped, inside
// the test's namespace) the error says nftables is unavailable and why, and
// nothing is applied.
func TestUnavailableWithoutPermission(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "setpriv")
	ns := testutil.NewNetNS(t)
	cmd := ns.Command("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs",
		os.Args[0], "-test.run=^TestHelperUnprivilegedApply$", "-test.v")
	cmd.Env = append(os.Environ(), "CORRAL_JIT_HELPER_UNPRIV=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "UNAVAILABLE permission denied") {
		t.Fatalf("helper output:\n%s", out)
	}
	t.Logf("helper:\n%s", out)
	if out, _ := ns.Command("nft", "list", "ruleset").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Fatalf("ruleset after refused apply:\n%s", out)
	}
}

func TestHelperUnprivilegedApply(t *testing.T) {
	if os.Getenv("CORRAL_JIT_HELPER_UNPRIV") == "" {
		t.Skip("helper process only")
	}
	err := jit.New(jit.Options{}).Apply(t.Context(), policy)
	t.Logf("apply as uid %d: %v", os.Getuid(), err)
	if errors.Is(err, jit.ErrUnavailable) && strings.Contains(err.Error(), "permission denied") {
		fmt.Println("UNAVAILABLE permission denied")
	}
}

// Someone flushing the whole ruleset (restarting nftables.service does)
// opens the managed ports: Check says so and Restore closes them again.
func TestCheckAfterRulesetFlush(t *testing.T) {
	e := newEnv(t)
	if err := e.m.Check(t.Context()); err != nil {
		t.Fatalf("check: %v", err)
	}
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{Source: outA, Port: ssh, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.machine.Command("nft", "flush", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset: %v\n%s", err, out)
	}
	e.wantOpen(t, outB, ssh, true)
	if err := e.m.Check(t.Context()); !errors.Is(err, jit.ErrNotApplied) {
		t.Fatalf("check after flush = %v, want ErrNotApplied", err)
	}
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{Source: outB, Port: ssh, Duration: time.Hour}); !errors.Is(err, jit.ErrNotApplied) {
		t.Fatalf("grant after flush = %v, want ErrNotApplied", err)
	}
	if _, err := e.m.Restore(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	e.wantOpen(t, outB, ssh, false)
	e.wantOpen(t, outA, ssh, true)
}
