package testutil

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/sqlite"
)

// Store opens a real SQLite store in t.TempDir(), closed when the test
// ends, with the given "sub/rg" subscriptions and resource groups made. It
// is what the server contexts' tests run on.
func Store(t testing.TB, groups ...string) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "corral.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	for _, g := range groups {
		sub, rg, _ := strings.Cut(g, "/")
		if err := st.CreateSubscription(t.Context(), store.Subscription{Name: sub, CreatedAt: at}); err != nil && !errors.Is(err, store.ErrConflict) {
			t.Fatalf("create subscription %s: %v", sub, err)
		}
		if rg == "" {
			continue
		}
		if err := st.CreateResourceGroup(t.Context(), store.ResourceGroup{Subscription: sub, Name: rg, CreatedAt: at}); err != nil {
			t.Fatalf("create resource group %s: %v", g, err)
		}
	}
	return st
}
