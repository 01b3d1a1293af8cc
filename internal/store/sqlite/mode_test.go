package sqlite_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/sqlite"
)

// TestFilesAreOwnerOnly: the database and its -wal and -shm files hold
// password hashes, sealed settings and the activity log; they are created
// 0600 whatever the umask, and a file an older version left 0644 is
// tightened when opened (issue 7, finding 14).
func TestFilesAreOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	for _, tc := range []struct {
		name    string
		prepare func(path string)
	}{
		{"new file", func(string) {}},
		{"existing 0644 file", func(path string) {
			st, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			st.Close()
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if err := os.Chmod(p, 0o644); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "corral.db")
			tc.prepare(path)
			st, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			// A write makes sure the -wal and -shm files exist.
			if err := st.CreateSubscription(t.Context(), store.Subscription{Name: "s-" + tc.name[:3], CreatedAt: time.Unix(1, 0)}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatalf("stat %s: %v", p, err)
				}
				if mode := fi.Mode().Perm(); mode != 0o600 {
					t.Errorf("%s has mode %o, want 600", filepath.Base(p), mode)
				}
			}
		})
	}
}
