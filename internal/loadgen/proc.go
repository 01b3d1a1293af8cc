package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// procRSS reads VmRSS and VmHWM (peak) of a process from /proc, in bytes.
func procRSS(pid int) (rss, peak int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak
}

// Format renders a result for people.
func (r Result) Format(w io.Writer) {
	fmt.Fprintf(w, "agents            %d (onboarded %d, connected %d)\n", r.Agents, r.Onboarded, r.Connected)
	fmt.Fprintf(w, "onboarding        %s total, %.0f machines/s\n", r.OnboardDuration.Round(1e6), r.OnboardRate)
	fmt.Fprintf(w, "heartbeats        %.0f/s\n", r.HeartbeatsPerSec)
	fmt.Fprintf(w, "push latency      p50 %s  p99 %s  max %s  (%d samples, %d lost)\n", r.PushP50.Round(1e4), r.PushP99.Round(1e4), r.PushMax.Round(1e4), r.PushSamples, r.PushLost)
	if r.ExtMachines > 0 {
		how := "PUTs took"
		if r.ExtBulkRequest {
			how = "the bulk request took"
		}
		fmt.Fprintf(w, "extension set     %d machines: set->Succeeded p50 %s  p99 %s  max %s  (%d done, %d lost; %s %s, all done in %s)\n",
			r.ExtMachines, r.ExtP50.Round(1e5), r.ExtP99.Round(1e5), r.ExtMax.Round(1e5), r.ExtSamples, r.ExtLost,
			how, r.ExtSetDuration.Round(1e6), r.ExtAllDone.Round(1e6))
		if r.ExtBulk != nil {
			t := r.ExtBulk.Totals
			fmt.Fprintf(w, "  bulk operation  %s: %d machines, server counts %d succeeded, %d failed, %d pending\n",
				r.ExtBulk.Name, r.ExtBulk.Machines, t.Succeeded, t.Failed, t.Pending)
		}
		if r.ExtPeakRSS > 0 {
			fmt.Fprintf(w, "  server RSS      peak %.0f MiB during the phase\n", float64(r.ExtPeakRSS)/(1<<20))
		}
	}
	r.Protection.Format(w)
	r.Storm.Format(w)
	r.Updates.format(w)
	r.Policy.format(w)
	if r.JITMachines > 0 {
		fmt.Fprintf(w, "JIT grants        %d machines: request->Applied p50 %s  p99 %s  max %s  (%d done, %d lost; all done in %s)\n",
			r.JITMachines, r.JITP50.Round(1e5), r.JITP99.Round(1e5), r.JITMax.Round(1e5), r.JITSamples, r.JITLost, r.JITAllDone.Round(1e6))
	}
	if r.ServerRSSBytes > 0 {
		fmt.Fprintf(w, "server RSS        %.0f MiB (peak %.0f MiB)\n", float64(r.ServerRSSBytes)/(1<<20), float64(r.ServerPeakRSS)/(1<<20))
	}
	if r.ServerRSSConnected > 0 && r.Connected > 0 {
		fmt.Fprintf(w, "RSS per agent     %.1f KiB (%.0f MiB idle, %.0f MiB with %d connected)\n",
			float64(r.ServerRSSConnected-r.ServerRSSIdle)/1024/float64(r.Connected), float64(r.ServerRSSIdle)/(1<<20),
			float64(r.ServerRSSConnected)/(1<<20), r.Connected)
	}
	fmt.Fprintf(w, "reconnects        %d\nerrors            %d\n", r.Reconnects, r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error       %s\n", r.FirstError)
	}
}
