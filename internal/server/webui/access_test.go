package webui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/browser"
	"github.com/corralhq/corral/internal/wire"
)

const web01Scope = "/subscriptions/default/resourceGroups/web/machines/web-01"

func setJITPolicy(t testing.TB, s *testutil.Server) {
	t.Helper()
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/jitPolicy?scope="+url.QueryEscape(web01Scope), s.AdminToken(t),
		wire.JITPolicySet{Ports: []string{"22"}, MaxDuration: wire.Duration(time.Hour)}, nil)
}

func jitRequests(t testing.TB, s *testutil.Server) []wire.JITRequest {
	t.Helper()
	var l wire.List[wire.JITRequest]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/jitRequests", s.AdminToken(t), nil, &l)
	return l.Value
}

// The secure-access page requests a JIT opening through the API, shows it
// with the time it has left, revokes it; bad input and refusals come back
// on the form with the API's reason; every post needs the CSRF token.
func TestSecureAccessPage(t *testing.T) {
	t.Parallel()
	s := startFleet(t)
	setJITPolicy(t, s)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	pg := c.get("/ui/access")
	if pg.status != http.StatusOK || !strings.Contains(pg.body, `value="default/web/web-01"`) || !strings.Contains(pg.body, "No open JIT requests") ||
		!strings.Contains(pg.body, "No SSH sessions") || !strings.Contains(pg.body, `href="/ui/access" class="active"`) {
		t.Fatalf("access page: %d\n%s", pg.status, pg.body)
	}
	csrf := c.csrf(pg.body)
	form := url.Values{"csrf": {csrf}, "machine": {"default/web/web-01"}, "port": {"22"}, "sourceIp": {"192.0.2.7"},
		"duration": {"30m"}, "justification": {"deploy <b>now</b>"}}

	// Refused before anything is stored: no CSRF token, a bad duration,
	// a duration over the policy's maximum.
	if r := c.post("/ui/access/jit", url.Values{"machine": {"default/web/web-01"}, "port": {"22"}, "duration": {"30m"}}); r.status != http.StatusForbidden {
		t.Errorf("post without CSRF token: %d", r.status)
	}
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("duration", "soon")
	if r := c.post("/ui/access/jit", bad); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Duration must be a duration") {
		t.Errorf("bad duration: %d\n%s", r.status, r.body)
	}
	bad.Set("duration", "2h")
	if r := c.post("/ui/access/jit", bad); r.status != http.StatusBadRequest || !strings.Contains(r.body, "The port was not opened") ||
		!strings.Contains(r.body, "over the maximum of 1h0m0s") || !strings.Contains(r.body, `value="2h"`) {
		t.Errorf("duration over the maximum: %d\n%s", r.status, r.body)
	}
	if rs := jitRequests(t, s); len(rs) != 0 {
		t.Fatalf("refused requests were stored: %+v", rs)
	}

	r := c.post("/ui/access/jit", form)
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/ui/access?requested=") {
		t.Fatalf("request: %d %q\n%s", r.status, r.location, r.body)
	}
	rs := jitRequests(t, s)
	if len(rs) != 1 || rs[0].SourceIP != "192.0.2.7" || rs[0].State != wire.JITApproved || rs[0].Justification != "deploy <b>now</b>" {
		t.Fatalf("requests %+v", rs)
	}
	pg = c.get(r.location)
	if !strings.Contains(pg.body, "JIT request "+rs[0].ID+" made") || !strings.Contains(pg.body, `data-request="`+rs[0].ID+`"`) ||
		!strings.Contains(pg.body, "m") || !strings.Contains(pg.body, " left") || !strings.Contains(pg.body, "deploy &lt;b&gt;now&lt;/b&gt;") ||
		!strings.Contains(pg.body, `data-refresh="2"`) {
		t.Errorf("page after the request:\n%s", pg.body)
	}
	r = c.post("/ui/access/jit/"+rs[0].ID+"/revoke", url.Values{"csrf": {csrf}})
	if r.status != http.StatusSeeOther || !strings.Contains(r.location, "Revoked") {
		t.Errorf("revoke: %d %q", r.status, r.location)
	}
	if rs := jitRequests(t, s); rs[0].State != wire.JITRevoked {
		t.Errorf("after revoke: %s", rs[0].State)
	}
	if r := c.post("/ui/access/jit/"+rs[0].ID+"/delete", url.Values{"csrf": {csrf}}); r.status != http.StatusNotFound {
		t.Errorf("unknown action: %d", r.status)
	}
	if r := c.post("/ui/access/jit/"+rs[0].ID+"/revoke", url.Values{"csrf": {csrf}}); r.status != http.StatusConflict || !strings.Contains(r.body, "nothing to revoke") {
		t.Errorf("revoke twice: %d\n%s", r.status, r.body)
	}

	// A Reader sees the page and the grants, and is refused with the reason.
	reader := newUIClient(t, s)
	reader.signIn("reader", createUser(t, s, "reader", "Reader", "/"))
	pg = reader.get("/ui/access?all=1")
	if !strings.Contains(pg.body, rs[0].ID) {
		t.Errorf("the reader does not see the request:\n%s", pg.body)
	}
	form.Set("csrf", reader.csrf(pg.body))
	if r := reader.post("/ui/access/jit", form); r.status != http.StatusForbidden || !strings.Contains(r.body, "jitRequests/write") {
		t.Errorf("reader's request: %d\n%s", r.status, r.body)
	}

	// A running session is listed with its bytes and can be ended.
	m, err := s.Srv.Store.GetMachine(t.Context(), "default", "web", "web-01")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := s.Srv.Store.CreateSSHSession(t.Context(), store.SSHSession{ID: "t0123456789abcdef", MachineID: m.ID, MachineScope: web01Scope, Port: 22,
		CallerID: "u", Caller: "alice", SourceIP: "192.0.2.9", Login: "corral-user", StartedAt: now, UpdatedAt: now, BytesToMachine: 4096, BytesFromMachine: 3 << 20}); err != nil {
		t.Fatal(err)
	}
	pg = c.get("/ui/access")
	for _, want := range []string{`data-session="t0123456789abcdef"`, "corral-user", "192.0.2.9", "4.0 KiB", "3.0 MiB", "End the SSH session of alice on web-01?"} {
		if !strings.Contains(pg.body, want) {
			t.Errorf("sessions lack %q:\n%s", want, pg.body)
		}
	}
	r = c.post("/ui/access/sessions/t0123456789abcdef/end", url.Values{"csrf": {csrf}})
	if r.status != http.StatusSeeOther || !strings.Contains(r.location, "is+ending") {
		t.Errorf("end: %d %q", r.status, r.location)
	}
	if x, _ := s.Srv.Store.GetSSHSession(t.Context(), "t0123456789abcdef"); x.EndRequestedBy != "admin" {
		t.Errorf("end not requested: %+v", x)
	}
	if e := activity(t, s, url.Values{"action": {"Corral.HybridCompute/machines/sshSessions/end/action"}}); len(e) != 1 || e[0].Caller != "admin" {
		t.Errorf("activity of the end: %+v", e)
	}
}

// Real Chromium: request a JIT opening through the form, watch the page
// follow the machine's confirmation to Applied with the time left, and
// revoke it through ui.js's confirmation.
func TestBrowserSecureAccess(t *testing.T) {
	t.Parallel()
	ctx := browser.New(t, 60*time.Second)
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "web")
	web01 := s.OnboardMachine(t, s.ClientToken(t, id, secret), "web", "web-01", awsProps)
	setJITPolicy(t, s)
	console := collectConsole(ctx, t)
	dialogs := acceptDialogs(ctx)
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("sign in",
		chromedp.Navigate(s.URL+"/ui/access"),
		chromedp.WaitVisible(chromedp.ID("signin-form")),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), testutil.AdminPassword),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("jit-form")),
	)
	do("request a JIT opening",
		chromedp.SetValue(chromedp.ID("jit-machine"), "default/web/web-01"),
		chromedp.SetValue(chromedp.ID("jit-source"), "198.51.100.4"),
		chromedp.SetValue(chromedp.ID("jit-duration"), "45m"),
		chromedp.SendKeys(chromedp.ID("jit-justification"), "browser test"),
		chromedp.Click(chromedp.ID("jit-submit")),
		chromedp.WaitVisible(chromedp.CSS(".alert-ok")),
	)
	rs := jitRequests(t, s)
	if len(rs) != 1 {
		t.Fatalf("requests %+v", rs)
	}
	row := `tr[data-request="` + rs[0].ID + `"]`
	if got := text(row); !strings.Contains(got, "198.51.100.4") || !strings.Contains(got, "Approved") {
		t.Errorf("row after the request: %q", got)
	}
	// The machine confirms; the page reloads itself to Applied.
	report(t, s, web01, wire.ReportAccess, wire.AccessStatus{JIT: wire.JITStatus{State: wire.JITStateApplied, Ports: []string{"22/tcp"},
		Grants: []wire.JITGrantStatus{{ID: rs[0].ID, State: wire.JITApplied}}}, SSH: wire.SSHStatus{State: wire.SSHStateOff}})
	do("see it applied", chromedp.WaitVisible(chromedp.CSS(row+" .badge-ok")))
	if got := text(row + " .time-left"); !strings.HasSuffix(got, " left") {
		t.Errorf("time left: %q", got)
	}
	do("revoke it", chromedp.Click(chromedp.CSS(row+" button.revoke")), chromedp.WaitVisible(chromedp.CSS(".alert-ok")))
	if notice := text(".alert-ok"); !strings.Contains(notice, "is Revoked") {
		t.Errorf("notice %q", notice)
	}
	if got := dialogs(); len(got) != 1 || !strings.HasPrefix(got[0], "Revoke JIT request") {
		t.Errorf("dialogs %q", got)
	}
	if msgs := console(); len(msgs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(msgs, "\n"))
	}
}
