package proc

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
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

// Output is capped to what the control plane keeps (it cuts anything
// longer), so the note saying output was dropped must fit in the cap, or
// the user never learns the output was truncated.
func TestCappedOutputKeepsItsTruncationNoteWithinTheCap(t *testing.T) {
	t.Parallel()
	p, err := Run(context.Background(), Command{Args: []string{"/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a; head -c 100 /dev/zero | tr '\\0' b >&2"}})
	if err != nil {
		t.Fatal(err)
	}
	kept, note, _ := strings.Cut(p.Stdout, "\n[output truncated: ")
	var more int
	fmt.Sscanf(note, "%d more bytes]", &more)
	if len(p.Stdout) > wire.MaxHandlerOutputBytes || !strings.HasSuffix(note, " more bytes]") || len(kept)+more != 200000 {
		t.Errorf("stdout of %d bytes ends %q; want at most %d bytes ending with a note counting the bytes left out",
			len(p.Stdout), p.Stdout[max(0, len(p.Stdout)-60):], wire.MaxHandlerOutputBytes)
	}
	if p.Stderr != strings.Repeat("b", 100) {
		t.Errorf("stderr %q", p.Stderr)
	}
}
