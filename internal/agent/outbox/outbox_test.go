package outbox

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/wire"
)

func ids(rs []wire.Report) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func TestOrderSupersedeAckAndReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	add := func(id, kind, key string) {
		t.Helper()
		if err := o.Add(wire.Report{ID: id, Kind: kind, Body: []byte(`{}`)}, key); err != nil {
			t.Fatal(err)
		}
	}
	add("p1", wire.ReportProperties, "properties")
	add("e1", "event", "")
	add("p2", wire.ReportProperties, "properties") // replaces p1
	add("e2", "event", "")
	select {
	case <-o.Ready():
	default:
		t.Error("Ready not signalled after Add")
	}
	got, _ := o.Pending(10)
	if want := []string{"e1", "p2", "e2"}; !slices.Equal(ids(got), want) {
		t.Fatalf("pending %v, want %v", ids(got), want)
	}
	// Reopening (an agent restart) keeps order and contents.
	o2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = o2.Pending(2)
	if want := []string{"e1", "p2"}; !slices.Equal(ids(got), want) {
		t.Fatalf("after reopen %v, want %v", ids(got), want)
	}
	if err := o2.Ack([]string{"e1", "p2"}); err != nil {
		t.Fatal(err)
	}
	if err := o2.Add(wire.Report{ID: "p3", Kind: wire.ReportProperties}, "properties"); err != nil {
		t.Fatal(err)
	}
	got, _ = o2.Pending(10)
	if want := []string{"e2", "p3"}; !slices.Equal(ids(got), want) {
		t.Fatalf("after ack %v, want %v", ids(got), want)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 2 {
		t.Errorf("%d files on disk, want 2", len(files))
	}
}

func TestUnreadableFilesAreDropped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o, _ := Open(dir)
	_ = o.Add(wire.Report{ID: "a", Kind: "event"}, "")
	if err := os.WriteFile(dir+"/00000000000000000000_6576_bad.json", []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, _ = Open(dir)
	got, _ := o.Pending(10)
	if want := []string{"a"}; !slices.Equal(ids(got), want) || o.Len() != 1 {
		t.Fatalf("pending %v (len %d), want %v", ids(got), o.Len(), want)
	}
}

func BenchmarkAddPendingAck(b *testing.B) {
	o, _ := Open(b.TempDir())
	r := wire.Report{Kind: "event", Body: make([]byte, 512)}
	for b.Loop() {
		r.ID = NewID()
		if err := o.Add(r, ""); err != nil {
			b.Fatal(err)
		}
		p, _ := o.Pending(1)
		_ = o.Ack(ids(p))
	}
}

// Supersede keys partly come from the control plane (run and extension
// names); however long, they never make a report impossible to store.
func TestLongSupersedeKeysAreStored(t *testing.T) {
	t.Parallel()
	o, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	long := "run:" + strings.Repeat("x", 4000) + ":Failed"
	for i := range 2 {
		if err := o.Add(wire.Report{Kind: "runCommand", Body: []byte(`{}`)}, long); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	if n := o.Len(); n != 1 {
		t.Errorf("%d reports pending, want 1 (the second supersedes the first)", n)
	}
}
