package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/postgres"
)

// pool_max_conns in the DSN caps the store's connections (replicas must fit
// their pools in max_connections); PostgreSQL never sees it as a session
// setting, and a bad value is refused naming it.
func TestPoolMaxConns(t *testing.T) {
	t.Parallel()
	base := baseDSN(t)
	_, dsn := openSchema(t, base)
	app := fmt.Sprintf("corral-pool-%d", time.Now().UnixNano())
	st, err := postgres.Open(t.Context(), dsn+"&pool_max_conns=3&application_name="+app)
	if err != nil {
		t.Fatalf("open with pool_max_conns: %v", err)
	}
	defer st.Close()
	if err := st.CreateSubscription(t.Context(), store.Subscription{Name: "s1"}); err != nil {
		t.Fatal(err)
	}

	// Hold a lock every read waits for, start many reads, and count the
	// store's sessions meanwhile.
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	tx, err := admin.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(t.Context(), "LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := st.GetSubscription(ctx, "s1"); err != nil {
				t.Errorf("read: %v", err)
			}
		})
	}
	var sessions int
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := admin.QueryRowContext(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&sessions); err != nil {
			t.Fatal(err)
		}
		if sessions >= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for a pool that would open more
	if err := admin.QueryRowContext(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback()
	wg.Wait()
	if sessions != 3 {
		t.Errorf("12 blocked reads held %d sessions, want the pool's 3", sessions)
	}

	for _, bad := range []string{"0", "many", "-2"} {
		_, err := postgres.Open(t.Context(), dsn+"&pool_max_conns="+bad)
		if err == nil || !strings.Contains(err.Error(), "pool_max_conns") {
			t.Errorf("pool_max_conns=%s: %v, want an error naming it", bad, err)
		}
	}
}
