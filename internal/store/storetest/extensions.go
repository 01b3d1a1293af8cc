package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func publisher(name string) store.Publisher {
	return store.Publisher{Name: name, PublicKey: bytes.Repeat([]byte{0x42}, 32), CreatedAt: t0, CreatedBy: "alice"}
}

func pkg(pub, typ, version string) store.Package {
	archive := []byte(fmt.Sprintf("archive of %s/%s %s", pub, typ, version))
	return store.Package{
		Publisher: pub, Type: typ, Version: version, Digest: fmt.Sprintf("sha256:%s-%s-%s", pub, typ, version),
		Size: int64(len(archive)), Manifest: []byte(`{"publisher":"` + pub + `"}`), Archive: archive,
		PublishedAt: t0, PublishedBy: "alice",
	}
}

func testPublishers(t *testing.T, s store.Store) {
	ctx := t.Context()
	ok(t, s.CreatePublisher(ctx, publisher("Contoso")), "create publisher")
	isErr(t, s.CreatePublisher(ctx, publisher("CONTOSO")), store.ErrConflict, "create a publisher differing only in case")
	ok(t, s.CreatePublisher(ctx, publisher("acme")), "create publisher")

	got, err := s.GetPublisher(ctx, "contoso")
	ok(t, err, "get publisher by other casing")
	diff(t, got, publisher("Contoso"), "publisher")
	_, err = s.GetPublisher(ctx, "missing")
	isErr(t, err, store.ErrNotFound, "get missing publisher")

	list, err := s.ListPublishers(ctx)
	ok(t, err, "list publishers")
	var names []string
	for _, p := range list {
		names = append(names, p.Name)
	}
	diff(t, names, []string{"acme", "Contoso"}, "publishers by name, case-insensitively")
}

func testPackages(t *testing.T, s store.Store) {
	ctx := t.Context()
	isErr(t, s.CreatePackage(ctx, pkg("nobody", "t", "1.0.0")), store.ErrNotFound, "package of a missing publisher")
	ok(t, s.CreatePublisher(ctx, publisher("Contoso")), "create publisher")

	p := pkg("contoso", "Agent", "1.2.0")
	ok(t, s.CreatePackage(ctx, p), "create package")
	isErr(t, s.CreatePackage(ctx, pkg("CONTOSO", "agent", "1.2.0")), store.ErrConflict, "same publisher/type/version in other casing")
	dupDigest := pkg("contoso", "Agent", "1.3.0")
	dupDigest.Digest = p.Digest
	isErr(t, s.CreatePackage(ctx, dupDigest), store.ErrConflict, "same digest")

	got, err := s.GetPackage(ctx, "CONTOSO", "agent", "1.2.0")
	ok(t, err, "get package by other casing")
	want := p
	want.Publisher, want.Archive = "Contoso", nil // stored under the publisher's name; metadata reads leave the archive out
	diff(t, got, want, "package")
	_, err = s.GetPackage(ctx, "contoso", "agent", "1.2.1")
	isErr(t, err, store.ErrNotFound, "get missing version")

	archive, err := s.GetPackageArchive(ctx, p.Digest)
	ok(t, err, "get archive")
	if !bytes.Equal(archive, p.Archive) {
		t.Errorf("archive = %q, want %q", archive, p.Archive)
	}
	_, err = s.GetPackageArchive(ctx, "sha256:missing")
	isErr(t, err, store.ErrNotFound, "get missing archive")

	big := pkg("contoso", "Big", "1.0.0")
	big.Archive = bytes.Repeat([]byte{0, 1, 2, 0xff}, 1<<20) // 4 MiB of binary, NULs included
	big.Size = int64(len(big.Archive))
	ok(t, s.CreatePackage(ctx, big), "create a 4 MiB package")
	archive, err = s.GetPackageArchive(ctx, big.Digest)
	ok(t, err, "get the 4 MiB archive")
	if !bytes.Equal(archive, big.Archive) {
		t.Errorf("the 4 MiB archive came back with %d bytes, not the same", len(archive))
	}

	ok(t, s.CreatePublisher(ctx, publisher("acme")), "create publisher")
	for _, v := range []string{"1.10.0", "1.9.0", "2.0.0", "1.2.3"} {
		ok(t, s.CreatePackage(ctx, pkg("acme", "agent", v)), "create acme/agent %s", v)
	}
	versions := func(f store.PackageFilter) []string {
		t.Helper()
		ps, err := s.ListPackages(ctx, f)
		ok(t, err, "list packages %+v", f)
		out := []string{}
		for _, p := range ps {
			if p.Archive != nil {
				t.Errorf("list returned the archive of %s", p.Digest)
			}
			out = append(out, p.Publisher+"/"+p.Type+" "+p.Version)
		}
		return out
	}
	diff(t, versions(store.PackageFilter{}), []string{
		"acme/agent 1.2.3", "acme/agent 1.9.0", "acme/agent 1.10.0", "acme/agent 2.0.0",
		"Contoso/Agent 1.2.0", "Contoso/Big 1.0.0",
	}, "all packages, versions in numeric order")
	diff(t, versions(store.PackageFilter{Publisher: "CONTOSO"}), []string{"Contoso/Agent 1.2.0", "Contoso/Big 1.0.0"}, "by publisher")
	diff(t, versions(store.PackageFilter{Type: "AGENT"}), []string{
		"acme/agent 1.2.3", "acme/agent 1.9.0", "acme/agent 1.10.0", "acme/agent 2.0.0", "Contoso/Agent 1.2.0",
	}, "by type")
	diff(t, versions(store.PackageFilter{Publisher: "acme", Type: "big"}), []string{}, "nothing matches")
}

func testPackagePages(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, p := range []string{"a", "B"} {
		ok(t, s.CreatePublisher(ctx, publisher(p)), "create publisher %s", p)
		for _, typ := range []string{"x", "Y"} {
			for _, v := range []string{"1.0.0", "1.10.0", "1.2.0"} {
				ok(t, s.CreatePackage(ctx, pkg(p, typ, v)), "create %s/%s %s", p, typ, v)
			}
		}
	}
	var got []string
	after := ""
	for range 10 {
		ps, err := s.ListPackages(ctx, store.PackageFilter{Page: store.Page{After: after, Limit: 4}})
		ok(t, err, "list page after %q", after)
		for _, p := range ps {
			got = append(got, p.Publisher+"/"+p.Type+"/"+p.Version)
		}
		if len(ps) < 4 {
			break
		}
		last := ps[len(ps)-1]
		after = last.Publisher + "/" + last.Type + "/" + last.Version
	}
	diff(t, got, []string{
		"a/x/1.0.0", "a/x/1.2.0", "a/x/1.10.0", "a/Y/1.0.0", "a/Y/1.2.0", "a/Y/1.10.0",
		"B/x/1.0.0", "B/x/1.2.0", "B/x/1.10.0", "B/Y/1.0.0", "B/Y/1.2.0", "B/Y/1.10.0",
	}, "every package once, in order, across pages")
}

func testCatalogs(t *testing.T, s store.Store) {
	ctx := t.Context()
	cat := func(serial int64) store.Catalog {
		return store.Catalog{Publisher: "contoso", Serial: serial, Catalog: []byte(fmt.Sprintf(`{"serial":%d}`, serial)),
			Signature: bytes.Repeat([]byte{byte(serial)}, 64), UploadedAt: t0.Add(time.Duration(serial) * time.Minute), UploadedBy: "alice"}
	}
	isErr(t, s.PutCatalog(ctx, cat(1)), store.ErrNotFound, "catalog of a missing publisher")
	ok(t, s.CreatePublisher(ctx, publisher("Contoso")), "create publisher")
	_, err := s.GetCatalog(ctx, "contoso")
	isErr(t, err, store.ErrNotFound, "no catalog yet")

	ok(t, s.PutCatalog(ctx, cat(2)), "first catalog")
	isErr(t, s.PutCatalog(ctx, cat(2)), store.ErrConflict, "same serial again")
	isErr(t, s.PutCatalog(ctx, cat(1)), store.ErrConflict, "older serial (replay)")
	got, err := s.GetCatalog(ctx, "CONTOSO")
	ok(t, err, "get catalog")
	want := cat(2)
	want.Publisher = "Contoso"
	diff(t, got, want, "the first catalog survives refused replays")

	ok(t, s.PutCatalog(ctx, cat(7)), "newer catalog")
	got, err = s.GetCatalog(ctx, "contoso")
	ok(t, err, "get catalog")
	want = cat(7)
	want.Publisher = "Contoso"
	diff(t, got, want, "the newer catalog replaces it")
}

func extension(machineID, name string) store.MachineExtension {
	return store.MachineExtension{
		MachineID: machineID, Name: name, Publisher: "Contoso", Type: "Agent", Version: "1.0.0", Digest: "sha256:aa",
		Settings: []byte(`{"level":3}`), ProtectedSettings: []byte{0, 1, 2, 3, 0xfe}, SeqNo: 1,
		State: wire.ExtCreating, CreatedAt: t0, CreatedBy: "alice", UpdatedAt: t0, UpdatedBy: "alice",
	}
}

func getExtension(t *testing.T, s store.Store, machineID, name string) store.MachineExtension {
	t.Helper()
	e, err := s.GetMachineExtension(t.Context(), machineID, name)
	ok(t, err, "get extension %s", name)
	return e
}

func testMachineExtensions(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"))

	_, err := s.PutMachineExtension(ctx, extension("missing", "ext"), 0)
	isErr(t, err, store.ErrNotFound, "extension of a missing machine")

	e := extension("m1", "Monitor")
	gen, err := s.PutMachineExtension(ctx, e, 0)
	ok(t, err, "put new extension")
	if gen != 2 || getByID(t, s, "m1").Generation != 2 {
		t.Errorf("generation after install = %d, want 2", gen)
	}
	diff(t, getExtension(t, s, "m1", "MONITOR"), e, "extension by other casing")

	_, err = s.PutMachineExtension(ctx, extension("m1", "monitor"), 0)
	isErr(t, err, store.ErrConflict, "a new extension whose name (in other casing) exists")
	_, err = s.PutMachineExtension(ctx, extension("m1", "other"), 1)
	isErr(t, err, store.ErrConflict, "replace an extension that does not exist")

	upd := extension("m1", "monitor")
	upd.Version, upd.Digest, upd.Settings, upd.ProtectedSettings, upd.SeqNo = "1.1.0", "sha256:bb", nil, nil, 2
	upd.State, upd.CreatedAt, upd.CreatedBy, upd.UpdatedAt, upd.UpdatedBy = wire.ExtUpdating, t0.Add(time.Hour), "bob", t0.Add(time.Hour), "bob"
	_, err = s.PutMachineExtension(ctx, upd, 7)
	isErr(t, err, store.ErrConflict, "replace with a stale seqNo")
	if g := getByID(t, s, "m1").Generation; g != 2 {
		t.Errorf("a refused put changed the generation to %d", g)
	}
	gen, err = s.PutMachineExtension(ctx, upd, 1)
	ok(t, err, "replace with the current seqNo")
	if gen != 3 {
		t.Errorf("generation after upgrade = %d, want 3", gen)
	}
	want := upd
	want.Name, want.CreatedAt, want.CreatedBy = "Monitor", t0, "alice" // the stored name and creation stay
	got := getExtension(t, s, "m1", "monitor")
	diff(t, got, want, "replaced extension")
	if got.Settings != nil || got.ProtectedSettings != nil {
		t.Errorf("cleared settings came back as %q, %q", got.Settings, got.ProtectedSettings)
	}

	_, err = s.PutMachineExtension(ctx, extension("m1", "backup"), 0)
	ok(t, err, "second extension")
	_, err = s.PutMachineExtension(ctx, extension("m2", "monitor"), 0)
	ok(t, err, "same name on another machine")
	list, err := s.ListMachineExtensions(ctx, "m1")
	ok(t, err, "list extensions")
	var names []string
	for _, x := range list {
		names = append(names, x.Name)
	}
	diff(t, names, []string{"backup", "Monitor"}, "extensions of m1 by name")
	list, err = s.ListMachineExtensions(ctx, "nobody")
	ok(t, err, "list extensions of a missing machine")
	diff(t, len(list), 0, "extensions of a missing machine")

	gen, err = s.MarkMachineExtensionDeleting(ctx, "m1", "MONITOR", "carol", []byte(`{"correlationId":"c-1"}`), t0.Add(2*time.Hour))
	ok(t, err, "mark deleting")
	got = getExtension(t, s, "m1", "monitor")
	if !got.Deleting || got.State != wire.ExtDeleting || got.DeleteGeneration != gen || got.SeqNo != 2 ||
		got.UpdatedBy != "carol" || !got.UpdatedAt.Equal(t0.Add(2*time.Hour)) || getByID(t, s, "m1").Generation != gen ||
		string(got.Origin) != `{"correlationId":"c-1"}` {
		t.Errorf("after mark deleting (generation %d): %+v", gen, got)
	}
	_, err = s.MarkMachineExtensionDeleting(ctx, "m1", "nope", "carol", nil, t0)
	isErr(t, err, store.ErrNotFound, "mark a missing extension deleting")

	before := getByID(t, s, "m1").Generation
	gen, err = s.DeleteMachineExtension(ctx, "m1", "Backup")
	ok(t, err, "delete extension")
	if gen != before+1 {
		t.Errorf("generation after delete = %d, want %d", gen, before+1)
	}
	_, err = s.GetMachineExtension(ctx, "m1", "backup")
	isErr(t, err, store.ErrNotFound, "deleted extension")
	_, err = s.DeleteMachineExtension(ctx, "m1", "backup")
	isErr(t, err, store.ErrNotFound, "delete twice")
	if g := getByID(t, s, "m1").Generation; g != gen {
		t.Errorf("a refused delete changed the generation to %d", g)
	}

	// Once the agent reported on it, it may be on the machine: never dropped.
	_, err = s.PutMachineExtension(ctx, extension("m1", "reported"), 0)
	ok(t, err, "put extension")
	_, err = reportExtension(ctx, s, "m1", "reported", 1, false, store.ExtensionReport{State: wire.ExtCreating, At: t0})
	ok(t, err, "report")
	before = getByID(t, s, "m1").Generation
	_, err = s.DeleteMachineExtension(ctx, "m1", "REPORTED")
	isErr(t, err, store.ErrConflict, "delete an extension the agent reported on")
	if got := getExtension(t, s, "m1", "reported"); !got.AgentReported {
		t.Errorf("after a refused delete: %+v", got)
	}
	if g := getByID(t, s, "m1").Generation; g != before {
		t.Errorf("a refused delete changed the generation to %d", g)
	}
}

// reportedExtension seeds machine m1 with extension mon at SeqNo 3.
func reportedExtension(t *testing.T, s store.Store) store.MachineExtension {
	t.Helper()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"))
	e := extension("m1", "mon")
	e.SeqNo = 3
	_, err := s.PutMachineExtension(t.Context(), e, 0)
	ok(t, err, "put extension")
	return e
}

func testMachineExtensionReports(t *testing.T, s store.Store) {
	ctx := t.Context()
	reportedExtension(t, s)
	var err error
	at := t0.Add(time.Minute)
	report := func(name string, seq int64, remove bool, state string) bool {
		t.Helper()
		applied, err := reportExtension(ctx, s, "m1", name, seq, remove, store.ExtensionReport{Version: "1.0.0", State: state, Message: state + " msg", At: at})
		ok(t, err, "report %s seq %d", name, seq)
		return applied
	}
	genBefore := getByID(t, s, "m1").Generation

	for _, tc := range []struct {
		seq    int64
		remove bool
	}{{2, false}, {4, false}, {3, true}} {
		if report("mon", tc.seq, tc.remove, wire.ExtFailed) {
			t.Errorf("report seq %d remove %v applied to seq 3, not deleting", tc.seq, tc.remove)
		}
	}
	if got := getExtension(t, s, "m1", "mon"); got.State != wire.ExtCreating || got.AgentReported {
		t.Errorf("ignored reports changed the row: %+v", got)
	}
	if report("nope", 3, false, wire.ExtSucceeded) {
		t.Error("a report on an unknown extension applied")
	}
	if !report("MON", 3, false, wire.ExtSucceeded) {
		t.Fatal("matching report did not apply")
	}
	got := getExtension(t, s, "m1", "mon")
	if got.State != wire.ExtSucceeded || got.Message != "Succeeded msg" || got.ReportedVersion != "1.0.0" || !got.AgentReported ||
		!got.UpdatedAt.Equal(at) || got.Version != "1.0.0" {
		t.Errorf("after report: %+v", got)
	}
	_, err = reportExtension(ctx, s, "m1", "mon", 3, false, store.ExtensionReport{State: wire.ExtSucceeded, At: at})
	ok(t, err, "report without a version")
	if got := getExtension(t, s, "m1", "mon"); got.ReportedVersion != "1.0.0" {
		t.Errorf("a report without a version cleared the reported version: %+v", got)
	}
	if g := getByID(t, s, "m1").Generation; g != genBefore {
		t.Errorf("reports changed the generation from %d to %d", genBefore, g)
	}

	// Deleting: only remove reports apply, with any seqNo up to the row's.
	delGen, err := s.MarkMachineExtensionDeleting(ctx, "m1", "mon", "bob", nil, at)
	ok(t, err, "mark deleting")
	if report("mon", 3, false, wire.ExtSucceeded) {
		t.Error("a late install report overwrote Deleting")
	}
	if report("mon", 4, true, wire.ExtFailed) {
		t.Error("a remove report from the future applied")
	}
	if !report("mon", 2, true, wire.ExtFailed) {
		t.Error("a remove report with an older seqNo did not apply")
	}
	if got := getExtension(t, s, "m1", "mon"); got.State != wire.ExtFailed || !got.Deleting {
		t.Errorf("after a failed removal: %+v", got)
	}
	names, err := dropDeleted(ctx, s, "m1", delGen+10)
	ok(t, err, "drop deleted")
	diff(t, names, []string(nil), "a failed removal is not dropped")

	removed, err := s.RemoveMachineExtension(ctx, "m1", "mon", 4, nil)
	ok(t, err, "remove with a future seqNo")
	if removed {
		t.Error("removed with a seqNo greater than the row's")
	}
	removed, err = s.RemoveMachineExtension(ctx, "m1", "MON", 3, nil)
	ok(t, err, "remove")
	if !removed {
		t.Error("confirmed removal did not remove the row")
	}
	_, err = s.GetMachineExtension(ctx, "m1", "mon")
	isErr(t, err, store.ErrNotFound, "removed extension")

	// A row not being deleted is never removed.
	_, err = s.PutMachineExtension(ctx, extension("m1", "keep"), 0)
	ok(t, err, "put extension")
	removed, err = s.RemoveMachineExtension(ctx, "m1", "keep", 1, nil)
	ok(t, err, "remove a desired extension")
	if removed {
		t.Error("removed an extension that is still desired")
	}

	// DropDeletedExtensions takes rows Deleting at or before the applied generation.
	for _, n := range []string{"a", "b"} {
		_, err = s.PutMachineExtension(ctx, extension("m1", n), 0)
		ok(t, err, "put %s", n)
	}
	genA, err := s.MarkMachineExtensionDeleting(ctx, "m1", "a", "bob", nil, at)
	ok(t, err, "delete a")
	_, err = s.MarkMachineExtensionDeleting(ctx, "m1", "b", "bob", nil, at)
	ok(t, err, "delete b")
	names, err = dropDeleted(ctx, s, "m1", genA-1)
	ok(t, err, "drop before a")
	diff(t, names, []string(nil), "nothing applied yet")
	names, err = dropDeleted(ctx, s, "m1", genA)
	ok(t, err, "drop at a")
	diff(t, names, []string{"a"}, "dropped at a's generation")
	list, err := s.ListMachineExtensions(ctx, "m1")
	ok(t, err, "list")
	diff(t, len(list), 2, "keep and b remain")

	// Several machines' applied generations at once: each machine's own
	// (the highest, if reported twice) decides; a missing machine is none.
	createMachines(t, s, machine("m2", "s1/rg/vm2"))
	for _, n := range []string{"c", "d"} {
		_, err = s.PutMachineExtension(ctx, extension("m2", n), 0)
		ok(t, err, "put %s", n)
	}
	genC, err := s.MarkMachineExtensionDeleting(ctx, "m2", "c", "bob", nil, at)
	ok(t, err, "delete c")
	genD, err := s.MarkMachineExtensionDeleting(ctx, "m2", "d", "bob", nil, at)
	ok(t, err, "delete d")
	all, err := s.DropDeletedExtensions(ctx, []store.AppliedGeneration{{MachineID: "m2", Generation: genC}, {MachineID: "m1", Generation: genA - 1},
		{MachineID: "missing", Generation: 100}, {MachineID: "m2", Generation: genD}, {MachineID: "m1", Generation: genA + 1}})
	ok(t, err, "drop on several machines")
	for i := range all {
		slices.Sort(all[i])
	}
	diff(t, all, [][]string{{"c", "d"}, {"b"}, nil, {"c", "d"}, {"b"}}, "dropped per applied generation")
}

// dropDeleted drops one machine's deleted extensions.
func dropDeleted(ctx context.Context, s store.Store, machineID string, applied int64) ([]string, error) {
	names, err := s.DropDeletedExtensions(ctx, []store.AppliedGeneration{{MachineID: machineID, Generation: applied}})
	if err != nil {
		return nil, err
	}
	return names[0], nil
}

func testMachineExtensionsGoWithMachine(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"))
	_, err := s.PutMachineExtension(ctx, extension("m1", "mon"), 0)
	ok(t, err, "put extension")
	_, err = s.CreateRunCommand(ctx, runCommand("m1", "r1", "01"))
	ok(t, err, "create run")
	ok(t, s.DeleteMachine(ctx, "m1"), "delete machine")
	_, err = s.GetMachineExtension(ctx, "m1", "mon")
	isErr(t, err, store.ErrNotFound, "extension of a deleted machine")
	_, err = s.GetRunCommand(ctx, "m1", "r1")
	isErr(t, err, store.ErrNotFound, "run of a deleted machine")

	// Replacing an expired machine takes its extensions with it.
	old := machine("old", "s1/rg/vm2")
	old.Status = wire.StatusExpired
	createMachines(t, s, old)
	_, err = s.PutMachineExtension(ctx, extension("old", "mon"), 0)
	ok(t, err, "put extension")
	ok(t, s.CreateMachine(ctx, machine("new", "s1/rg/vm2"), true), "replace expired machine")
	_, err = s.GetMachineExtension(ctx, "old", "mon")
	isErr(t, err, store.ErrNotFound, "extension of a replaced machine")
}

func runCommand(machineID, name, id string) store.RunCommand {
	return store.RunCommand{
		ID: id, MachineID: machineID, Name: name, Script: "echo $GREETING\n", Parameters: map[string]string{"GREETING": "hi"},
		RunAsUser: "nobody", Timeout: 90 * time.Second, State: wire.RunPending, CreatedAt: t0, CreatedBy: "alice", UpdatedAt: t0,
	}
}

func testRunCommands(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"))

	_, err := s.CreateRunCommand(ctx, runCommand("missing", "r", "00"))
	isErr(t, err, store.ErrNotFound, "run on a missing machine")

	rc := runCommand("m1", "Hello", "01")
	rc.Origin = []byte(`{"correlationId":"c-9","caller":"alice"}`)
	gen, err := s.CreateRunCommand(ctx, rc)
	ok(t, err, "create run")
	if gen != 2 || getByID(t, s, "m1").Generation != 2 {
		t.Errorf("generation after run = %d, want 2", gen)
	}
	got, err := s.GetRunCommand(ctx, "m1", "HELLO")
	ok(t, err, "get run by other casing")
	diff(t, got, rc, "run")
	if got.ExitCode != nil {
		t.Errorf("exit code = %d, want none", *got.ExitCode)
	}
	_, err = s.CreateRunCommand(ctx, runCommand("m1", "hello", "02"))
	isErr(t, err, store.ErrConflict, "same name in other casing")
	_, err = s.GetRunCommand(ctx, "m2", "hello")
	isErr(t, err, store.ErrNotFound, "run of another machine")

	bare := store.RunCommand{ID: "03", MachineID: "m1", Name: "bare", Command: "uptime", Timeout: time.Minute, State: wire.RunPending, CreatedAt: t0}
	_, err = s.CreateRunCommand(ctx, bare)
	ok(t, err, "create run without parameters")
	got, err = s.GetRunCommand(ctx, "m1", "bare")
	ok(t, err, "get bare run")
	if got.Parameters == nil || len(got.Parameters) != 0 {
		t.Errorf("parameters = %#v, want an empty map", got.Parameters)
	}
	for i := range 5 {
		_, err = s.CreateRunCommand(ctx, runCommand("m1", fmt.Sprintf("r%d", i), fmt.Sprintf("1%d", i)))
		ok(t, err, "create run %d", i)
	}
	_, err = s.CreateRunCommand(ctx, runCommand("m2", "elsewhere", "99"))
	ok(t, err, "run on another machine")
	done := 0
	_, err = s.UpdateRunCommand(ctx, "m1", "r1", store.RunCommandUpdate{State: wire.RunSucceeded, ExitCode: &done, At: t0})
	ok(t, err, "finish r1")

	names := func(f store.RunCommandFilter) []string {
		t.Helper()
		rcs, err := s.ListRunCommands(ctx, f)
		ok(t, err, "list runs %+v", f)
		out := []string{}
		for _, rc := range rcs {
			out = append(out, rc.Name)
		}
		return out
	}
	diff(t, names(store.RunCommandFilter{MachineID: "m1"}), []string{"r4", "r3", "r2", "r1", "r0", "bare", "Hello"}, "newest first")
	diff(t, names(store.RunCommandFilter{MachineID: "m1", Page: store.Page{Limit: 3}}), []string{"r4", "r3", "r2"}, "page 1")
	diff(t, names(store.RunCommandFilter{MachineID: "m1", Page: store.Page{After: "12", Limit: 3}}), []string{"r1", "r0", "bare"}, "page 2")
	diff(t, names(store.RunCommandFilter{MachineID: "m1", Unfinished: true}), []string{"r4", "r3", "r2", "r0", "bare", "Hello"}, "unfinished")
	diff(t, names(store.RunCommandFilter{MachineID: "nobody"}), []string{}, "runs of a missing machine")
}

func testRunCommandUpdates(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"))
	_, err := s.CreateRunCommand(ctx, runCommand("m1", "r", "01"))
	ok(t, err, "create run")
	genBefore := getByID(t, s, "m1").Generation

	started := t0.Add(time.Second)
	update := func(u store.RunCommandUpdate) bool {
		t.Helper()
		applied, err := s.UpdateRunCommand(ctx, "m1", "R", u)
		ok(t, err, "update run to %s", u.State)
		return applied
	}
	if !update(store.RunCommandUpdate{State: wire.RunRunning, StartedAt: started, At: started}) {
		t.Fatal("Running did not apply")
	}
	if update(store.RunCommandUpdate{State: wire.RunPending, At: started}) {
		t.Error("Running went back to Pending")
	}
	code := 3
	finished := t0.Add(5 * time.Second)
	if !update(store.RunCommandUpdate{State: wire.RunFailed, ExitCode: &code, Stdout: "out\n", Stderr: "err\n", Message: "exit status 3",
		FinishedAt: finished, At: finished}) {
		t.Fatal("Failed did not apply")
	}
	got, err := s.GetRunCommand(ctx, "m1", "r")
	ok(t, err, "get run")
	if got.State != wire.RunFailed || got.ExitCode == nil || *got.ExitCode != 3 || got.Stdout != "out\n" || got.Stderr != "err\n" ||
		got.Message != "exit status 3" || !got.StartedAt.Equal(started) || !got.FinishedAt.Equal(finished) || !got.UpdatedAt.Equal(finished) {
		t.Errorf("after the final report: %+v", got)
	}
	for _, st := range []string{wire.RunRunning, wire.RunSucceeded, wire.RunTimedOut} {
		if update(store.RunCommandUpdate{State: st, At: finished.Add(time.Second)}) {
			t.Errorf("%s applied after the run finished", st)
		}
	}
	if got2, _ := s.GetRunCommand(ctx, "m1", "r"); got2.State != wire.RunFailed {
		t.Errorf("state after late reports = %s", got2.State)
	}
	_, err = s.UpdateRunCommand(ctx, "m1", "nope", store.RunCommandUpdate{State: wire.RunRunning, At: t0})
	isErr(t, err, store.ErrNotFound, "update a missing run")
	zero := 0
	_, err = s.CreateRunCommand(ctx, runCommand("m1", "z", "02"))
	ok(t, err, "create run")
	_, err = s.UpdateRunCommand(ctx, "m1", "z", store.RunCommandUpdate{State: wire.RunSucceeded, ExitCode: &zero, At: t0})
	ok(t, err, "finish with exit code 0")
	if got, _ := s.GetRunCommand(ctx, "m1", "z"); got.ExitCode == nil || *got.ExitCode != 0 {
		t.Errorf("exit code 0 came back as %v", got.ExitCode)
	}
	if g := getByID(t, s, "m1").Generation; g != genBefore+1 {
		t.Errorf("generation = %d, want %d (only the second create bumps it)", g, genBefore+1)
	}
}

func testRunCommandExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"))
	mk := func(machineID, name, id string, created time.Time) {
		t.Helper()
		rc := runCommand(machineID, name, id)
		rc.CreatedAt, rc.UpdatedAt, rc.Timeout = created, created, time.Minute
		_, err := s.CreateRunCommand(ctx, rc)
		ok(t, err, "create run %s", name)
	}
	mk("m1", "stale", "01", t0)                     // pending since t0
	mk("m1", "fresh", "02", t0.Add(90*time.Second)) // pending, within its minute
	mk("m2", "running", "03", t0)                   // started at t0+30s
	mk("m2", "finishing", "04", t0)                 // started at t0+90s
	mk("m2", "done", "05", t0)                      // finished
	_, err := s.UpdateRunCommand(ctx, "m2", "running", store.RunCommandUpdate{State: wire.RunRunning, StartedAt: t0.Add(30 * time.Second), At: t0})
	ok(t, err, "start running")
	_, err = s.UpdateRunCommand(ctx, "m2", "finishing", store.RunCommandUpdate{State: wire.RunRunning, StartedAt: t0.Add(90 * time.Second), At: t0})
	ok(t, err, "start finishing")
	zero := 0
	_, err = s.UpdateRunCommand(ctx, "m2", "done", store.RunCommandUpdate{State: wire.RunSucceeded, ExitCode: &zero, At: t0})
	ok(t, err, "finish done")
	gen1, gen2 := getByID(t, s, "m1").Generation, getByID(t, s, "m2").Generation

	// At t0+2m, grace 30s: "stale" never started (1m timeout passed);
	// "running" started at +30s, +1m timeout +30s grace = +2m: expired;
	// "finishing" has until +3m; "fresh" until +2m30s.
	got, err := s.ExpireRunCommands(ctx, t0.Add(2*time.Minute), 30*time.Second)
	ok(t, err, "expire")
	diff(t, got.Generations, map[string]int64{"m1": gen1 + 1, "m2": gen2 + 1}, "machines whose generation moved")
	slices.SortFunc(got.Runs, func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) })
	diff(t, got.Runs, [][2]string{{"m1", "stale"}, {"m2", "running"}}, "runs failed")
	state := func(machineID, name string) store.RunCommand {
		t.Helper()
		rc, err := s.GetRunCommand(ctx, machineID, name)
		ok(t, err, "get %s", name)
		return rc
	}
	if rc := state("m1", "stale"); rc.State != wire.RunFailed || rc.Message != store.RunNotStartedMessage || !rc.FinishedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("stale = %s %q %s", rc.State, rc.Message, rc.FinishedAt)
	}
	if rc := state("m2", "running"); rc.State != wire.RunFailed || rc.Message != store.RunNoResultMessage {
		t.Errorf("running = %s %q", rc.State, rc.Message)
	}
	for _, n := range []struct{ m, name, want string }{{"m1", "fresh", wire.RunPending}, {"m2", "finishing", wire.RunRunning}, {"m2", "done", wire.RunSucceeded}} {
		if rc := state(n.m, n.name); rc.State != n.want {
			t.Errorf("%s = %s, want %s", n.name, rc.State, n.want)
		}
	}
	// Nothing left to expire: no generation moves.
	got, err = s.ExpireRunCommands(ctx, t0.Add(2*time.Minute), 30*time.Second)
	ok(t, err, "expire again")
	diff(t, got.Generations, map[string]int64{}, "second sweep")
	if len(got.Runs) != 0 {
		t.Errorf("second sweep failed %v again", got.Runs)
	}
}

// A report's outcome entry is written in the report's transaction, from
// the row as it was: only when the report applies, never for one that does
// not, and a removal's too.
func testMachineExtensionReportOutcomes(t *testing.T, s store.Store) {
	ctx := t.Context()
	e := reportedExtension(t, s)
	var err error
	var asked []string // states the outcome saw before each applied report
	n := 0
	outcome := func(before store.MachineExtension) (store.ActivityEntry, bool) {
		asked = append(asked, before.State)
		n++
		if before.State == wire.ExtSucceeded {
			return store.ActivityEntry{}, false // already final: nothing new to log
		}
		x := activityEntry(900 + n)
		x.Message = "install " + before.Publisher + "/" + before.Type + " " + before.Version
		return x, true
	}
	report := func(seq int64, state string) bool {
		t.Helper()
		applied, err := reportExtension(ctx, s, "m1", "MON", seq, false, store.ExtensionReport{State: state, At: t0, Outcome: outcome})
		ok(t, err, "report seq %d", seq)
		return applied
	}
	if report(2, wire.ExtSucceeded) {
		t.Fatal("a stale report applied")
	}
	if applied, err := reportExtension(ctx, s, "m1", "nope", 3, false, store.ExtensionReport{State: wire.ExtSucceeded, At: t0, Outcome: outcome}); err != nil || applied {
		t.Fatalf("a report on an unknown extension: %v %v", applied, err)
	}
	diff(t, asked, []string(nil), "outcomes asked for reports that did not apply")
	if !report(3, wire.ExtSucceeded) || !report(3, wire.ExtSucceeded) {
		t.Fatal("a current report did not apply")
	}
	diff(t, asked, []string{wire.ExtCreating, wire.ExtSucceeded}, "the rows the outcome saw")
	got, err := s.ListActivity(ctx, store.ActivityFilter{})
	ok(t, err, "list activity")
	if len(got) != 1 || got[0].ID != activityID(901) || got[0].Message != "install "+e.Publisher+"/"+e.Type+" "+e.Version {
		t.Fatalf("activity after the reports: %+v, want the one outcome entry", got)
	}

	// A removal's outcome, with the row as it was before it went away.
	_, err = s.MarkMachineExtensionDeleting(ctx, "m1", "mon", "bob", nil, t0)
	ok(t, err, "mark deleting")
	asked = nil
	removed, err := s.RemoveMachineExtension(ctx, "m1", "mon", 3, outcome)
	ok(t, err, "remove")
	if !removed {
		t.Fatal("confirmed removal did not remove the row")
	}
	removed, err = s.RemoveMachineExtension(ctx, "m1", "mon", 3, outcome)
	ok(t, err, "remove again")
	if removed {
		t.Error("a second removal removed something")
	}
	diff(t, asked, []string{wire.ExtDeleting}, "the rows the removal's outcome saw")
	if got := listActivityIDs(t, s, store.ActivityFilter{}); len(got) != 2 {
		t.Errorf("activity after the removal: %v, want two entries", got)
	}
}

// reportExtension applies one report.
func reportExtension(ctx context.Context, s store.Store, machineID, name string, seqNo int64, remove bool, r store.ExtensionReport) (bool, error) {
	applied, err := s.ReportMachineExtensions(ctx, []store.ExtensionReportOn{{MachineID: machineID, Name: name, SeqNo: seqNo,
		Remove: remove, ExtensionReport: r}})
	if err != nil {
		return false, err
	}
	return applied[0], nil
}

// Reports applied together apply as they would one after the other: two
// on one row (named in different cases) in order, each outcome from the
// row as the report before it left it, unknown and stale ones not at all;
// the outcome entries are appended with them.
func testMachineExtensionReportsTogether(t *testing.T, s store.Store) {
	ctx := t.Context()
	reportedExtension(t, s) // m1/mon at SeqNo 3, Creating
	createMachines(t, s, machine("m2", "s1/rg/vm2"))
	e := extension("m2", "agent")
	e.SeqNo = 5
	_, err := s.PutMachineExtension(ctx, e, 0)
	ok(t, err, "put extension")

	var asked []string // "<name> <state before>", per outcome asked
	n := 0
	outcome := func(before store.MachineExtension) (store.ActivityEntry, bool) {
		asked = append(asked, before.Name+" "+before.State)
		n++
		return activityEntry(700 + n), true
	}
	on := func(machineID, name string, seq int64, state string) store.ExtensionReportOn {
		return store.ExtensionReportOn{MachineID: machineID, Name: name, SeqNo: seq,
			ExtensionReport: store.ExtensionReport{Version: "1.0.0", State: state, Message: name + " " + state, At: t0, Outcome: outcome}}
	}
	applied, err := s.ReportMachineExtensions(ctx, []store.ExtensionReportOn{
		on("m1", "mon", 3, wire.ExtUpdating),
		on("m2", "agent", 4, wire.ExtFailed), // stale
		on("m1", "MON", 3, wire.ExtSucceeded),
		on("m2", "nope", 5, wire.ExtSucceeded), // unknown
		on("m2", "agent", 5, wire.ExtSucceeded),
		on("m9", "mon", 3, wire.ExtSucceeded), // no such machine
	})
	ok(t, err, "report together")
	diff(t, applied, []bool{true, false, true, false, true, false}, "applied")
	slices.Sort(asked) // rows in no particular order; one row's reports in theirs
	diff(t, asked, []string{"agent " + wire.ExtCreating, "mon " + wire.ExtCreating, "mon " + wire.ExtUpdating}, "the rows the outcomes saw")
	if got := getExtension(t, s, "m1", "mon"); got.State != wire.ExtSucceeded || got.Message != "MON Succeeded" || !got.AgentReported {
		t.Errorf("m1/mon after the reports: %+v", got)
	}
	if got := getExtension(t, s, "m2", "agent"); got.State != wire.ExtSucceeded || got.Message != "agent Succeeded" || !got.AgentReported {
		t.Errorf("m2/agent after the reports: %+v", got)
	}
	diff(t, listActivityIDs(t, s, store.ActivityFilter{Ascending: true}), []string{activityID(701), activityID(702), activityID(703)},
		"outcome entries")

	// One bad entry (an id already in the log) fails the whole call, and
	// nothing of it is stored.
	n = 0
	_, err = s.ReportMachineExtensions(ctx, []store.ExtensionReportOn{on("m1", "mon", 3, wire.ExtFailed)})
	isErr(t, err, store.ErrConflict, "an outcome entry whose id is taken")
	if got := getExtension(t, s, "m1", "mon"); got.State != wire.ExtSucceeded {
		t.Errorf("a failed call changed the row: %+v", got)
	}
	applied, err = s.ReportMachineExtensions(ctx, nil)
	if err != nil || len(applied) != 0 {
		t.Errorf("no reports: %v %v", applied, err)
	}
}
