package agentlog

import (
	"testing"
	"time"
)

func TestSamplerBoundsEachKindPerWindow(t *testing.T) {
	t.Parallel()
	s := NewSampler(3, time.Minute)
	now := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	allowed := 0
	for range 100 {
		if ok, _ := s.Allow("refused"); ok {
			allowed++
		}
	}
	if ok, _ := s.Allow("other"); !ok || allowed != 3 {
		t.Fatalf("allowed %d of one kind (want 3); another kind allowed: %v", allowed, ok)
	}
	now = now.Add(time.Minute)
	if ok, suppressed := s.Allow("refused"); !ok || suppressed != 97 {
		t.Errorf("next window: ok=%v suppressed=%d, want true and 97", ok, suppressed)
	}
}
