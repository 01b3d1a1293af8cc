package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/postgres"
	"github.com/corralhq/corral/internal/store/storetest"
)

// baseDSN returns CORRAL_TEST_POSTGRES, skipping the test when it is unset
// unless CORRAL_TEST_STRICT=1 (CI), where a missing database is a failure.
func baseDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("CORRAL_TEST_POSTGRES")
	if dsn == "" {
		const why = "CORRAL_TEST_POSTGRES is not set; set it to a PostgreSQL DSN such as " +
			"postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the PostgreSQL store tests"
		if os.Getenv("CORRAL_TEST_STRICT") == "1" {
			t.Fatal(why + " (CORRAL_TEST_STRICT=1 forbids skipping)")
		}
		t.Skip(why)
	}
	return dsn
}

// openSchema opens a store in a fresh schema of the test database, dropped
// when the test ends, so tests run in parallel without seeing each other.
func openSchema(t *testing.T, base string) (store.Store, string) {
	t.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open admin connection: %v", err)
	}
	t.Cleanup(func() { _ = admin.Close() })

	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "storetest_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already canceled during cleanup.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})

	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse CORRAL_TEST_POSTGRES: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	st, err := postgres.Open(t.Context(), u.String())
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	// Registered after the drop, so it runs before it. The suite may close
	// the store itself; a second Close only reports that.
	t.Cleanup(func() { _ = st.Close() })
	return st, u.String()
}

func TestConformance(t *testing.T) {
	t.Parallel()
	base := baseDSN(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		st, _ := openSchema(t, base)
		return st
	})
}

// TestSecondReplica opens a second store on a migrated schema, as a second
// server replica would: migrations are a no-op and both see the same data.
func TestSecondReplica(t *testing.T) {
	t.Parallel()
	first, dsn := openSchema(t, baseDSN(t))
	if err := first.CreateSubscription(t.Context(), store.Subscription{Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	second, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("open second store: %v", err)
	}
	defer second.Close()
	if _, err := second.GetSubscription(t.Context(), "s1"); err != nil {
		t.Errorf("second store: %v", err)
	}
}
