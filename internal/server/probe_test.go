package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/corralhq/corral/internal/store"
)

// A store too busy to finish a write probe in time is slow, not broken:
// only slowProbesToFail timeouts in a row refuse changes; a definite
// failure refuses them at once, and a success clears everything.
func TestProbeJudge(t *testing.T) {
	timeout := fmt.Errorf("write probe: %w", context.DeadlineExceeded)
	var j probeJudge
	for i := 1; i < slowProbesToFail; i++ {
		if v := j.verdict(timeout); v != probeSlow {
			t.Fatalf("timeout %d: %v, want slow", i, v)
		}
	}
	if v := j.verdict(timeout); v != probeFailed {
		t.Fatalf("timeout %d: %v, want failed", slowProbesToFail, v)
	}
	if v := j.verdict(nil); v != probeOK {
		t.Fatalf("success: %v", v)
	}
	if v := j.verdict(timeout); v != probeSlow {
		t.Fatalf("a success did not reset the count: %v", v)
	}
	for _, err := range []error{
		fmt.Errorf("write probe: %w", store.ErrFull),
		fmt.Errorf("write probe: %w", store.ErrUnavailable),
		errors.Join(store.ErrUnavailable, context.DeadlineExceeded),
		errors.New("disk I/O error"),
	} {
		var j probeJudge
		if v := j.verdict(err); v != probeFailed {
			t.Errorf("%v: %v, want failed at once", err, v)
		}
	}
}
