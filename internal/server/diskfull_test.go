package server_test

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/auditchain"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// TestDiskFullOnPostgres (issue 15.4) is TestDiskFullFailsClosed with the
// store on PostgreSQL: the test's own cluster (never the shared one) keeps
// its data directory on a small tmpfs, mounted in a private mount namespace
// of a child process, and its write-ahead log on another volume, as
// docs/deploy.md advises (PostgreSQL stops with a PANIC when it cannot
// write WAL; a full table volume only fails the writes). When the tmpfs fills up, changes get 507 saying
// no space is left (PostgreSQL's disk_full, SQLSTATE 53100), /readyz says
// so, sign-ins are refused; once space is freed it all recovers by itself,
// and nothing written before is lost or corrupted.
func TestDiskFullOnPostgres(t *testing.T) {
	testutil.NeedRoot(t)
	if !testutil.InChild(t, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}) {
		return
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
	// The cluster runs as postgres: its directories are reachable from /tmp.
	base, err := os.MkdirTemp("", "corral-diskfull-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(base, "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=128m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(disk, syscall.MNT_DETACH) }) // after the cluster stopped
	pg := testutil.NewPGCluster(t, testutil.PGClusterOptions{DataDir: filepath.Join(disk, "pgdata"), WALDir: filepath.Join(base, "wal")})
	s := testutil.StartServer(t, testutil.WithStore(pg.DSN()), func(c *server.Config) { c.Limits.StoreProbeInterval = 50 * time.Millisecond })
	diskFullRoundTrip(t, s, filepath.Join(disk, "filler"), func() string { return pg.Log() })
}

// diskFullRoundTrip fills the filesystem of filler's directory, checks
// that the server refuses changes and sign-ins clearly and says so on
// /readyz, frees the space and checks that it recovers with everything
// acknowledged before intact.
func diskFullRoundTrip(t *testing.T, s *testutil.Server, filler string, backendLog func() string) {
	t.Helper()
	admin := s.AdminToken(t)
	var acked []string
	for i := range 20 {
		name := fmt.Sprintf("before-%d", i)
		s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/"+name, admin, wire.ResourceGroupCreate{}, nil)
		acked = append(acked, name)
	}

	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()

	// Changes fail with 507 and say why (the first ones may still find
	// room in pages the engine had already allocated).
	var st int
	var body []byte
	for i := range 2000 {
		name := fmt.Sprintf("full-%d", i)
		st, body = s.Do(t, "PUT", "/api/v1/subscriptions/default/resourceGroups/"+name, admin, wire.ResourceGroupCreate{Tags: map[string]string{"pad": strings.Repeat("x", 200)}})
		if st != http.StatusCreated {
			break
		}
		acked = append(acked, name)
	}
	t.Logf("the change refused after %d more were acknowledged: %d %s", len(acked)-20, st, body)
	if st != http.StatusInsufficientStorage || !strings.Contains(testutil.DecodeError(t, body).Message, "no space left") {
		if backendLog != nil {
			t.Logf("backend log:\n%s", backendLog())
		}
		t.Fatalf("a change on a full disk: %d %s, want 507 saying no space is left", st, body)
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		if st, b := get(t, s, "/readyz"); st != http.StatusServiceUnavailable || !strings.Contains(b, "no space left") {
			return fmt.Sprintf("readyz %d %s", st, b)
		}
		return ""
	})
	resp, err := s.Client.PostForm(s.URL+wire.PathToken, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testutil.AdminPassword}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || strings.Contains(string(b), "access_token") {
		t.Fatalf("sign-in on a full disk: %d %s, want 507 and no token", resp.StatusCode, b)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() string {
		if st, b := get(t, s, "/readyz"); st != 200 {
			return fmt.Sprintf("readyz after freeing space: %d %s", st, b)
		}
		return ""
	})
	s.ForgetAdminToken()
	admin = s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/after", admin, wire.ResourceGroupCreate{}, nil)
	checkIntact(t, s, admin, append(acked, "after"))
}

// checkIntact checks that every resource group in names is stored and that
// the activity chain, every entry written so far included, verifies.
func checkIntact(t *testing.T, s *testutil.Server, admin string, names []string) {
	t.Helper()
	for _, name := range names {
		s.MustDo(t, http.StatusOK, "GET", "/api/v1/subscriptions/default/resourceGroups/"+name, admin, nil, nil)
	}
	c, err := client.New(s.URL, client.WithCAFile(s.CAFile), client.WithToken(admin))
	if err != nil {
		t.Fatal(err)
	}
	// Entries are sealed into the chain about a second after they are
	// written: wait until it holds at least one per acknowledged change.
	var v *auditchain.Verifier
	testutil.Eventually(t, 30*time.Second, func() string {
		_, head, err := c.WalkActivityChain(t.Context(), func(base, _ wire.ChainLink) { v = auditchain.NewVerifier(base) }, func(e wire.ActivityEntry) error { return v.Add(e) })
		if err == nil {
			err = v.End(head)
		}
		if err != nil {
			t.Fatalf("the activity chain after the disk was full: %v", err)
		}
		if v.Checked() < int64(len(names)) {
			return fmt.Sprintf("%d entries sealed, want at least %d", v.Checked(), len(names))
		}
		return ""
	})
	t.Logf("after the disk was full: %d resource groups acknowledged, all stored; the activity chain verifies (%d entries)", len(names), v.Checked())
}

// sqliteIntegrityCheck runs SQLite's own check of every page and index of
// the database file (the server stopped).
func sqliteIntegrityCheck(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("PRAGMA integrity_check of %s: %q, %v", path, res, err)
	}
}
