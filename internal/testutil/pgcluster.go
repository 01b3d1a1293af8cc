package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGCluster is a throwaway PostgreSQL cluster owned by one test: its own
// data directory, its own port on 127.0.0.1 and its own socket directory,
// so a test may stop, start or starve it without touching the shared
// server of CORRAL_TEST_POSTGRES. It is stopped (immediately) and removed
// when the test ends.
type PGCluster struct {
	Port    int
	DataDir string

	bin  string // directory of pg_ctl, initdb, postgres
	sock string
	log  string
	cred *syscall.Credential // nil: run as this process's user
}

// PGClusterOptions places the cluster's files.
type PGClusterOptions struct {
	// DataDir is where the cluster's data directory is created (it must
	// not exist; its parent must let the cluster's user in). Default: a
	// new temp dir.
	DataDir string
	// WALDir, when set, keeps the write-ahead log apart (initdb --waldir),
	// as on a server whose WAL has its own volume. Like DataDir it must not
	// exist yet.
	WALDir string
}

// NewPGCluster initdb's and starts a cluster from the PostgreSQL binaries
// in /usr/lib/postgresql/*/bin (the newest). PostgreSQL refuses to run as
// root: as root the cluster runs as the user postgres. Without the
// binaries (or that user) the test is skipped, or fails when
// CORRAL_TEST_STRICT=1.
func NewPGCluster(t testing.TB, opts PGClusterOptions) *PGCluster {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		needFail(t, "this test needs its own PostgreSQL cluster: no /usr/lib/postgresql/*/bin/pg_ctl (Debian package postgresql)")
	}
	slices.SortFunc(bins, func(a, b string) int { return pgMajor(a) - pgMajor(b) })
	c := &PGCluster{bin: filepath.Dir(bins[len(bins)-1])}

	base, err := os.MkdirTemp("", "corral-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			needFail(t, "this test runs PostgreSQL, which refuses root, as the user postgres, which does not exist")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	c.sock, c.log = filepath.Join(base, "sock"), filepath.Join(base, "postgres.log")
	c.DataDir = opts.DataDir
	if c.DataDir == "" {
		c.DataDir = filepath.Join(base, "data")
	}
	for _, d := range []string{base, c.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{c.DataDir, opts.WALDir} {
		if d == "" {
			continue
		}
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("cluster directory: %v", err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-D", c.DataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	if opts.WALDir != "" {
		args = append(args, "--waldir", opts.WALDir)
	}
	if out, err := c.command("initdb", args...).CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.Port = freeLoopbackPort(t)
	c.Start(t)
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(c.log); err == nil {
				t.Logf("PostgreSQL log (last 4 KiB):\n%s", b[max(0, len(b)-4096):])
			}
		}
		_ = c.command("pg_ctl", "stop", "-D", c.DataDir, "-m", "immediate", "-w", "-t", "60").Run()
	})
	return c
}

// DSN is the URL of the cluster's postgres database as the superuser.
func (c *PGCluster) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
}

// Start starts the cluster and waits until it accepts connections.
func (c *PGCluster) Start(t testing.TB) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c max_connections=200", c.Port, c.sock)
	if out, err := c.command("pg_ctl", "start", "-D", c.DataDir, "-l", c.log, "-w", "-t", "120", "-o", opts).CombinedOutput(); err != nil {
		b, _ := os.ReadFile(c.log)
		t.Fatalf("pg_ctl start: %v\n%s\nlog:\n%s", err, out, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.DSN())
		if err == nil {
			conn.Close(ctx)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the PostgreSQL cluster does not accept connections: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the cluster with pg_ctl's mode ("fast": sessions are ended and
// a checkpoint written; "immediate": like a crash) and waits until it is
// down.
func (c *PGCluster) Stop(t testing.TB, mode string) {
	t.Helper()
	if out, err := c.command("pg_ctl", "stop", "-D", c.DataDir, "-m", mode, "-w", "-t", "120").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
}

// Log is what the cluster logged so far.
func (c *PGCluster) Log() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

func (c *PGCluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	cmd.Dir = "/"
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

func pgMajor(pgCtl string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(pgCtl))))
	return n
}

func freeLoopbackPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// needFail skips the test with reason, or fails it when CORRAL_TEST_STRICT=1.
func needFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CORRAL_TEST_STRICT") == "1" {
		t.Fatal(reason + " (CORRAL_TEST_STRICT=1)")
	}
	t.Skip(reason)
}
