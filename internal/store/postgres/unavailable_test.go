package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/postgres"
	"github.com/corralhq/corral/internal/testutil"
)

// A store whose PostgreSQL is stopped answers ErrUnavailable — Ping (what
// /readyz asks), reads and writes — whichever way the connection is lost
// (sessions ended by a fast shutdown, a crash, or refused connects), and
// works again by itself once PostgreSQL is back: no reopen. The cluster is
// the test's own, never the shared CORRAL_TEST_POSTGRES server.
func TestUnavailableWhileStopped(t *testing.T) {
	pg := testutil.NewPGCluster(t, testutil.PGClusterOptions{})
	s, err := postgres.Open(t.Context(), pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	at := time.Unix(1_800_000_000, 0).UTC()
	if err := s.ProbeWrite(t.Context(), at); err != nil {
		t.Fatalf("probe write: %v", err)
	}
	for _, mode := range []string{"fast", "immediate"} {
		pg.Stop(t, mode)
		for name, call := range map[string]func() error{
			"ping":  func() error { return s.Ping(t.Context()) },
			"read":  func() error { _, err := s.GetSubscription(t.Context(), "default"); return err },
			"write": func() error { return s.ProbeWrite(t.Context(), at) },
		} {
			// Twice: the first call finds the pool's dead sessions, the
			// second must connect anew and be refused.
			for i := range 2 {
				if err := call(); !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("after a %s stop, %s (%d): %v, want ErrUnavailable", mode, name, i+1, err)
				}
			}
		}
		pg.Start(t)
		if err := s.ProbeWrite(t.Context(), at); err != nil {
			t.Errorf("after a %s stop and a start: probe write: %v", mode, err)
		}
		if err := s.Ping(t.Context()); err != nil {
			t.Errorf("after a %s stop and a start: ping: %v", mode, err)
		}
	}
}
