package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// testDeleteScopeTakesItsAssignments: deleting a resource group or a
// machine removes the role assignments at its scope and below it, in the
// same transaction, and none elsewhere (a sibling whose name shares a
// prefix keeps its own).
func testDeleteScopeTakesItsAssignments(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/web", "s1/web2", "s1/other")
	createMachines(t, s, machine("m1", "s1/other/vm1"), machine("m2", "s1/other/vm2"))
	assign := func(id, scope string) {
		t.Helper()
		ok(t, s.CreateRoleAssignment(ctx, store.RoleAssignment{ID: id, PrincipalID: "sp-1", PrincipalType: "ServicePrincipal",
			RoleID: "Reader", Scope: scope, CreatedAt: t0}), "assign at %s", scope)
	}
	assign("web", "/subscriptions/s1/resourceGroups/web")
	assign("web-cased", "/subscriptions/S1/resourceGroups/WEB/machines/gone")
	assign("web2", "/subscriptions/s1/resourceGroups/web2")
	assign("sub", "/subscriptions/s1")
	assign("vm1", "/subscriptions/s1/resourceGroups/other/machines/vm1")
	assign("vm1-ext", "/subscriptions/s1/resourceGroups/other/machines/VM1/extensions/x")
	assign("vm10", "/subscriptions/s1/resourceGroups/other/machines/vm10")
	assign("vm2", "/subscriptions/s1/resourceGroups/other/machines/vm2")

	ok(t, s.DeleteResourceGroup(ctx, "s1", "Web"), "delete group web")
	ok(t, s.DeleteMachine(ctx, "m1"), "delete machine vm1")
	ras, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{PrincipalID: "sp-1"})
	ok(t, err, "list assignments")
	var left []string
	for _, ra := range ras {
		left = append(left, ra.ID)
	}
	diff(t, sortedCopy(left), []string{"sub", "vm10", "vm2", "web2"}, "assignments left after the deletes")

	// A group re-created under the name starts with no grants.
	ok(t, s.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "s1", Name: "WEB", CreatedAt: t0}), "re-create web")
	ras, err = s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{ScopePrefix: "/subscriptions/s1/resourceGroups/web"})
	ok(t, err, "list assignments of the new group")
	if len(ras) != 0 {
		t.Errorf("the re-created group inherited %d assignments: %+v", len(ras), ras)
	}
	// A delete that fails changes nothing.
	isErr(t, s.DeleteResourceGroup(ctx, "s1", "other"), store.ErrNotEmpty, "delete a group with a machine")
	ras, _ = s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{ScopePrefix: "/subscriptions/s1/resourceGroups/other"})
	if len(ras) != 2 {
		t.Errorf("a refused delete removed assignments: %d left, want 2", len(ras))
	}
	isErr(t, s.DeleteMachine(ctx, "m1"), store.ErrNotFound, "delete a machine twice")
}

func sortedCopy(l []string) []string {
	out := append([]string(nil), l...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func testMachinesCreatedBy(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	for i := range 5 {
		m := machine(fmt.Sprintf("m%d", i), fmt.Sprintf("s1/rg/vm%d", i))
		m.CreatedByID, m.CreatedAt = "sp-a", t0.Add(time.Duration(i)*time.Minute)
		if i == 4 {
			m.CreatedByID = "sp-b"
		}
		createMachines(t, s, m)
	}
	if got := getByID(t, s, "m0").CreatedByID; got != "sp-a" {
		t.Errorf("CreatedByID = %q, want sp-a", got)
	}
	for _, tc := range []struct {
		who   string
		since time.Time
		want  int
	}{
		{"sp-a", time.Time{}, 4}, {"sp-a", t0.Add(2 * time.Minute), 2}, {"sp-b", time.Time{}, 1}, {"nobody", time.Time{}, 0},
	} {
		n, err := s.CountMachinesCreatedBy(ctx, tc.who, tc.since)
		ok(t, err, "count machines of %s", tc.who)
		if n != tc.want {
			t.Errorf("machines created by %s since %v: %d, want %d", tc.who, tc.since, n, tc.want)
		}
	}
	ok(t, s.DeleteMachine(ctx, "m0"), "delete a machine")
	if n, _ := s.CountMachinesCreatedBy(ctx, "sp-a", time.Time{}); n != 3 {
		t.Errorf("after a delete: %d, want 3 (only machines that still exist count)", n)
	}
}

func testDeviceCodePurge(t *testing.T, s store.Store) {
	ctx := t.Context()
	old := deviceCode("OLDC-0001", "h1", t0.Add(-time.Hour))
	approved := deviceCode("OLDC-0002", "h2", t0.Add(-time.Minute))
	approved.ApprovedBy, approved.ApprovedAt, approved.Consumed = "usr-1", t0.Add(-2*time.Minute), true
	live := deviceCode("LIVE-0001", "h3", t0.Add(time.Minute))
	for _, d := range []store.DeviceCode{old, approved, live} {
		ok(t, s.CreateDeviceCode(ctx, d), "create %s", d.UserCode)
	}
	n, err := s.CountPendingDeviceCodes(ctx, t0)
	ok(t, err, "count pending")
	if n != 1 {
		t.Errorf("pending = %d, want 1", n)
	}
	n, err = s.DeleteExpiredDeviceCodes(ctx, t0)
	ok(t, err, "purge")
	if n != 2 {
		t.Errorf("purged %d codes, want 2", n)
	}
	_, err = s.GetDeviceCodeByUserCode(ctx, "OLDC-0001")
	isErr(t, err, store.ErrNotFound, "a purged code")
	if _, err := s.GetDeviceCodeByUserCode(ctx, "LIVE-0001"); err != nil {
		t.Errorf("a live code was purged: %v", err)
	}
	if n, _ := s.DeleteExpiredDeviceCodes(ctx, t0); n != 0 {
		t.Errorf("a second purge removed %d", n)
	}
}

func testActivityRetention(t *testing.T, s store.Store) {
	ctx := t.Context()
	var es []store.ActivityEntry
	for i := range 10 {
		es = append(es, store.ActivityEntry{ID: fmt.Sprintf("id-%02d", i), Time: t0.Add(time.Duration(i) * time.Hour),
			CallerID: "c", Caller: "c", Action: "a", Scope: "/", Result: wire.ResultSucceeded, Status: 200})
	}
	ok(t, s.AppendActivity(ctx, es...), "append")
	before := t0.Add(6 * time.Hour) // entries 0..5 are older
	idsOf := func(es []store.ActivityEntry) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	got, err := s.ListActivityBefore(ctx, before, 4)
	ok(t, err, "list before")
	if len(got) != 0 {
		t.Errorf("unsealed entries offered for purging: %v", idsOf(got))
	}
	_, err = s.SealActivity(ctx, 100, chainHash)
	ok(t, err, "seal")
	got, err = s.ListActivityBefore(ctx, before, 4)
	ok(t, err, "list before")
	diff(t, idsOf(got), idsOf(es[:4]), "the 4 oldest, in chain order")
	n, err := s.PurgeActivity(ctx, got[len(got)-1].ID, before)
	ok(t, err, "purge the exported prefix")
	if n != 4 {
		t.Errorf("purged %d, want 4", n)
	}
	base, _, err := s.ActivityChain(ctx)
	ok(t, err, "chain")
	if base != (store.ChainLink{Seq: 4, Hash: got[3].Hash}) {
		t.Errorf("base after the purge %+v, want the last purged entry (4, %s)", base, got[3].Hash)
	}
	got, err = s.ListActivityBefore(ctx, before, 100)
	ok(t, err, "list before")
	diff(t, idsOf(got), idsOf(es[4:6]), "what is left before the cut")
	// An id that is not an exported entry purges nothing.
	n, err = s.PurgeActivity(ctx, "id-99", before)
	ok(t, err, "purge an unknown id")
	if n != 0 {
		t.Errorf("purged %d for an unknown id", n)
	}
	n, err = s.PurgeActivity(ctx, got[1].ID, before)
	ok(t, err, "purge")
	if n != 2 {
		t.Errorf("purged %d, want 2", n)
	}
	all, err := s.ListActivity(ctx, store.ActivityFilter{})
	ok(t, err, "list")
	if len(all) != 4 || all[len(all)-1].ID != "id-06" {
		t.Errorf("entries left: %d, oldest %v; want 4 from id-06", len(all), all)
	}
	// What is purged is always a prefix of the chain: an old entry sealed
	// late (a replica's clock behind) waits until those before it go.
	late := store.ActivityEntry{ID: "id-00-late", Time: t0, CallerID: "c", Caller: "c", Action: "a", Scope: "/", Result: wire.ResultSucceeded}
	ok(t, s.AppendActivity(ctx, late), "append a late entry")
	_, err = s.SealActivity(ctx, 100, chainHash)
	ok(t, err, "seal")
	if got, _ := s.ListActivityBefore(ctx, before, 100); len(got) != 0 {
		t.Errorf("offered %v although entries before it in the chain are kept", idsOf(got))
	}
	rest, err := s.ListActivityChain(ctx, 0, 100)
	ok(t, err, "chain")
	if len(rest) != 5 || rest[0].Seq != 7 || rest[0].PrevHash != got[1].Hash {
		t.Errorf("the chain after purges: %+v", rest)
	}
}

func testWriteProbe(t *testing.T, s store.Store) {
	for i := range 3 {
		ok(t, s.ProbeWrite(t.Context(), t0.Add(time.Duration(i)*time.Second)), "probe %d", i)
	}
	// Replicas probe the same store at once: no probe may fail for it.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				if err := s.ProbeWrite(t.Context(), t0.Add(time.Duration(i*10+j)*time.Millisecond)); err != nil {
					t.Errorf("concurrent probe: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func testBootstrapped(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := store.User{ID: "usr-1", Name: "admin", PasswordHash: "h", CreatedAt: t0}
	grant := store.RoleAssignment{ID: "ra-1", PrincipalID: "usr-1", PrincipalType: "User", RoleID: "Owner", Scope: "/", CreatedAt: t0}
	// A clashing grant: neither marker nor user may remain.
	_, err := s.BootstrapUser(ctx, u, []store.RoleAssignment{grant, grant}, t0)
	isErr(t, err, store.ErrConflict, "bootstrap with clashing grants")
	if _, err := s.GetUser(ctx, "usr-1"); err == nil {
		t.Error("the user of a failed bootstrap remains")
	}
	made, err := s.BootstrapUser(ctx, u, []store.RoleAssignment{grant}, t0)
	ok(t, err, "bootstrap")
	if !made {
		t.Fatal("the first bootstrap made no user")
	}
	ok(t, s.DeleteUser(ctx, "usr-1"), "delete the first user")
	u.ID = "usr-2"
	made, err = s.BootstrapUser(ctx, u, nil, t0)
	ok(t, err, "bootstrap again")
	if made {
		t.Error("a second bootstrap made the user again")
	}
	if _, err := s.GetUserByName(ctx, "admin"); err == nil {
		t.Error("the deleted first user came back")
	}
}

func testMarkBootstrapped(t *testing.T, s store.Store) {
	first, err := s.MarkBootstrapped(t.Context(), t0)
	ok(t, err, "mark")
	again, err := s.MarkBootstrapped(t.Context(), t0.Add(time.Hour))
	ok(t, err, "mark again")
	if !first || again {
		t.Errorf("MarkBootstrapped = %t then %t, want true then false", first, again)
	}
}

func testRunCommandProtectedParameters(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"))
	sealed := bytes.Repeat([]byte{0xA5}, 80)
	rc := runCommand("m1", "with-secret", "01")
	rc.ProtectedParameters = sealed
	_, err := s.CreateRunCommand(ctx, rc)
	ok(t, err, "create")
	_, err = s.CreateRunCommand(ctx, runCommand("m1", "plain", "02"))
	ok(t, err, "create")
	got, err := s.GetRunCommand(ctx, "m1", "with-secret")
	ok(t, err, "get")
	diff(t, got.ProtectedParameters, sealed, "sealed parameters")
	got, _ = s.GetRunCommand(ctx, "m1", "plain")
	if got.ProtectedParameters != nil {
		t.Errorf("a run without protected parameters has %d bytes", len(got.ProtectedParameters))
	}
}

// testPageLimitsEveryList: every paged list answers up to one more than
// the largest API page (1,001), so a handler serving 1,000 can tell
// whether another page follows.
func testPageLimitsEveryList(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = store.MaxPageSize + 5
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"))
	var es []store.ActivityEntry
	ok(t, s.CreatePublisher(ctx, publisher("P")), "publisher")
	for i := range n {
		es = append(es, store.ActivityEntry{ID: fmt.Sprintf("a%05d", i), Time: t0, CallerID: "c", Caller: "c", Action: "a", Scope: "/", Result: "Succeeded"})
		_, err := s.CreateRunCommand(ctx, runCommand("m1", fmt.Sprintf("run-%05d", i), fmt.Sprintf("r%05d", i)))
		ok(t, err, "run %d", i)
		ok(t, s.CreatePackage(ctx, pkg("P", "T", fmt.Sprintf("1.0.%d", i))), "package %d", i)
	}
	ok(t, s.AppendActivity(ctx, es...), "activity")
	_, err := s.SealActivity(ctx, n, chainHash) // only sealed entries are ever purged
	ok(t, err, "seal")
	lists := map[string]func(store.Page) (int, error){
		"activity": func(p store.Page) (int, error) {
			l, err := s.ListActivity(ctx, store.ActivityFilter{Page: p})
			return len(l), err
		},
		"run commands": func(p store.Page) (int, error) {
			l, err := s.ListRunCommands(ctx, store.RunCommandFilter{MachineID: "m1", Page: p})
			return len(l), err
		},
		"packages": func(p store.Page) (int, error) {
			l, err := s.ListPackages(ctx, store.PackageFilter{Page: p})
			return len(l), err
		},
		"activity before": func(p store.Page) (int, error) {
			l, err := s.ListActivityBefore(ctx, t0.Add(time.Hour), p.Limit)
			return len(l), err
		},
		"activity chain": func(p store.Page) (int, error) {
			l, err := s.ListActivityChain(ctx, 0, p.Limit)
			return len(l), err
		},
	}
	for name, list := range lists {
		for _, tc := range []struct{ limit, want int }{{store.MaxPageSize, 1000}, {store.MaxStoreLimit, 1001}, {50000, 1001}} {
			got, err := list(store.Page{Limit: tc.limit})
			ok(t, err, "%s", name)
			if got != tc.want {
				t.Errorf("%s, Limit %d: %d items, want %d", name, tc.limit, got, tc.want)
			}
		}
	}
}
