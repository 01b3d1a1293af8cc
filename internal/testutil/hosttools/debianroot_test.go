package hosttools

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDebianRoot(t *testing.T) {
	root := DebianRoot(t)
	if _, err := os.Stat(filepath.Join(root, "var/lib/dpkg/status")); err != nil {
		t.Fatalf("the tree has no dpkg database: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/debian_version"))
	if err != nil || len(b) == 0 || b[0] != '1' {
		t.Fatalf("etc/debian_version = %q, %v", b, err)
	}
}
