package guest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseConfiguration: a machine configuration is refused with
// ErrInvalidConfiguration or parses into rules with valid, distinct ids,
// each with exactly one check.
func FuzzParseConfiguration(f *testing.F) {
	files, _ := filepath.Glob("../builtin/configurations/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	head := `{"name":"t","rules":[{"id":"r1","title":"T","severity":"medium",`
	for _, s := range []string{
		head + `"file":{"path":"/a","mode":"0644"}}]}`, head + `"fileContent":{"paths":["/a"],"patterns":["^x"],"expect":"present"}}]}`,
		head + `"sshd":{"settings":[{"keyword":"PermitRootLogin","equals":"no"}]}}]}`, head + `"package":{"name":"openssh-server","state":"installed","version":">= 7"}}]}`,
		head + `"systemdUnit":{"units":["rsync.service"],"state":"disabled"}}]}`, head + `"sysctl":{"key":"net.ipv4.ip_forward","value":"0"}}]}`,
		head + `"accounts":{"check":"uniqueUids"}}]}`, `{"name":"t","rules":[]}`, `{"rules":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfiguration(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfiguration) {
				t.Fatalf("refused with %v, not ErrInvalidConfiguration", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range c.Rules {
			if !ruleIDPattern.MatchString(r.ID) || seen[r.ID] {
				t.Fatalf("rule id %q accepted", r.ID)
			}
			seen[r.ID] = true
			if got, ok := c.Rule(r.ID); !ok || got != r {
				t.Fatalf("rule %q not found by id", r.ID)
			}
			_ = r.Kind()
			_ = r.Remediable()
		}
	})
}

// FuzzSSHDConfigLine: any sshd_config line splits without a panic into a
// lower-case keyword and arguments without the separators; time values
// read as sshd reads them, never negative.
func FuzzSSHDConfigLine(f *testing.F) {
	for _, s := range []string{"PermitRootLogin no", "  Ciphers=+aes128-ctr", `AuthorizedKeysFile ".ssh/authorized keys" #x`, `Banner "a\"b"`,
		"# comment", "LoginGraceTime 1h30m", "ClientAliveInterval 99999999999999999999", "x\t=\t\"", "Match User bob"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		kw, args, ok := splitSSHDLine(line)
		if ok {
			if kw == "" && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "=") {
				t.Fatalf("line %q: empty keyword", line)
			}
			if kw != strings.ToLower(kw) {
				t.Fatalf("keyword %q is not lower case", kw)
			}
			for _, a := range args {
				_ = applyListChange("a,b", a)
			}
		}
		if n, err := parseSSHDTime(line); err == nil {
			if n < 0 {
				t.Fatalf("parseSSHDTime(%q) = %d", line, n)
			}
			if v, err := strconv.Atoi(line); err == nil && v >= 0 && v != n {
				t.Fatalf("parseSSHDTime(%q) = %d, want %d", line, n, v)
			}
		}
	})
}
