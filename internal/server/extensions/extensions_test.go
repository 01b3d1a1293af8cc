package extensions_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/sqlite"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

type notifier struct {
	mu   sync.Mutex
	gens map[string]int64
}

func (n *notifier) Goodbye(context.Context, string, string) {}

func (n *notifier) Notify(_ context.Context, id string, gen int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gens == nil {
		n.gens = map[string]int64{}
	}
	n.gens[id] = gen
}

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

type env struct {
	st     store.Store
	svc    *extensions.Service
	reg    *capability.Registry // the seam with svc registered
	n      *notifier
	ref    resource.MachineRef
	sealPv []byte
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "corral.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.CreateSubscription(ctx, store.Subscription{Name: "default", CreatedAt: t0}); err != nil {
		tb.Fatal(err)
	}
	if err := st.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "default", Name: "rg", CreatedAt: t0}); err != nil {
		tb.Fatal(err)
	}
	priv, pub, err := sealing.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	m := store.Machine{ID: "m-1", Subscription: "default", ResourceGroup: "rg", Name: "vm", Status: wire.StatusConnected,
		Generation: 1, SealingKey: pub, CreatedAt: t0, UpdatedAt: t0}
	if err := st.CreateMachine(ctx, m, false); err != nil {
		tb.Fatal(err)
	}
	n := &notifier{}
	clock := func() time.Time { return t0 }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := extensions.New(st, n, clock, log)
	reg := capability.NewRegistry(log, nil)
	reg.Register(svc)
	return &env{st: st, svc: svc, reg: reg, n: n, ref: resource.MachineRef{Subscription: "default", ResourceGroup: "rg", Name: "vm"}, sealPv: priv}
}

// publish registers publisher pub with a new key and publishes and lists
// the given types at version 1.0.0; it returns the key.
func (e *env) publish(tb testing.TB, pub string, types ...string) ed25519.PrivateKey {
	tb.Helper()
	ctx := context.Background()
	pk, sk, _ := ed25519.GenerateKey(rand.Reader)
	if _, _, err := e.svc.CreatePublisher(ctx, pub, pk, "admin"); err != nil {
		tb.Fatal(err)
	}
	c := wire.Catalog{Publisher: pub, Serial: 1, IssuedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}
	for _, typ := range types {
		archive, err := extpkg.BuildArchive(&wire.ExtensionManifest{Publisher: pub, Type: typ, Version: "1.0.0",
			Handlers: wire.ExtensionHandlers{Install: "./i", Enable: "./e"}}, extpkg.File{Name: "i", Body: []byte("#!/bin/sh\n"), Mode: 0o755})
		if err != nil {
			tb.Fatal(err)
		}
		p, _, err := e.svc.PublishPackage(ctx, pub, archive, "admin")
		if err != nil {
			tb.Fatal(err)
		}
		c.Packages = append(c.Packages, wire.CatalogEntry{Type: p.Type, Version: p.Version, Digest: p.Digest, Size: p.Size})
	}
	sc, err := extpkg.SignCatalog(sk, c)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.svc.PutCatalog(ctx, pub, sc, "admin"); err != nil {
		tb.Fatal(err)
	}
	return sk
}

func TestEnsureFirstPartyIsIdempotentAndPinsTheKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for range 2 {
		if err := e.svc.EnsureFirstParty(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	sc, err := e.svc.GetCatalog(ctx, wire.PublisherCorral)
	if err != nil {
		t.Fatal(err)
	}
	c, err := extpkg.VerifyCatalog(key.Public().(ed25519.PublicKey), wire.PublisherCorral, sc)
	if err != nil || c.Serial != 1 || len(c.Packages) != len(extensions.FirstParty) {
		t.Fatalf("first-party catalog %+v: %v (a second start must not re-sign)", c, err)
	}
	pkgs, err := e.svc.ListPackages(ctx, extensions.PackageFilter{Publisher: wire.PublisherCorral})
	if err != nil || len(pkgs) != len(extensions.FirstParty) || !pkgs[0].Listed ||
		pkgs[len(pkgs)-1].Manifest.Handlers.Install != "builtin:runcommand" {
		t.Fatalf("first-party packages %+v: %v", pkgs, err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if err := e.svc.EnsureFirstParty(ctx, other); err == nil || !strings.Contains(err.Error(), "--extension-signing-key") {
		t.Errorf("another key: %v", err)
	}
}

func TestSetSealsAndRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.publish(t, "Contoso", "Agent")
	req := wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", ProtectedSettings: json.RawMessage(`{"k":"secret"}`)}
	buf := req.ProtectedSettings
	res, err := e.svc.SetExtension(ctx, e.ref, "a", req, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(buf), "secret") {
		t.Error("the plaintext buffer was not cleared")
	}
	if res.Summary() != "install Contoso/Agent 1.0.0" || !res.Created || e.n.gens["m-1"] != 2 {
		t.Errorf("result %+v, notified %v", res, e.n.gens)
	}
	m, _ := e.st.GetMachine(ctx, "default", "rg", "vm")
	ds, err := e.reg.DesiredState(ctx, m)
	if err != nil || len(ds.Extensions) != 1 {
		t.Fatalf("desired %+v: %v", ds, err)
	}
	pt, err := sealing.Open(e.sealPv, extensions.SealingAAD("m-1", "a", "Contoso", "Agent"), ds.Extensions[0].ProtectedSettings)
	if err != nil || string(pt) != `{"k":"secret"}` {
		t.Errorf("open: %q %v", pt, err)
	}

	// Concurrent sets of one extension all succeed with distinct seqNos.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			_, err := e.svc.SetExtension(ctx, e.ref, "a", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent",
				Settings: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}, "admin")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent set: %v", err)
		}
	}
	got, err := e.svc.GetExtension(ctx, e.ref, "a")
	if err != nil || got.SeqNo != res.Extension.SeqNo+8 || !got.HasProtectedSettings {
		t.Errorf("after 8 concurrent updates: %+v %v", got, err)
	}
}

func TestErrorsAreTyped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	_, err := e.svc.SetExtension(ctx, e.ref, "a", wire.MachineExtensionSet{Publisher: "Nobody", Type: "X"}, "admin")
	var ee *refusal.Error
	if !errors.As(err, &ee) || !errors.Is(err, refusal.ErrNotFound) {
		t.Errorf("unknown publisher: %v", err)
	}
	_, err = e.svc.SetExtension(ctx, e.ref, "a", wire.MachineExtensionSet{Publisher: "Contoso", Type: "X", Settings: json.RawMessage(`"s"`)}, "admin")
	if !errors.Is(err, refusal.ErrInvalid) || !errors.As(err, &ee) || ee.Target != "settings" {
		t.Errorf("settings not an object: %v", err)
	}
	if _, err := e.svc.ApplyExtensionReport(ctx, store.Machine{ID: "m-1"}, wire.ExtensionStatus{Name: "a", State: "Bogus"}, t0); !errors.Is(err, refusal.ErrInvalid) {
		t.Errorf("bogus report state: %v", err)
	}
	// Text PostgreSQL refuses (NUL, invalid UTF-8) is malformed, not a store error.
	for _, st := range []wire.ExtensionStatus{{Name: "a\x00", State: wire.ExtFailed}, {Name: "a", Version: "1.0\xff", State: wire.ExtFailed}} {
		if _, err := e.svc.ApplyExtensionReport(ctx, store.Machine{ID: "m-1"}, st, t0); !errors.Is(err, refusal.ErrInvalid) {
			t.Errorf("report %q: %v", st.Name+st.Version, err)
		}
	}
	if _, err := e.svc.ApplyRunCommandReport(ctx, "m-1", wire.RunCommandResult{Name: "r\x00", State: wire.RunRunning}, t0); !errors.Is(err, refusal.ErrInvalid) {
		t.Errorf("run report with NUL: %v", err)
	}
}

// BenchmarkDesiredState20 measures what a sync costs the control plane for a
// machine with 20 extensions from two publishers: assembling the desired
// state from the store (SQLite), and verifying a 20-entry catalog as the
// agent (and the server on upload) does.
func BenchmarkDesiredState20(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	var types []string
	for i := range 10 {
		types = append(types, fmt.Sprintf("Type%02d", i))
	}
	e.publish(b, "Contoso", types...)
	e.publish(b, "Fabrikam", types...)
	for i := range 20 {
		pub := []string{"Contoso", "Fabrikam"}[i%2]
		_, err := e.svc.SetExtension(ctx, e.ref, fmt.Sprintf("ext-%02d", i), wire.MachineExtensionSet{Publisher: pub, Type: types[i/2],
			Settings: json.RawMessage(`{"level":3,"endpoint":"https://example.net/ingest"}`), ProtectedSettings: json.RawMessage(`{"key":"0123456789abcdef"}`)}, "admin")
		if err != nil {
			b.Fatal(err)
		}
	}
	m, err := e.st.GetMachine(ctx, "default", "rg", "vm")
	if err != nil {
		b.Fatal(err)
	}
	sc, err := e.svc.GetCatalog(ctx, "Contoso")
	if err != nil {
		b.Fatal(err)
	}
	pub, err := e.svc.GetPublisher(ctx, "Contoso")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("DesiredState", func(b *testing.B) {
		for b.Loop() {
			ds, err := e.reg.DesiredState(ctx, m)
			if err != nil || len(ds.Extensions) != 20 || len(ds.Publishers) != 2 {
				b.Fatalf("%d extensions, %d publishers: %v", len(ds.Extensions), len(ds.Publishers), err)
			}
		}
	})
	b.Run("DesiredStateJSON", func(b *testing.B) {
		for b.Loop() {
			ds, err := e.reg.DesiredState(ctx, m)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(ds); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("VerifyCatalog", func(b *testing.B) {
		for b.Loop() {
			c, err := extpkg.VerifyCatalog(pub.PublicKey, "Contoso", sc)
			if err != nil || len(c.Packages) != 10 {
				b.Fatal(err)
			}
		}
	})
	b.Run("SetExtension", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			_, err := e.svc.SetExtension(ctx, e.ref, "ext-00", wire.MachineExtensionSet{Publisher: "Contoso", Type: types[0],
				Settings: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), ProtectedSettings: json.RawMessage(`{"key":"0123456789abcdef"}`)}, "admin")
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// reportsDuringDelete is a store in which the agent's first report on an
// extension lands between DeleteExtension reading it and removing it.
type reportsDuringDelete struct {
	store.Store
}

func (s reportsDuringDelete) DeleteMachineExtension(ctx context.Context, machineID, name string) (int64, error) {
	cur, err := s.GetMachineExtension(ctx, machineID, name)
	if err != nil {
		return 0, err
	}
	if _, err := s.ReportMachineExtensions(ctx, []store.ExtensionReportOn{{MachineID: machineID, Name: name, SeqNo: cur.SeqNo,
		ExtensionReport: store.ExtensionReport{Version: "1.0.0", State: wire.ExtCreating, At: t0}}}); err != nil {
		return 0, err
	}
	return s.Store.DeleteMachineExtension(ctx, machineID, name)
}

// An extension is dropped at once only if the agent never reported on it;
// if its first report arrives while the delete is under way, the agent may
// be installing it, so it stays Deleting until the agent confirms removal.
func TestDeleteRacingTheFirstReportWaitsForTheAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.publish(t, "Contoso", "Agent")
	if _, err := e.svc.SetExtension(ctx, e.ref, "a", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}, "admin"); err != nil {
		t.Fatal(err)
	}
	svc := extensions.New(reportsDuringDelete{e.st}, e.n, func() time.Time { return t0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	got, err := svc.DeleteExtension(ctx, e.ref, "a", "admin")
	if err != nil || got.State != wire.ExtDeleting {
		t.Fatalf("delete: %+v %v", got, err)
	}
	after, err := e.svc.GetExtension(ctx, e.ref, "a")
	if err != nil || after.State != wire.ExtDeleting {
		t.Errorf("after a delete that raced the agent's first report: %+v %v; want it kept, Deleting, until the agent removes it", after, err)
	}
	m, _ := e.st.GetMachine(ctx, "default", "rg", "vm")
	if ds, _ := e.reg.DesiredState(ctx, m); len(ds.Extensions) != 0 {
		t.Errorf("the deleted extension is still desired: %+v", ds.Extensions)
	}
}

type outcomes struct {
	mu  sync.Mutex
	got []capability.Outcome
}

func (o *outcomes) RecordOutcome(_ context.Context, oc capability.Outcome) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, oc)
	return nil
}

// OutcomeEntry records oc too: the store writes the entry in the
// transaction of the state change it reports.
func (o *outcomes) OutcomeEntry(oc capability.Outcome) store.ActivityEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, oc)
	return store.ActivityEntry{ID: fmt.Sprintf("outcome-%d", len(o.got)), Time: oc.At, Caller: oc.Origin.Caller, Action: oc.Origin.Action,
		Scope: oc.Scope, Result: oc.Result, Message: oc.Message, CorrelationID: oc.Origin.CorrelationID, Method: "AGENT", Path: "outcome"}
}

// outcomeEnv is an env whose outcomes are recorded, with a context of a
// request by alice to run commands.
func outcomeEnv(t *testing.T) (*env, *outcomes, capability.Origin, context.Context) {
	t.Helper()
	e := newEnv(t)
	rec := &outcomes{}
	e.svc.LogOutcomes(rec)
	origin := capability.Origin{CorrelationID: "corr-1", Caller: "alice", CallerType: "User", Action: "machines/runCommands/write"}
	return e, rec, origin, capability.WithOrigin(t.Context(), origin)
}

// A run the machine never started is failed by the sweep, and that end is
// in the activity log as a Failed outcome, in the requester's name and
// linked to the request, like any run the machine reported.
func TestExpiredRunIsAFailedOutcome(t *testing.T) {
	t.Parallel()
	e, rec, origin, ctx := outcomeEnv(t)
	if _, err := e.svc.CreateRunCommand(ctx, e.ref, "late", wire.RunCommandCreate{Command: "true", Timeout: wire.Duration(time.Minute)}, "alice"); err != nil {
		t.Fatal(err)
	}
	gens, err := e.svc.ExpireRuns(t.Context(), t0.Add(time.Hour), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != 1 || gens["m-1"] == 0 {
		t.Errorf("generations %v, want m-1's new one", gens)
	}
	if len(rec.got) != 1 {
		t.Fatalf("outcomes %+v, want one", rec.got)
	}
	o := rec.got[0]
	if o.Result != wire.ResultFailed || o.Origin != origin || !strings.Contains(o.Message, store.RunNotStartedMessage) || !strings.HasSuffix(o.Scope, "/runCommands/late") {
		t.Errorf("outcome %+v", o)
	}
	// A second sweep finds nothing and logs nothing more.
	if _, err := e.svc.ExpireRuns(t.Context(), t0.Add(2*time.Hour), 2*time.Minute); err != nil || len(rec.got) != 1 {
		t.Errorf("second sweep: %v, outcomes %d", err, len(rec.got))
	}
}

// A run's final state is applied, then the replica that applied it dies
// before logging the outcome; the agent sends the report again: the
// outcome is asked for Once (logged unless it already is), and a first
// application is not.
func TestRunReportDeliveredAgainAsksForItsOutcomeOnce(t *testing.T) {
	t.Parallel()
	e, rec, _, ctx := outcomeEnv(t)
	for _, name := range []string{"first", "crashed"} {
		if _, err := e.svc.CreateRunCommand(ctx, e.ref, name, wire.RunCommandCreate{Command: "true", Timeout: wire.Duration(time.Hour)}, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	code := 0
	done := wire.RunCommandResult{State: wire.RunSucceeded, ExitCode: &code, Stdout: "ok"}
	// "crashed": the state was stored by a replica that died before the outcome.
	if _, err := e.st.UpdateRunCommand(t.Context(), "m-1", "crashed", store.RunCommandUpdate{State: wire.RunSucceeded, ExitCode: &code, At: t0, FinishedAt: t0}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "crashed", "first"} {
		r := done
		r.Name = name
		if _, err := e.svc.ApplyRunCommandReport(t.Context(), "m-1", r, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, o := range rec.got {
		got = append(got, fmt.Sprintf("%s once=%v", o.Scope[strings.LastIndex(o.Scope, "/")+1:], o.Once))
	}
	if want := []string{"first once=false", "crashed once=true", "first once=true"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
}

// gatedReports is a store whose report calls wait at gate.
type gatedReports struct {
	store.Store
	gate *testutil.Gate
}

func (g gatedReports) ReportMachineExtensions(ctx context.Context, rs []store.ExtensionReportOn) ([]bool, error) {
	g.gate.Enter(len(rs))
	return g.Store.ReportMachineExtensions(ctx, rs)
}

// Agents reporting at the same time have their reports applied together
// (a few store calls, not one each), and each agent still gets its own
// answer: applied, not applied (stale, unknown), with its outcome logged.
func TestExtensionReportsApplyTogether(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 40
	for i := range n {
		id := fmt.Sprint("m-", i+2)
		if err := e.st.CreateMachine(t.Context(), store.Machine{ID: id, Subscription: "default", ResourceGroup: "rg", Name: fmt.Sprint("vm", i+2),
			Status: wire.StatusConnected, Generation: 1, CreatedAt: t0, UpdatedAt: t0}, false); err != nil {
			t.Fatal(err)
		}
		x := store.MachineExtension{MachineID: id, Name: "agent", Publisher: "Contoso", Type: "Agent", Version: "1.0.0", SeqNo: 7,
			State: wire.ExtCreating, CreatedAt: t0, UpdatedAt: t0}
		if _, err := e.st.PutMachineExtension(t.Context(), x, 0); err != nil {
			t.Fatal(err)
		}
	}
	gate := testutil.NewGate(t)
	svc := extensions.New(gatedReports{e.st, gate}, e.n, func() time.Time { return t0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := &outcomes{}
	svc.LogOutcomes(rec)
	// Machine i reports Succeeded on "agent" at SeqNo 7; the last two
	// report a stale SeqNo and an unknown name.
	applied := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			st := wire.ExtensionStatus{Name: "agent", SeqNo: 7, Operation: "install", State: wire.ExtSucceeded, Version: "1.0.0"}
			switch i {
			case n - 2:
				st.SeqNo = 6
			case n - 1:
				st.Name = "other"
			}
			m := store.Machine{ID: fmt.Sprint("m-", i+2), Subscription: "default", ResourceGroup: "rg", Name: fmt.Sprint("vm", i+2)}
			var err error
			if applied[i], err = svc.ApplyExtensionReport(t.Context(), m, st, t0); err != nil {
				t.Errorf("machine %s: %v", m.ID, err)
			}
		})
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		if _, reports := gate.Counts(); reports+svc.ReportsWaiting() != n {
			return fmt.Sprintf("%d reports at the store, %d waiting, of %d", reports, svc.ReportsWaiting(), n)
		}
		return ""
	})
	gate.Release()
	wg.Wait()
	if calls, reports := gate.Counts(); reports != n || calls >= n/2 {
		t.Errorf("%d reports in %d store calls, want them applied together", reports, calls)
	}
	for i, ok := range applied {
		if want := i < n-2; ok != want {
			t.Errorf("machine m-%d: applied %v, want %v", i+2, ok, want)
		}
	}
	if len(rec.got) != n-2 {
		t.Errorf("%d outcomes, want %d", len(rec.got), n-2)
	}
	entries, err := e.st.ListActivity(t.Context(), store.ActivityFilter{})
	if err != nil || len(entries) != n-2 {
		t.Errorf("%d activity entries (%v), want the %d outcomes", len(entries), err, n-2)
	}
}
