package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const bulkURL = "/api/v1/subscriptions/default/bulkOperations"

// TestBulkOperationsAPI: a run command on every machine of a resource
// group through one request, by a principal that administers only that
// group; the same principal is refused a wider scope, and bad bodies are
// refused with nothing stored; the activity log holds one entry for the
// request and the machine's outcome in the caller's name.
func TestBulkOperationsAPI(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	onboard := s.ClientToken(t, id, secret)
	m1 := s.OnboardMachine(t, onboard, "rg1", "m1", wire.MachineProperties{})
	s.OnboardMachine(t, onboard, "rg1", "m2", wire.MachineProperties{})
	id2, secret2 := s.OnboardingPrincipal(t, "rg2")
	s.OnboardMachine(t, s.ClientToken(t, id2, secret2), "rg2", "m3", wire.MachineProperties{})
	conn := s.DialStream(t, m1)
	rgAdmin := s.RolePrincipal(t, "Connected Machine Resource Administrator", "/subscriptions/default/resourceGroups/rg1")
	reader := s.RolePrincipal(t, "Reader", "/subscriptions/default")

	run := wire.BulkOperationCreate{Kind: wire.BulkRunCommand, Name: "hello", Scope: "/subscriptions/default/resourceGroups/rg1",
		RunCommand: &wire.RunCommandCreate{Command: "echo hi"}}
	// Refused: a scope the principal lacks (the subscription, given or
	// implied by a tag alone), a reader, an unknown kind to a reader.
	for _, c := range []struct {
		name string
		tok  string
		body wire.BulkOperationCreate
	}{
		{"the subscription", rgAdmin, wire.BulkOperationCreate{Kind: wire.BulkRunCommand, Name: "hello", Scope: "/subscriptions/default", RunCommand: run.RunCommand}},
		{"a tag alone", rgAdmin, wire.BulkOperationCreate{Kind: wire.BulkRunCommand, Name: "hello", Tag: "env=prod", RunCommand: run.RunCommand}},
		{"another group", rgAdmin, wire.BulkOperationCreate{Kind: wire.BulkExtensionDelete, Name: "x", Scope: "/subscriptions/default/resourceGroups/rg2"}},
		{"a reader", reader, run},
		{"a reader, unknown kind", reader, wire.BulkOperationCreate{Kind: "explode", Name: "x"}},
	} {
		if st, b := s.Do(t, "POST", bulkURL, c.tok, c.body); st != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", c.name, st, b)
		}
	}
	// Bad bodies.
	for _, c := range []struct {
		name string
		body string
		want int
	}{
		{"NUL in the name", `{"kind":"runCommand","name":"a\u0000b","runCommand":{"command":"true"}}`, 400},
		{"control character in the tag", `{"kind":"runCommand","name":"a","tag":"env=a\u001bb","runCommand":{"command":"true"},"scope":"/subscriptions/default/resourceGroups/rg1"}`, 400},
		{"unknown field", `{"kind":"runCommand","name":"a","machines":["m1"]}`, 400},
		{"wrong type", `{"kind":"runCommand","name":7}`, 400},
		{"unknown kind", `{"kind":"explode","name":"a"}`, 400},
		{"no machines", `{"kind":"runCommand","name":"a","runCommand":{"command":"true"},"scope":"/subscriptions/default/resourceGroups/rg1","tag":"no=such"}`, 400},
		{"too large", `{"kind":"runCommand","name":"a","runCommand":{"script":"` + strings.Repeat("x", 2<<20) + `"}}`, 413},
	} {
		st, b := s.Do(t, "POST", bulkURL, admin, c.body)
		if st != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, st, b, c.want)
		}
	}
	var list wire.List[wire.BulkOperation]
	s.MustDo(t, http.StatusOK, "GET", bulkURL, admin, nil, &list)
	if len(list.Value) != 0 {
		t.Fatalf("operations stored by refused requests: %+v", list.Value)
	}

	var op wire.BulkOperation
	s.MustDo(t, http.StatusCreated, "POST", bulkURL, rgAdmin, run, &op)
	if op.Machines != 2 || op.Totals.Pending != 2 || op.Kind != wire.BulkRunCommand {
		t.Fatalf("operation %+v", op)
	}
	if msg := readMsg(t, conn, 5e9); msg.Type != wire.MsgSync {
		t.Errorf("m1's stream got %+v, want a sync", msg)
	}
	code := 0
	b, _ := json.Marshal(wire.RunCommandResult{Name: "hello", State: wire.RunSucceeded, ExitCode: &code})
	if st, resp := s.DoMachine(t, m1, "POST", wire.PathReports, wire.ReportBatch{Reports: []wire.Report{{ID: "r1", Kind: wire.ReportRunCommand,
		Body: b}}}); st != http.StatusOK {
		t.Fatalf("report: %d %s", st, resp)
	}
	s.MustDo(t, http.StatusOK, "GET", bulkURL+"/"+op.Name, rgAdmin, nil, &op)
	if op.Totals != (wire.BulkTotals{Pending: 1, Succeeded: 1}) || op.Done {
		t.Errorf("totals after one report %+v", op.Totals)
	}
	var ms wire.List[wire.BulkMachineResult]
	s.MustDo(t, http.StatusOK, "GET", bulkURL+"/"+op.Name+"/machines?result=Succeeded", rgAdmin, nil, &ms)
	if len(ms.Value) != 1 || ms.Value[0].Name != "m1" || ms.Value[0].ExitCode == nil || ms.Value[0].MachineID != m1.ResourceID {
		t.Errorf("succeeded machines %+v", ms.Value)
	}
	if st, b := s.Do(t, "GET", bulkURL+"/"+op.Name+"/machines?result=Bogus", rgAdmin, nil); st != http.StatusBadRequest {
		t.Errorf("unknown result filter: %d %s", st, b)
	}
	// Reading needs the read action at the operation's scope.
	rg2Reader := s.RolePrincipal(t, "Reader", "/subscriptions/default/resourceGroups/rg2")
	for _, p := range []string{bulkURL + "/" + op.Name, bulkURL + "/" + op.Name + "/machines", bulkURL + "/nope"} {
		if st, b := s.Do(t, "GET", p, rg2Reader, nil); st != http.StatusForbidden {
			t.Errorf("GET %s by a reader of another group: %d %s", p, st, b)
		}
	}
	if st, _ := s.Do(t, "GET", bulkURL+"/nope", admin, nil); st != http.StatusNotFound {
		t.Errorf("unknown operation: %d", st)
	}

	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?result=Succeeded&scope=/subscriptions/default/resourceGroups/rg1", admin, nil, &acts)
	var request, outcome int
	for _, a := range acts.Value {
		switch {
		case a.Method == "POST" && strings.Contains(a.Message, "bulk runCommand hello on 2 machines"):
			request++
			if a.Action != "Corral.HybridCompute/machines/extensions/write" || a.Scope != "/subscriptions/default/resourceGroups/rg1" {
				t.Errorf("the request's entry %+v", a)
			}
		case a.Path == "outcome" && strings.Contains(a.Scope, "/machines/m1/runCommands/hello"):
			outcome++
			if a.Action != "Corral.HybridCompute/machines/runCommands/write" || !strings.HasPrefix(a.Caller, "test-") {
				t.Errorf("the outcome's entry %+v", a)
			}
		}
	}
	if request != 1 || outcome != 1 {
		t.Errorf("activity: %d request entries and %d outcomes, want 1 and 1: %+v", request, outcome, acts.Value)
	}
}

// TestBulkOperationsAcrossReplicas: two replicas on one PostgreSQL
// database; a bulk operation made through B reaches the agent whose stream
// A holds, the agent's report through A shows in B's totals, and A answers
// for the operation B made (nothing of it is kept in memory).
func TestBulkOperationsAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDSN(t)
	a := testutil.StartServer(t, testutil.WithStore(dsn))
	b := testutil.StartServer(t, testutil.WithStore(dsn), testutil.WithCAFrom(a))
	id, secret := a.OnboardingPrincipal(t, "rg1")
	m := a.OnboardMachine(t, a.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})
	e := &extTestEnv{s: a, m: m, conn: a.DialStream(t, m)}

	var op wire.BulkOperation
	b.MustDo(t, http.StatusCreated, "POST", bulkURL, b.AdminToken(t), wire.BulkOperationCreate{Kind: wire.BulkExtensionSet, Name: "rc",
		Scope: "/subscriptions/default/resourceGroups/rg1", Extension: &wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand"}}, &op)
	e.waitSync(t, 2)
	d, ok := findDesired(e.desired(t), "rc")
	if !ok {
		t.Fatal("the extension set in bulk through B is not in A's desired state")
	}
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "rc", SeqNo: d.SeqNo, Operation: "install", State: wire.ExtSucceeded})
	for _, s := range []*testutil.Server{a, b} {
		var got wire.BulkOperation
		s.MustDo(t, http.StatusOK, "GET", bulkURL+"/"+op.Name, s.AdminToken(t), nil, &got)
		if got.Totals != (wire.BulkTotals{Succeeded: 1}) || !got.Done {
			t.Errorf("totals through %s: %+v", s.URL, got.Totals)
		}
	}
}
