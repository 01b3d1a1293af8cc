package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func jitPolicy(scope string) store.JITPolicy {
	return store.JITPolicy{Scope: scope, Ports: []string{"22/tcp", "53/udp"}, AllowedSources: []string{"10.0.0.0/8", "2001:db8::/32"},
		MaxDuration: 3 * time.Hour, RequireApproval: true, UpdatedAt: t0, UpdatedBy: "alice"}
}

func testJITPolicies(t *testing.T, s store.Store) {
	ctx := t.Context()
	created, err := s.PutJITPolicy(ctx, jitPolicy("/subscriptions/S1/resourceGroups/RG"))
	ok(t, err, "put policy")
	if !created {
		t.Error("first put: created = false")
	}
	got, err := s.GetJITPolicy(ctx, "/subscriptions/s1/resourcegroups/rg")
	ok(t, err, "get policy by other casing")
	diff(t, got, jitPolicy("/subscriptions/S1/resourceGroups/RG"), "policy")

	changed := jitPolicy("/subscriptions/s1/resourceGroups/rg")
	changed.Ports, changed.AllowedSources, changed.MaxDuration, changed.RequireApproval = []string{"2222/tcp"}, nil, time.Hour, false
	changed.UpdatedAt, changed.UpdatedBy = t0.Add(time.Minute), "bob"
	created, err = s.PutJITPolicy(ctx, changed)
	ok(t, err, "replace policy")
	if created {
		t.Error("replacing put: created = true")
	}
	got, err = s.GetJITPolicy(ctx, "/subscriptions/S1/resourceGroups/RG")
	ok(t, err, "get replaced policy")
	want := changed
	want.Scope = "/subscriptions/S1/resourceGroups/RG" // the first spelling stays
	diff(t, got, want, "replaced policy")

	for _, sc := range []string{"/", "/subscriptions/S1", "/subscriptions/S2", "/subscriptions/S1/resourceGroups/RG/machines/vm1", "/subscriptions/S1/resourceGroups/RGX"} {
		_, err := s.PutJITPolicy(ctx, jitPolicy(sc))
		ok(t, err, "put policy at %s", sc)
	}
	list, err := s.ListJITPolicies(ctx, "/subscriptions/s1/resourceGroups/RG")
	ok(t, err, "list below a group")
	var scopes []string
	for _, p := range list {
		scopes = append(scopes, p.Scope)
	}
	diff(t, scopes, []string{"/subscriptions/S1/resourceGroups/RG", "/subscriptions/S1/resourceGroups/RG/machines/vm1"}, "policies at or below the group (not RGX)")
	all, err := s.ListJITPolicies(ctx, "/")
	ok(t, err, "list all")
	if len(all) != 6 {
		t.Errorf("all policies: %d, want 6", len(all))
	}
	at, err := s.JITPoliciesAt(ctx, []string{"/", "/subscriptions/s1", "/subscriptions/S1/resourceGroups/rg", "/subscriptions/S1/resourceGroups/RG/machines/VM2"})
	ok(t, err, "policies at a machine's ancestors")
	if len(at) != 3 {
		t.Errorf("policies at the ancestors: %d, want 3 (no policy at vm2)", len(at))
	}
	ok(t, s.DeleteJITPolicy(ctx, "/SUBSCRIPTIONS/S1"), "delete policy")
	isErr(t, s.DeleteJITPolicy(ctx, "/subscriptions/S1"), store.ErrNotFound, "delete again")
	_, err = s.GetJITPolicy(ctx, "/subscriptions/S1")
	isErr(t, err, store.ErrNotFound, "get deleted policy")
}

func testMachineIDsInScope(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg1", "s1/rg2", "s2/rg1")
	createMachines(t, s, machine("a", "s1/rg1/vm1"), machine("b", "s1/rg1/vm2"), machine("c", "s1/rg2/vm1"), machine("d", "s2/rg1/vm1"))
	for _, tc := range []struct {
		sub, rg, name string
		want          []string
	}{
		{"", "", "", []string{"a", "b", "c", "d"}},
		{"S1", "", "", []string{"a", "b", "c"}},
		{"s1", "RG1", "", []string{"a", "b"}},
		{"s1", "rg1", "VM2", []string{"b"}},
		{"s3", "", "", nil},
	} {
		got, err := s.MachineIDsInScope(ctx, tc.sub, tc.rg, tc.name)
		ok(t, err, "machines in %s/%s/%s", tc.sub, tc.rg, tc.name)
		diff(t, got, tc.want, "machines in %s/%s/%s", tc.sub, tc.rg, tc.name)
	}
}

func jitGrant(id, machineID, scope string) store.JITGrant {
	return store.JITGrant{ID: id, MachineID: machineID, MachineScope: scope, Port: "22/tcp", Source: "10.1.2.3", Duration: time.Hour,
		Justification: "deploy", State: wire.JITPending, RequestedByID: "u1", RequestedBy: "alice", RequestedAt: t0,
		Origin: []byte(`{"correlationId":"c1"}`), UpdatedAt: t0}
}

func testJITGrants(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg1", "s1/rg2")
	createMachines(t, s, machine("m1", "s1/rg1/vm1"), machine("m2", "s1/rg2/vm1"))
	isErr(t, s.CreateJITGrant(ctx, jitGrant("g0", "missing", "/x")), store.ErrNotFound, "grant of a missing machine")
	scope1, scope2 := "/subscriptions/s1/resourceGroups/rg1/machines/vm1", "/subscriptions/s1/resourceGroups/rg2/machines/vm1"
	g1 := jitGrant("01", "m1", scope1)
	ok(t, s.CreateJITGrant(ctx, g1), "create grant")
	isErr(t, s.CreateJITGrant(ctx, g1), store.ErrConflict, "create the same id")
	got, err := s.GetJITGrant(ctx, "01")
	ok(t, err, "get grant")
	diff(t, got, g1, "grant")
	_, err = s.GetJITGrant(ctx, "zz")
	isErr(t, err, store.ErrNotFound, "get missing grant")

	// Approve: only from PendingApproval, once.
	upd := store.JITGrantUpdate{State: wire.JITApproved, ApprovedByID: "u2", ApprovedBy: "bob", ApprovedAt: t0.Add(time.Minute),
		ExpiresAt: t0.Add(61 * time.Minute), At: t0.Add(time.Minute)}
	moved, err := s.TransitionJITGrant(ctx, "01", []string{wire.JITPending}, upd)
	ok(t, err, "approve")
	if !moved {
		t.Fatal("approve did not move the grant")
	}
	moved, err = s.TransitionJITGrant(ctx, "01", []string{wire.JITPending}, upd)
	ok(t, err, "approve again")
	if moved {
		t.Error("a second approval moved the grant again")
	}
	_, err = s.TransitionJITGrant(ctx, "nope", []string{wire.JITPending}, upd)
	isErr(t, err, store.ErrNotFound, "transition of a missing grant")
	got, _ = s.GetJITGrant(ctx, "01")
	want := g1
	want.State, want.ApprovedByID, want.ApprovedBy, want.ApprovedAt, want.ExpiresAt, want.UpdatedAt = wire.JITApproved, "u2", "bob",
		t0.Add(time.Minute), t0.Add(61*time.Minute), t0.Add(time.Minute)
	diff(t, got, want, "approved grant (fields not in the update unchanged)")

	// More grants: open ones, expired ones, other machine.
	g2 := jitGrant("02", "m1", scope1)
	g2.State, g2.ExpiresAt = wire.JITApplied, t0.Add(10*time.Minute)
	g3 := jitGrant("03", "m1", scope1)
	g3.State, g3.ExpiresAt = wire.JITApplied, t0.Add(-time.Minute) // expired
	g4 := jitGrant("04", "m2", scope2)
	g4.State, g4.ExpiresAt = wire.JITApproved, t0.Add(time.Hour)
	g5 := jitGrant("05", "m1", scope1)
	g5.State, g5.ExpiresAt = wire.JITRevoked, t0.Add(time.Hour)
	for _, g := range []store.JITGrant{g2, g3, g4, g5} {
		ok(t, s.CreateJITGrant(ctx, g), "create grant %s", g.ID)
	}
	ids := func(gs []store.JITGrant) []string {
		out := []string{}
		for _, g := range gs {
			out = append(out, g.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.JITGrantFilter
		want []string
	}{
		{"all", store.JITGrantFilter{}, []string{"05", "04", "03", "02", "01"}},
		{"machine", store.JITGrantFilter{MachineID: "m1"}, []string{"05", "03", "02", "01"}},
		{"open at t0 on m1", store.JITGrantFilter{MachineID: "m1", OpenAt: t0}, []string{"02", "01"}},
		{"scope rg2", store.JITGrantFilter{ScopePrefix: "/subscriptions/S1/resourceGroups/RG2"}, []string{"04"}},
		{"states", store.JITGrantFilter{States: []string{wire.JITRevoked, wire.JITApproved}}, []string{"05", "04", "01"}},
		{"page", store.JITGrantFilter{Page: store.Page{After: "04", Limit: 2}}, []string{"03", "02"}},
	} {
		gs, err := s.ListJITGrants(ctx, tc.f)
		ok(t, err, "list %s", tc.name)
		diff(t, ids(gs), tc.want, "list %s", tc.name)
	}

	// Grants go with their machine.
	ok(t, s.DeleteMachine(ctx, "m2"), "delete machine")
	_, err = s.GetJITGrant(ctx, "04")
	isErr(t, err, store.ErrNotFound, "grant of a deleted machine")
}

func testMachineAccess(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg1")
	createMachines(t, s, machine("m1", "s1/rg1/vm1"))
	_, err := s.GetMachineAccess(ctx, "m1")
	isErr(t, err, store.ErrNotFound, "never reported")
	a := store.MachineAccess{MachineID: "m1", JITState: wire.JITStateFailed, JITMessage: "nftables is not available",
		SSHState: wire.SSHStateManaged, AdminUser: "corral-admin", User: "corral-user", HostKeys: []string{"ssh-ed25519 AAAA host"}, ReportedAt: t0}
	ok(t, s.PutMachineAccess(ctx, a), "put")
	got, err := s.GetMachineAccess(ctx, "m1")
	ok(t, err, "get")
	diff(t, got, a, "machine access")
	a.JITState, a.JITMessage, a.HostKeys, a.ReportedAt = wire.JITStateApplied, "", nil, t0.Add(time.Second)
	ok(t, s.PutMachineAccess(ctx, a), "replace")
	got, _ = s.GetMachineAccess(ctx, "m1")
	diff(t, got, a, "replaced machine access")
	isErr(t, s.PutMachineAccess(ctx, store.MachineAccess{MachineID: "missing", ReportedAt: t0}), store.ErrNotFound, "status of a missing machine")
	ok(t, s.DeleteMachine(ctx, "m1"), "delete machine")
	_, err = s.GetMachineAccess(ctx, "m1")
	isErr(t, err, store.ErrNotFound, "status of a deleted machine")
}

func testSSHSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg1")
	createMachines(t, s, machine("m1", "s1/rg1/vm1"))
	scope := "/subscriptions/s1/resourceGroups/rg1/machines/vm1"
	c := store.SSHCertificate{ID: "c1", MachineID: "m1", CallerID: "u1", Caller: "alice", Kind: wire.SSHLoginAdmin, Login: "corral-admin",
		Principal: "admin@m1", Serial: "18446744073709551615", IssuedAt: t0, ValidBefore: t0.Add(5 * time.Minute)}
	ok(t, s.CreateSSHCertificate(ctx, c), "record certificate")
	isErr(t, s.CreateSSHCertificate(ctx, c), store.ErrConflict, "record it twice")
	gotC, err := s.GetSSHCertificate(ctx, "c1")
	ok(t, err, "get certificate")
	diff(t, gotC, c, "certificate")

	x := store.SSHSession{ID: "01", MachineID: "m1", MachineScope: scope, Port: 22, CallerID: "u1", Caller: "alice", SourceIP: "192.0.2.7",
		CertificateID: "c1", Login: "corral-admin", Replica: "https://a:8443", StartedAt: t0, UpdatedAt: t0}
	ok(t, s.CreateSSHSession(ctx, x), "create session")
	ok(t, s.UpdateSSHSessionBytes(ctx, "01", 100, 2000, t0.Add(time.Second)), "bytes so far")
	moved, err := s.RequestSSHSessionEnd(ctx, "01", "bob", t0.Add(2*time.Second))
	ok(t, err, "request end")
	if !moved {
		t.Error("request end: false")
	}
	moved, err = s.RequestSSHSessionEnd(ctx, "01", "carol", t0.Add(3*time.Second))
	ok(t, err, "request end again")
	if moved {
		t.Error("a second end request took effect")
	}
	ended, err := s.EndSSHSession(ctx, "01", t0.Add(4*time.Second), "ended by bob", 150, 2500)
	ok(t, err, "end")
	if !ended {
		t.Error("end: false")
	}
	ended, err = s.EndSSHSession(ctx, "01", t0.Add(5*time.Second), "again", 1, 1)
	ok(t, err, "end again")
	if ended {
		t.Error("a session ended twice")
	}
	ok(t, s.UpdateSSHSessionBytes(ctx, "01", 9, 9, t0.Add(6*time.Second)), "bytes after the end")
	_, err = s.EndSSHSession(ctx, "nope", t0, "", 0, 0)
	isErr(t, err, store.ErrNotFound, "end a missing session")
	_, err = s.RequestSSHSessionEnd(ctx, "nope", "bob", t0)
	isErr(t, err, store.ErrNotFound, "request the end of a missing session")

	got, err := s.GetSSHSession(ctx, "01")
	ok(t, err, "get session")
	want := x
	want.BytesToMachine, want.BytesFromMachine, want.EndedAt, want.EndReason = 150, 2500, t0.Add(4*time.Second), "ended by bob"
	want.EndRequestedAt, want.EndRequestedBy, want.UpdatedAt = t0.Add(2*time.Second), "bob", t0.Add(4*time.Second)
	diff(t, got, want, "ended session (bytes after the end ignored)")

	for i := 2; i <= 4; i++ {
		y := x
		y.ID = fmt.Sprintf("%02d", i)
		ok(t, s.CreateSSHSession(ctx, y), "create session %s", y.ID)
	}
	list, err := s.ListSSHSessions(ctx, store.SSHSessionFilter{Active: true})
	ok(t, err, "active sessions")
	if len(list) != 3 || list[0].ID != "04" {
		t.Errorf("active sessions: %+v, want 04, 03, 02", list)
	}
	list, err = s.ListSSHSessions(ctx, store.SSHSessionFilter{ScopePrefix: "/subscriptions/S1", Page: store.Page{After: "03", Limit: 5}})
	ok(t, err, "page of sessions")
	if len(list) != 2 || list[0].ID != "02" || list[1].ID != "01" {
		t.Errorf("sessions after 03: %+v", list)
	}
	list, err = s.ListSSHSessions(ctx, store.SSHSessionFilter{ScopePrefix: "/subscriptions/s2"})
	ok(t, err, "sessions of another subscription")
	if len(list) != 0 {
		t.Errorf("sessions of s2: %d", len(list))
	}
	ok(t, s.DeleteMachine(ctx, "m1"), "delete machine")
	_, err = s.GetSSHSession(ctx, "02")
	isErr(t, err, store.ErrNotFound, "session of a deleted machine")
	_, err = s.GetSSHCertificate(ctx, "c1")
	isErr(t, err, store.ErrNotFound, "certificate of a deleted machine")
}
