package store_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/store"
)

func TestFetchPage(t *testing.T) {
	t.Parallel()
	// all is a store of n keyed items that caps its answers at MaxStoreLimit.
	all := func(n int) func(store.Page) ([]int, error) {
		return func(p store.Page) ([]int, error) {
			after := -1
			if p.After != "" {
				after, _ = strconv.Atoi(p.After)
			}
			out := []int{}
			for i := after + 1; i < n && len(out) < min(p.Limit, store.MaxStoreLimit); i++ {
				out = append(out, i)
			}
			return out, nil
		}
	}
	key := strconv.Itoa
	for _, tc := range []struct {
		name      string
		n         int
		page      store.Page
		wantLen   int
		wantAfter string
	}{
		{"first of several", 250, store.Page{Limit: 100}, 100, "99"},
		{"middle", 250, store.Page{Limit: 100, After: "99"}, 100, "199"},
		{"last, partial", 250, store.Page{Limit: 100, After: "199"}, 50, ""},
		{"last, exactly full", 200, store.Page{Limit: 100, After: "99"}, 100, ""},
		{"default size", 250, store.Page{}, store.DefaultPageSize, "99"},
		{"capped size", 5000, store.Page{Limit: 50000}, store.MaxPageSize, "999"},
		// The largest page asks the store for one more item (it answers
		// up to MaxStoreLimit), so exactly 1,000 items have no next page
		// and 1,001 have one.
		{"largest page, exactly full", 1000, store.Page{Limit: store.MaxPageSize}, 1000, ""},
		{"largest page, one more follows", 1001, store.Page{Limit: store.MaxPageSize}, 1000, "999"},
		{"empty", 0, store.Page{Limit: 10}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, after, err := store.FetchPage(tc.page, all(tc.n), key)
			if err != nil || len(items) != tc.wantLen || after != tc.wantAfter {
				t.Errorf("got %d items, after %q, %v; want %d, %q", len(items), after, err, tc.wantLen, tc.wantAfter)
			}
			if len(items) > 0 && tc.page.After != "" && strconv.Itoa(items[0]) == tc.page.After {
				t.Error("the page repeats the previous page's last item")
			}
		})
	}
	boom := errors.New("boom")
	if _, _, err := store.FetchPage(store.Page{}, func(store.Page) ([]int, error) { return nil, boom }, key); !errors.Is(err, boom) {
		t.Errorf("got %v, want the list error", err)
	}
	var asked store.Page
	_, _, _ = store.FetchPage(store.Page{Limit: 7, After: "x"}, func(p store.Page) ([]int, error) { asked = p; return nil, nil }, key)
	if d := cmp.Diff(store.Page{Limit: 8, After: "x"}, asked); d != "" {
		t.Errorf("list was asked (-want +got):\n%s", d)
	}
}

func TestTrimPage(t *testing.T) {
	t.Parallel()
	key := strconv.Itoa
	size := func(i int) int { return i }
	for _, tc := range []struct {
		name      string
		items     []int
		after     string
		budget    int
		wantLen   int
		wantAfter string
	}{
		{"fits", []int{1, 2, 3}, "", 10, 3, ""},
		{"fits, more pages", []int{1, 2, 3}, "3", 10, 3, "3"},
		{"cut", []int{4, 4, 4}, "", 10, 2, "4"},
		{"first item alone is over the budget", []int{50, 1}, "", 10, 1, "50"},
		{"empty", nil, "", 10, 0, ""},
	} {
		items, after := store.TrimPage(tc.items, tc.after, key, size, tc.budget)
		if len(items) != tc.wantLen || after != tc.wantAfter {
			t.Errorf("%s: %d items, after %q; want %d, %q", tc.name, len(items), after, tc.wantLen, tc.wantAfter)
		}
	}
}
