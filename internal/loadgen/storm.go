package loadgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// StormResult is the reconnect storm phase: every simulated agent's
// connection dropped at once (a network flap, a load balancer failing
// over), timed until all are connected again.
type StormResult struct {
	Agents  int
	AllBack time.Duration // until every agent's channel was welcomed again
	Back    int64         // agents connected at the end (Agents if all came back)
	// Refused is the number of channel dials the server refused with a
	// Retry-After during the storm.
	Refused int64
	// ServerCPU is the CPU time the server used during the storm, and
	// ServerPeakRSS its largest RSS sampled.
	ServerCPU     time.Duration
	ServerPeakRSS int64
	Errors        int64
}

// Format renders the phase for people.
func (r StormResult) Format(w io.Writer) {
	if r.Agents == 0 {
		return
	}
	fmt.Fprintf(w, "reconnect storm   %d agents dropped at once: %d back in %s, %d refused with Retry-After, server CPU %s, peak RSS %.0f MiB, %d errors\n",
		r.Agents, r.Back, r.AllBack.Round(time.Millisecond), r.Refused, r.ServerCPU.Round(time.Millisecond), float64(r.ServerPeakRSS)/(1<<20), r.Errors)
}

// measureStorm drops every agent's connection at once and waits (at most
// limit) until all are connected again, sampling the server's CPU and RSS.
func (g *run) measureStorm(ctx context.Context, agents []*simAgent, limit time.Duration) StormResult {
	var live []*simAgent
	for _, a := range agents {
		if a != nil {
			live = append(live, a)
		}
	}
	res := StormResult{Agents: len(live)}
	refused0, errors0 := g.stats.refused.Load(), g.stats.errors.Load()
	g.stats.back.Store(0)
	cpu0 := procCPU(g.opts.ServerPID)
	start := time.Now()
	for _, a := range live {
		a.dropped.Store(true)
	}
	for _, a := range live {
		a.drop()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil && time.Since(start) < limit {
		if g.opts.ServerPID > 0 {
			if rss, _ := procRSS(g.opts.ServerPID); rss > res.ServerPeakRSS {
				res.ServerPeakRSS = rss
			}
		}
		if g.stats.back.Load() >= int64(len(live)) {
			break
		}
		<-tick.C
	}
	res.AllBack = time.Since(start)
	res.Back = g.stats.back.Load()
	res.Refused = g.stats.refused.Load() - refused0
	res.Errors = g.stats.errors.Load() - errors0
	if g.opts.ServerPID > 0 {
		res.ServerCPU = procCPU(g.opts.ServerPID) - cpu0
	}
	return res
}

// drop cuts the agent's connections, as a network flap would: its
// channel fails and its stream loop reconnects by itself, with a new TLS
// handshake.
func (a *simAgent) drop() {
	a.mu.Lock()
	conns := a.conns
	a.conns = nil
	a.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	if tr, ok := a.hc.Transport.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
}

// procCPU is the CPU time (user + system) a process used so far.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}
