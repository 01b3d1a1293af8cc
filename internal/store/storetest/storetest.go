// Package storetest is the conformance suite every store.Store backend must
// pass. Backends call Run from their own tests (SQLite always, PostgreSQL
// when CORRAL_TEST_POSTGRES is set), so the contract in package store is
// checked once, in one place, against each of them.
//
// The suite only uses the store.Store interface and fixed times: like the
// store itself it never reads the wall clock.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Run runs the suite. open must return a new, empty, migrated store for each
// call and arrange for it to be closed (and its data removed) with
// t.Cleanup; a close error after the suite has closed the store itself
// must be ignored. Subtests run in parallel, each on its own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"Subscriptions", testSubscriptions},
		{"ResourceGroups", testResourceGroups},
		{"ResourceGroupPages", testResourceGroupPages},
		{"ResourceGroupPageLimits", testResourceGroupPageLimits},
		{"Machines", testMachines},
		{"Snapshot", testSnapshot},
		{"ReadsOfMachines", testReadsOfMachines},
		{"ConcurrentMachineWrites", testConcurrentMachineWrites},
		{"CreateMachineReplaceExpired", testCreateMachineReplaceExpired},
		{"ListMachinesFilters", testListMachinesFilters},
		{"ListMachinesPages", testListMachinesPages},
		{"ListMachinesPageLimits", testListMachinesPageLimits},
		{"CountMachinesByStatus", testCountMachinesByStatus},
		{"UpdateMachineTags", testUpdateMachineTags},
		{"BumpGenerations", testBumpGenerations},
		{"BumpGenerationsLargeBatch", testBumpGenerationsLargeBatch},
		{"UpdateMachineReport", testUpdateMachineReport},
		{"RecordAppliedGenerations", testRecordAppliedGenerations},
		{"UpdateMachineCert", testUpdateMachineCert},
		{"RecordHeartbeats", testRecordHeartbeats},
		{"RecordHeartbeatsLargeBatch", testRecordHeartbeatsLargeBatch},
		{"MarkStale", testMarkStale},
		{"Users", testUsers},
		{"CreateUserWithGrants", testCreateUserWithGrants},
		{"ServicePrincipals", testServicePrincipals},
		{"APITokens", testAPITokens},
		{"DeletePrincipalTakesItsGrants", testDeletePrincipalTakesItsGrants},
		{"DeviceCodes", testDeviceCodes},
		{"DeviceCodeConsumedOnce", testDeviceCodeConsumedOnce},
		{"RoleDefinitions", testRoleDefinitions},
		{"RoleAssignments", testRoleAssignments},
		{"Activity", testActivity},
		{"ActivityFilters", testActivityFilters},
		{"ActivityPages", testActivityPages},
		{"ActivityIsAppendOnly", testActivityIsAppendOnly},
		{"ActivityChain", testActivityChain},
		{"ActivityChainConcurrentSealers", testActivityChainConcurrentSealers},
		{"Publishers", testPublishers},
		{"Packages", testPackages},
		{"PackagePages", testPackagePages},
		{"Catalogs", testCatalogs},
		{"MachineExtensions", testMachineExtensions},
		{"MachineExtensionReports", testMachineExtensionReports},
		{"MachineExtensionReportOutcomes", testMachineExtensionReportOutcomes},
		{"MachineExtensionReportsTogether", testMachineExtensionReportsTogether},
		{"MachineExtensionsGoWithMachine", testMachineExtensionsGoWithMachine},
		{"AddMachineExtensions", testAddMachineExtensions},
		{"PolicyDefinitionsAndAssignments", testPolicyDefinitionsAndAssignments},
		{"PolicyStates", testPolicyStates},
		{"RunCommands", testRunCommands},
		{"RunCommandUpdates", testRunCommandUpdates},
		{"RunCommandExpiry", testRunCommandExpiry},
		{"BulkOperations", testBulkOperations},
		{"BulkLargeChunk", testBulkLargeChunk},
		{"UpdateAssessments", testUpdateAssessments},
		{"UpdateRuns", testUpdateRuns},
		{"UpdateSchedules", testUpdateSchedules},
		{"JITPolicies", testJITPolicies},
		{"MachineIDsInScope", testMachineIDsInScope},
		{"JITGrants", testJITGrants},
		{"MachineAccess", testMachineAccess},
		{"SSHSessions", testSSHSessions},
		{"Times", testTimes},
		{"DeleteScopeTakesItsAssignments", testDeleteScopeTakesItsAssignments},
		{"MachinesCreatedBy", testMachinesCreatedBy},
		{"DeviceCodePurge", testDeviceCodePurge},
		{"ActivityRetention", testActivityRetention},
		{"WriteProbe", testWriteProbe},
		{"Bootstrapped", testBootstrapped},
		{"MarkBootstrapped", testMarkBootstrapped},
		{"RunCommandProtectedParameters", testRunCommandProtectedParameters},
		{"PageLimitsEveryList", testPageLimitsEveryList},
		{"ConcurrentWrites", testConcurrentWrites},
		{"Close", testClose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
	for _, tc := range protectionTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// t0 is the suite's fixed "now", with milliseconds to check precision.
var t0 = time.Date(2026, 11, 24, 8, 30, 15, 123_000_000, time.UTC)

// diffOpts treat nil and empty maps and slices alike (the store may return
// either, consistently) and compare times with Equal.
var diffOpts = []cmp.Option{cmpopts.EquateEmpty()}

func ok(t *testing.T, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

// isErr checks that err wraps target.
func isErr(t *testing.T, err, target error, what string, args ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", fmt.Sprintf(what, args...), err, target)
	}
}

func diff(t *testing.T, got, want any, what string, args ...any) {
	t.Helper()
	if d := cmp.Diff(want, got, diffOpts...); d != "" {
		t.Errorf("%s: mismatch (-want +got):\n%s", fmt.Sprintf(what, args...), d)
	}
}

// seedGroups creates subscriptions and resource groups from "sub/rg" paths.
func seedGroups(t *testing.T, s store.Store, paths ...string) {
	t.Helper()
	ctx := t.Context()
	for _, p := range paths {
		sub, rg, _ := strings.Cut(p, "/")
		err := s.CreateSubscription(ctx, store.Subscription{Name: sub, DisplayName: sub, CreatedAt: t0, CreatedBy: "seed"})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			t.Fatalf("create subscription %q: %v", sub, err)
		}
		if rg != "" {
			ok(t, s.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: sub, Name: rg, CreatedAt: t0, CreatedBy: "seed"}),
				"create resource group %q", p)
		}
	}
}

// machine returns a fully populated machine at "sub/rg/name" with id.
func machine(id, path string) store.Machine {
	parts := strings.SplitN(path, "/", 3)
	return store.Machine{
		ID: id, Subscription: parts[0], ResourceGroup: parts[1], Name: parts[2],
		Tags:   map[string]string{"env": "prod"},
		Status: wire.StatusConnected, LastHeartbeat: t0, AgentVersion: "1.0.0",
		Environment: wire.EnvAWS, OSName: "ubuntu",
		Properties:  []byte(`{"hostname":"` + parts[2] + `"}`),
		AgentConfig: []byte(`{"extensions":{"allow":["*"]}}`),
		CertSerial:  "1234567890123456789", CertNotAfter: t0.Add(90 * 24 * time.Hour),
		Generation: 1, AppliedGeneration: 0, SealingKey: []byte("0123456789abcdef0123456789abcdef"),
		CreatedAt: t0, CreatedBy: "alice", UpdatedAt: t0,
	}
}

func createMachines(t *testing.T, s store.Store, ms ...store.Machine) {
	t.Helper()
	for _, m := range ms {
		ok(t, s.CreateMachine(t.Context(), m, false), "create machine %s/%s/%s", m.Subscription, m.ResourceGroup, m.Name)
	}
}

func getByID(t *testing.T, s store.Store, id string) store.Machine {
	t.Helper()
	m, err := s.GetMachineByID(t.Context(), id)
	ok(t, err, "get machine %s", id)
	return m
}

// paths renders machines as "rg/name" for compact comparisons.
func paths(ms []store.Machine) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.ResourceGroup+"/"+m.Name)
	}
	return out
}

func sorted(s []string) []string {
	s = append([]string{}, s...)
	sort.Strings(s)
	return s
}

func testSubscriptions(t *testing.T, s store.Store) {
	ctx := t.Context()
	cet := time.FixedZone("CET", 3600)
	prod := store.Subscription{Name: "Prod", DisplayName: "Production", CreatedAt: t0.In(cet), CreatedBy: "alice"}
	ok(t, s.CreateSubscription(ctx, prod), "create subscription")
	isErr(t, s.CreateSubscription(ctx, store.Subscription{Name: "PROD", CreatedAt: t0}), store.ErrConflict, "create a subscription differing only in case")

	got, err := s.GetSubscription(ctx, "prod")
	ok(t, err, "get subscription by other casing")
	prod.CreatedAt = t0
	diff(t, got, prod, "subscription")
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt location = %v, want UTC", got.CreatedAt.Location())
	}
	_, err = s.GetSubscription(ctx, "missing")
	isErr(t, err, store.ErrNotFound, "get missing subscription")

	ok(t, s.CreateSubscription(ctx, store.Subscription{Name: "dev", DisplayName: "Dev", CreatedAt: t0, CreatedBy: "bob"}), "create subscription")
	list, err := s.ListSubscriptions(ctx)
	ok(t, err, "list subscriptions")
	var names []string
	for _, sub := range list {
		names = append(names, sub.Name)
	}
	diff(t, names, []string{"dev", "Prod"}, "subscriptions ordered by name, case-insensitively")
}

func testResourceGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	isErr(t, s.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "nope", Name: "rg", CreatedAt: t0}),
		store.ErrNotFound, "create resource group in a missing subscription")
	seedGroups(t, s, "s1", "s2")

	web := store.ResourceGroup{Subscription: "S1", Name: "Web", Tags: map[string]string{"env": "prod", "cost.center": "42"},
		CreatedAt: t0, CreatedBy: "alice"}
	ok(t, s.CreateResourceGroup(ctx, web), "create resource group")
	isErr(t, s.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "s1", Name: "WEB", CreatedAt: t0}),
		store.ErrConflict, "create resource group differing only in case")
	ok(t, s.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "s2", Name: "web", CreatedAt: t0}),
		"same group name in another subscription")

	got, err := s.GetResourceGroup(ctx, "s1", "wEB")
	ok(t, err, "get resource group by other casing")
	web.Subscription = "s1" // the subscription's stored name
	diff(t, got, web, "resource group")

	ok(t, s.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "s1", Name: "bare", CreatedAt: t0}), "create without tags")
	got, err = s.GetResourceGroup(ctx, "s1", "bare")
	ok(t, err, "get resource group")
	if len(got.Tags) != 0 {
		t.Errorf("tags = %v, want none", got.Tags)
	}

	for _, k := range [][2]string{{"s1", "missing"}, {"missing", "web"}} {
		_, err = s.GetResourceGroup(ctx, k[0], k[1])
		isErr(t, err, store.ErrNotFound, "get resource group %s/%s", k[0], k[1])
	}

	isErr(t, s.DeleteResourceGroup(ctx, "s1", "missing"), store.ErrNotFound, "delete missing resource group")
	createMachines(t, s, machine("m1", "s1/Web/vm1"))
	isErr(t, s.DeleteResourceGroup(ctx, "s1", "web"), store.ErrNotEmpty, "delete resource group holding a machine")
	ok(t, s.DeleteMachine(ctx, "m1"), "delete machine")
	ok(t, s.DeleteResourceGroup(ctx, "S1", "WEB"), "delete empty resource group by other casing")
	_, err = s.GetResourceGroup(ctx, "s1", "web")
	isErr(t, err, store.ErrNotFound, "get deleted resource group")
	_, err = s.GetResourceGroup(ctx, "s2", "web")
	ok(t, err, "the other subscription's group survives")
}

func listGroupNames(t *testing.T, s store.Store, sub string, p store.Page) []string {
	t.Helper()
	gs, err := s.ListResourceGroups(t.Context(), sub, p)
	ok(t, err, "list resource groups %+v", p)
	names := []string{}
	for _, g := range gs {
		names = append(names, g.Name)
	}
	return names
}

func testResourceGroupPages(t *testing.T, s store.Store) {
	seedGroups(t, s, "s1/b", "s1/A", "s1/c", "s1/D", "s1/e", "s1/F", "s1/g", "other/aa")

	diff(t, listGroupNames(t, s, "s1", store.Page{}), []string{"A", "b", "c", "D", "e", "F", "g"}, "all groups, by name case-insensitively")
	diff(t, listGroupNames(t, s, "S1", store.Page{Limit: 3}), []string{"A", "b", "c"}, "page 1")
	diff(t, listGroupNames(t, s, "s1", store.Page{After: "c", Limit: 3}), []string{"D", "e", "F"}, "page 2")
	diff(t, listGroupNames(t, s, "s1", store.Page{After: "F", Limit: 3}), []string{"g"}, "page 3")
	diff(t, listGroupNames(t, s, "s1", store.Page{After: "g", Limit: 3}), []string{}, "past the end")
	diff(t, listGroupNames(t, s, "s1", store.Page{After: "C", Limit: 2}), []string{"D", "e"}, "After compares case-insensitively")
	diff(t, listGroupNames(t, s, "s1", store.Page{After: "bb", Limit: 2}), []string{"c", "D"}, "After need not exist")
	diff(t, listGroupNames(t, s, "missing", store.Page{}), []string{}, "missing subscription lists nothing")
}

func testResourceGroupPageLimits(t *testing.T, s store.Store) {
	seedGroups(t, s, "big")
	for i := range 1001 {
		ok(t, s.CreateResourceGroup(t.Context(), store.ResourceGroup{Subscription: "big", Name: fmt.Sprintf("rg-%04d", i), CreatedAt: t0}),
			"create group %d", i)
	}
	// At most one more than the largest API page: the one more tells a
	// full page of 1,000 whether another follows.
	for _, tc := range []struct{ limit, want int }{{0, 100}, {-5, 100}, {1, 1}, {1000, 1000}, {1001, 1001}, {50000, 1001}} {
		if got := len(listGroupNames(t, s, "big", store.Page{Limit: tc.limit})); got != tc.want {
			t.Errorf("Limit %d: got %d groups, want %d", tc.limit, got, tc.want)
		}
	}
}

// testActivityIsAppendOnly keeps implementations honest: nothing on the
// store may edit or remove activity entries.
func testActivityIsAppendOnly(t *testing.T, s store.Store) {
	typ := reflect.TypeOf(s)
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		// Retention exports the oldest entries (ListActivityBefore) and
		// then purges that prefix (PurgeActivity); sealing (SealActivity)
		// sets an entry's place in the chain only; nothing else may change
		// or remove an entry.
		if strings.Contains(name, "Activity") && name != "AppendActivity" && name != "ListActivity" &&
			name != "ListActivityBefore" && name != "PurgeActivity" &&
			name != "SealActivity" && name != "ActivityChain" && name != "ListActivityChain" {
			t.Errorf("%v has method %s: the activity log is append-only", typ, name)
		}
	}
}

func testTimes(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	local := time.FixedZone("UTC-7", -7*3600)
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, local)
	m := machine("m1", "s1/rg/vm")
	m.LastHeartbeat, m.CertNotAfter, m.CreatedAt, m.UpdatedAt = time.Time{}, at, at, at.Add(time.Millisecond)
	createMachines(t, s, m)
	got := getByID(t, s, "m1")
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{
		{"LastHeartbeat", got.LastHeartbeat, time.Time{}},
		{"CertNotAfter", got.CertNotAfter, at},
		{"CreatedAt", got.CreatedAt, at},
		{"UpdatedAt", got.UpdatedAt, at.Add(time.Millisecond)},
	} {
		if !f.got.Equal(f.want) {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
		if f.got.Location() != time.UTC {
			t.Errorf("%s location = %v, want UTC", f.name, f.got.Location())
		}
	}
	if !got.LastHeartbeat.IsZero() {
		t.Errorf("zero LastHeartbeat came back as %v", got.LastHeartbeat)
	}
	// Stored times order correctly around the zero time and before 1970.
	old := machine("m2", "s1/rg/old")
	old.LastHeartbeat = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	createMachines(t, s, old)
	ms, err := s.ListMachines(ctx, store.MachineFilter{Subscription: "s1"})
	ok(t, err, "list machines")
	if len(ms) != 2 {
		t.Fatalf("got %d machines, want 2", len(ms))
	}
	ids, err := s.MarkStale(ctx, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{})
	ok(t, err, "mark stale")
	diff(t, sorted(ids), []string{"m1", "m2"}, "machines with heartbeats before 1970 are stale")
}

func testConcurrentWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	seedGroups(t, s, "s1/rg")
	const workers, each = 16, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("m-%02d-%02d", w, i)
				if err := s.CreateMachine(ctx, machine(id, "s1/rg/"+id), false); err != nil {
					errs <- err
					continue
				}
				if err := s.RecordHeartbeats(ctx, []store.Heartbeat{{MachineID: id, At: t0.Add(time.Minute)}}); err != nil {
					errs <- err
				}
				e := store.ActivityEntry{ID: id, Time: t0, Action: "write", Scope: "/", Result: wire.ResultSucceeded}
				if err := s.AppendActivity(ctx, e); err != nil {
					errs <- err
				}
				if _, err := s.ListMachines(ctx, store.MachineFilter{Subscription: "s1", Page: store.Page{Limit: 5}}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write: %v", err)
	}
	counts, err := s.CountMachinesByStatus(ctx)
	ok(t, err, "count machines")
	diff(t, counts, map[string]int{wire.StatusConnected: workers * each}, "machines after concurrent writes")
}

func testClose(t *testing.T, s store.Store) {
	ok(t, s.Ping(t.Context()), "ping")
	ok(t, s.Close(), "close")
	if err := s.Ping(t.Context()); err == nil {
		t.Error("Ping after Close succeeded")
	}
	if _, err := s.ListSubscriptions(context.Background()); err == nil {
		t.Error("ListSubscriptions after Close succeeded")
	}
	if err := s.CreateSubscription(context.Background(), store.Subscription{Name: "x", CreatedAt: t0}); err == nil {
		t.Error("CreateSubscription after Close succeeded")
	}
}
