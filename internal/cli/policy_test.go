package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func passwdTree(t *testing.T, mode os.FileMode) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "etc/passwd")
	if err := os.WriteFile(p, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestPolicyTestJSONAndExitCodes(t *testing.T) {
	isolate(t)
	root := passwdTree(t, 0o644)
	out, stderr, err := run(t, "", "policy", "test", "--definition", "linux-passwd-0644", "--root", root, "-o", "json")
	if ExitCode(err) != 0 {
		t.Fatalf("exit %d (%v), stderr %s", ExitCode(err), err, stderr)
	}
	var states []map[string]any
	if err := json.Unmarshal([]byte(out), &states); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(states) != 1 {
		t.Fatalf("%d states, want 1", len(states))
	}
	s := states[0]
	for k, want := range map[string]string{
		"assignment": "local", "definition": "linux-passwd-0644", "machine": root, "rule": "file-passwd-permissions",
		"complianceState": "Compliant", "evidence": "/etc/passwd mode 0644",
		"ssgRuleId": "xccdf_org.ssgproject.content_rule_file_permissions_etc_passwd",
	} {
		if s[k] != want {
			t.Errorf("%s = %v, want %q", k, s[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339, s["timestamp"].(string)); err != nil {
		t.Errorf("timestamp %v: %v", s["timestamp"], err)
	}

	// chmod a+w /etc/passwd: NonCompliant, exit 1, evidence in words.
	if err := os.Chmod(filepath.Join(root, "etc/passwd"), 0o666); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "", "policy", "test", "--definition", "linux-passwd-0644", "--root", root)
	if ExitCode(err) != 1 || !strings.Contains(out, "NonCompliant") || !strings.Contains(out, "/etc/passwd mode 0666, want 0644 or stricter") || !strings.Contains(out, "1 rules, 0 Compliant, 1 NonCompliant, 0 Unknown") {
		t.Errorf("exit %d (%v), output:\n%s", ExitCode(err), err, out)
	}

	// A custom machine configuration file works the same way.
	cfg := filepath.Join(t.TempDir(), "custom.json")
	os.WriteFile(cfg, []byte(`{"name":"custom","rules":[{"id":"no-hosts-equiv","title":"No hosts.equiv","severity":"high","file":{"path":"/etc/hosts.equiv","exists":false}}]}`), 0o644)
	out, _, err = run(t, "", "policy", "test", "--definition", cfg, "--root", root, "-o", "json")
	if ExitCode(err) != 0 || !strings.Contains(out, `"definition": "custom"`) {
		t.Errorf("custom configuration: exit %d (%v)\n%s", ExitCode(err), err, out)
	}
}

func TestPolicyTestErrorsExitTwo(t *testing.T) {
	isolate(t)
	root := passwdTree(t, 0o644)
	dir := t.TempDir()
	badJSON := filepath.Join(dir, "bad.json")
	os.WriteFile(badJSON, []byte("{\n  \"policyRule\": {\n    \"if\": ,\n"), 0o644)
	notGuest := filepath.Join(dir, "tag.json")
	os.WriteFile(notGuest, []byte(`{"policyRule":{"if":{"field":"tags.env","exists":false},"then":{"effect":"deny"}}}`), 0o644)
	otherGuest := filepath.Join(dir, "other.json")
	os.WriteFile(otherGuest, []byte(`{"properties":{"metadata":{"guestConfiguration":{"name":"AzureLinuxBaseline"}},"policyRule":{"if":{"field":"type","equals":"Microsoft.HybridCompute/machines"},"then":{"effect":"auditIfNotExists","details":{"type":"Microsoft.GuestConfiguration/guestConfigurationAssignments","name":"AzureLinuxBaseline"}}}}}`), 0o644)
	badConfig := filepath.Join(dir, "cfg.json")
	os.WriteFile(badConfig, []byte(`{"name":"c","rules":[{"id":"x","title":"X","severity":"low","sysctl":{"key":"a b","value":"1"}}]}`), 0o644)
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"no root", []string{"--definition", "linux-passwd-0644"}, "--root is required"},
		{"no definition", []string{"--root", root}, "--definition is required"},
		{"root not a directory", []string{"--definition", "linux-passwd-0644", "--root", filepath.Join(root, "etc/passwd")}, "is not a directory"},
		{"unknown definition", []string{"--definition", "linux-passwd-0600", "--root", root}, `"linux-passwd-0600" is neither a built-in definition`},
		{"invalid JSON", []string{"--definition", badJSON, "--root", root}, "invalid JSON at line 3, column 11"},
		{"no guest configuration", []string{"--definition", notGuest, "--root", root}, "has no machine configuration"},
		{"configuration not built in", []string{"--definition", otherGuest, "--root", root}, `machine configuration "AzureLinuxBaseline" is not built in`},
		{"invalid configuration", []string{"--definition", badConfig, "--root", root}, `rules[0].sysctl.key: "a b" is not a sysctl key`},
		{"bad output", []string{"--definition", "linux-passwd-0644", "--root", root, "-o", "yaml"}, "invalid --output"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := run(t, "", append([]string{"policy", "test"}, tc.args...)...)
			if ExitCode(err) != 2 || !strings.Contains(stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", ExitCode(err), stderr, tc.msg)
			}
		})
	}
}
