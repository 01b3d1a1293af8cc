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

// PostgresDatabase creates a fresh database (corral_e2e_<random>) on the
// PostgreSQL server of CORRAL_TEST_POSTGRES and returns its DSN, for tests
// whose servers run as separate processes and must start from an empty
// database rather than a schema. The database is dropped when the test ends
// (sessions still open are ended), so register it before anything that
// connects to it. Without the variable the test is skipped, or fails when
// CORRAL_TEST_STRICT=1.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv("CORRAL_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CORRAL_TEST_STRICT") == "1" {
			t.Fatal("CORRAL_TEST_POSTGRES is not set and CORRAL_TEST_STRICT=1")
		}
		t.Skip("PostgreSQL tests need CORRAL_TEST_POSTGRES=postgres://...")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to CORRAL_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(context.Background())
	name := "corral_e2e_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		// Dropping waits for a checkpoint, which a loaded machine can take
		// a while to finish. A database left behind is only litter on a
		// test server, so failing to drop it is logged, not a test failure.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop database %s: %v (left behind)", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v (left behind)", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("CORRAL_TEST_POSTGRES: %v", err)
	}
	u.Path = "/" + name
	return fmt.Sprint(u)
}
