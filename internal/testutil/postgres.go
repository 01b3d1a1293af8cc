package testutil

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresDSN returns a DSN of a fresh schema in the database named by
// CORRAL_TEST_POSTGRES, dropped when the test ends. Without the variable the
// test is skipped, or fails when CORRAL_TEST_STRICT=1.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := testPostgres(t)
	schema := "srvtest_" + strings.ToLower(rand.Text()[:12])
	if err := pgExec(base, 20*time.Second, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() { _ = pgExec(base, 20*time.Second, "DROP SCHEMA "+schema+" CASCADE") })
	u := parseDSN(t, base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return fmt.Sprint(u)
}

// PostgresDatabase creates a fresh database (corral_e2e_<random>) on the
// PostgreSQL server of CORRAL_TEST_POSTGRES and returns its DSN, for tests
// whose servers run as separate processes and must start from an empty
// database rather than a schema. The database is dropped when the test ends
// (sessions still open are ended), so register it before anything that
// connects to it. Without the variable the test is skipped, or fails when
// CORRAL_TEST_STRICT=1.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	base := testPostgres(t)
	name := "corral_e2e_" + strings.ToLower(rand.Text()[:12])
	if err := pgExec(base, 30*time.Second, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		// Dropping waits for a checkpoint, which a loaded machine can take
		// a while to finish. A database left behind is only litter on a
		// test server, so failing to drop it is logged, not a test failure.
		if err := pgExec(base, 2*time.Minute, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v (left behind)", name, err)
		}
	})
	u := parseDSN(t, base)
	u.Path = "/" + name
	return fmt.Sprint(u)
}

// testPostgres returns CORRAL_TEST_POSTGRES; without it the test is
// skipped, or fails when CORRAL_TEST_STRICT=1.
func testPostgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv("CORRAL_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CORRAL_TEST_STRICT") == "1" {
			t.Fatal("CORRAL_TEST_POSTGRES is not set and CORRAL_TEST_STRICT=1")
		}
		t.Skip("PostgreSQL tests need CORRAL_TEST_POSTGRES=postgres://...")
	}
	return base
}

// pgExec runs one statement on its own connection to dsn within timeout.
func pgExec(dsn string, timeout time.Duration, stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to CORRAL_TEST_POSTGRES: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, stmt)
	return err
}

func parseDSN(t testing.TB, dsn string) *url.URL {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("CORRAL_TEST_POSTGRES: %v", err)
	}
	return u
}
