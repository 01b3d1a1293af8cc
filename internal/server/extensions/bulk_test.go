package extensions_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// addMachines adds n machines vm-i to resource group rg with tags.
func (e *env) addMachines(tb testing.TB, rg string, n int, tags map[string]string) []store.Machine {
	tb.Helper()
	ctx := context.Background()
	if err := e.st.CreateResourceGroup(ctx, store.ResourceGroup{Subscription: "default", Name: rg, CreatedAt: t0}); err != nil &&
		!errors.Is(err, store.ErrConflict) {
		tb.Fatal(err)
	}
	var out []store.Machine
	for i := range n {
		m := store.Machine{ID: fmt.Sprintf("%s-%03d", rg, i), Subscription: "default", ResourceGroup: rg, Name: fmt.Sprintf("vm-%03d", i),
			Tags: tags, Status: wire.StatusConnected, Generation: 1, SealingKey: e.sealKey(tb), CreatedAt: t0, UpdatedAt: t0}
		if err := e.st.CreateMachine(ctx, m, false); err != nil {
			tb.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func (e *env) sealKey(tb testing.TB) []byte {
	m, err := e.st.GetMachineByID(context.Background(), "m-1")
	if err != nil {
		tb.Fatal(err)
	}
	return m.SealingKey
}

// report applies one agent report of machine id.
func (e *env) report(tb testing.TB, id, kind string, body any) {
	tb.Helper()
	ctx := context.Background()
	m, err := e.st.GetMachineByID(ctx, id)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(body)
	if _, err := e.reg.ApplyReports(ctx, m, []wire.Report{{ID: id + kind + string(b), Kind: kind, TakenAt: t0, Body: b}}, t0); err != nil {
		tb.Fatal(err)
	}
}

func (e *env) bulkMachines(tb testing.TB, id, result string) []wire.BulkMachineResult {
	tb.Helper()
	var out []wire.BulkMachineResult
	p := store.Page{Limit: 7}
	for {
		page, err := e.svc.ListBulkMachines(context.Background(), "default", id, result, p)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, page.Items...)
		if page.After == "" {
			return out
		}
		p.After = page.After
	}
}

func ref(m store.Machine) resource.MachineRef {
	return resource.MachineRef{Subscription: m.Subscription, ResourceGroup: m.ResourceGroup, Name: m.Name}
}

func totals(t *testing.T, e *env, id string, want wire.BulkTotals) wire.BulkOperation {
	t.Helper()
	op, err := e.svc.GetBulkOperation(context.Background(), "default", id)
	if err != nil {
		t.Fatal(err)
	}
	if op.Totals != want {
		t.Errorf("totals %+v, want %+v", op.Totals, want)
	}
	if op.Done != (want.Pending == 0) {
		t.Errorf("done %v with totals %+v", op.Done, op.Totals)
	}
	return op
}

func TestBulkExtensionSet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.publish(t, "Contoso", "Agent")
	e.publish(t, "Fabrikam", "Other")
	prod := e.addMachines(t, "web", 20, map[string]string{"env": "prod"})
	e.addMachines(t, "dev", 5, map[string]string{"env": "dev"})
	expired := store.Machine{ID: "web-exp", Subscription: "default", ResourceGroup: "web", Name: "old", Tags: map[string]string{"env": "prod"},
		Status: wire.StatusExpired, Generation: 1, CreatedAt: t0, UpdatedAt: t0}
	if err := e.st.CreateMachine(ctx, expired, false); err != nil {
		t.Fatal(err)
	}
	// prod[0] uses the name for another extension.
	if _, err := e.svc.SetExtension(ctx, ref(prod[0]), "agent", wire.MachineExtensionSet{Publisher: "Fabrikam", Type: "Other"}, "admin"); err != nil {
		t.Fatal(err)
	}
	e.n.gens = nil

	req := wire.BulkOperationCreate{Kind: "extensionset", Tag: "env=prod", Name: "agent", Extension: &wire.MachineExtensionSet{
		Publisher: "Contoso", Type: "Agent", Settings: json.RawMessage(`{"level":2}`), ProtectedSettings: json.RawMessage(`{"k":"secret"}`)}}
	buf := req.Extension.ProtectedSettings
	op, err := e.svc.CreateBulkOperation(ctx, "default", req, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(buf), "secret") {
		t.Error("the plaintext protected settings were not cleared")
	}
	if op.Kind != wire.BulkExtensionSet || op.Machines != 20 || op.Scope != "/subscriptions/default" || op.Version != "1.0.0" ||
		op.Totals != (wire.BulkTotals{Pending: 19, Failed: 1}) || op.Done {
		t.Fatalf("operation %+v", op)
	}
	if len(e.n.gens) != 19 {
		t.Errorf("%d machines notified, want 19: %v", len(e.n.gens), e.n.gens)
	}
	for _, m := range prod[1:] {
		if e.n.gens[m.ID] != 2 {
			t.Errorf("machine %s notified of generation %d, want 2 (one bump)", m.ID, e.n.gens[m.ID])
		}
	}
	m5, _ := e.st.GetMachineByID(ctx, prod[5].ID)
	ds, err := e.reg.DesiredState(ctx, m5)
	if err != nil || len(ds.Extensions) != 1 || string(ds.Extensions[0].Settings) != `{"level":2}` {
		t.Fatalf("desired state %+v: %v", ds, err)
	}
	if pt, err := sealing.Open(e.sealPv, extensions.SealingAAD(m5.ID, "agent", "Contoso", "Agent"), ds.Extensions[0].ProtectedSettings); err != nil ||
		string(pt) != `{"k":"secret"}` {
		t.Errorf("protected settings of one machine: %q %v", pt, err)
	}
	failed := e.bulkMachines(t, op.Name, "failed")
	if len(failed) != 1 || failed[0].Name != prod[0].Name || !strings.Contains(failed[0].Message, "Fabrikam/Other") ||
		failed[0].MachineID != prod[0].ResourceID().String() {
		t.Errorf("failed machines %+v", failed)
	}
	if all := e.bulkMachines(t, op.Name, ""); len(all) != 20 {
		t.Errorf("%d machines listed in pages of 7, want 20", len(all))
	}

	// Agents report: one installs it, one refuses it by its lock-down.
	seq := func(m store.Machine) int64 {
		x, err := e.svc.GetExtension(ctx, ref(m), "agent")
		if err != nil {
			t.Fatal(err)
		}
		return x.SeqNo
	}
	st := func(m store.Machine, state, msg string) wire.ExtensionStatus {
		return wire.ExtensionStatus{Name: "agent", Publisher: "Contoso", Type: "Agent", Version: "1.0.0", SeqNo: seq(m), Operation: "install",
			State: state, Message: msg}
	}
	e.report(t, prod[1].ID, wire.ReportExtension, st(prod[1], wire.ExtSucceeded, ""))
	e.report(t, prod[2].ID, wire.ReportExtension, st(prod[2], wire.ExtFailed, "refused by the local configuration: extensions.enabled is false"))
	// A later change of one machine's extension supersedes the operation's.
	if _, err := e.svc.SetExtension(ctx, ref(prod[3]), "agent", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}, "bob"); err != nil {
		t.Fatal(err)
	}
	totals(t, e, op.Name, wire.BulkTotals{Pending: 16, Succeeded: 1, Failed: 2, Superseded: 1})
	failed = e.bulkMachines(t, op.Name, "Failed")
	if len(failed) != 2 || failed[1].State != wire.ExtFailed || !strings.Contains(failed[1].Message+failed[0].Message, "extensions.enabled") {
		t.Errorf("failed machines %+v", failed)
	}
	for _, m := range prod[4:] {
		e.report(t, m.ID, wire.ReportExtension, st(m, wire.ExtSucceeded, ""))
	}
	totals(t, e, op.Name, wire.BulkTotals{Succeeded: 17, Failed: 2, Superseded: 1})

	// The same request again is an update of the machines that have it.
	e.n.gens = nil
	req.Extension.ProtectedSettings = nil
	op2, err := e.svc.CreateBulkOperation(ctx, "default", req, "alice")
	if err != nil || op2.Totals != (wire.BulkTotals{Pending: 19, Failed: 1}) {
		t.Fatalf("second operation %+v: %v", op2, err)
	}
	if x, _ := e.svc.GetExtension(ctx, ref(prod[4]), "agent"); x.State != wire.ExtUpdating || !x.HasProtectedSettings {
		t.Errorf("an update must keep the sealed protected settings: %+v", x)
	}
	if op, _ := e.svc.GetBulkOperation(ctx, "default", op.Name); op.Totals.Superseded != 19 {
		t.Errorf("the first operation after the second: %+v", op.Totals)
	}

	// Delete from one resource group, by name.
	del, err := e.svc.CreateBulkOperation(ctx, "default", wire.BulkOperationCreate{Kind: wire.BulkExtensionDelete, Name: "agent",
		Scope: "/subscriptions/default/resourceGroups/web"}, "alice")
	// prod[0] and prod[3] never reported on theirs: dropped at once.
	if err != nil || del.Machines != 20 || del.Totals != (wire.BulkTotals{Pending: 18, Succeeded: 2}) {
		t.Fatalf("delete %+v: %v", del, err)
	}
	e.report(t, prod[4].ID, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", Publisher: "Contoso", Type: "Agent", SeqNo: seq(prod[4]),
		Operation: "remove", State: wire.ExtSucceeded, Removed: true})
	totals(t, e, del.Name, wire.BulkTotals{Pending: 17, Succeeded: 3})

	// Machines without it are done at once, and get no sync.
	e.n.gens = nil
	none, err := e.svc.CreateBulkOperation(ctx, "default", wire.BulkOperationCreate{Kind: wire.BulkExtensionDelete, Name: "agent",
		Scope: "/subscriptions/default/resourceGroups/dev"}, "alice")
	if err != nil || none.Totals != (wire.BulkTotals{Succeeded: 5}) || !none.Done || len(e.n.gens) != 0 {
		t.Fatalf("delete where it is not: %+v %v, notified %v", none, err, e.n.gens)
	}

	ops, err := e.svc.ListBulkOperations(ctx, "default", store.Page{})
	if err != nil || len(ops.Items) != 4 || ops.Items[0].Name != none.Name {
		t.Errorf("operations %+v: %v", ops.Items, err)
	}
	if _, err := e.svc.GetBulkOperation(ctx, "other", op.Name); !errors.Is(err, refusal.ErrNotFound) {
		t.Errorf("another subscription's operation: %v", err)
	}
}

func TestBulkRunCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	ms := e.addMachines(t, "web", 12, map[string]string{"env": "prod"})
	if _, err := e.svc.CreateRunCommand(ctx, ref(ms[0]), "hello", wire.RunCommandCreate{Command: "true"}, "bob"); err != nil {
		t.Fatal(err)
	}
	e.n.gens = nil
	op, err := e.svc.CreateBulkOperation(ctx, "default", wire.BulkOperationCreate{Kind: wire.BulkRunCommand, Name: "hello",
		Scope: "/subscriptions/default/resourceGroups/web", RunCommand: &wire.RunCommandCreate{Script: "echo $A\n", Parameters: map[string]string{"A": "1"},
			ProtectedParameters: map[string]string{"B": "secret"}}}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if op.Machines != 12 || op.Totals != (wire.BulkTotals{Pending: 11, Failed: 1}) || len(e.n.gens) != 11 {
		t.Fatalf("operation %+v, notified %v", op, e.n.gens)
	}
	code := 0
	e.report(t, ms[1].ID, wire.ReportRunCommand, wire.RunCommandResult{Name: "hello", State: wire.RunSucceeded, ExitCode: &code, Stdout: "1\n"})
	bad := 2
	e.report(t, ms[2].ID, wire.ReportRunCommand, wire.RunCommandResult{Name: "hello", State: wire.RunFailed, ExitCode: &bad})
	e.report(t, ms[3].ID, wire.ReportRunCommand, wire.RunCommandResult{Name: "hello", State: wire.RunRunning})
	totals(t, e, op.Name, wire.BulkTotals{Pending: 9, Succeeded: 1, Failed: 2})
	failed := e.bulkMachines(t, op.Name, "Failed")
	if len(failed) != 2 || !strings.Contains(failed[0].Message, "already exists") || failed[1].ExitCode == nil || *failed[1].ExitCode != 2 {
		t.Errorf("failed machines %+v", failed)
	}
	rc, err := e.svc.GetRunCommand(ctx, ref(ms[5]), "hello")
	if err != nil || rc.State != wire.RunPending || !rc.HasProtectedParameters || rc.Parameters["A"] != "1" {
		t.Errorf("a machine's run %+v: %v", rc, err)
	}
}

func TestBulkRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.publish(t, "Contoso", "Agent")
	e.addMachines(t, "web", 3, map[string]string{"env": "prod"})
	ext := &wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}
	run := &wire.RunCommandCreate{Command: "true"}
	for _, tc := range []struct {
		name string
		req  wire.BulkOperationCreate
		want string
	}{
		{"unknown kind", wire.BulkOperationCreate{Kind: "explode", Name: "a", Extension: ext}, "kind"},
		{"no name", wire.BulkOperationCreate{Kind: "extensionSet", Extension: ext}, "name"},
		{"NUL in the name", wire.BulkOperationCreate{Kind: "extensionSet", Name: "a\x00b", Extension: ext}, "name"},
		{"no extension", wire.BulkOperationCreate{Kind: "extensionSet", Name: "a"}, "extension"},
		{"a run with an extension kind", wire.BulkOperationCreate{Kind: "extensionSet", Name: "a", Extension: ext, RunCommand: run}, "runCommand"},
		{"delete with a spec", wire.BulkOperationCreate{Kind: "extensionDelete", Name: "a", Extension: ext}, "extension"},
		{"no run", wire.BulkOperationCreate{Kind: "runCommand", Name: "a"}, "runCommand"},
		{"empty run", wire.BulkOperationCreate{Kind: "runCommand", Name: "a", RunCommand: &wire.RunCommandCreate{}}, "script"},
		{"unknown extension", wire.BulkOperationCreate{Kind: "extensionSet", Name: "a", Extension: &wire.MachineExtensionSet{Publisher: "Contoso", Type: "Nope"}}, ""},
		{"settings not an object", wire.BulkOperationCreate{Kind: "extensionSet", Name: "a",
			Extension: &wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", Settings: json.RawMessage(`[1]`)}}, "extension.settings"},
		{"scope of another subscription", wire.BulkOperationCreate{Kind: "runCommand", Name: "a", RunCommand: run, Scope: "/subscriptions/other"}, "scope"},
		{"a machine scope", wire.BulkOperationCreate{Kind: "runCommand", Name: "a", RunCommand: run,
			Scope: "/subscriptions/default/resourceGroups/web/machines/vm-000"}, "scope"},
		{"not a scope", wire.BulkOperationCreate{Kind: "runCommand", Name: "a", RunCommand: run, Scope: "web"}, "scope"},
		{"tag without value", wire.BulkOperationCreate{Kind: "runCommand", Name: "a", RunCommand: run, Tag: "env"}, "tag"},
		{"tag with a control character", wire.BulkOperationCreate{Kind: "runCommand", Name: "a", RunCommand: run, Tag: "env=pr\x1bod"}, "tag"},
		{"no machines", wire.BulkOperationCreate{Kind: "runCommand", Name: "a", RunCommand: run, Tag: "env=nowhere"}, "scope"},
		{"an empty resource group", wire.BulkOperationCreate{Kind: "runCommand", Name: "a", RunCommand: run,
			Scope: "/subscriptions/default/resourceGroups/empty"}, "scope"},
	} {
		_, err := e.svc.CreateBulkOperation(ctx, "default", tc.req, "admin")
		var r *refusal.Error
		if !errors.As(err, &r) || (tc.want != "" && r.Target != tc.want) {
			t.Errorf("%s: got %v, want a refusal about %q", tc.name, err, tc.want)
		}
	}
	ops, err := e.svc.ListBulkOperations(ctx, "default", store.Page{})
	if err != nil || len(ops.Items) != 0 {
		t.Errorf("operations stored after bad requests: %+v %v", ops.Items, err)
	}
	if len(e.n.gens) != 0 {
		t.Errorf("syncs pushed after bad requests: %v", e.n.gens)
	}
}

// BenchmarkBulkExtensionSet is one bulk set over 2,000 machines of a
// resource group on SQLite: listing them, the chunked transactions and
// the totals read back.
func BenchmarkBulkExtensionSet(b *testing.B) {
	e := newEnv(b)
	e.publish(b, "Contoso", "Agent")
	e.addMachines(b, "web", 2000, map[string]string{"env": "prod"})
	i := 0
	for b.Loop() {
		i++
		op, err := e.svc.CreateBulkOperation(context.Background(), "default", wire.BulkOperationCreate{Kind: wire.BulkExtensionSet,
			Name: "agent", Scope: "/subscriptions/default/resourceGroups/web",
			Extension: &wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", Settings: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}}, "admin")
		if err != nil || op.Totals.Pending != 2000 {
			b.Fatalf("%+v %v", op, err)
		}
	}
}

// TestBulkMachineLimit: a selection above the limit is refused whole, and
// nothing of it is written.
func TestBulkMachineLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addMachines(t, "web", 12, nil)
	e.svc.SetBulkLimit(10)
	req := wire.BulkOperationCreate{Kind: wire.BulkRunCommand, Name: "r", RunCommand: &wire.RunCommandCreate{Command: "true"}}
	_, err := e.svc.CreateBulkOperation(t.Context(), "default", req, "admin")
	var r *refusal.Error
	if !errors.As(err, &r) || r.Target != "scope" || !strings.Contains(r.Message, "more than 10 machines") {
		t.Fatalf("13 machines with a limit of 10: %v", err)
	}
	if len(e.n.gens) != 0 {
		t.Errorf("machines notified: %v", e.n.gens)
	}
	req.Scope = "/subscriptions/default/resourceGroups/web"
	e.svc.SetBulkLimit(12)
	if op, err := e.svc.CreateBulkOperation(t.Context(), "default", req, "admin"); err != nil || op.Machines != 12 {
		t.Fatalf("12 machines of one group: %+v %v", op, err)
	}
}

// TestBulkOverSeveralChunks: a selection of several chunks changes every
// machine once, each with its own new generation pushed, and the totals
// count them all.
func TestBulkOverSeveralChunks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.publish(t, "Contoso", "Agent")
	n := 3*store.BulkChunk + 17
	ms := e.addMachines(t, "web", n, nil)
	op, err := e.svc.CreateBulkOperation(t.Context(), "default", wire.BulkOperationCreate{Kind: wire.BulkExtensionSet, Name: "agent",
		Scope: "/subscriptions/default/resourceGroups/web", Extension: &wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}}, "admin")
	if err != nil || op.Machines != n || op.Totals.Pending != n {
		t.Fatalf("bulk set over %d machines: %+v %v", n, op, err)
	}
	e.n.mu.Lock()
	defer e.n.mu.Unlock()
	for _, m := range ms {
		got, err := e.st.GetMachineByID(t.Context(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Generation != 2 || e.n.gens[m.ID] != 2 {
			t.Fatalf("machine %s: generation %d, pushed %d; want 2 for both (changed once)", m.ID, got.Generation, e.n.gens[m.ID])
		}
		if _, err := e.st.GetMachineExtension(t.Context(), m.ID, "agent"); err != nil {
			t.Fatalf("machine %s: %v", m.ID, err)
		}
	}
}
