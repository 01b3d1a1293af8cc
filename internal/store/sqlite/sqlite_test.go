package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/sqlite"
	"github.com/corralhq/corral/internal/store/storetest"
)

func openTemp(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "corral.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	// The suite may close the store itself; a second Close only reports that.
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

// TestReopen checks migrations are idempotent and data survives a restart.
func TestReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "corral.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSubscription(t.Context(), store.Subscription{Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer st.Close()
	if _, err := st.GetSubscription(t.Context(), "s1"); err != nil {
		t.Errorf("after reopening: %v", err)
	}
}

func TestOpenRejectsURIs(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if st, err := sqlite.Open(t.Context(), p); err == nil {
			st.Close()
			t.Errorf("Open(%q) succeeded, want an error", p)
		}
	}
}
