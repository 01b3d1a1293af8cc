package storetest

import (
	"testing"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func testAddMachineExtensions(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"), machine("m3", "s1/rg/vm3"), machine("m4", "s1/rg/vm4"))
	has := extension("m1", "pm")
	has.Publisher, has.Type = "corral", "patchmanagement" // another casing: the same extension
	_, err := s.PutMachineExtension(ctx, has, 0)
	ok(t, err, "m1 has it under another name")
	_, err = s.PutMachineExtension(ctx, extension("m2", "PatchManagement"), 0)
	ok(t, err, "m2 uses the name for something else")
	old := extension("m3", "old-pm")
	old.Publisher, old.Type = "Corral", "PatchManagement"
	_, err = s.PutMachineExtension(ctx, old, 0)
	ok(t, err, "m3 had it")
	_, err = s.MarkMachineExtensionDeleting(ctx, "m3", "old-pm", "alice", nil, t0)
	ok(t, err, "m3 is removing it")

	var es []store.MachineExtension
	for _, id := range []string{"m1", "m2", "m3", "m4", "gone"} {
		es = append(es, store.MachineExtension{MachineID: id, Name: "PatchManagement", Publisher: "Corral", Type: "PatchManagement",
			Version: "1.0.0", Digest: "sha256:bb", State: wire.ExtCreating, Origin: []byte(`{"caller":"bob"}`),
			CreatedAt: t0, CreatedBy: "bob", UpdatedAt: t0, UpdatedBy: "bob"})
	}
	gens, err := s.AddMachineExtensions(ctx, es)
	ok(t, err, "add")
	want := map[string]int64{"m3": getByID(t, s, "m3").Generation, "m4": 2}
	diff(t, gens, want, "machines added to")
	got := getExtension(t, s, "m4", "patchmanagement")
	wantExt := es[3]
	wantExt.SeqNo = 2
	diff(t, got, wantExt, "added extension")
	if e := getExtension(t, s, "m3", "PatchManagement"); e.SeqNo != gens["m3"] {
		t.Errorf("m3's new extension seqNo %d, generation %d", e.SeqNo, gens["m3"])
	}
	if e := getExtension(t, s, "m2", "PatchManagement"); e.Publisher != "Contoso" {
		t.Errorf("m2's extension of that name was replaced: %+v", e)
	}
	gens, err = s.AddMachineExtensions(ctx, es)
	ok(t, err, "add again")
	diff(t, gens, map[string]int64{}, "nothing added twice")
}
