package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
)

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := store.User{ID: "usr-1", Name: "Alice", PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$a$b", CreatedAt: t0}
	bob := store.User{ID: "usr-2", Name: "bob", PasswordHash: "h2", Disabled: true, CreatedAt: t0.Add(time.Second)}
	ok(t, s.CreateUser(ctx, alice), "create user")
	ok(t, s.CreateUser(ctx, bob), "create disabled user")
	isErr(t, s.CreateUser(ctx, store.User{ID: "usr-3", Name: "ALICE", CreatedAt: t0}), store.ErrConflict, "duplicate name, other casing")
	isErr(t, s.CreateUser(ctx, store.User{ID: "usr-1", Name: "carol", CreatedAt: t0}), store.ErrConflict, "duplicate id")

	got, err := s.GetUser(ctx, "usr-1")
	ok(t, err, "get user")
	diff(t, got, alice, "user by id")
	got, err = s.GetUserByName(ctx, "aLiCe")
	ok(t, err, "get user by name, other casing")
	diff(t, got, alice, "user by name")
	got, err = s.GetUser(ctx, "usr-2")
	ok(t, err, "get user")
	diff(t, got, bob, "disabled user")

	_, err = s.GetUser(ctx, "usr-9")
	isErr(t, err, store.ErrNotFound, "get missing user")
	_, err = s.GetUserByName(ctx, "nobody")
	isErr(t, err, store.ErrNotFound, "get missing user by name")

	list, err := s.ListUsers(ctx)
	ok(t, err, "list users")
	diff(t, list, []store.User{alice, bob}, "users by name")

	ok(t, s.SetUserPassword(ctx, "usr-1", "new-hash", true, t0.Add(time.Hour)), "set password")
	got, err = s.GetUser(ctx, "usr-1")
	ok(t, err, "get user")
	want := alice
	want.PasswordHash, want.MustChangePassword, want.SessionsValidAfter = "new-hash", true, t0.Add(time.Hour)
	diff(t, got, want, "user after a password change")
	isErr(t, s.SetUserPassword(ctx, "usr-9", "h", false, t0), store.ErrNotFound, "set password of a missing user")

	ok(t, s.SetUserDisabled(ctx, "usr-1", true, t0.Add(2*time.Hour)), "disable")
	got, _ = s.GetUser(ctx, "usr-1")
	want.Disabled, want.SessionsValidAfter = true, t0.Add(2*time.Hour)
	diff(t, got, want, "disabled user: sessions end")
	ok(t, s.SetUserDisabled(ctx, "usr-1", false, t0.Add(3*time.Hour)), "enable")
	got, _ = s.GetUser(ctx, "usr-1")
	want.Disabled = false
	diff(t, got, want, "enabled user: sessions stay ended")
	isErr(t, s.SetUserDisabled(ctx, "usr-9", true, t0), store.ErrNotFound, "disable a missing user")

	ok(t, s.DeleteUser(ctx, "usr-1"), "delete user")
	_, err = s.GetUser(ctx, "usr-1")
	isErr(t, err, store.ErrNotFound, "get deleted user")
	isErr(t, s.DeleteUser(ctx, "usr-1"), store.ErrNotFound, "delete user twice")
	ok(t, s.CreateUser(ctx, store.User{ID: "usr-4", Name: "alice", CreatedAt: t0}), "the name is free again")
}

// testCreateUserWithGrants: a user and its first role assignments are
// stored together or not at all.
func testCreateUserWithGrants(t *testing.T, s store.Store) {
	ctx := t.Context()
	grant := func(id, principal, scope string) store.RoleAssignment {
		return store.RoleAssignment{ID: id, PrincipalID: principal, PrincipalType: "User", RoleID: "owner", Scope: scope, CreatedAt: t0}
	}
	ok(t, s.CreateUser(ctx, store.User{ID: "usr-1", Name: "admin", CreatedAt: t0}, grant("ra-1", "usr-1", "/")), "create user with a grant")
	ras, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{PrincipalID: "usr-1"})
	ok(t, err, "list assignments")
	if len(ras) != 1 || ras[0].Scope != "/" {
		t.Errorf("grants of the new user: %+v", ras)
	}
	// The second grant clashes with the first (same id): neither the user
	// nor its first grant may remain.
	err = s.CreateUser(ctx, store.User{ID: "usr-2", Name: "bob", CreatedAt: t0}, grant("ra-2", "usr-2", "/"), grant("ra-1", "usr-2", "/subscriptions/a"))
	isErr(t, err, store.ErrConflict, "a clashing grant")
	_, err = s.GetUser(ctx, "usr-2")
	isErr(t, err, store.ErrNotFound, "the user of a failed create")
	if ras, _ := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{PrincipalID: "usr-2"}); len(ras) != 0 {
		t.Errorf("grants of a failed create remain: %+v", ras)
	}
}

func testServicePrincipals(t *testing.T, s store.Store) {
	ctx := t.Context()
	deploy := store.ServicePrincipal{ClientID: "0b6c4b44-0000-4000-8000-000000000001", DisplayName: "deployer", SecretHash: "sh1",
		ExpiresAt: t0.Add(365 * 24 * time.Hour), CreatedAt: t0, CreatedBy: "alice"}
	backup := store.ServicePrincipal{ClientID: "0b6c4b44-0000-4000-8000-000000000002", DisplayName: "Backup", SecretHash: "sh2",
		ExpiresAt: t0.Add(time.Hour), CreatedAt: t0, CreatedBy: "bob"}
	ok(t, s.CreateServicePrincipal(ctx, deploy), "create service principal")
	ok(t, s.CreateServicePrincipal(ctx, backup), "create service principal")
	isErr(t, s.CreateServicePrincipal(ctx, deploy), store.ErrConflict, "duplicate client id")

	got, err := s.GetServicePrincipal(ctx, deploy.ClientID)
	ok(t, err, "get service principal")
	diff(t, got, deploy, "service principal")
	_, err = s.GetServicePrincipal(ctx, "missing")
	isErr(t, err, store.ErrNotFound, "get missing service principal")

	list, err := s.ListServicePrincipals(ctx)
	ok(t, err, "list service principals")
	diff(t, list, []store.ServicePrincipal{backup, deploy}, "service principals by display name")

	ok(t, s.DeleteServicePrincipal(ctx, deploy.ClientID), "delete service principal")
	_, err = s.GetServicePrincipal(ctx, deploy.ClientID)
	isErr(t, err, store.ErrNotFound, "get deleted service principal")
	isErr(t, s.DeleteServicePrincipal(ctx, deploy.ClientID), store.ErrNotFound, "delete service principal twice")
}

func testAPITokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	tok := func(id, principal, hash string, created time.Duration) store.APIToken {
		return store.APIToken{ID: id, Name: "token " + id, PrincipalID: principal, Hash: hash,
			CreatedAt: t0.Add(created), ExpiresAt: t0.Add(created + 30*24*time.Hour)}
	}
	t1, t2, t3 := tok("t1", "usr-1", "h1", 0), tok("t2", "usr-1", "h2", time.Minute), tok("t3", "sp-1", "h3", 0)
	for _, x := range []store.APIToken{t2, t1, t3} {
		ok(t, s.CreateAPIToken(ctx, x), "create token %s", x.ID)
	}
	isErr(t, s.CreateAPIToken(ctx, tok("t1", "usr-1", "h9", 0)), store.ErrConflict, "duplicate id")
	isErr(t, s.CreateAPIToken(ctx, tok("t9", "usr-2", "h1", 0)), store.ErrConflict, "duplicate hash")

	got, err := s.GetAPITokenByHash(ctx, "h2")
	ok(t, err, "get token by hash")
	diff(t, got, t2, "token")
	_, err = s.GetAPITokenByHash(ctx, "nope")
	isErr(t, err, store.ErrNotFound, "get token by unknown hash")

	list, err := s.ListAPITokens(ctx, "usr-1")
	ok(t, err, "list tokens")
	diff(t, list, []store.APIToken{t1, t2}, "the principal's tokens, oldest first")
	list, err = s.ListAPITokens(ctx, "nobody")
	ok(t, err, "list tokens of a principal without any")
	diff(t, list, []store.APIToken{}, "no tokens")

	ok(t, s.DeleteAPIToken(ctx, "t1"), "delete token")
	isErr(t, s.DeleteAPIToken(ctx, "t1"), store.ErrNotFound, "delete token twice")
	_, err = s.GetAPITokenByHash(ctx, "h1")
	isErr(t, err, store.ErrNotFound, "get deleted token")
	_, err = s.GetAPITokenByHash(ctx, "h3")
	ok(t, err, "another token survives")
}

// testDeletePrincipalTakesItsGrants: deleting a user or a service principal
// removes its API tokens and role assignments with it, in one transaction
// that changes nothing when the principal does not exist.
func testDeletePrincipalTakesItsGrants(t *testing.T, s store.Store) {
	ctx := t.Context()
	const spID = "0b6c4b44-0000-4000-8000-0000000000aa"
	ok(t, s.CreateUser(ctx, store.User{ID: "usr-1", Name: "alice", CreatedAt: t0}), "create user")
	ok(t, s.CreateUser(ctx, store.User{ID: "usr-2", Name: "bob", CreatedAt: t0}), "create user")
	ok(t, s.CreateServicePrincipal(ctx, store.ServicePrincipal{ClientID: spID, DisplayName: "deployer", SecretHash: "sh",
		ExpiresAt: t0.Add(time.Hour), CreatedAt: t0}), "create service principal")
	// usr-ghost holds grants but has no user row (a principal deleted before
	// deletes took its grants).
	for i, p := range []string{"usr-1", "usr-2", spID, "usr-ghost"} {
		ok(t, s.CreateAPIToken(ctx, store.APIToken{ID: "tok-" + p, Name: "t", PrincipalID: p, Hash: fmt.Sprint("hash-", i),
			CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}), "create token of %s", p)
		for j, scope := range []string{"/", "/subscriptions/a"} {
			ok(t, s.CreateRoleAssignment(ctx, store.RoleAssignment{ID: fmt.Sprint("ra-", p, "-", j), PrincipalID: p,
				PrincipalType: "User", RoleID: "reader", Scope: scope, CreatedAt: t0}), "assign a role to %s", p)
		}
	}
	grants := func(p string) (tokens, assignments int) {
		t.Helper()
		ts, err := s.ListAPITokens(ctx, p)
		ok(t, err, "list tokens of %s", p)
		ras, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{PrincipalID: p})
		ok(t, err, "list assignments of %s", p)
		return len(ts), len(ras)
	}

	ok(t, s.DeleteUser(ctx, "usr-1"), "delete user")
	ok(t, s.DeleteServicePrincipal(ctx, spID), "delete service principal")
	for _, p := range []string{"usr-1", spID} {
		if tk, ra := grants(p); tk != 0 || ra != 0 {
			t.Errorf("%s: %d tokens and %d role assignments outlive the principal", p, tk, ra)
		}
	}
	isErr(t, s.DeleteUser(ctx, "usr-ghost"), store.ErrNotFound, "delete a user that does not exist")
	isErr(t, s.DeleteServicePrincipal(ctx, "usr-ghost"), store.ErrNotFound, "delete a service principal that does not exist")
	for _, p := range []string{"usr-2", "usr-ghost"} {
		if tk, ra := grants(p); tk != 1 || ra != 2 {
			t.Errorf("%s: %d tokens and %d role assignments, want 1 and 2 (untouched)", p, tk, ra)
		}
	}
	_, err := s.GetUser(ctx, "usr-2")
	ok(t, err, "the other user is still there")
}

func deviceCode(user, hash string, expires time.Time) store.DeviceCode {
	return store.DeviceCode{UserCode: user, DeviceCodeHash: hash, Subscription: "s1", ResourceGroup: "rg",
		MachineName: "vm-" + user, SourceIP: "192.0.2.7", ExpiresAt: expires, CreatedAt: expires.Add(-15 * time.Minute)}
}

func testDeviceCodes(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := t0
	pending := deviceCode("ABCD-EFGH", "dh1", now.Add(10*time.Minute))
	expired := deviceCode("EXPD-0000", "dh2", now.Add(-time.Second))
	approved := deviceCode("APPR-0000", "dh3", now.Add(10*time.Minute))
	approved.ApprovedBy, approved.ApprovedAt = "usr-1", now.Add(-time.Minute)
	used := deviceCode("USED-0000", "dh4", now.Add(10*time.Minute))
	used.ApprovedBy, used.ApprovedAt, used.Consumed = "usr-1", now.Add(-time.Minute), true
	pending2 := deviceCode("WXYZ-2345", "dh5", now.Add(20*time.Minute))
	for _, d := range []store.DeviceCode{pending, expired, approved, used, pending2} {
		ok(t, s.CreateDeviceCode(ctx, d), "create device code %s", d.UserCode)
	}
	isErr(t, s.CreateDeviceCode(ctx, deviceCode("ABCD-EFGH", "dh9", now)), store.ErrConflict, "duplicate user code")
	isErr(t, s.CreateDeviceCode(ctx, deviceCode("NEWC-ODE1", "dh1", now)), store.ErrConflict, "duplicate device code hash")

	got, err := s.GetDeviceCodeByUserCode(ctx, "APPR-0000")
	ok(t, err, "get by user code")
	diff(t, got, approved, "device code by user code")
	got, err = s.GetDeviceCodeByHash(ctx, "dh4")
	ok(t, err, "get by hash")
	diff(t, got, used, "device code by hash")
	_, err = s.GetDeviceCodeByUserCode(ctx, "NONE-0000")
	isErr(t, err, store.ErrNotFound, "get by unknown user code")
	_, err = s.GetDeviceCodeByHash(ctx, "nope")
	isErr(t, err, store.ErrNotFound, "get by unknown hash")

	list, err := s.ListPendingDeviceCodes(ctx, now)
	ok(t, err, "list pending")
	diff(t, list, []store.DeviceCode{pending, pending2}, "pending codes, oldest first")
	list, err = s.ListPendingDeviceCodes(ctx, now.Add(10*time.Minute))
	ok(t, err, "list pending later")
	diff(t, list, []store.DeviceCode{pending2}, "pending codes once the first expired (expiry exclusive)")

	isErr(t, s.ApproveDeviceCode(ctx, "EXPD-0000", "usr-1", now), store.ErrNotFound, "approve an expired code")
	isErr(t, s.ApproveDeviceCode(ctx, "NONE-0000", "usr-1", now), store.ErrNotFound, "approve an unknown code")
	isErr(t, s.ApproveDeviceCode(ctx, "APPR-0000", "usr-2", now), store.ErrNotFound, "approve an approved code")
	isErr(t, s.ApproveDeviceCode(ctx, "USED-0000", "usr-2", now), store.ErrNotFound, "approve a consumed code")
	isErr(t, s.ApproveDeviceCode(ctx, "ABCD-EFGH", "usr-2", pending.ExpiresAt), store.ErrNotFound, "approve at the expiry instant")

	isErr(t, s.ConsumeDeviceCode(ctx, "dh1"), store.ErrConflict, "consume a pending code")
	ok(t, s.ApproveDeviceCode(ctx, "ABCD-EFGH", "sp-7", now.Add(time.Minute)), "approve a pending code")
	want := pending
	want.ApprovedBy, want.ApprovedAt = "sp-7", now.Add(time.Minute)
	got, err = s.GetDeviceCodeByHash(ctx, "dh1")
	ok(t, err, "get approved code")
	diff(t, got, want, "approved code")
	isErr(t, s.ApproveDeviceCode(ctx, "ABCD-EFGH", "usr-1", now.Add(time.Minute)), store.ErrNotFound, "approve twice")
	list, err = s.ListPendingDeviceCodes(ctx, now)
	ok(t, err, "list pending")
	diff(t, list, []store.DeviceCode{pending2}, "an approved code is no longer pending")

	ok(t, s.ConsumeDeviceCode(ctx, "dh1"), "consume the approved code")
	got, err = s.GetDeviceCodeByHash(ctx, "dh1")
	ok(t, err, "get consumed code")
	want.Consumed = true
	diff(t, got, want, "consumed code")
	isErr(t, s.ConsumeDeviceCode(ctx, "dh1"), store.ErrConflict, "consume twice")
	isErr(t, s.ConsumeDeviceCode(ctx, "dh4"), store.ErrConflict, "consume a code stored consumed")
	isErr(t, s.ConsumeDeviceCode(ctx, "nope"), store.ErrNotFound, "consume an unknown code")
}

// testDeviceCodeConsumedOnce races consumers: exactly one wins.
func testDeviceCodeConsumedOnce(t *testing.T, s store.Store) {
	ctx := t.Context()
	d := deviceCode("RACE-0001", "race", t0.Add(time.Hour))
	ok(t, s.CreateDeviceCode(ctx, d), "create device code")
	ok(t, s.ApproveDeviceCode(ctx, d.UserCode, "usr-1", t0), "approve")
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.ConsumeDeviceCode(ctx, "race") })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("losing consumer: got %v, want ErrConflict", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d consumers succeeded, want exactly 1", wins)
	}
}
