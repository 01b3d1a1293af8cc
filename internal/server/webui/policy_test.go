package webui_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/wire"
)

// The policy pages show compliance per scope → assignment → machine → rule
// with evidence, escaped, to a Reader; the machine page shows its
// compliance.
func TestPolicyPages(t *testing.T) {
	t.Parallel()
	s := startFleet(t)
	admin := s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/policyDefinitions", admin, `{"name":"need-owner","properties":{"displayName":"Machines need an owner",
		"mode":"Indexed","policyRule":{"if":{"field":"tags['owner']","exists":false},"then":{"effect":"audit"}}}}`, nil)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/policyAssignments/owner", admin, wire.PolicyAssignmentCreate{Definition: "need-owner",
		Scope: "/subscriptions/default", NonComplianceMessage: "tag an <b>owner</b>"}, nil)
	pw := createUser(t, s, "rita", "Reader", "/")
	c := newUIClient(t, s)
	c.signIn("rita", pw)

	pg := c.get("/ui/policy")
	if pg.status != http.StatusOK || !strings.Contains(pg.body, `data-assignment="owner"`) || !strings.Contains(pg.body, "linux-passwd-0644") ||
		!strings.Contains(pg.body, `href="/ui/policy" class="active"`) || !strings.Contains(pg.body, "NonCompliant") {
		t.Fatalf("policy page: %d\n%s", pg.status, pg.body)
	}
	pg = c.get("/ui/policy/assignments/owner")
	if pg.status != http.StatusOK || !strings.Contains(pg.body, `data-machine="web-01"`) || !strings.Contains(pg.body, `data-machine="db-legacy"`) ||
		!strings.Contains(pg.body, "tag an &lt;b&gt;owner&lt;/b&gt;") || strings.Contains(pg.body, "<b>owner</b>") {
		t.Fatalf("assignment page: %d\n%s", pg.status, pg.body)
	}
	pg = c.get("/ui/machines/default/web/web-01")
	if pg.status != http.StatusOK || !strings.Contains(pg.body, `id="machine-compliance"`) || !strings.Contains(pg.body, `data-rule="need-owner"`) {
		t.Fatalf("machine page: %d\n%s", pg.status, pg.body)
	}
	if pg := c.get("/ui/policy/assignments/nope"); pg.status != http.StatusNotFound {
		t.Errorf("missing assignment: %d", pg.status)
	}
}
