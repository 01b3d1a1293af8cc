package wire

import "testing"

func TestBulkResult(t *testing.T) {
	for in, want := range map[string]string{"failed": BulkFailed, "SUCCEEDED": BulkSucceeded, "Pending": BulkPending, "superseded": BulkSuperseded} {
		if got, ok := BulkResult(in); !ok || got != want {
			t.Errorf("BulkResult(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "Fail", "Succeeded ", "Pending\x00"} {
		if got, ok := BulkResult(in); ok {
			t.Errorf("BulkResult(%q) = %q, want none", in, got)
		}
	}
}
