package extensions

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A handler that leaves a child running in the background (an enable
// handler starting a daemon) with its output inherited: the handler's
// result is its own exit, soon after it exits, not a timeout; and a child
// outside its process group (setsid), which the timeout does not kill,
// cannot hold Run long past the handler.
func TestRunReturnsWhenABackgroundChildHoldsTheOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		script       string
		timeout      time.Duration
		wantTimedOut bool
		within       time.Duration
	}{
		{"same process group", "sleep 30 & echo $!", 20 * time.Second, false, 5 * time.Second},
		{"own session", "setsid sleep 30 & echo $!", 20 * time.Second, false, 5 * time.Second},
		{"own session, handler times out", "setsid sleep 30 & echo $!; sleep 20", time.Second, true, 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			p, err := Run(context.Background(), Command{Args: []string{"/bin/sh", "-c", tt.script}, Timeout: tt.timeout})
			took := time.Since(start)
			if pid, _ := strconv.Atoi(strings.TrimSpace(p.Stdout)); pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err != nil || p.TimedOut != tt.wantTimedOut || (!tt.wantTimedOut && p.ExitCode != 0) {
				t.Errorf("got err %v, timed out %v, exit code %d; want timed out %v and otherwise the handler's own success",
					err, p.TimedOut, p.ExitCode, tt.wantTimedOut)
			}
			if took > tt.within {
				t.Errorf("Run took %s, want at most %s", took, tt.within)
			}
		})
	}
}
