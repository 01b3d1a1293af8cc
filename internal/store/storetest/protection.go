package storetest

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// protectionTests are the endpoint-protection cases, run by Run.
var protectionTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"ProtectionScopes", testProtectionScopes},
	{"SignatureSets", testSignatureSets},
	{"Alerts", testAlerts},
	{"AlertPagesAndFilters", testAlertPagesAndFilters},
	{"ProtectionScans", testProtectionScans},
	{"ProtectionRestores", testProtectionRestores},
	{"MachineProtection", testMachineProtection},
	{"ProtectionGoesWithMachine", testProtectionGoesWithMachine},
}

func testProtectionScopes(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetProtectionScope(ctx, "/subscriptions/s1/resourceGroups/web")
	isErr(t, err, store.ErrNotFound, "get a scope never enabled")
	isErr(t, s.DeleteProtectionScope(ctx, "/subscriptions/s1"), store.ErrNotFound, "delete a scope never enabled")

	web := store.ProtectionScope{Scope: "/subscriptions/s1/resourceGroups/Web", Settings: []byte(`{"action":"quarantine"}`),
		Machines: 2, CreatedAt: t0, CreatedBy: "alice", UpdatedAt: t0, UpdatedBy: "alice"}
	created, err := s.PutProtectionScope(ctx, web)
	ok(t, err, "enable")
	if !created {
		t.Error("first put did not report a creation")
	}
	got, err := s.GetProtectionScope(ctx, "/SUBSCRIPTIONS/s1/resourcegroups/web")
	ok(t, err, "get by other casing")
	diff(t, got, web, "scope")

	upd := store.ProtectionScope{Scope: "/subscriptions/S1/resourceGroups/WEB", Settings: []byte(`{"action":"report"}`),
		Schedule: []byte(`{"type":"quick","every":"24h0m0s"}`), Machines: 3, CreatedAt: t0.Add(time.Hour), CreatedBy: "bob",
		UpdatedAt: t0.Add(time.Hour), UpdatedBy: "bob"}
	created, err = s.PutProtectionScope(ctx, upd)
	ok(t, err, "update")
	if created {
		t.Error("second put reported a creation")
	}
	got, err = s.GetProtectionScope(ctx, "/subscriptions/s1/resourceGroups/web")
	ok(t, err, "get")
	want := upd
	want.Scope, want.CreatedAt, want.CreatedBy = web.Scope, web.CreatedAt, web.CreatedBy
	diff(t, got, want, "an update keeps the stored name and who created it")

	_, err = s.PutProtectionScope(ctx, store.ProtectionScope{Scope: "/subscriptions/s1", Settings: []byte(`{}`), CreatedAt: t0, UpdatedAt: t0})
	ok(t, err, "enable on the subscription")
	list, err := s.ListProtectionScopes(ctx)
	ok(t, err, "list")
	var scopes []string
	for _, p := range list {
		scopes = append(scopes, p.Scope)
	}
	diff(t, scopes, []string{"/subscriptions/s1", "/subscriptions/s1/resourceGroups/Web"}, "scopes by scope")
	ok(t, s.DeleteProtectionScope(ctx, "/subscriptions/s1/RESOURCEGROUPS/web"), "disable by other casing")
	_, err = s.GetProtectionScope(ctx, web.Scope)
	isErr(t, err, store.ErrNotFound, "get a disabled scope")
}

func sigSet(v int64) store.SignatureSet {
	set := []byte(fmt.Sprintf("CORRAL-SIGSET 1\nset %d", v))
	return store.SignatureSet{Version: v, Header: []byte(fmt.Sprintf(`{"version":%d}`, v)), Set: set, Size: int64(len(set)),
		SHA256: fmt.Sprintf("%064d", v), CreatedAt: t0.Add(time.Duration(v) * time.Minute), CreatedBy: "alice"}
}

func testSignatureSets(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.LatestSignatureSet(ctx)
	isErr(t, err, store.ErrNotFound, "latest with none imported")
	for v := int64(1); v <= 5; v++ {
		ok(t, s.CreateSignatureSet(ctx, sigSet(v)), "create set %d", v)
	}
	isErr(t, s.CreateSignatureSet(ctx, sigSet(3)), store.ErrConflict, "a version imported twice")
	latest, err := s.LatestSignatureSet(ctx)
	ok(t, err, "latest")
	want := sigSet(5)
	want.Set = nil
	diff(t, latest, want, "the latest set, without its bytes")
	got, err := s.GetSignatureSet(ctx, 2)
	ok(t, err, "get set 2")
	diff(t, got, sigSet(2), "set 2 with its bytes")
	_, err = s.GetSignatureSet(ctx, 9)
	isErr(t, err, store.ErrNotFound, "get a missing version")

	versions := func(p store.Page) []int64 {
		t.Helper()
		sets, err := s.ListSignatureSets(ctx, p)
		ok(t, err, "list %+v", p)
		out := []int64{}
		for _, ss := range sets {
			if ss.Set != nil {
				t.Errorf("list returned the bytes of set %d", ss.Version)
			}
			out = append(out, ss.Version)
		}
		return out
	}
	diff(t, versions(store.Page{}), []int64{5, 4, 3, 2, 1}, "newest first")
	diff(t, versions(store.Page{Limit: 2}), []int64{5, 4}, "page 1")
	diff(t, versions(store.Page{After: "4", Limit: 2}), []int64{3, 2}, "page 2")
}

func alert(id, machineID, rg, name, detection string, at time.Time) store.Alert {
	return store.Alert{ID: id, MachineID: machineID, MachineResource: "/subscriptions/s1/resourceGroups/" + rg + "/machines/" + name,
		MachineName: name, DetectionID: detection, Path: "/tmp/eicar-" + id + ".com", SHA256: fmt.Sprintf("%064s", id),
		Signature: "Eicar-Signature", Action: wire.DetectionQuarantined, Source: "realtime", Process: "/usr/bin/wget", PID: 4242,
		QuarantineID: "0123456789abcdef", Time: at, State: wire.AlertActive, ReceivedAt: at.Add(time.Second)}
}

func testAlerts(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := alert("a1", "m1", "web", "vm1", "d-1", t0)
	a.Member, a.Error, a.ScanID = "inner.zip!eicar.com", "no space left on device: the file stays where it was", "scan-1"
	created, err := s.CreateAlert(ctx, a)
	ok(t, err, "create alert")
	if !created {
		t.Error("first alert not created")
	}
	got, err := s.GetAlert(ctx, "a1")
	ok(t, err, "get alert")
	diff(t, got, a, "alert")

	dup := alert("a2", "m1", "web", "vm1", "d-1", t0.Add(time.Minute))
	created, err = s.CreateAlert(ctx, dup)
	ok(t, err, "the same detection again")
	if created {
		t.Error("a detection reported twice made two alerts")
	}
	_, err = s.GetAlert(ctx, "a2")
	isErr(t, err, store.ErrNotFound, "the duplicate's id")
	created, err = s.CreateAlert(ctx, alert("a3", "m2", "web", "vm2", "d-1", t0))
	ok(t, err, "the same detection id on another machine")
	if !created {
		t.Error("another machine's detection was taken for a duplicate")
	}

	changed, err := s.AcknowledgeAlert(ctx, "a1", "bob", t0.Add(time.Hour))
	ok(t, err, "acknowledge")
	if !changed {
		t.Error("acknowledge did not report a change")
	}
	got, err = s.GetAlert(ctx, "a1")
	ok(t, err, "get alert")
	if got.State != wire.AlertAcknowledged || got.AcknowledgedBy != "bob" || !got.AcknowledgedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("acknowledged alert: %+v", got)
	}
	changed, err = s.AcknowledgeAlert(ctx, "a1", "carol", t0.Add(2*time.Hour))
	ok(t, err, "acknowledge again")
	if got2, _ := s.GetAlert(ctx, "a1"); changed || got2.AcknowledgedBy != "bob" {
		t.Errorf("a second acknowledgement changed the alert: %v %+v", changed, got2)
	}
	_, err = s.AcknowledgeAlert(ctx, "missing", "bob", t0)
	isErr(t, err, store.ErrNotFound, "acknowledge a missing alert")

	counts, err := s.CountActiveAlerts(ctx, []string{"m1", "m2", "m3"})
	ok(t, err, "count")
	diff(t, counts, map[string]int{"m2": 1}, "active alerts by machine")
}

func testAlertPagesAndFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Ten alerts, two per minute, over two groups and three machines.
	for i := range 10 {
		rg, name := "web", "vm"+strconv.Itoa(i%3)
		if i%3 == 2 {
			rg = "db"
		}
		a := alert(fmt.Sprintf("a%02d", i), "m"+strconv.Itoa(i%3), rg, name, "d"+strconv.Itoa(i), t0.Add(time.Duration(i/2)*time.Minute))
		if i%4 == 0 {
			a.State = wire.AlertAcknowledged
		}
		_, err := s.CreateAlert(ctx, a)
		ok(t, err, "create alert %d", i)
	}
	ids := func(f store.AlertFilter) []string {
		t.Helper()
		as, err := s.ListAlerts(ctx, f)
		ok(t, err, "list %+v", f)
		out := []string{}
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	diff(t, ids(store.AlertFilter{}), []string{"a09", "a08", "a07", "a06", "a05", "a04", "a03", "a02", "a01", "a00"}, "newest first")
	diff(t, ids(store.AlertFilter{Page: store.Page{Limit: 3}}), []string{"a09", "a08", "a07"}, "page 1")
	diff(t, ids(store.AlertFilter{Page: store.Page{After: "a07", Limit: 3}}), []string{"a06", "a05", "a04"}, "page 2 (same time as the last)")
	diff(t, ids(store.AlertFilter{Page: store.Page{After: "a06", Limit: 3}}), []string{"a05", "a04", "a03"}, "page after a time boundary")
	diff(t, ids(store.AlertFilter{ScopePrefix: "/subscriptions/S1/resourceGroups/DB"}), []string{"a08", "a05", "a02"}, "by scope, case-insensitively")
	diff(t, ids(store.AlertFilter{ScopePrefix: "/subscriptions/s1/resourceGroups/d"}), []string{}, "a scope is whole segments")
	diff(t, ids(store.AlertFilter{MachineName: "VM1"}), []string{"a07", "a04", "a01"}, "by machine name")
	diff(t, ids(store.AlertFilter{State: wire.AlertAcknowledged}), []string{"a08", "a04", "a00"}, "by state")
	diff(t, ids(store.AlertFilter{State: wire.AlertActive, MachineName: "vm0", ScopePrefix: "/subscriptions/s1"}), []string{"a09", "a06", "a03"}, "filters together")
}

func protectionScan(machineID, id string) store.ProtectionScan {
	return store.ProtectionScan{ID: id, MachineID: machineID, Type: wire.ScanCustom, Paths: []string{"/srv", "/home"},
		State: wire.ScanPending, Origin: []byte(`{"correlationId":"c-1"}`), CreatedAt: t0, CreatedBy: "alice", UpdatedAt: t0}
}

func testProtectionScans(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"))
	_, err := s.CreateScan(ctx, protectionScan("missing", "01"))
	isErr(t, err, store.ErrNotFound, "scan of a missing machine")

	sc := protectionScan("m1", "01")
	gen, err := s.CreateScan(ctx, sc)
	ok(t, err, "create scan")
	if gen != 2 || getByID(t, s, "m1").Generation != 2 {
		t.Errorf("generation after a scan request = %d, want 2", gen)
	}
	got, err := s.GetScan(ctx, "m1", "01")
	ok(t, err, "get scan")
	diff(t, got, sc, "scan")
	_, err = s.CreateScan(ctx, protectionScan("m1", "01"))
	isErr(t, err, store.ErrConflict, "the same id twice")
	_, err = s.GetScan(ctx, "m2", "01")
	isErr(t, err, store.ErrNotFound, "a scan of another machine")

	quick := store.ProtectionScan{ID: "02", MachineID: "m1", Type: wire.ScanQuick, State: wire.ScanPending, CreatedAt: t0, UpdatedAt: t0}
	_, err = s.CreateScan(ctx, quick)
	ok(t, err, "create quick scan")
	got, err = s.GetScan(ctx, "m1", "02")
	ok(t, err, "get quick scan")
	if got.Paths == nil || len(got.Paths) != 0 || got.Origin != nil {
		t.Errorf("scan without paths or origin: %#v %#v", got.Paths, got.Origin)
	}
	sched := store.ProtectionScan{ID: "03", MachineID: "m1", Type: wire.ScanFull, State: wire.ScanRunning, Scheduled: true,
		CreatedAt: t0, StartedAt: t0, UpdatedAt: t0}
	ok(t, s.RecordScan(ctx, sched), "record a scheduled scan")
	if getByID(t, s, "m1").Generation != 3 {
		t.Error("recording a scan the machine started changed its generation")
	}
	isErr(t, s.RecordScan(ctx, sched), store.ErrConflict, "record it twice")

	applied, err := s.UpdateScan(ctx, "m1", "01", store.ScanUpdate{State: wire.ScanRunning, StartedAt: t0.Add(time.Second), At: t0.Add(time.Second)})
	ok(t, err, "running")
	if !applied {
		t.Error("running not applied")
	}
	done := store.ScanUpdate{State: wire.ScanSucceeded, Files: 1200, Bytes: 5 << 20, Infected: 1, Errors: 2, FinishedAt: t0.Add(time.Minute), At: t0.Add(time.Minute)}
	applied, err = s.UpdateScan(ctx, "m1", "01", done)
	ok(t, err, "finished")
	if !applied {
		t.Error("finished not applied")
	}
	applied, err = s.UpdateScan(ctx, "m1", "01", store.ScanUpdate{State: wire.ScanRunning, At: t0.Add(2 * time.Minute)})
	ok(t, err, "a late report")
	if applied {
		t.Error("a late report changed a finished scan")
	}
	got, err = s.GetScan(ctx, "m1", "01")
	ok(t, err, "get scan")
	want := sc
	want.State, want.Files, want.Bytes, want.Infected, want.Errors = wire.ScanSucceeded, 1200, 5<<20, 1, 2
	want.StartedAt, want.FinishedAt, want.UpdatedAt = t0.Add(time.Second), t0.Add(time.Minute), t0.Add(time.Minute)
	diff(t, got, want, "finished scan")
	_, err = s.UpdateScan(ctx, "m1", "nope", done)
	isErr(t, err, store.ErrNotFound, "update a missing scan")

	ids := func(f store.ScanFilter) []string {
		t.Helper()
		scs, err := s.ListScans(ctx, f)
		ok(t, err, "list %+v", f)
		out := []string{}
		for _, sc := range scs {
			out = append(out, sc.ID)
		}
		return out
	}
	diff(t, ids(store.ScanFilter{MachineID: "m1"}), []string{"03", "02", "01"}, "newest first")
	diff(t, ids(store.ScanFilter{MachineID: "m1", Unfinished: true}), []string{"03", "02"}, "unfinished")
	diff(t, ids(store.ScanFilter{MachineID: "m1", Page: store.Page{After: "03", Limit: 1}}), []string{"02"}, "page")
	diff(t, ids(store.ScanFilter{MachineID: "m2"}), []string{}, "another machine")
}

func testProtectionRestores(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"))
	r := store.ProtectionRestore{ID: "01", MachineID: "m1", QuarantineID: "0123456789abcdef", NoExclusion: true, Force: true,
		State: wire.ScanPending, Origin: []byte(`{"caller":"alice"}`), CreatedAt: t0, CreatedBy: "alice"}
	_, err := s.CreateRestore(ctx, store.ProtectionRestore{ID: "x", MachineID: "missing", State: wire.ScanPending})
	isErr(t, err, store.ErrNotFound, "restore on a missing machine")
	gen, err := s.CreateRestore(ctx, r)
	ok(t, err, "create restore")
	if gen != 2 {
		t.Errorf("generation = %d, want 2", gen)
	}
	got, err := s.GetRestore(ctx, "m1", "01")
	ok(t, err, "get restore")
	diff(t, got, r, "restore")
	_, err = s.CreateRestore(ctx, store.ProtectionRestore{ID: "02", MachineID: "m1", QuarantineID: "aa", State: wire.ScanPending, CreatedAt: t0})
	ok(t, err, "second restore")

	applied, err := s.FinishRestore(ctx, "m1", "01", wire.ScanSucceeded, "", "/srv/x", t0.Add(time.Minute))
	ok(t, err, "finish")
	if !applied {
		t.Error("finish not applied")
	}
	applied, err = s.FinishRestore(ctx, "m1", "01", wire.ScanFailed, "again", "", t0.Add(2*time.Minute))
	ok(t, err, "finish twice")
	if applied {
		t.Error("a restore finished twice")
	}
	got, err = s.GetRestore(ctx, "m1", "01")
	ok(t, err, "get restore")
	if got.State != wire.ScanSucceeded || got.Path != "/srv/x" || !got.FinishedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("finished restore: %+v", got)
	}
	_, err = s.FinishRestore(ctx, "m1", "nope", wire.ScanFailed, "", "", t0)
	isErr(t, err, store.ErrNotFound, "finish a missing restore")
	rs, err := s.ListRestores(ctx, "m1", true, store.Page{})
	ok(t, err, "unfinished restores")
	if len(rs) != 1 || rs[0].ID != "02" {
		t.Errorf("unfinished restores: %+v", rs)
	}
	rs, err = s.ListRestores(ctx, "m1", false, store.Page{})
	ok(t, err, "restores")
	if len(rs) != 2 || rs[0].ID != "02" {
		t.Errorf("restores, newest first: %+v", rs)
	}
}

func testMachineProtection(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	createMachines(t, s, machine("m1", "s1/rg/vm1"), machine("m2", "s1/rg/vm2"))
	_, err := s.GetMachineProtection(ctx, "m1")
	isErr(t, err, store.ErrNotFound, "never reported")
	isErr(t, s.PutMachineProtection(ctx, store.MachineProtection{MachineID: "missing", Status: []byte(`{}`)}), store.ErrNotFound, "a missing machine")

	ok(t, s.PutMachineProtection(ctx, store.MachineProtection{MachineID: "m1", Status: []byte(`{"state":"Running"}`), StatusAt: t0}), "status")
	ok(t, s.PutMachineProtection(ctx, store.MachineProtection{MachineID: "m1", Quarantine: []byte(`[{"id":"q"}]`), QuarantineAt: t0.Add(time.Second)}), "quarantine")
	got, err := s.GetMachineProtection(ctx, "m1")
	ok(t, err, "get")
	diff(t, got, store.MachineProtection{MachineID: "m1", Status: []byte(`{"state":"Running"}`), StatusAt: t0,
		Quarantine: []byte(`[{"id":"q"}]`), QuarantineAt: t0.Add(time.Second)}, "each part kept when the other is reported")
	ok(t, s.PutMachineProtection(ctx, store.MachineProtection{MachineID: "m1", Status: []byte(`{"state":"Stopped"}`), StatusAt: t0.Add(time.Minute)}), "new status")
	got, err = s.GetMachineProtection(ctx, "m1")
	ok(t, err, "get")
	if string(got.Status) != `{"state":"Stopped"}` || string(got.Quarantine) != `[{"id":"q"}]` {
		t.Errorf("after a new status: %+v", got)
	}
	all, err := s.ListMachineProtection(ctx, []string{"m1", "m2", "nope"})
	ok(t, err, "list")
	if len(all) != 1 || string(all["m1"].Status) != `{"state":"Stopped"}` {
		t.Errorf("list: %+v", all)
	}
	ok(t, s.PutMachineProtection(ctx, store.MachineProtection{MachineID: "m2", Status: []byte(`{}`)}), "status of m2")
	all, err = s.ListMachineProtection(ctx, nil)
	ok(t, err, "list every machine")
	if len(all) != 2 {
		t.Errorf("list of every machine: %+v", all)
	}
	all, err = s.ListMachineProtection(ctx, []string{})
	ok(t, err, "list none")
	if len(all) != 0 {
		t.Errorf("an empty list of ids listed %d", len(all))
	}
}

func testProtectionGoesWithMachine(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/web")
	createMachines(t, s, machine("m1", "s1/web/vm1"))
	_, err := s.CreateScan(ctx, protectionScan("m1", "01"))
	ok(t, err, "scan")
	_, err = s.CreateRestore(ctx, store.ProtectionRestore{ID: "01", MachineID: "m1", State: wire.ScanPending, CreatedAt: t0})
	ok(t, err, "restore")
	ok(t, s.PutMachineProtection(ctx, store.MachineProtection{MachineID: "m1", Status: []byte(`{}`)}), "status")
	_, err = s.CreateAlert(ctx, alert("a1", "m1", "web", "vm1", "d1", t0))
	ok(t, err, "alert")
	ok(t, s.DeleteMachine(ctx, "m1"), "delete machine")
	_, err = s.GetScan(ctx, "m1", "01")
	isErr(t, err, store.ErrNotFound, "scan after the machine is gone")
	_, err = s.GetRestore(ctx, "m1", "01")
	isErr(t, err, store.ErrNotFound, "restore after the machine is gone")
	_, err = s.GetMachineProtection(ctx, "m1")
	isErr(t, err, store.ErrNotFound, "status after the machine is gone")
	a, err := s.GetAlert(ctx, "a1")
	ok(t, err, "the alert outlives its machine")
	if a.MachineName != "vm1" || a.MachineResource != "/subscriptions/s1/resourceGroups/web/machines/vm1" {
		t.Errorf("alert after its machine was deleted: %+v", a)
	}
}
