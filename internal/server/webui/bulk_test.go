package webui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// TestBulkPages: the list of bulk operations and one operation with its
// totals and machines, filtered by result, escaped, and refused like the
// API to a user without the read action at its scope.
func TestBulkPages(t *testing.T) {
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "web")
	tok := s.ClientToken(t, id, secret)
	m0 := s.OnboardMachine(t, tok, "web", "web-00", awsProps)
	s.OnboardMachine(t, tok, "web", "web-01", awsProps)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)

	if r := c.get("/ui/bulk"); r.status != http.StatusOK || !strings.Contains(r.body, "No bulk operations yet") {
		t.Fatalf("empty list: %d\n%s", r.status, r.body)
	}
	var op wire.BulkOperation
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/subscriptions/default/bulkOperations", s.AdminToken(t), wire.BulkOperationCreate{
		Kind: wire.BulkRunCommand, Name: "uptime", Scope: "/subscriptions/default/resourceGroups/web",
		RunCommand: &wire.RunCommandCreate{Command: "uptime"}}, &op)
	code := 3
	b, _ := json.Marshal(wire.RunCommandResult{Name: "uptime", State: wire.RunFailed, ExitCode: &code, Message: "<b>boom</b>"})
	if st, resp := s.DoMachine(t, m0, "POST", wire.PathReports, wire.ReportBatch{Reports: []wire.Report{{ID: "r1", Kind: wire.ReportRunCommand,
		TakenAt: time.Now(), Body: b}}}); st != http.StatusOK {
		t.Fatalf("report: %d %s", st, resp)
	}

	list := c.get("/ui/bulk")
	if list.status != http.StatusOK || !strings.Contains(list.body, fmt.Sprintf(`data-op="%s"`, op.Name)) || !strings.Contains(list.body, "runCommand") {
		t.Fatalf("list:\n%s", list.body)
	}
	page := c.get("/ui/bulk/default/" + op.Name)
	if page.status != http.StatusOK || !strings.Contains(page.body, "1 failed") || !strings.Contains(page.body, "1 pending") ||
		!strings.Contains(page.body, `id="refresh-note"`) || strings.Count(page.body, "<tr data-machine=") != 2 {
		t.Fatalf("operation page:\n%s", page.body)
	}
	if strings.Contains(page.body, "<b>boom</b>") || !strings.Contains(page.body, "&lt;b&gt;boom&lt;/b&gt;") {
		t.Errorf("the machine's message is not escaped:\n%s", page.body)
	}
	failed := c.get("/ui/bulk/default/" + op.Name + "?result=failed")
	if strings.Count(failed.body, "<tr data-machine=") != 1 || !strings.Contains(failed.body, `data-machine="web-00"`) {
		t.Errorf("failed machines:\n%s", failed.body)
	}
	if r := c.get("/ui/bulk/default/" + op.Name + "?result=maybe"); r.status != http.StatusBadRequest {
		t.Errorf("unknown result filter: %d", r.status)
	}
	if r := c.get("/ui/bulk/default/nope"); r.status != http.StatusNotFound {
		t.Errorf("unknown operation: %d", r.status)
	}

	// A user who reads only another group.
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/users", s.AdminToken(t), wire.UserCreate{Name: "rita", Password: "rita-password-123"}, nil)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", s.AdminToken(t), wire.RoleAssignmentCreate{Principal: "rita",
		Role: "Reader", Scope: "/subscriptions/default/resourceGroups/other"}, nil)
	rc := newUIClient(t, s)
	rc.signIn("rita", "rita-password-123")
	if r := rc.get("/ui/bulk/default/" + op.Name); r.status != http.StatusForbidden {
		t.Errorf("a reader of another group: %d", r.status)
	}
}
