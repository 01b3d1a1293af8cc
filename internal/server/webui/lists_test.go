package webui_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// Issue 7, finding 11: the inventory and activity pages at their largest
// page size show no next page for exactly 1,000 items and one for 1,001.
func TestPagesAtExactlyOneThousand(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	s.MustDo(t, 201, "PUT", "/api/v1/subscriptions/default/resourceGroups/bulk", admin, wire.ResourceGroupCreate{}, nil)
	ctx, st, at := t.Context(), s.Srv.Store, time.Now().UTC()
	add := func(i int) {
		t.Helper()
		m := store.Machine{ID: fmt.Sprintf("bulk-%04d", i), Subscription: "default", ResourceGroup: "bulk", Name: fmt.Sprintf("m%04d", i),
			Status: wire.StatusConnected, CreatedAt: at, UpdatedAt: at}
		if err := st.CreateMachine(ctx, m, false); err != nil {
			t.Fatal(err)
		}
		if err := st.AppendActivity(ctx, store.ActivityEntry{ID: fmt.Sprintf("00000000-ui-%04d", i), Time: at, CallerID: "t", Caller: "t",
			Action: "Test.Bulk/write", Scope: "/subscriptions/default", Result: wire.ResultSucceeded, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		add(i)
	}
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	pages := map[string]string{
		"inventory": "/ui/machines?rg=bulk&top=1000",
		"activity":  "/ui/activity?action=Test.Bulk/*&top=1000",
	}
	for name, path := range pages {
		r := c.get(path)
		if r.status != 200 || strings.Contains(r.body, `id="next-page"`) {
			t.Errorf("%s with exactly 1,000: status %d, next page shown: %t", name, r.status, strings.Contains(r.body, `id="next-page"`))
		}
	}
	add(1000)
	for name, path := range pages {
		r := c.get(path)
		if r.status != 200 || !strings.Contains(r.body, `id="next-page"`) {
			t.Errorf("%s with 1,001: status %d, no next page", name, r.status)
		}
	}
}

// Issue 7, finding 8 in the web UI: a user whose password an administrator
// set must change it before any page; the change ends the session.
func TestPasswordMustBeChangedInTheUI(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	s.MustDo(t, 201, "POST", "/api/v1/users", s.AdminToken(t), wire.UserCreate{Name: "carol", Password: "initial-password-1", MustChangePassword: true}, nil)
	s.MustDo(t, 201, "POST", "/api/v1/roleAssignments", s.AdminToken(t), wire.RoleAssignmentCreate{Principal: "carol", Role: "Reader", Scope: "/"}, nil)
	c := newUIClient(t, s)
	page := c.get("/ui/signin")
	r := c.post("/ui/signin", url.Values{"csrf": {c.csrf(page.body)}, "username": {"carol"}, "password": {"initial-password-1"}, "next": {"/ui/machines"}})
	if r.status != 303 {
		t.Fatalf("sign in: %d", r.status)
	}
	if r := c.get("/ui/machines"); r.status != 303 || r.location != "/ui/password" {
		t.Fatalf("a must-change session opened the inventory: %d %q", r.status, r.location)
	}
	form := c.get("/ui/password")
	if form.status != 200 || !strings.Contains(form.body, "set by an administrator") {
		t.Fatalf("password page: %d", form.status)
	}
	csrf := c.csrf(form.body)
	if r := c.post("/ui/password", url.Values{"csrf": {csrf}, "current": {"initial-password-1"}, "new": {"carols-password-1"}, "confirm": {"other"}}); r.status != 400 {
		t.Errorf("mismatched confirmation: %d", r.status)
	}
	r = c.post("/ui/password", url.Values{"csrf": {csrf}, "current": {"initial-password-1"}, "new": {"carols-password-1"}, "confirm": {"carols-password-1"}})
	if r.status != 303 || r.location != "/ui/signin?reason=passwordchanged" {
		t.Fatalf("change: %d %q\n%s", r.status, r.location, r.body)
	}
	c.signIn("carol", "carols-password-1")
	if r := c.get("/ui/machines"); r.status != 200 {
		t.Errorf("after the change: %d", r.status)
	}
}
