package access_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/access"
	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const (
	outA    = "10.78.0.1"
	outB    = "10.78.0.3"
	machine = "10.78.0.2"
)

// blockedAfter is how long a dial waits before calling a port closed: a
// dropped SYN never answers; an open port answers in well under a
// millisecond on a veth pair.
const blockedAfter = 400 * time.Millisecond

// reports collects what the feature reported.
type reports struct {
	mu sync.Mutex
	rs []wire.AccessStatus
}

func (r *reports) add(kind string, body any, _ string) {
	if kind != wire.ReportAccess {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rs = append(r.rs, body.(wire.AccessStatus))
}

func (r *reports) last(t testing.TB) wire.AccessStatus {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.rs) == 0 {
		t.Fatal("nothing reported")
	}
	return r.rs[len(r.rs)-1]
}

// world is a machine namespace with a listener on port 22, joined to an
// "outside" namespace with two source addresses.
type world struct {
	outside, machine *testutil.NetNS
}

func newWorld(t *testing.T) *world {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "nft")
	w := &world{outside: testutil.NewNetNS(t), machine: testutil.NewNetNS(t)}
	testutil.ConnectNetNS(t, w.outside, []string{outA + "/24", outB + "/24"}, w.machine, []string{machine + "/24"})
	if err := w.machine.Do(func() error {
		ln, err := net.Listen("tcp", ":22")
		if err != nil {
			return err
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
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

// open reports whether a new connection from src reaches port 22.
func (w *world) open(t testing.TB, src string) bool {
	t.Helper()
	var ok bool
	err := w.outside.Do(func() error {
		d := net.Dialer{Timeout: blockedAfter, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", net.JoinHostPort(machine, "22"))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
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
		t.Fatalf("dial from %s: %v", src, err)
	}
	return ok
}

func (w *world) wantOpen(t testing.TB, src string, want bool) {
	t.Helper()
	if got := w.open(t, src); got != want {
		t.Fatalf("connection from %s to port 22: open = %v, want %v", src, got, want)
	}
}

// tables lists the nftables tables of the machine namespace.
func (w *world) tables(t testing.TB) string {
	t.Helper()
	out, err := w.machine.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	return string(out)
}

type agentEnv struct {
	dir     string
	reports *reports
	cfg     localconfig.Config
	mu      sync.Mutex
	off     string
}

func newAgentEnv(t testing.TB) *agentEnv {
	return &agentEnv{dir: t.TempDir(), reports: &reports{}}
}

func (a *agentEnv) env(t testing.TB) feature.Env {
	return feature.Env{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Dir: a.dir, HostRoot: t.TempDir(), Clock: time.Now,
		Report: a.reports.add, Config: func() localconfig.Effective {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.cfg.Effective()
		}, HostChangesOff: a.off, Machine: feature.Machine{ID: "m-1"}}
}

func desired(jit *wire.JITDesired) feature.Desired {
	b, _ := json.Marshal(wire.AccessDesired{JIT: jit})
	return feature.Desired{State: wire.DesiredState{Features: map[string]json.RawMessage{wire.FeatureAccess: b}}, Fresh: true}
}

func policy(grants ...wire.JITDesiredGrant) *wire.JITDesired {
	return &wire.JITDesired{Ports: []string{"22/tcp"}, AllowedSources: []string{"10.78.0.0/24"}, MaxDuration: wire.Duration(time.Hour), Grants: grants}
}

func start(t *testing.T, w *world, a *agentEnv, interval time.Duration) *access.Feature {
	t.Helper()
	f := access.NewWith(access.Options{NetNS: w.machine.Fd(), CheckInterval: interval})
	if err := f.Start(t.Context(), a.env(t)); err != nil {
		t.Fatal(err)
	}
	return f
}

// The kernel opens a granted port to one source only, closes it on time by
// itself, and the feature reports what it holds.
func TestGrantsInTheKernel(t *testing.T) {
	w := newWorld(t)
	a := newAgentEnv(t)
	f := start(t, w, a, time.Hour)
	ctx := t.Context()
	w.wantOpen(t, outA, true) // no policy yet: nothing managed

	if err := f.Apply(ctx, desired(policy())); err != nil {
		t.Fatal(err)
	}
	w.wantOpen(t, outA, false)
	if st := a.reports.last(t); st.JIT.State != wire.JITStateApplied || strings.Join(st.JIT.Ports, ",") != "22/tcp" {
		t.Fatalf("report %+v", st.JIT)
	}
	exp := time.Now().Add(2 * time.Second)
	g := wire.JITDesiredGrant{ID: "g-1", Source: outA, Port: "22/tcp", Expires: exp}
	if err := f.Apply(ctx, desired(policy(g))); err != nil {
		t.Fatal(err)
	}
	w.wantOpen(t, outA, true)
	w.wantOpen(t, outB, false)
	st := a.reports.last(t)
	if len(st.JIT.Grants) != 1 || st.JIT.Grants[0].State != wire.JITApplied || st.JIT.Grants[0].ID != "g-1" {
		t.Fatalf("grants reported %+v", st.JIT.Grants)
	}
	// Applying the same state again changes nothing in the kernel and sends
	// no new report.
	n := len(a.reports.rs)
	if err := f.Apply(ctx, desired(policy(g))); err != nil {
		t.Fatal(err)
	}
	if len(a.reports.rs) != n {
		t.Error("an unchanged state was reported again")
	}
	testutil.Eventually(t, 5*time.Second, func() string {
		if w.open(t, outA) {
			return "still open after the grant's expiry"
		}
		return ""
	})

	// Revoking: a grant that leaves the desired state is closed at once.
	g2 := wire.JITDesiredGrant{ID: "g-2", Source: outB, Port: "22", Expires: time.Now().Add(time.Hour)}
	if err := f.Apply(ctx, desired(policy(g2))); err != nil {
		t.Fatal(err)
	}
	w.wantOpen(t, outB, true)
	if err := f.Apply(ctx, desired(policy())); err != nil {
		t.Fatal(err)
	}
	w.wantOpen(t, outB, false)

	// A grant the policy refuses (a source outside the allowed ranges, as a
	// malicious control plane might send) fails with the reason.
	bad := wire.JITDesiredGrant{ID: "g-3", Source: "192.0.2.9", Port: "22", Expires: time.Now().Add(time.Hour)}
	if err := f.Apply(ctx, desired(policy(bad))); err != nil {
		t.Fatal(err)
	}
	if st := a.reports.last(t); len(st.JIT.Grants) != 1 || st.JIT.Grants[0].State != wire.JITFailed ||
		!strings.Contains(st.JIT.Grants[0].Message, "outside the allowed source ranges") {
		t.Errorf("refused grant reported %+v", st.JIT.Grants)
	}
	// A grant asking for more than the policy's maximum is cut to it.
	long := wire.JITDesiredGrant{ID: "g-4", Source: outA, Port: "22", Expires: time.Now().Add(10 * time.Hour)}
	if err := f.Apply(ctx, desired(policy(long))); err != nil {
		t.Fatal(err)
	}
	if st := a.reports.last(t); len(st.JIT.Grants) != 1 || st.JIT.Grants[0].State != wire.JITApplied ||
		st.JIT.Grants[0].Expires.After(time.Now().Add(time.Hour+time.Second)) {
		t.Errorf("over-long grant %+v: want applied for at most the policy's hour", st.JIT.Grants)
	}

	// No policy: the table goes, the port is the machine's own business again.
	if err := f.Apply(ctx, desired(nil)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(w.tables(t), "corral") {
		t.Errorf("table left after the policy went: %s", w.tables(t))
	}
	w.wantOpen(t, outB, true)
	if st := a.reports.last(t); st.JIT.State != wire.JITStateNone {
		t.Errorf("report %+v", st.JIT)
	}
}

// After a reboot (the kernel forgot the table) the feature rebuilds it at
// start with the grants that have not expired; a flushed ruleset is
// restored by the periodic check.
func TestRestoreAfterRebootAndFlush(t *testing.T) {
	w := newWorld(t)
	a := newAgentEnv(t)
	f := start(t, w, a, 100*time.Millisecond)
	ctx := t.Context()
	g := wire.JITDesiredGrant{ID: "g-1", Source: outA, Port: "22", Expires: time.Now().Add(time.Hour)}
	if err := f.Apply(ctx, desired(policy(g))); err != nil {
		t.Fatal(err)
	}
	w.wantOpen(t, outA, true)
	w.wantOpen(t, outB, false)

	// "Reboot": the table is gone, a new agent starts from its saved state.
	if out, err := w.machine.Command("nft", "delete", "table", "inet", "corral").CombinedOutput(); err != nil {
		t.Fatalf("nft delete table: %v\n%s", err, out)
	}
	w.wantOpen(t, outB, true)
	start(t, w, a, time.Hour)
	w.wantOpen(t, outB, false)
	w.wantOpen(t, outA, true)

	// Someone flushes the whole ruleset while the agent runs: the Tick
	// puts it back.
	if out, err := w.machine.Command("nft", "flush", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset: %v\n%s", err, out)
	}
	w.wantOpen(t, outB, true)
	testutil.Eventually(t, 5*time.Second, func() string {
		if err := f.Tick(ctx); err != nil {
			return err.Error()
		}
		if w.open(t, outB) {
			return "the flushed table was not restored"
		}
		return ""
	})
	w.wantOpen(t, outA, true)
}

// In trial mode (or corral dev) nothing changes in the kernel and the
// refusal is reported with its reason.
func TestRefusedWhenHostChangesAreOff(t *testing.T) {
	w := newWorld(t)
	a := newAgentEnv(t)
	if err := a.cfg.Set(localconfig.KeyHostChanges, "false"); err != nil {
		t.Fatal(err)
	}
	f := start(t, w, a, time.Hour)
	g := wire.JITDesiredGrant{ID: "g-1", Source: outA, Port: "22", Expires: time.Now().Add(time.Hour)}
	if err := f.Apply(t.Context(), desired(policy(g))); err != nil {
		t.Fatal(err)
	}
	st := a.reports.last(t)
	if st.JIT.State != wire.JITStateRefused || !strings.Contains(st.JIT.Message, "hostchanges.enabled is false") ||
		len(st.JIT.Grants) != 1 || st.JIT.Grants[0].State != wire.JITFailed {
		t.Errorf("report %+v", st.JIT)
	}
	if strings.Contains(w.tables(t), "corral") {
		t.Error("a table was made in trial mode")
	}
	if _, err := os.Stat(a.dir + "/jit.json"); err == nil {
		t.Error("a refused policy was saved for restore")
	}
}

// An agent that cannot use nftables (here: without CAP_NET_ADMIN, as on a
// machine whose kernel lacks nf_tables) reports the JIT state and every
// grant Failed with the reason, and keeps nothing to restore.
func TestNoNftables(t *testing.T) {
	const nobody = 65534
	if os.Getuid() != nobody {
		testutil.NeedRoot(t) // the parent starts the child as nobody
	}
	if !testutil.InChild(t, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}) {
		return
	}
	dir, err := os.MkdirTemp("", "corral-access-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	a := &agentEnv{dir: dir, reports: &reports{}}
	env := a.env(t)
	env.HostRoot = dir
	f := access.New()
	if err := f.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	g := wire.JITDesiredGrant{ID: "g-1", Source: outA, Port: "22", Expires: time.Now().Add(time.Hour)}
	if err := f.Apply(t.Context(), desired(policy(g))); err != nil {
		t.Fatal(err)
	}
	st := a.reports.last(t)
	if st.JIT.State != wire.JITStateFailed || !strings.Contains(st.JIT.Message, "nftables is not available on this machine") {
		t.Fatalf("JIT status %+v", st.JIT)
	}
	if len(st.JIT.Grants) != 1 || st.JIT.Grants[0].State != wire.JITFailed || !strings.Contains(st.JIT.Grants[0].Message, "nftables is not available") {
		t.Errorf("grant status %+v", st.JIT.Grants)
	}
	if _, err := os.Stat(dir + "/jit.json"); err == nil {
		t.Error("a policy that could not be applied is kept for restore")
	}
	fmt.Println("reported:", st.JIT.Message)
}

// A malformed slice is the feature's failure (the host reports it), never
// a partial change.
func TestMalformedDesired(t *testing.T) {
	a := newAgentEnv(t)
	f := access.New()
	if err := f.Start(t.Context(), a.env(t)); err != nil {
		t.Fatal(err)
	}
	d := feature.Desired{State: wire.DesiredState{Features: map[string]json.RawMessage{wire.FeatureAccess: json.RawMessage(`{"jit":7}`)}}}
	if err := f.Apply(context.Background(), d); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("apply = %v", err)
	}
	// A policy with a bad port is refused with the reason, before the kernel.
	if err := f.Apply(context.Background(), desired(&wire.JITDesired{Ports: []string{"0"}})); err != nil {
		t.Fatal(err)
	}
	if st := a.reports.last(t); st.JIT.State != wire.JITStateFailed || !strings.Contains(st.JIT.Message, "1 to 65535") {
		t.Errorf("report %+v", st.JIT)
	}
}
