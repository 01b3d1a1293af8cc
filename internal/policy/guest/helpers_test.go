package guest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tree writes files (path inside the root -> content) under a new temp
// root. A content starting with "->" makes a symlink.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		hp := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, hp); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(hp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const basePasswd = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\n"
const baseGroup = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nalice:x:1000:\n"

func treeEnv(root string) Env {
	e := NewEnv(root)
	e.Now = func() time.Time { return time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC) }
	return e
}

// rule parses a one-rule configuration around a check JSON fragment.
func rule(t *testing.T, check string) *Rule {
	t.Helper()
	c, err := ParseConfiguration([]byte(`{"name":"t","rules":[{"id":"r1","title":"T","severity":"medium",` + check + `}]}`))
	if err != nil {
		t.Fatalf("ParseConfiguration: %v", err)
	}
	return c.Rules[0]
}

func eval(t *testing.T, r *Rule, env Env) Result {
	t.Helper()
	return r.Evaluate(context.Background(), env)
}

func expect(t *testing.T, res Result, st State, evidence string) {
	t.Helper()
	if res.State != st || !strings.Contains(res.Evidence, evidence) {
		t.Errorf("got %s %q, want %s containing %q", res.State, res.Evidence, st, evidence)
	}
}

func chmod(t *testing.T, root, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(filepath.Join(root, p), mode); err != nil {
		t.Fatal(err)
	}
}
