package access_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/access"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/server/sshca"
	"github.com/corralhq/corral/internal/sshcert"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// syncer records the machines moved to a new generation.
type syncer struct {
	mu  sync.Mutex
	ids []string
}

func (s *syncer) DesiredChanged(_ context.Context, ids []string, _ time.Time) (map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, ids...)
	return nil, nil
}

func (s *syncer) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.ids
	s.ids = nil
	return out
}

// outcomes records outcome entries.
type outcomes struct {
	mu sync.Mutex
	os []capability.Outcome
}

func (o *outcomes) RecordOutcome(_ context.Context, x capability.Outcome) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.os = append(o.os, x)
	return nil
}

// OutcomeEntry is not used by access (its outcomes are recorded after the
// state change, not in its transaction).
func (o *outcomes) OutcomeEntry(x capability.Outcome) store.ActivityEntry {
	return store.ActivityEntry{Time: x.At, Scope: x.Scope, Result: x.Result, Message: x.Message}
}

type env struct {
	st   store.Store
	svc  *access.Service
	sync *syncer
	out  *outcomes
	now  time.Time
	vm   resource.MachineRef
	m    store.Machine
}

func (e *env) clock() time.Time { return e.now }

func newEnv(t *testing.T) *env {
	t.Helper()
	st := testutil.Store(t, "default/rg", "default/rg2")
	e := &env{st: st, sync: &syncer{}, out: &outcomes{}, now: t0, vm: resource.MachineRef{Subscription: "default", ResourceGroup: "rg", Name: "vm"}}
	for _, m := range []store.Machine{
		{ID: "m-1", Subscription: "default", ResourceGroup: "rg", Name: "vm", Status: wire.StatusConnected, Generation: 1, CreatedAt: t0, UpdatedAt: t0},
		{ID: "m-2", Subscription: "default", ResourceGroup: "rg", Name: "vm2", Status: wire.StatusConnected, Generation: 1, CreatedAt: t0, UpdatedAt: t0},
		{ID: "m-3", Subscription: "default", ResourceGroup: "rg2", Name: "vm", Status: wire.StatusConnected, Generation: 1, CreatedAt: t0, UpdatedAt: t0},
	} {
		if err := st.CreateMachine(t.Context(), m, false); err != nil {
			t.Fatal(err)
		}
	}
	e.m, _ = st.GetMachineByID(t.Context(), "m-1")
	pem, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sshca.Parse(pem)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = access.New(st, e.sync, ca, e.clock, slog.New(slog.DiscardHandler))
	e.svc.LogOutcomes(e.out)
	return e
}

var alice = access.Caller{ID: "u-alice", Name: "alice", SourceIP: "10.1.2.3"}
var bob = access.Caller{ID: "u-bob", Name: "bob", SourceIP: "10.9.9.9"}

func refusedWith(t *testing.T, err error, kind error, want ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v, want a refusal of kind %v", err, kind)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

func TestPolicyValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		scope string
		in    wire.JITPolicySet
		kind  error
		want  []string
	}{
		{"no port", "/", wire.JITPolicySet{}, refusal.ErrInvalid, []string{"at least one port"}},
		{"port zero", "/", wire.JITPolicySet{Ports: []string{"0"}}, refusal.ErrInvalid, []string{`port "0"`, "1 to 65535"}},
		{"port too big", "/", wire.JITPolicySet{Ports: []string{"65536/tcp"}}, refusal.ErrInvalid, []string{"1 to 65535"}},
		{"port not a number", "/", wire.JITPolicySet{Ports: []string{"ssh"}}, refusal.ErrInvalid, []string{"not a number"}},
		{"bad protocol", "/", wire.JITPolicySet{Ports: []string{"22/sctp"}}, refusal.ErrInvalid, []string{"tcp or udp"}},
		{"port twice", "/", wire.JITPolicySet{Ports: []string{"22", "22/tcp"}}, refusal.ErrInvalid, []string{"listed twice"}},
		{"malformed CIDR", "/", wire.JITPolicySet{Ports: []string{"22"}, AllowedSources: []string{"10.0.0.0/33"}}, refusal.ErrInvalid, []string{"not a CIDR range"}},
		{"host bits", "/", wire.JITPolicySet{Ports: []string{"22"}, AllowedSources: []string{"10.0.0.1/8"}}, refusal.ErrInvalid, []string{"host bits", "10.0.0.0/8"}},
		{"negative max", "/", wire.JITPolicySet{Ports: []string{"22"}, MaxDuration: wire.Duration(-time.Hour)}, refusal.ErrInvalid, []string{"must be positive"}},
		{"max over a day", "/", wire.JITPolicySet{Ports: []string{"22"}, MaxDuration: wire.Duration(25 * time.Hour)}, refusal.ErrInvalid, []string{"over the limit"}},
		{"every problem named", "/", wire.JITPolicySet{Ports: []string{"0", "x"}, AllowedSources: []string{"nope"}}, refusal.ErrInvalid,
			[]string{`port "0"`, `port "x"`, `"nope"`}},
		{"bad scope", "/machines/x", wire.JITPolicySet{Ports: []string{"22"}}, refusal.ErrInvalid, []string{"scope"}},
		{"missing group", "/subscriptions/default/resourceGroups/nope", wire.JITPolicySet{Ports: []string{"22"}}, refusal.ErrNotFound, []string{"nope"}},
		{"missing machine", "/subscriptions/default/resourceGroups/rg/machines/nope", wire.JITPolicySet{Ports: []string{"22"}}, refusal.ErrNotFound, []string{"nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.svc.SetPolicy(ctx, tc.scope, tc.in, "alice")
			refusedWith(t, err, tc.kind, tc.want...)
		})
	}
	if ps, _ := e.st.ListJITPolicies(ctx, "/"); len(ps) != 0 {
		t.Errorf("refused policies were stored: %+v", ps)
	}
	if ids := e.sync.take(); len(ids) != 0 {
		t.Errorf("refused policies moved machines: %v", ids)
	}
}

func TestPolicyScopesAndDesiredState(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p, created, err := e.svc.SetPolicy(ctx, "/subscriptions/DEFAULT/resourceGroups/RG", wire.JITPolicySet{Ports: []string{"22", "53/udp"},
		AllowedSources: []string{"10.0.0.0/8", "192.0.2.7"}}, "alice")
	if err != nil || !created {
		t.Fatalf("set = %v, %v", created, err)
	}
	if p.Scope != "/subscriptions/default/resourceGroups/rg" || time.Duration(p.MaxDuration) != wire.DefaultJITMaxDuration ||
		strings.Join(p.AllowedSources, ",") != "10.0.0.0/8,192.0.2.7/32" || strings.Join(p.Ports, ",") != "22/tcp,53/udp" {
		t.Errorf("stored policy %+v: want the group's stored spelling, the default 3h and canonical ports and ranges", p)
	}
	if ids := e.sync.take(); strings.Join(ids, ",") != "m-1,m-2" {
		t.Errorf("machines moved: %v, want the group's two", ids)
	}
	// A machine policy wins over its group's.
	if _, _, err := e.svc.SetPolicy(ctx, e.vm.ID().String(), wire.JITPolicySet{Ports: []string{"2222"}, MaxDuration: wire.Duration(time.Hour)}, "alice"); err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.MachineStatus(ctx, e.vm)
	if err != nil || st.Policy == nil || st.Policy.Ports[0] != "2222/tcp" {
		t.Fatalf("machine status %+v, %v: want the machine's own policy", st, err)
	}
	ds := e.desired(t, "m-1")
	if ds.JIT == nil || ds.JIT.Ports[0] != "2222/tcp" || time.Duration(ds.JIT.MaxDuration) != time.Hour {
		t.Errorf("desired JIT %+v", ds.JIT)
	}
	if ds.SSH == nil || ds.SSH.AdminPrincipals[0] != "admin@m-1" || ds.SSH.UserPrincipals[0] != "user@m-1" || !strings.HasPrefix(ds.SSH.CAKeys[0], "ssh-ed25519 ") {
		t.Errorf("desired SSH %+v: want the CA and machine-scoped principals", ds.SSH)
	}
	if ds := e.desired(t, "m-3"); ds.JIT != nil {
		t.Errorf("a machine of another group got %+v", ds.JIT)
	}
	if _, err := e.svc.DeletePolicy(ctx, e.vm.ID().String()); err != nil {
		t.Fatal(err)
	}
	if ds := e.desired(t, "m-1"); ds.JIT == nil || ds.JIT.Ports[0] != "22/tcp" {
		t.Errorf("after deleting the machine's policy: %+v, want the group's", ds.JIT)
	}
	_, err = e.svc.DeletePolicy(ctx, e.vm.ID().String())
	refusedWith(t, err, refusal.ErrNotFound, "no JIT policy")
}

func (e *env) desired(t *testing.T, id string) wire.AccessDesired {
	t.Helper()
	m, err := e.st.GetMachineByID(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var ds wire.DesiredState
	if err := e.svc.ContributeDesired(t.Context(), []capability.Desired{{Machine: m, State: &ds}}); err != nil {
		t.Fatal(err)
	}
	var ad wire.AccessDesired
	if err := json.Unmarshal(ds.Features[wire.FeatureAccess], &ad); err != nil {
		t.Fatal(err)
	}
	return ad
}

func TestRequestValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, err := e.svc.RequestGrant(ctx, e.vm, alice, wire.JITRequestCreate{Port: "22", Duration: wire.Duration(time.Hour)})
	refusedWith(t, err, refusal.ErrConflict, "no JIT policy")
	if _, _, err := e.svc.SetPolicy(ctx, e.vm.ID().String(), wire.JITPolicySet{Ports: []string{"22"}, AllowedSources: []string{"10.0.0.0/8"},
		MaxDuration: wire.Duration(time.Hour)}, "admin"); err != nil {
		t.Fatal(err)
	}
	e.sync.take()
	for _, tc := range []struct {
		name string
		in   wire.JITRequestCreate
		want []string
	}{
		{"source outside the allowed ranges", wire.JITRequestCreate{Port: "22", SourceIP: "192.0.2.1", Duration: wire.Duration(time.Minute)},
			[]string{"192.0.2.1 is outside the allowed source ranges", "10.0.0.0/8"}},
		{"duration over the maximum", wire.JITRequestCreate{Port: "22", Duration: wire.Duration(2 * time.Hour)}, []string{"2h0m0s is over the maximum of 1h0m0s"}},
		{"zero duration", wire.JITRequestCreate{Port: "22"}, []string{"must be positive"}},
		{"negative duration", wire.JITRequestCreate{Port: "22", Duration: wire.Duration(-time.Minute)}, []string{"must be positive"}},
		{"port not managed", wire.JITRequestCreate{Port: "80", Duration: wire.Duration(time.Minute)}, []string{"80/tcp", "not managed"}},
		{"port out of range", wire.JITRequestCreate{Port: "70000", Duration: wire.Duration(time.Minute)}, []string{"1 to 65535"}},
		{"no port", wire.JITRequestCreate{Duration: wire.Duration(time.Minute)}, []string{"port is required"}},
		{"a range for a source", wire.JITRequestCreate{Port: "22", SourceIP: "10.0.0.0/8", Duration: wire.Duration(time.Minute)}, []string{"not a range"}},
		{"multicast source", wire.JITRequestCreate{Port: "22", SourceIP: "224.0.0.1", Duration: wire.Duration(time.Minute)}, []string{"multicast"}},
		{"control characters", wire.JITRequestCreate{Port: "22", Duration: wire.Duration(time.Minute), Justification: "a\x00b"}, []string{"justification"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.RequestGrant(ctx, e.vm, alice, tc.in)
			refusedWith(t, err, refusal.ErrInvalid, tc.want...)
		})
	}
	if gs, _ := e.st.ListJITGrants(ctx, store.JITGrantFilter{}); len(gs) != 0 {
		t.Errorf("refused requests were stored: %d", len(gs))
	}
	// The default source is the caller's address; no approval: open at once.
	r, err := e.svc.RequestGrant(ctx, e.vm, alice, wire.JITRequestCreate{Port: "22/TCP", Duration: wire.Duration(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if r.SourceIP != "10.1.2.3" || r.State != wire.JITApproved || !r.ExpiresAt.Equal(t0.Add(30*time.Minute)) || r.Port != "22/tcp" {
		t.Errorf("request %+v", r)
	}
	if ids := e.sync.take(); len(ids) != 1 || ids[0] != "m-1" {
		t.Errorf("machines moved: %v", ids)
	}
	if ds := e.desired(t, "m-1"); len(ds.JIT.Grants) != 1 || ds.JIT.Grants[0].Source != "10.1.2.3" || !ds.JIT.Grants[0].Expires.Equal(t0.Add(30*time.Minute)) {
		t.Errorf("desired grants %+v", ds.JIT.Grants)
	}
	// Expired grants leave the desired state (the kernel closed them anyway).
	e.now = t0.Add(31 * time.Minute)
	if ds := e.desired(t, "m-1"); len(ds.JIT.Grants) != 0 {
		t.Errorf("expired grant still desired: %+v", ds.JIT.Grants)
	}
	if g, _ := e.svc.Grant(ctx, r.ID); g.State != wire.JITExpired {
		t.Errorf("state after expiry %s, want Expired", g.State)
	}
	// A machine that reported it cannot use nftables refuses with its reason.
	report := wire.AccessStatus{JIT: wire.JITStatus{State: wire.JITStateFailed, Message: "nftables is not available on this machine: permission denied"},
		SSH: wire.SSHStatus{State: wire.SSHStateOff}}
	if err := e.svc.ApplyReport(ctx, e.m, report, e.now); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.RequestGrant(ctx, e.vm, alice, wire.JITRequestCreate{Port: "22", Duration: wire.Duration(time.Minute)})
	refusedWith(t, err, refusal.ErrConflict, "cannot open ports just in time", "nftables is not available")
}

func TestApprovalAndRevoke(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, _, err := e.svc.SetPolicy(ctx, "/", wire.JITPolicySet{Ports: []string{"22"}, RequireApproval: true}, "admin"); err != nil {
		t.Fatal(err)
	}
	e.sync.take()
	r, err := e.svc.RequestGrant(ctx, e.vm, alice, wire.JITRequestCreate{Port: "22", Duration: wire.Duration(time.Hour), Justification: "hotfix"})
	if err != nil || r.State != wire.JITPending || !r.ExpiresAt.IsZero() {
		t.Fatalf("request = %+v, %v: want PendingApproval without expiry", r, err)
	}
	if ds := e.desired(t, "m-1"); len(ds.JIT.Grants) != 0 || len(e.sync.take()) != 0 {
		t.Error("a pending request reached the machine")
	}
	_, err = e.svc.Approve(ctx, r.ID, alice)
	refusedWith(t, err, refusal.ErrConflict, "cannot approve")
	e.now = t0.Add(10 * time.Minute)
	a, err := e.svc.Approve(ctx, r.ID, bob)
	if err != nil || a.State != wire.JITApproved || a.ApprovedBy != "bob" || !a.ExpiresAt.Equal(t0.Add(70*time.Minute)) {
		t.Fatalf("approve = %+v, %v: the hour counts from the approval", a, err)
	}
	if ids := e.sync.take(); len(ids) != 1 {
		t.Errorf("approval moved %v", ids)
	}
	_, err = e.svc.Approve(ctx, r.ID, bob)
	refusedWith(t, err, refusal.ErrConflict, "not waiting for approval")

	// The machine reports it applied, then (twice) that it did: one outcome.
	st := wire.AccessStatus{JIT: wire.JITStatus{State: wire.JITStateApplied, Grants: []wire.JITGrantStatus{{ID: r.ID, State: wire.JITApplied}}},
		SSH: wire.SSHStatus{State: wire.SSHStateOff}}
	for range 2 {
		if err := e.svc.ApplyReport(ctx, e.m, st, e.now); err != nil {
			t.Fatal(err)
		}
	}
	if g, _ := e.svc.Grant(ctx, r.ID); g.State != wire.JITApplied {
		t.Errorf("after the report: %s", g.State)
	}
	if len(e.out.os) != 1 || e.out.os[0].Result != wire.ResultSucceeded || !strings.Contains(e.out.os[0].Message, "open to 10.1.2.3") {
		t.Errorf("outcomes %+v", e.out.os)
	}
	// Someone else revokes; the grant leaves the desired state.
	v, err := e.svc.Revoke(ctx, r.ID, bob)
	if err != nil || v.State != wire.JITRevoked || v.RevokedBy != "bob" {
		t.Fatalf("revoke = %+v, %v", v, err)
	}
	if ids := e.sync.take(); len(ids) != 1 {
		t.Errorf("revoke moved %v", ids)
	}
	if ds := e.desired(t, "m-1"); len(ds.JIT.Grants) != 0 {
		t.Error("revoked grant still desired")
	}
	_, err = e.svc.Revoke(ctx, r.ID, bob)
	refusedWith(t, err, refusal.ErrConflict, "nothing to revoke")

	// Rejection, and the approval window.
	r2, _ := e.svc.RequestGrant(ctx, e.vm, alice, wire.JITRequestCreate{Port: "22", Duration: wire.Duration(time.Hour)})
	if x, err := e.svc.Reject(ctx, r2.ID, bob); err != nil || x.State != wire.JITRejected {
		t.Errorf("reject = %+v, %v", x, err)
	}
	r3, _ := e.svc.RequestGrant(ctx, e.vm, alice, wire.JITRequestCreate{Port: "22", Duration: wire.Duration(time.Hour)})
	e.now = e.now.Add(wire.JITApprovalWindow + time.Minute)
	_, err = e.svc.Approve(ctx, r3.ID, bob)
	refusedWith(t, err, refusal.ErrConflict, "expired; request again")
	if x, _ := e.svc.Grant(ctx, r3.ID); x.State != wire.JITExpired {
		t.Errorf("late request: %s", x.State)
	}
}

func TestFailedGrantOutcome(t *testing.T) {
	e := newEnv(t)
	ctx := capability.WithOrigin(t.Context(), capability.Origin{CorrelationID: "c-1", CallerID: alice.ID, Caller: alice.Name,
		Action: "Corral.Security/jitRequests/write"})
	if _, _, err := e.svc.SetPolicy(ctx, "/", wire.JITPolicySet{Ports: []string{"22"}}, "admin"); err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.RequestGrant(ctx, e.vm, alice, wire.JITRequestCreate{Port: "22", Duration: wire.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	why := "nftables is not available on this machine: permission denied (the agent needs root or CAP_NET_ADMIN)"
	st := wire.AccessStatus{JIT: wire.JITStatus{State: wire.JITStateFailed, Message: why,
		Grants: []wire.JITGrantStatus{{ID: r.ID, State: wire.JITFailed, Message: "the JIT policy is not in force on this machine: " + why}}},
		SSH: wire.SSHStatus{State: wire.SSHStateOff}}
	if err := e.svc.ApplyReport(t.Context(), e.m, st, e.now); err != nil {
		t.Fatal(err)
	}
	g, _ := e.svc.Grant(ctx, r.ID)
	if g.State != wire.JITFailed || !strings.Contains(g.Message, "CAP_NET_ADMIN") {
		t.Errorf("grant %+v", g)
	}
	if len(e.out.os) != 1 || e.out.os[0].Result != wire.ResultFailed || e.out.os[0].Origin.CorrelationID != "c-1" ||
		e.out.os[0].Origin.Caller != "alice" || !strings.Contains(e.out.os[0].Message, "CAP_NET_ADMIN") {
		t.Errorf("outcome %+v: want Failed in alice's name with the machine's reason", e.out.os)
	}
	ms, err := e.svc.MachineStatus(ctx, e.vm)
	if err != nil || ms.State != wire.JITStateFailed || ms.Message != why {
		t.Errorf("machine status %+v, %v", ms, err)
	}
}

func TestCertificates(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	k, err := sshcert.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	req := wire.SSHCertificateRequest{PublicKey: string(k.AuthorizedKey())}
	_, err = e.svc.IssueCertificate(ctx, e.vm, alice, true, req)
	refusedWith(t, err, refusal.ErrConflict, "does not accept corral SSH logins", "ssh.manage true")
	managed := wire.AccessStatus{JIT: wire.JITStatus{State: wire.JITStateNone},
		SSH: wire.SSHStatus{State: wire.SSHStateManaged, AdminUser: "ops-admin", User: "ops", HostKeys: []string{"ssh-ed25519 AAAAhost"}}}
	if err := e.svc.ApplyReport(ctx, e.m, managed, e.now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		canAdmin  bool
		login     string
		principal string
		account   string
	}{
		{"administrator by default", true, "", "admin@m-1", "ops-admin"},
		{"user login by default", false, "", "user@m-1", "ops"},
		{"administrator as the user account", true, "ops", "user@m-1", "ops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.svc.IssueCertificate(ctx, e.vm, alice, tc.canAdmin, wire.SSHCertificateRequest{PublicKey: req.PublicKey, Login: tc.login})
			if err != nil {
				t.Fatal(err)
			}
			cert, err := k.ParseCertificate([]byte(c.Certificate))
			if err != nil {
				t.Fatal(err)
			}
			if c.Principal != tc.principal || c.Login != tc.account || len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != tc.principal {
				t.Errorf("certificate for %v (%s): want principal %s for %s", cert.ValidPrincipals, c.Login, tc.principal, tc.account)
			}
			if got := time.Unix(int64(cert.ValidBefore), 0).Sub(t0); got != wire.DefaultSSHCertValidity {
				t.Errorf("validity %s, want 5m", got)
			}
			if cert.CriticalOptions["source-address"] != "127.0.0.1/32,::1/128" {
				t.Errorf("source-address %q: want the relay's loopback only", cert.CriticalOptions["source-address"])
			}
			if _, ok := cert.Extensions["permit-port-forwarding"]; ok {
				t.Error("port forwarding granted: it would reach ports incomingconnections.ports does not allow")
			}
			if c.HostKeys[0] != "ssh-ed25519 AAAAhost" || !strings.Contains(cert.KeyId, "caller=alice") || !strings.Contains(cert.KeyId, "session="+c.ID) {
				t.Errorf("host keys %v, key id %q", c.HostKeys, cert.KeyId)
			}
			login, err := e.svc.SessionLogin(ctx, c.ID, alice, "m-1", "vm")
			if err != nil || login != tc.account {
				t.Errorf("session login %q, %v", login, err)
			}
		})
	}
	_, err = e.svc.IssueCertificate(ctx, e.vm, alice, false, wire.SSHCertificateRequest{PublicKey: req.PublicKey, Login: "ops-admin"})
	if !errors.Is(err, access.ErrAdminLogin) || !strings.Contains(err.Error(), "Virtual Machine Administrator Login") {
		t.Errorf("user-login caller asking for the admin account: %v", err)
	}
	_, err = e.svc.IssueCertificate(ctx, e.vm, alice, true, wire.SSHCertificateRequest{PublicKey: req.PublicKey, Login: "root"})
	refusedWith(t, err, refusal.ErrInvalid, `no corral login account "root"`, "ops-admin", "ops")
	_, err = e.svc.IssueCertificate(ctx, e.vm, alice, true, wire.SSHCertificateRequest{PublicKey: "ssh-dss AAAA"})
	refusedWith(t, err, refusal.ErrInvalid, "public key")
	_, err = e.svc.IssueCertificate(ctx, e.vm, alice, true, wire.SSHCertificateRequest{PublicKey: req.PublicKey, Validity: wire.Duration(2 * time.Hour)})
	refusedWith(t, err, refusal.ErrInvalid, "over the limit of 1h")

	// A certificate is checked when a tunnel names it.
	c, _ := e.svc.IssueCertificate(ctx, e.vm, alice, true, req)
	_, err = e.svc.SessionLogin(ctx, c.ID, bob, "m-1", "vm")
	refusedWith(t, err, refusal.ErrInvalid, "was not issued to bob")
	_, err = e.svc.SessionLogin(ctx, c.ID, alice, "m-2", "vm2")
	refusedWith(t, err, refusal.ErrInvalid, "for machine vm2")
	e.now = t0.Add(6 * time.Minute)
	_, err = e.svc.SessionLogin(ctx, c.ID, alice, "m-1", "vm")
	refusedWith(t, err, refusal.ErrInvalid, "expired at", "get a new one")
}

func TestSessionsAndStaleOnes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.svc.SessionRefresh = 10 * time.Millisecond
	closed := make(chan struct{})
	live, err := e.svc.StartSession(ctx, access.SessionStart{ID: "t-1", MachineID: "m-1", MachineScope: e.vm.ID().String(), MachineName: "vm",
		Port: 22, Caller: alice, Login: "ops"}, func() { close(closed) })
	if err != nil {
		t.Fatal(err)
	}
	live.Count(true, 100)
	live.Count(false, 4000)
	page, err := e.svc.ListSessions(ctx, access.SessionFilter{Scope: "/subscriptions/default", Active: true})
	if err != nil || len(page.Items) != 1 || page.Items[0].State != wire.SessionActive || page.Items[0].Login != "ops" {
		t.Fatalf("active sessions %+v, %v", page.Items, err)
	}
	x, err := e.svc.EndSession(ctx, "t-1", bob)
	if err != nil || x.EndedBy != "bob" {
		t.Fatalf("end = %+v, %v", x, err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("ending the session did not close it")
	}
	done := live.Finish(ctx)
	if done.State != wire.SessionEnded || done.BytesToMachine != 100 || done.BytesFromMachine != 4000 || done.EndReason != "ended by bob" {
		t.Errorf("finished %+v", done)
	}
	if msg := access.SessionSummary(done); !strings.Contains(msg, "alice to port 22 of vm as ops from 10.1.2.3") ||
		!strings.Contains(msg, "100 bytes to the machine, 4000 bytes back") || !strings.Contains(msg, "ended by bob") {
		t.Errorf("summary %q", msg)
	}
	_, err = e.svc.EndSession(ctx, "t-1", bob)
	refusedWith(t, err, refusal.ErrConflict, "ended already")
	_, err = e.svc.EndSession(ctx, "no/such", bob)
	refusedWith(t, err, refusal.ErrNotFound)
	if len(e.out.os) != 1 || !strings.Contains(e.out.os[0].Message, "SSH session t-1 started: alice") {
		t.Errorf("start entry %+v", e.out.os)
	}

	// A session whose replica stopped refreshing it shows as lost.
	if err := e.st.CreateSSHSession(ctx, store.SSHSession{ID: "t-2", MachineID: "m-1", MachineScope: e.vm.ID().String(), Port: 22,
		CallerID: "u", Caller: "carol", StartedAt: t0.Add(-time.Hour), UpdatedAt: t0.Add(-10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	x, err = e.svc.Session(ctx, "t-2")
	if err != nil || x.State != wire.SessionEnded || !strings.Contains(x.EndReason, "replica relaying it stopped") {
		t.Errorf("stale session %+v, %v", x, err)
	}
}
