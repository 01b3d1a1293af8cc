package webui_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const machineWeb = "/ui/machines/default/web/web-01"

func TestUnauthenticatedRequestsGoToSignIn(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	c := newUIClient(t, s)
	if r := c.get("/"); r.status != http.StatusFound || r.location != "/ui/" {
		t.Errorf("GET /: %d %q, want 302 to /ui/", r.status, r.location)
	}
	if r := c.get("/ui/"); r.status != http.StatusFound || r.location != "/ui/machines" {
		t.Errorf("GET /ui/: %d %q, want 302 to /ui/machines", r.status, r.location)
	}
	for _, p := range []string{"/ui/machines", machineWeb, "/ui/activity?result=Denied", "/ui/devicecodes?code=BCDF-GHJK"} {
		r := c.get(p)
		want := "/ui/signin?next=" + url.QueryEscape(p)
		if r.status != http.StatusSeeOther || r.location != want {
			t.Errorf("GET %s: %d %q, want 303 to %s", p, r.status, r.location, want)
		}
	}
	// A form post without a session changes nothing and asks to sign in.
	if r := c.post(machineWeb+"/delete", url.Values{"csrf": {"x"}}); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/ui/signin") {
		t.Errorf("POST delete without session: %d %q", r.status, r.location)
	}
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	c := newUIClient(t, s)

	page := c.get("/ui/signin?next=%2Fui%2Factivity")
	if page.status != http.StatusOK || !strings.Contains(page.body, `name="password"`) {
		t.Fatalf("sign-in page: %d\n%s", page.status, page.body)
	}
	csp := page.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	nonce := c.csrf(page.body)

	// Wrong password: a clear error, no session.
	r := c.post("/ui/signin", url.Values{"csrf": {nonce}, "username": {"admin"}, "password": {"not-the-password"}, "next": {"/ui/activity"}})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Sign-in failed: wrong user name or password.") {
		t.Fatalf("wrong password: %d\n%s", r.status, r.body)
	}
	if c.cookie("corral_session") != "" {
		t.Fatal("a failed sign-in set a session cookie")
	}
	// Empty fields are refused before the API is asked.
	r = c.post("/ui/signin", url.Values{"csrf": {nonce}, "username": {"admin"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Enter your user name and password.") {
		t.Errorf("empty password: %d\n%s", r.status, r.body)
	}
	// A sign-in form from elsewhere (no nonce) is refused.
	r = c.post("/ui/signin", url.Values{"username": {"admin"}, "password": {testutil.AdminPassword}})
	if r.status != http.StatusForbidden || c.cookie("corral_session") != "" {
		t.Errorf("sign-in without nonce: %d, session %v", r.status, c.cookie("corral_session") != "")
	}

	// Right password: the token lands in a locked-down cookie and we go to next.
	r = c.post("/ui/signin", url.Values{"csrf": {nonce}, "username": {"admin"}, "password": {testutil.AdminPassword}, "next": {"/ui/activity"}})
	if r.status != http.StatusSeeOther || r.location != "/ui/activity" {
		t.Fatalf("sign in: %d %q\n%s", r.status, r.location, r.body)
	}
	var session string
	for _, sc := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "corral_session=") {
			session = sc
		}
	}
	for _, attr := range []string{"Path=/ui/", "HttpOnly", "Secure", "SameSite=Strict", "Max-Age=28800"} {
		if !strings.Contains(session, attr) {
			t.Errorf("session cookie %q lacks %s", redact(session), attr)
		}
	}
	tok := c.cookie("corral_session")
	if tok == "" {
		t.Fatal("no session cookie after sign-in")
	}
	home := c.get("/ui/activity")
	if home.status != http.StatusOK || !strings.Contains(home.body, `id="signed-in-user"`) || !strings.Contains(home.body, ">admin<") ||
		!strings.Contains(home.body, "Owner") {
		t.Errorf("activity page after sign-in: %d\n%s", home.status, home.body)
	}
	if strings.Contains(home.body, tok) || strings.Contains(s.Logs.String(), tok) || strings.Contains(s.Logs.String(), testutil.AdminPassword) {
		t.Error("the access token or password appears in a page or the server log")
	}
	// The sign-in went through the API: it is in the activity log with the
	// browser's source address.
	var found bool
	for _, e := range activity(t, s, url.Values{"action": {"Corral.Identity/oauth2/token/action"}}) {
		if e.Caller == "admin" && e.Result == wire.ResultSucceeded && e.SourceIP == "127.0.0.1" {
			found = true
		}
	}
	if !found {
		t.Error("no successful token issuance for admin from 127.0.0.1 in the activity log")
	}
	// next cannot leave the UI.
	for _, next := range []string{"https://evil.example/", "//evil.example/ui/", "/api/v1/me", "/ui/static/style.css"} {
		c2 := newUIClient(t, s)
		p := c2.get("/ui/signin")
		r := c2.post("/ui/signin", url.Values{"csrf": {c2.csrf(p.body)}, "username": {"admin"}, "password": {testutil.AdminPassword}, "next": {next}})
		if r.location != "/ui/machines" {
			t.Errorf("next=%q redirected to %q", next, r.location)
		}
	}

	// Sign out needs the session's CSRF token, then clears the cookie.
	if r := c.post("/ui/signout", url.Values{"csrf": {"forged"}}); r.status != http.StatusForbidden {
		t.Errorf("sign out with a forged token: %d", r.status)
	}
	r = c.post("/ui/signout", url.Values{"csrf": {c.csrf(home.body)}})
	if r.status != http.StatusSeeOther || c.cookie("corral_session") != "" {
		t.Fatalf("sign out: %d, cookie still set: %v", r.status, c.cookie("corral_session") != "")
	}
	if r := c.get("/ui/machines"); r.status != http.StatusSeeOther {
		t.Errorf("after sign-out /ui/machines: %d", r.status)
	}
}

func redact(setCookie string) string {
	_, attrs, _ := strings.Cut(setCookie, ";")
	return "corral_session=<redacted>;" + attrs
}

func TestExpiredOrInvalidSessionGoesBackToSignIn(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	s := testutil.StartServer(t, testutil.WithClock(clock))
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	if r := c.get("/ui/machines"); r.status != http.StatusOK {
		t.Fatalf("inventory: %d", r.status)
	}
	clock.Advance(9 * time.Hour) // user tokens last 8 h
	r := c.get("/ui/machines?status=Connected")
	want := "/ui/signin?" + url.Values{"next": {"/ui/machines?status=Connected"}, "reason": {"expired"}}.Encode()
	if r.status != http.StatusSeeOther || r.location != want {
		t.Fatalf("expired session: %d %q, want %q", r.status, r.location, want)
	}
	if c.cookie("corral_session") != "" {
		t.Error("the expired session cookie was not cleared")
	}
	if p := c.get(r.location); !strings.Contains(p.body, "Your session has expired") {
		t.Errorf("sign-in page does not say the session expired:\n%s", p.body)
	}

	// A cookie the API does not accept at all is treated the same way.
	c2 := newUIClient(t, s)
	u, _ := url.Parse(s.URL + "/ui/")
	c2.c.Jar.SetCookies(u, []*http.Cookie{{Name: "corral_session", Value: "not-a-token", Path: "/ui/"}})
	if r := c2.get("/ui/activity"); r.status != http.StatusSeeOther || !strings.Contains(r.location, "reason=expired") {
		t.Errorf("garbage session: %d %q", r.status, r.location)
	}
}

func TestInventoryFiltersAndPaging(t *testing.T) {
	t.Parallel()
	s := startFleet(t)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)

	r := c.get("/ui/machines")
	if r.status != http.StatusOK {
		t.Fatalf("inventory: %d\n%s", r.status, r.body)
	}
	for _, want := range []string{
		`href="/ui/machines/default/web/web-01"`, ">web-01<", ">db-legacy<", `<span class="badge badge-ok">Connected</span>`,
		">AWS<", ">OnPrem<", "Debian GNU/Linux 12 (bookworm)", "2026.11.0", "2024.01.3",
		`href="/ui/machines?tag=env%3Dprod"`, "env=prod", "team=web", "<th>Last heartbeat</th>",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("inventory lacks %q", want)
		}
	}
	// Only the old agent carries the unsupported marker.
	if n := strings.Count(r.body, ">unsupported</span>"); n != 1 {
		t.Errorf("%d unsupported markers, want 1", n)
	}

	for _, tc := range []struct {
		query     string
		want, not []string
	}{
		{"environment=AWS", []string{">web-01<"}, []string{">db-legacy<"}},
		{"environment=onprem", []string{">db-legacy<"}, []string{">web-01<"}}, // case-insensitive like the API
		{"status=Connected", []string{">web-01<", ">db-legacy<"}, nil},
		{"status=Disconnected", []string{"No machines match these filters."}, []string{">web-01<", ">db-legacy<"}},
		{"os=ubuntu", []string{">db-legacy<"}, []string{">web-01<"}},
		{"tag=team", []string{">web-01<"}, []string{">db-legacy<"}},
		{"tag=env%3Ddev", []string{">db-legacy<"}, []string{">web-01<"}},
		{"name=legacy", []string{">db-legacy<"}, []string{">web-01<"}},
		{"rg=web", []string{">web-01<"}, []string{">db-legacy<"}},
		{"sub=default&rg=db&environment=OnPrem", []string{">db-legacy<"}, []string{">web-01<"}},
	} {
		r := c.get("/ui/machines?" + tc.query)
		if r.status != http.StatusOK {
			t.Errorf("%s: status %d", tc.query, r.status)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.body, w) {
				t.Errorf("%s: page lacks %q", tc.query, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(r.body, n) {
				t.Errorf("%s: page shows %q", tc.query, n)
			}
		}
	}

	// Bad input gets a clear message, not an API round trip.
	for query, msg := range map[string]string{
		"environment=Mars": "Environment must be one of AWS, GCP, Azure, OCI, VMware, OnPrem.",
		"status=Up":        "Status must be Connected, Disconnected or Expired.",
		"tag=%3Dx":         "Tag must be KEY or KEY=VALUE",
		"rg=..%2F..":       "Resource group must be a name",
		"top=0":            "Page size must be a number from 1 to 1000.",
	} {
		r := c.get("/ui/machines?" + query)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, msg) {
			t.Errorf("%s: %d, want 400 with %q", query, r.status, msg)
		}
	}
	// An API error is shown with the API's message and status.
	if r := c.get("/ui/machines?rg=nosuchgroup"); r.status != http.StatusNotFound || !strings.Contains(r.body, `resource group &#34;nosuchgroup&#34; was not found`) {
		t.Errorf("unknown resource group: %d\n%s", r.status, r.body)
	}

	// Paging follows the API's nextLink.
	first := c.get("/ui/machines?top=1")
	next := hrefOf(t, first.body, `id="next-page"`)
	second := c.get(next)
	if second.status != http.StatusOK || strings.Contains(second.body, `id="next-page"`) {
		t.Fatalf("second page %s: %d\n%s", next, second.status, second.body)
	}
	names := func(b string) int { return strings.Count(b, `<a class="strong" href="/ui/machines/`) }
	if names(first.body) != 1 || names(second.body) != 1 ||
		strings.Contains(first.body, ">db-legacy<") == strings.Contains(second.body, ">db-legacy<") {
		t.Errorf("pages do not split the two machines: first %d rows, second %d rows", names(first.body), names(second.body))
	}
	if !strings.Contains(second.body, "First page") {
		t.Error("the second page has no way back to the first")
	}
}

// hrefOf returns the href of the element carrying marker, unescaped.
func hrefOf(t *testing.T, body, marker string) string {
	t.Helper()
	i := strings.Index(body, marker)
	if i < 0 {
		t.Fatalf("no element %s on the page", marker)
	}
	start := strings.LastIndex(body[:i], `href="`)
	if start < 0 {
		t.Fatalf("no href before %s", marker)
	}
	start += len(`href="`)
	end := strings.Index(body[start:], `"`)
	return strings.ReplaceAll(body[start:start+end], "&amp;", "&")
}

func TestMachineDetail(t *testing.T) {
	t.Parallel()
	s := startFleet(t)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	r := c.get(machineWeb)
	if r.status != http.StatusOK {
		t.Fatalf("detail: %d\n%s", r.status, r.body)
	}
	for _, want := range []string{
		"/subscriptions/default/resourceGroups/web/machines/web-01", "Debian GNU/Linux 12 (bookworm)", "6.1.0-27-cloud-amd64",
		"web-01.prod.example.com", "10.0.1.15", "fd00::15", "4 × Intel(R) Xeon(R) Platinum 8259CL", "16.0 GiB",
		">AWS<", "i-0abc123def4567890", "eu-west-1", "eu-west-1a", "123456789012", "Amazon EC2", "m5.xlarge",
		"env=prod", "team=web", `<span class="badge badge-ok">supported</span>`, "Certificate expires", "in 89 days", "by onboard-web",
		// the local agent configuration, read-only, by DESIGN.md key
		`id="agent-config"`, "<td class=\"mono\">config.mode</td><td class=\"mono\">monitor</td>",
		"Corral/PatchManagement, Corral/EndpointProtection", "incomingconnections.ports", "http://proxy.example:3128",
		"<td class=\"mono\">extensions.agent.cpulimit</td><td class=\"mono\">20%</td>",
		`action="/ui/machines/default/web/web-01/delete"`, `data-confirm=`,
		`href="/ui/activity?scope=%2Fsubscriptions%2Fdefault%2FresourceGroups%2Fweb%2Fmachines%2Fweb-01"`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("detail page lacks %q", want)
		}
	}
	if old := c.get("/ui/machines/default/db/db-legacy"); !strings.Contains(old.body, `<span class="badge badge-bad">unsupported</span>`) ||
		!strings.Contains(old.body, "Dell Inc.") || !strings.Contains(old.body, "PowerEdge R640") {
		t.Errorf("db-legacy detail lacks the unsupported marker or hardware")
	}
	if r := c.get("/ui/machines/default/web/nope"); r.status != http.StatusNotFound || !strings.Contains(r.body, `machine &#34;nope&#34; was not found`) {
		t.Errorf("unknown machine: %d\n%s", r.status, r.body)
	}
}

func TestCSRFIsEnforced(t *testing.T) {
	t.Parallel()
	s := startFleet(t)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	token := c.csrf(c.get(machineWeb).body)
	apiPath := "/api/v1/subscriptions/default/resourceGroups/web/machines/web-01"
	stillThere := func(what string) {
		t.Helper()
		if st, b := s.Do(t, "GET", apiPath, s.AdminToken(t), nil); st != http.StatusOK {
			t.Fatalf("%s: the machine is gone (%d %s)", what, st, b)
		}
	}
	for _, tc := range []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {"AAAA" + token[4:]}}, nil},
		{"token of another session", url.Values{"csrf": {otherSessionToken(t, s)}}, nil},
		{"foreign Origin", url.Values{"csrf": {token}}, []string{"Origin", "https://evil.example"}},
		{"null Origin", url.Values{"csrf": {token}}, []string{"Origin", "null"}},
		{"cross-site fetch", url.Values{"csrf": {token}}, []string{"Origin", "", "Sec-Fetch-Site", "cross-site"}},
		{"foreign Referer", url.Values{"csrf": {token}}, []string{"Origin", "", "Sec-Fetch-Site", "", "Referer", "https://evil.example/x"}},
	} {
		r := c.post(machineWeb+"/delete", tc.form, tc.headers...)
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "not submitted from this site") {
			t.Errorf("%s: %d, want 403\n%s", tc.name, r.status, r.body)
		}
		stillThere(tc.name)
	}
	// The refused posts never reached the API: no delete attempt is logged.
	if es := activity(t, s, url.Values{"action": {"Corral.HybridCompute/machines/delete"}}); len(es) != 0 {
		t.Errorf("refused posts reached the API: %+v", es)
	}
	// With the token and from our own origin, the delete goes through.
	r := c.post(machineWeb+"/delete", url.Values{"csrf": {token}})
	if r.status != http.StatusSeeOther || r.location != "/ui/machines?deleted=web-01" {
		t.Fatalf("delete: %d %q\n%s", r.status, r.location, r.body)
	}
	if st, _ := s.Do(t, "GET", apiPath, s.AdminToken(t), nil); st != http.StatusNotFound {
		t.Errorf("after delete the API answers %d, want 404", st)
	}
	if p := c.get(r.location); !strings.Contains(p.body, `Machine &#34;web-01&#34; was deleted.`) || strings.Contains(p.body, ">web-01<") {
		t.Errorf("inventory after delete:\n%s", p.body)
	}
}

// otherSessionToken is a valid CSRF token — of somebody else's session.
func otherSessionToken(t *testing.T, s *testutil.Server) string {
	t.Helper()
	o := newUIClient(t, s)
	o.signIn("admin", testutil.AdminPassword)
	return o.csrf(o.get("/ui/machines").body)
}

func TestReaderSeesButCannotDelete(t *testing.T) {
	t.Parallel()
	s := startFleet(t)
	pw := createUser(t, s, "rita", "Reader", "/subscriptions/default/resourceGroups/web")
	c := newUIClient(t, s)
	c.signIn("rita", pw)

	// The UI shows what the API lets rita read, and says why for the rest.
	if r := c.get(machineWeb); r.status != http.StatusOK || !strings.Contains(r.body, "i-0abc123def4567890") || !strings.Contains(r.body, "Reader") {
		t.Fatalf("reader detail: %d\n%s", r.status, r.body)
	}
	if r := c.get("/ui/machines?rg=web"); r.status != http.StatusOK || !strings.Contains(r.body, ">web-01<") {
		t.Errorf("reader inventory of rg web: %d", r.status)
	}
	r := c.get("/ui/machines/default/db/db-legacy")
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "does not have authorization to perform action") || strings.Contains(r.body, "PowerEdge") {
		t.Errorf("reader reading outside her scope: %d\n%s", r.status, r.body)
	}

	// Delete: refused by the API, shown with its message; the machine stays.
	page := c.get(machineWeb)
	r = c.post(machineWeb+"/delete", url.Values{"csrf": {c.csrf(page.body)}})
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "The machine was not deleted: User &#34;rita&#34; does not have authorization to perform action &#34;Corral.HybridCompute/machines/delete&#34;") {
		t.Fatalf("reader delete: %d\n%s", r.status, r.body)
	}
	if !strings.Contains(r.body, "i-0abc123def4567890") {
		t.Error("the refused delete does not show the machine again")
	}
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/subscriptions/default/resourceGroups/web/machines/web-01", s.AdminToken(t), nil, nil)

	// The denial is the API's own activity entry, with the browser's source
	// address and the correlation id the UI answered with.
	cid := r.header.Get("X-Correlation-ID")
	es := activity(t, s, url.Values{"caller": {"rita"}, "result": {"Denied"}, "action": {"Corral.HybridCompute/machines/delete"}})
	if len(es) != 1 {
		t.Fatalf("denied entries for rita: %+v", es)
	}
	if e := es[0]; e.Action != "Corral.HybridCompute/machines/delete" || e.SourceIP != "127.0.0.1" || e.CorrelationID != cid || cid == "" ||
		e.Scope != "/subscriptions/default/resourceGroups/web/machines/web-01" {
		t.Errorf("denied entry %+v, UI correlation id %q", e, cid)
	}
}

func TestActivityLogPage(t *testing.T) {
	t.Parallel()
	s := startFleet(t)
	pw := createUser(t, s, "rita", "Reader", "/subscriptions/default")
	rita := newUIClient(t, s)
	rita.signIn("rita", pw)
	rita.post(machineWeb+"/delete", url.Values{"csrf": {rita.csrf(rita.get(machineWeb).body)}}, "X-Correlation-ID", "corr-ui-test-1")

	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	r := c.get("/ui/activity")
	if r.status != http.StatusOK {
		t.Fatalf("activity: %d\n%s", r.status, r.body)
	}
	// Paths wrap only after a slash, never inside a name.
	if !strings.Contains(r.body, "Corral.HybridCompute/<wbr>machines/<wbr>") {
		t.Error("the activity page does not mark where actions may wrap")
	}
	r.body = strings.ReplaceAll(r.body, "<wbr>", "")
	for _, want := range []string{"<th>Correlation id</th>", "<th>Source IP</th>", "Corral.HybridCompute/machines/onboard/action",
		"Corral.HybridCompute/machines/delete", ">Denied<", ">Succeeded<", "corr-ui-test-1", "127.0.0.1", ">403<"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("activity page lacks %q", want)
		}
	}
	for query, check := range map[string]func(string) bool{
		"result=Denied": func(b string) bool {
			return strings.Contains(b, "corr-ui-test-1") && !strings.Contains(b, `badge-ok">Succeeded<`)
		},
		"caller=rita": func(b string) bool {
			return strings.Contains(b, "corr-ui-test-1") && !strings.Contains(b, "onboard/action")
		},
		"scope=%2Fsubscriptions%2Fdefault%2FresourceGroups%2Fdb": func(b string) bool {
			return strings.Contains(b, "/resourceGroups/db/machines/db-legacy") && !strings.Contains(b, "/resourceGroups/web/")
		},
		"to=2000-01-01T00%3A00":         func(b string) bool { return strings.Contains(b, "No entries match.") },
		"from=2000-01-01T00%3A00%3A00Z": func(b string) bool { return strings.Contains(b, "corr-ui-test-1") },
		"from=" + url.QueryEscape(time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04")): func(b string) bool { return strings.Contains(b, "No entries match.") },
	} {
		r := c.get("/ui/activity?" + query)
		r.body = strings.ReplaceAll(r.body, "<wbr>", "")
		if r.status != http.StatusOK || !check(r.body) {
			t.Errorf("activity?%s: %d, wrong entries\n%s", query, r.status, r.body)
		}
	}
	for query, msg := range map[string]string{
		"from=yesterday": "From must be a time such as 2026-11-24T08:00 (UTC)",
		"result=Maybe":   "Result must be Succeeded, Failed or Denied.",
		"from=2026-01-02T00:00&to=2026-01-01T00:00": "To is before From.",
		"scope=subscriptions":                       "Scope must be a resource path",
	} {
		r := c.get("/ui/activity?" + query)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, msg) {
			t.Errorf("activity?%s: %d, want 400 with %q", query, r.status, msg)
		}
	}
	// Rita may not read the log at "/": the API's answer is shown.
	if r := rita.get("/ui/activity"); r.status != http.StatusForbidden || !strings.Contains(r.body, "activityLogs/read") {
		t.Errorf("reader activity at /: %d\n%s", r.status, r.body)
	}
}

func TestDeviceCodeApproval(t *testing.T) {
	t.Parallel()
	s := startFleet(t)
	// An agent asks for a device code, as `corral-agent connect --use-device-code` does.
	var dc wire.DeviceCodeResponse
	resp, err := s.Client.PostForm(s.URL+wire.PathDeviceCode, url.Values{"subscription_id": {"default"}, "resource_group": {"web"}, "machine_name": {"web-02"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeJSON(resp, &dc); err != nil || dc.UserCode == "" {
		t.Fatalf("device code: %v %+v", err, dc)
	}
	if !strings.HasSuffix(dc.VerificationURI, "/ui/devicecodes") {
		t.Errorf("verification_uri %q does not point at the UI", dc.VerificationURI)
	}

	// A reader cannot approve; the API says why.
	pw := createUser(t, s, "rita", "Reader", "/")
	rita := newUIClient(t, s)
	rita.signIn("rita", pw)
	rp := rita.get("/ui/devicecodes")
	if rp.status != http.StatusOK || strings.Contains(rp.body, dc.UserCode) {
		t.Errorf("a reader sees pending code %s (status %d)", dc.UserCode, rp.status)
	}
	r := rita.post("/ui/devicecodes/approve", url.Values{"csrf": {rita.csrf(rp.body)}, "code": {dc.UserCode}})
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "was not approved") || !strings.Contains(r.body, "does not have authorization") {
		t.Errorf("reader approve: %d\n%s", r.status, r.body)
	}

	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	lower := strings.ToLower(strings.ReplaceAll(dc.UserCode, "-", ""))
	page := c.get("/ui/devicecodes?code=" + lower)
	if page.status != http.StatusOK || !strings.Contains(page.body, `value="`+dc.UserCode+`"`) || !strings.Contains(page.body, `class="highlight"`) ||
		!strings.Contains(page.body, "web-02") {
		t.Fatalf("device codes page: %d\n%s", page.status, page.body)
	}
	token := c.csrf(page.body)
	if r := c.post("/ui/devicecodes/approve", url.Values{"csrf": {token}, "code": {"not a code"}}); r.status != http.StatusBadRequest ||
		!strings.Contains(r.body, "Enter the 8-character code") {
		t.Errorf("bad code: %d\n%s", r.status, r.body)
	}
	if r := c.post("/ui/devicecodes/approve", url.Values{"code": {dc.UserCode}}); r.status != http.StatusForbidden {
		t.Errorf("approve without CSRF token: %d", r.status)
	}
	r = c.post("/ui/devicecodes/approve", url.Values{"csrf": {token}, "code": {lower}})
	if r.status != http.StatusSeeOther || r.location != "/ui/devicecodes?approved="+dc.UserCode {
		t.Fatalf("approve: %d %q\n%s", r.status, r.location, r.body)
	}
	after := c.get(r.location)
	if !strings.Contains(after.body, "Code "+dc.UserCode+" approved.") || strings.Contains(after.body, `<td data-label="Code" class="mono strong">`+dc.UserCode) {
		t.Errorf("after approval:\n%s", after.body)
	}
	// The agent's poll now gets its restricted token.
	resp, err = s.Client.PostForm(s.URL+wire.PathToken, url.Values{"grant_type": {wire.GrantDeviceCode}, "device_code": {dc.DeviceCode}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("device token after approval: %d", resp.StatusCode)
	}
	// Approving twice is the API's conflict.
	if r := c.post("/ui/devicecodes/approve", url.Values{"csrf": {token}, "code": {dc.UserCode}}); r.status != http.StatusConflict {
		t.Errorf("second approval: %d", r.status)
	}
}

func TestStaticAssetsAndNotFound(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	c := newUIClient(t, s)
	page := c.get("/ui/signin")
	m := regexp.MustCompile(`<link rel="stylesheet" href="([^"]+)">`).FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no stylesheet link:\n%s", page.body)
	}
	css := strings.ReplaceAll(m[1], "&amp;", "&")
	r := c.get(css)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") ||
		!strings.Contains(r.header.Get("Cache-Control"), "immutable") || !strings.Contains(r.body, ".badge") {
		t.Errorf("GET %s: %d %q %q", css, r.status, r.header.Get("Content-Type"), r.header.Get("Cache-Control"))
	}
	if r := c.get("/ui/static/ui.js"); r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("unversioned asset: %d %q", r.status, r.header.Get("Cache-Control"))
	}
	for _, p := range []string{"/ui/static/", "/ui/static/nope.css", "/ui/nope"} {
		if r := c.get(p); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.status)
		}
	}
	if strings.Contains(page.body, "<script>") || strings.Contains(page.body, " style=") || strings.Contains(page.body, "onclick") {
		t.Error("the page has inline script or style, which the CSP forbids")
	}
}
