package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The policy commands' local checks refuse bad flags before any call.
func TestPolicyFlagChecks(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"web", "/subscriptions/default/resourceGroups/web"},
		{"/subscriptions/s1", "/subscriptions/s1"},
		{"", ""},
	} {
		if got, err := policyScope(tc.in); err != nil || got != tc.want {
			t.Errorf("policyScope(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := policyScope("bad name!"); err == nil || !strings.Contains(err.Error(), "--scope") {
		t.Errorf("bad scope: %v", err)
	}

	dir := t.TempDir()
	f := filepath.Join(dir, "p.json")
	os.WriteFile(f, []byte(`{"tagName":{"value":"env"}}`), 0o600)
	if b, err := paramsArg("@" + f); err != nil || !strings.Contains(string(b), "tagName") {
		t.Errorf("params from a file: %s, %v", b, err)
	}
	for _, bad := range []string{`[1,2]`, `{"a":`, "@" + filepath.Join(dir, "missing.json")} {
		if _, err := paramsArg(bad); err == nil {
			t.Errorf("params %q accepted", bad)
		}
	}

	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	if got, err := parseExpiry("720h", now); err != nil || !got.Equal(now.Add(720*time.Hour)) {
		t.Errorf("720h: %v %v", got, err)
	}
	if got, err := parseExpiry("2027-01-01T00:00:00Z", now); err != nil || got.Year() != 2027 {
		t.Errorf("RFC 3339: %v %v", got, err)
	}
	for _, bad := range []string{"soon", "-5h", "2027-13-01"} {
		if _, err := parseExpiry(bad, now); err == nil {
			t.Errorf("expiry %q accepted", bad)
		}
	}
}
