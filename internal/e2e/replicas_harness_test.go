package e2e

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/loadgen"
	"github.com/corralhq/corral/internal/testutil"
)

// Addresses of the replica topology on loopback: each replica and the load
// balancer has its own address, so a certificate that names one does not
// cover another (the server certificate always covers 127.0.0.1 and
// localhost).
const lbIP = "127.0.0.10"

var replicaIPs = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}

// The files the deployment guide installs.
const (
	shippedHAProxyConfig = "../../packaging/haproxy/corral.cfg"
	shippedServerEnv     = "../../packaging/corral-server.env"
	shippedServerUnit    = "../../packaging/corral-server.service"
)

// serverEnv is packaging/corral-server.env with the test's values: every
// variable it sets, and only those, must have one in values.
func serverEnv(t *testing.T, values map[string]string) []string {
	t.Helper()
	b, err := os.ReadFile(shippedServerEnv)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	seen := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		v, known := values[k]
		if !ok || !known {
			t.Fatalf("%s line %d sets %q, which the test gives no value", shippedServerEnv, i+1, line)
		}
		seen[k] = true
		env = append(env, k+"="+v)
	}
	for k := range values {
		if !seen[k] {
			t.Fatalf("%s does not set %s", shippedServerEnv, k)
		}
	}
	return env
}

// freePort returns a TCP port free on ip now.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// replica is one `corral server` process.
type replica struct {
	name    string // as HAProxy names it: corral-1...
	url     string // its advertise URL, reached directly (not through the LB)
	dataDir string
	proc    *proc
	api     *testutil.API
}

// haproxyConfig is the shipped configuration made runnable here: the
// global section logs to stdout instead of syslog and switches no user, the
// frontend binds lb and logs each connection as soon as it reaches a replica
// ("corral-lb CLIENT_IP:PORT SERVER", which tells the test which replica
// holds which agent), and the servers are the replicas. Timeouts, balancing,
// health checks, retries and redispatch are the shipped ones.
func haproxyConfig(t *testing.T, shipped, lb string, servers []string) string {
	t.Helper()
	var out strings.Builder
	section, n := "", 0
	for line := range strings.SplitSeq(shipped, "\n") {
		trim := strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(trim, "#") {
			section = strings.Fields(trim)[0]
			if section == "global" {
				out.WriteString("global\n    log stdout format raw local0\n    maxconn 4000\n")
				continue
			}
		}
		switch {
		case section == "global":
			continue
		case section == "frontend" && strings.HasPrefix(trim, "bind "):
			fmt.Fprintf(&out, "    bind %s\n    option logasap\n    log-format \"corral-lb %%ci:%%cp %%s\"\n", lb)
			continue
		case section == "backend" && strings.HasPrefix(trim, "server "):
			f := strings.Fields(trim)
			if n >= len(servers) || len(f) < 3 {
				t.Fatalf("%s: more server lines than the %d replicas, or a malformed one: %q", shippedHAProxyConfig, len(servers), line)
			}
			f[2] = servers[n]
			n++
			out.WriteString("    " + strings.Join(f, " ") + "\n")
			continue
		}
		out.WriteString(line + "\n")
	}
	if n != len(servers) {
		t.Fatalf("%s has %d server lines, want %d", shippedHAProxyConfig, n, len(servers))
	}
	return out.String()
}

var lbLogLine = regexp.MustCompile(`corral-lb (\S+) (corral-\d)`)

// lbHolders maps each client address that reached a replica through the
// load balancer to that replica's name, from HAProxy's log.
func lbHolders(lb *proc) map[string]string {
	m := map[string]string{}
	for _, sub := range lbLogLine.FindAllStringSubmatch(lb.out.String(), -1) {
		m[sub[1]] = sub[2]
	}
	return m
}

// holderOf waits until HAProxy logged the connection from addr and returns
// the replica it went to.
func holderOf(t *testing.T, lb *proc, addr string) string {
	t.Helper()
	var got string
	testutil.Eventually(t, 10*time.Second, func() string {
		got = lbHolders(lb)[addr]
		if got == "" {
			return "HAProxy logged no connection from " + addr
		}
		return ""
	})
	return got
}

// procConnections returns the local addresses of pid's established TCP
// connections to remote (ip:port), from /proc: which connection a real
// agent holds, to ask HAProxy's log where it went.
func procConnections(t *testing.T, pid int, remote string) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatalf("read the agent's sockets: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(fs) < 10 || fs[3] != "01" || !inodes[fs[9]] { // 01: ESTABLISHED
			continue
		}
		if procAddr(fs[2]) == remote {
			out = append(out, procAddr(fs[1]))
		}
	}
	return out
}

// procAddr decodes /proc/net/tcp's "0100007F:1F90" (IPv4 in host order).
func procAddr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != 4 {
		return ""
	}
	port, _ := strconv.ParseUint(p, 16, 16)
	return net.JoinHostPort(net.IPv4(b[3], b[2], b[1], b[0]).String(), strconv.Itoa(int(port)))
}

// realAgentHolder is the replica holding a real agent's one connection.
func realAgentHolder(t *testing.T, lb *proc, agent *proc, lbAddr string) string {
	t.Helper()
	var conns []string
	// One connection carries the push channel and every request.
	testutil.Eventually(t, 10*time.Second, func() string {
		conns = procConnections(t, agent.cmd.Process.Pid, lbAddr)
		if len(conns) != 1 {
			return fmt.Sprintf("the agent holds %d connections to the load balancer (%v), want 1; its log:\n%s", len(conns), conns, agent.out.String())
		}
		return ""
	})
	return holderOf(t, lb, conns[0])
}

// fleetWatch follows the simulated agents' channel events.
type fleetWatch struct {
	mu      sync.Mutex
	addr    map[string]string    // machine id -> local address of its channel's connection
	up      map[string]bool      // channel welcomed and not down since
	upAt    map[string]time.Time // last welcome
	lastGen map[string]int64     // newest generation a sync announced
	waiters map[string]waiter
}

type waiter struct {
	after int64 // a sync of a newer generation ends the wait
	ch    chan time.Time
}

func newFleetWatch() *fleetWatch {
	return &fleetWatch{addr: map[string]string{}, up: map[string]bool{}, upAt: map[string]time.Time{},
		lastGen: map[string]int64{}, waiters: map[string]waiter{}}
}

func (w *fleetWatch) on(ev loadgen.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.Kind {
	case loadgen.EventConnected:
		w.addr[ev.Machine], w.up[ev.Machine], w.upAt[ev.Machine] = ev.LocalAddr, true, ev.At
	case loadgen.EventDown:
		w.up[ev.Machine] = false
	case loadgen.EventSync:
		w.lastGen[ev.Machine] = max(w.lastGen[ev.Machine], ev.Generation)
		if wt, ok := w.waiters[ev.Machine]; ok && ev.Generation > wt.after {
			delete(w.waiters, ev.Machine)
			wt.ch <- ev.At
		}
	}
}

// connected counts the agents among ids whose channel is up.
func (w *fleetWatch) connected(ids []string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, id := range ids {
		if w.up[id] {
			n++
		}
	}
	return n
}

func (w *fleetWatch) state(id string) (addr string, up bool, upAt time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addr[id], w.up[id], w.upAt[id]
}

// timePush runs change and returns how long until machine id's channel
// announced a newer desired state than it had (0 and false: none within
// 10 s).
func (w *fleetWatch) timePush(id string, change func() error) (time.Duration, bool, error) {
	ch := make(chan time.Time, 1)
	w.mu.Lock()
	w.waiters[id] = waiter{after: w.lastGen[id], ch: ch}
	w.mu.Unlock()
	sent := time.Now()
	if err := change(); err != nil {
		w.mu.Lock()
		delete(w.waiters, id)
		w.mu.Unlock()
		return 0, false, err
	}
	select {
	case at := <-ch:
		return at.Sub(sent), true, nil
	case <-time.After(10 * time.Second):
		w.mu.Lock()
		delete(w.waiters, id)
		w.mu.Unlock()
		return 0, false, nil
	}
}

// latency summarises push samples.
type latency []time.Duration

func (l latency) String() string {
	if len(l) == 0 {
		return "no samples"
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return fmt.Sprintf("p50 %s  p99 %s  max %s  (%d samples)", s[len(s)/2].Round(100*time.Microsecond),
		s[min(len(s)-1, len(s)*99/100)].Round(100*time.Microsecond), s[len(s)-1].Round(100*time.Microsecond), len(s))
}

func (l latency) max() time.Duration {
	if len(l) == 0 {
		return 0
	}
	return slices.Max(l)
}

func (l latency) p99() time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*99/100)]
}

// usage is a process's resident memory and CPU time so far.
func usage(pid int) (rssMiB float64, cpu time.Duration) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				rssMiB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 14th and 15th fields of the whole line.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+1:])
			if len(f) > 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
			}
		}
	}
	return rssMiB, cpu
}

// statusChanges sums the machines a replica's sweeper changed, from its
// JSON log ("machine status changed" with their count).
func statusChanges(r *replica) int {
	n := 0
	for line := range strings.SplitSeq(r.proc.out.String(), "\n") {
		var e struct {
			Msg   string `json:"msg"`
			Count int    `json:"count"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "machine status changed" {
			n += e.Count
		}
	}
	return n
}

// writeTestFile writes a file the test made.
func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
