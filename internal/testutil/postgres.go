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
	base := os.Getenv("CORRAL_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CORRAL_TEST_STRICT") == "1" {
			t.Fatal("CORRAL_TEST_POSTGRES is not set and CORRAL_TEST_STRICT=1")
		}
		t.Skip("PostgreSQL tests need CORRAL_TEST_POSTGRES=postgres://...")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to CORRAL_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(context.Background())
	schema := "srvtest_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("CORRAL_TEST_POSTGRES: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return fmt.Sprint(u)
}
