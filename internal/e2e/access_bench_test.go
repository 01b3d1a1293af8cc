package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// procStat is a process's CPU time so far and its memory.
type procStat struct {
	cpu       time.Duration // user + system
	rss, peak int64
}

func readProc(pid int) procStat {
	var s procStat
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command (which may hold spaces) start after ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			s.cpu = time.Duration(u+st) * time.Second / 100 // USER_HZ
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			switch k {
			case "VmRSS":
				s.rss = kb << 10
			case "VmHWM":
				s.peak = kb << 10
			}
		}
	}
	return s
}

// sshBench is the SSH relay benchmark's world: an agent binary and sshd in
// a namespace, a certificate for the administrator account, and the ssh
// command lines through the relay and directly inside the namespace.
type sshBench struct {
	w      *accessWorld
	admin  *cli
	dir    string
	certID string
}

func newSSHBench(b *testing.B) *sshBench {
	b.Helper()
	w := newAccessWorld(b)
	// 100 sessions start at once: let sshd take them all.
	cfg := filepath.Join(w.tree, "etc/ssh/sshd_config")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Fprintln(f, "MaxStartups 300:30:500")
	f.Close()
	w.config(b, "incomingconnections.ports", "22", "ssh.manage", "true")
	w.startAgent(b)
	s := &sshBench{w: w, admin: w.user(b, "admin", "", ""), dir: b.TempDir()}
	var out string
	testutil.Eventually(b, 60*time.Second, func() string {
		var err error
		if out, err = s.admin.run("", "ssh-cert", "rg1/web-01", "--dir", s.dir, "--validity", "1h"); err != nil {
			return out
		}
		return ""
	})
	s.certID = regexp.MustCompile(`(?m)^Certificate:\s+(\S+)`).FindStringSubmatch(out)[1]
	s.dir = strings.TrimSpace(regexp.MustCompile(`(?m)^Directory:\s+(.+)$`).FindStringSubmatch(out)[1])
	hostKey, err := os.ReadFile(filepath.Join(w.tree, "etc/ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "known_hosts"), []byte("web-01 "+string(hostKey)+"127.0.0.1 "+string(hostKey)), 0o600); err != nil {
		b.Fatal(err)
	}
	return s
}

func (s *sshBench) sshArgs(target string, proxy bool) []string {
	args := []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=" + filepath.Join(s.dir, "known_hosts"),
		"-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlgorithms=ssh-ed25519", "-c", "aes128-gcm@openssh.com",
		"-i", filepath.Join(s.dir, "id_ed25519"), "-o", "CertificateFile=" + filepath.Join(s.dir, "id_ed25519-cert.pub"), "-o", "IdentitiesOnly=yes"}
	if proxy {
		args = append(args, "-o", "ProxyCommand="+s.w.c.corral+" ssh-proxy --certificate "+s.certID+" rg1/web-01")
	}
	return append(args, "corral-admin@"+target)
}

// transfer runs `head -c n /dev/zero` on the machine over ssh and counts
// what arrives.
func (s *sshBench) transfer(tb testing.TB, n int64, proxy bool) (int64, error) {
	var cmd *exec.Cmd
	remote := fmt.Sprintf("head -c %d /dev/zero", n)
	if proxy {
		cmd = exec.Command("ssh", append(s.sshArgs("web-01", true), remote)...)
		cmd.Env = append(os.Environ(), s.admin.env...)
	} else {
		cmd = s.w.machine.Command("ssh", append(s.sshArgs("127.0.0.1", false), remote)...)
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	}
	var cw countWriter
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &cw, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.String())
	}
	return cw.n.Load(), err
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

type countWriter struct{ n atomic.Int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// BenchmarkSSHRelay measures one SSH stream of 1 GiB (`ssh ... head -c 1G
// /dev/zero`, aes128-gcm) through the control plane and the agent against
// the same ssh straight to sshd inside the machine's namespace, then 100
// concurrent sessions of 8 MiB through one agent, with the CPU time and
// memory of the server and agent processes. Run it once:
//
//	go test -run '^$' -bench SSHRelay -benchtime 1x ./internal/e2e/
func BenchmarkSSHRelay(b *testing.B) {
	s := newSSHBench(b)
	server, agent := s.w.c.server.cmd.Process.Pid, s.w.agent.cmd.Process.Pid
	const size = 1 << 30
	one := func(b *testing.B, proxy bool) {
		b.SetBytes(size)
		for b.Loop() {
			s0, a0, start := readProc(server), readProc(agent), time.Now()
			n, err := s.transfer(b, size, proxy)
			took := time.Since(start)
			if err != nil || n != size {
				b.Fatalf("transfer: %d bytes, %v", n, err)
			}
			s1, a1 := readProc(server), readProc(agent)
			b.ReportMetric(float64(size)/(1<<20)/took.Seconds(), "MiB/s")
			if proxy {
				b.ReportMetric((s1.cpu - s0.cpu).Seconds(), "server-cpu-s")
				b.ReportMetric((a1.cpu - a0.cpu).Seconds(), "agent-cpu-s")
				b.ReportMetric(float64(s1.peak)/(1<<20), "server-peak-MiB")
				b.ReportMetric(float64(a1.peak)/(1<<20), "agent-peak-MiB")
			}
			b.Logf("%s: 1 GiB in %s = %.0f MiB/s; server cpu %s rss %d MiB; agent cpu %s rss %d MiB", map[bool]string{true: "relayed", false: "direct"}[proxy],
				took.Round(time.Millisecond), float64(size)/(1<<20)/took.Seconds(), (s1.cpu - s0.cpu), s1.rss>>20, (a1.cpu - a0.cpu), a1.rss>>20)
		}
	}
	b.Run("direct-1GiB", func(b *testing.B) { one(b, false) })
	b.Run("relayed-1GiB", func(b *testing.B) { one(b, true) })
	b.Run("relayed-100-sessions-8MiB", func(b *testing.B) {
		const sessions, each = 100, 8 << 20
		b.SetBytes(sessions * each)
		for b.Loop() {
			s0, a0, start := readProc(server), readProc(agent), time.Now()
			var wg sync.WaitGroup
			var failed atomic.Int64
			var firstErr atomic.Value
			for range sessions {
				wg.Go(func() {
					if n, err := s.transfer(b, each, true); err != nil || n != each {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("%d bytes, %v", n, err))
					}
				})
			}
			wg.Wait()
			took := time.Since(start)
			if failed.Load() > 0 {
				b.Fatalf("%d of %d sessions failed, first: %v\nserver:\n%.6000s", failed.Load(), sessions, firstErr.Load(), lastLines(s.w.c.server.out.String(), 40))
			}
			s1, a1 := readProc(server), readProc(agent)
			b.ReportMetric(float64(sessions*each)/(1<<20)/took.Seconds(), "MiB/s")
			b.ReportMetric((s1.cpu - s0.cpu).Seconds(), "server-cpu-s")
			b.ReportMetric((a1.cpu - a0.cpu).Seconds(), "agent-cpu-s")
			b.ReportMetric(float64(s1.peak)/(1<<20), "server-peak-MiB")
			b.ReportMetric(float64(a1.peak)/(1<<20), "agent-peak-MiB")
			b.Logf("100 sessions x 8 MiB in %s = %.0f MiB/s; server cpu %s peak rss %d MiB; agent cpu %s peak rss %d MiB",
				took.Round(time.Millisecond), float64(sessions*each)/(1<<20)/took.Seconds(), s1.cpu-s0.cpu, s1.peak>>20, a1.cpu-a0.cpu, a1.peak>>20)
		}
	})
}

// BenchmarkGrantToOpen measures a JIT request through the control plane
// until a connection from the granted source gets through the machine's
// kernel (the agent binary fetches the new desired state on the push and
// adds the element): p50 and p99 of request -> port open (polled every
// 2 ms) and request -> the server records the machine's Applied.
func BenchmarkGrantToOpen(b *testing.B) {
	w := newAccessWorld(b)
	w.startAgent(b)
	c, err := client.New(w.c.api.URL, client.WithCAFile(w.c.api.CAFile), client.WithToken(w.c.api.AdminToken(b)))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.SetJITPolicy(ctx, "/subscriptions/default/resourceGroups/rg1/machines/web-01", wire.JITPolicySet{Ports: []string{"22"}}); err != nil {
		b.Fatal(err)
	}
	w.eventually(b, outA, false, 15*time.Second)
	dst := net.JoinHostPort(machIP, "22")
	var toOpen, toApplied []time.Duration
	for b.Loop() {
		start := time.Now()
		r, err := c.RequestJIT(ctx, "default", "rg1", "web-01", wire.JITRequestCreate{Port: "22", SourceIP: outA, Duration: wire.Duration(time.Minute)})
		if err != nil {
			b.Fatal(err)
		}
		var opened time.Duration
		errc := make(chan error, 1)
		go func() {
			errc <- w.outside.Do(func() error {
				d := net.Dialer{Timeout: 2 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(outA)}}
				for time.Since(start) < 30*time.Second {
					if conn, err := d.Dial("tcp", dst); err == nil {
						opened = time.Since(start)
						conn.Close()
						return nil
					}
				}
				return fmt.Errorf("port not open after 30s")
			})
		}()
		applied := time.Duration(0)
		for applied == 0 && time.Since(start) < 30*time.Second {
			if x, err := c.GetJITRequest(ctx, r.ID); err == nil && x.State == wire.JITApplied {
				applied = time.Since(start)
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err := <-errc; err != nil || applied == 0 {
			b.Fatalf("grant %s: %v (applied after %s)", r.ID, err, applied)
		}
		b.StopTimer()
		toOpen, toApplied = append(toOpen, opened), append(toApplied, applied)
		if _, err := c.JITRequestAction(ctx, r.ID, "revoke"); err != nil {
			b.Fatal(err)
		}
		w.eventually(b, outA, false, 15*time.Second)
		b.StartTimer()
	}
	pct := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		p := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
		b.ReportMetric(float64(p(0.5).Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(p(0.99).Microseconds())/1000, name+"-p99-ms")
		b.Logf("%s: n=%d p50=%s p99=%s max=%s", name, len(ds), p(0.5).Round(100*time.Microsecond), p(0.99).Round(100*time.Microsecond),
			ds[len(ds)-1].Round(100*time.Microsecond))
	}
	pct("request-to-open", toOpen)
	pct("request-to-applied", toApplied)
}
