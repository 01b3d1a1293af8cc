package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"

	"github.com/corralhq/corral/internal/store"
)

// chainHash is a stand-in for auditchain.Hash: any function of prev, seq
// and the entry will do for the store's contract.
func chainHash(prev string, seq int64, e store.ActivityEntry) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%d|%s|%s", prev, seq, e.ID, e.Message))
	return hex.EncodeToString(sum[:])
}

// checkChain reads the whole chain and checks every link.
func checkChain(t *testing.T, s store.Store, want int) {
	t.Helper()
	base, head, err := s.ActivityChain(t.Context())
	ok(t, err, "read the chain")
	if base != (store.ChainLink{}) {
		t.Errorf("base %+v, want the start of the chain", base)
	}
	var all []store.ActivityEntry
	for after := int64(0); ; {
		es, err := s.ListActivityChain(t.Context(), after, 7)
		ok(t, err, "list the chain after %d", after)
		if len(es) == 0 {
			break
		}
		all = append(all, es...)
		after = es[len(es)-1].Seq
	}
	if len(all) != want {
		t.Fatalf("the chain holds %d entries, want %d", len(all), want)
	}
	prev := ""
	for i, e := range all {
		if e.Seq != int64(i+1) || e.PrevHash != prev || e.Hash != chainHash(prev, e.Seq, e) {
			t.Fatalf("entry %d (%s): seq %d prev %q hash %q; the chain does not hold", i+1, e.ID, e.Seq, e.PrevHash, e.Hash)
		}
		prev = e.Hash
	}
	if head != (store.ChainLink{Seq: int64(want), Hash: prev}) {
		t.Errorf("head %+v, want seq %d hash %s", head, want, prev)
	}
}

func testActivityChain(t *testing.T, s store.Store) {
	ctx := t.Context()
	n, err := s.SealActivity(ctx, 10, chainHash)
	ok(t, err, "seal an empty log")
	if n != 0 {
		t.Errorf("sealed %d of nothing", n)
	}
	e := []store.ActivityEntry{activityEntry(1), activityEntry(2), activityEntry(3), activityEntry(4), activityEntry(5)}
	ok(t, s.AppendActivity(ctx, e[2], e[0], e[1]), "append")
	if es := listActivityIDs(t, s, store.ActivityFilter{}); len(es) != 3 {
		t.Fatalf("listed %v", es)
	}
	n, err = s.SealActivity(ctx, 2, chainHash)
	ok(t, err, "seal two")
	if n != 2 {
		t.Fatalf("sealed %d, want 2", n)
	}
	got, err := s.ListActivity(ctx, store.ActivityFilter{Ascending: true})
	ok(t, err, "list oldest first")
	if len(got) != 3 || got[0].ID != e[0].ID || got[0].Seq != 1 || got[1].Seq != 2 || got[2].Seq != 0 || got[2].Hash != "" {
		t.Fatalf("after sealing two, oldest first: %+v", got)
	}
	ok(t, s.AppendActivity(ctx, e[4], e[3]), "append more")
	n, err = s.SealActivity(ctx, 100, chainHash)
	ok(t, err, "seal the rest")
	if n != 3 {
		t.Errorf("sealed %d, want 3", n)
	}
	checkChain(t, s, 5)
	// Sealing sets the place in the chain only: the content is as written.
	got, err = s.ListActivity(ctx, store.ActivityFilter{Ascending: true})
	ok(t, err, "list")
	for i, g := range got {
		g.Seq, g.PrevHash, g.Hash = 0, "", ""
		diff(t, g, e[i], "entry %d after sealing", i+1)
	}
	// Ascending pages.
	diff(t, listActivityIDs(t, s, store.ActivityFilter{Ascending: true, Page: store.Page{After: activityID(2), Limit: 2}}), ids(3, 4), "oldest first after 2")
	es, err := s.ListActivityChain(ctx, 3, 10)
	ok(t, err, "list the chain after 3")
	if len(es) != 2 || es[0].Seq != 4 || es[1].Seq != 5 {
		t.Errorf("chain after 3: %+v", es)
	}
	if n, _ := s.SealActivity(ctx, 100, chainHash); n != 0 {
		t.Errorf("a second seal sealed %d again", n)
	}
}

// Sealers racing (replicas) never give two entries the same place or leave
// a gap.
func testActivityChainConcurrentSealers(t *testing.T, s store.Store) {
	ctx := t.Context()
	const total = 300
	var es []store.ActivityEntry
	for i := 1; i <= total; i++ {
		es = append(es, activityEntry(i))
	}
	ok(t, s.AppendActivity(ctx, es...), "append")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				n, err := s.SealActivity(ctx, 25, chainHash)
				if err != nil {
					t.Errorf("seal: %v", err)
					return
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	checkChain(t, s, total)
}
