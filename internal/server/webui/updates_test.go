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

// TestUpdatePages: the inventory's update column, a machine's pending
// updates searchable by name, "check for updates" and "update now", the
// run page with per-machine and per-package results, and schedules — all
// through the API with the user's rights.
func TestUpdatePages(t *testing.T) {
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "web")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "web", "web-01", awsProps)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)

	inv := c.get("/ui/machines")
	if inv.status != http.StatusOK || !strings.Contains(inv.body, ">Updates</th>") || !strings.Contains(inv.body, `title="not assessed"`) {
		t.Fatalf("inventory without an update column:\n%s", inv.body)
	}
	page := c.get("/ui/machines/default/web/web-01/updates")
	if page.status != http.StatusOK || !strings.Contains(page.body, "Not assessed yet.") {
		t.Fatalf("updates page of a machine never assessed: %d\n%s", page.status, page.body)
	}
	csrf := c.csrf(page.body)

	// Check for updates: a request through the API; the machine answers.
	r := c.post("/ui/machines/default/web/web-01/updates/assess", url.Values{"csrf": {csrf}})
	if r.status != http.StatusSeeOther || !strings.HasSuffix(r.location, "/updates?assessed=1") {
		t.Fatalf("check for updates: %d %s\n%s", r.status, r.location, r.body)
	}
	ups := append(testutil.SamplePendingUpdates(), wire.PendingUpdate{Name: "<script>x</script>", InstalledVersion: "1", CandidateVersion: "2",
		Source: "bookworm", Classification: wire.UpdateOther})
	if n := s.AnswerUpdates(t, m, ups, nil); n != 1 {
		t.Fatalf("the request did not reach the machine: %d", n)
	}
	page = c.get("/ui/machines/default/web/web-01/updates")
	if !strings.Contains(page.body, "0 critical, 4 security, 3 other") || strings.Contains(page.body, "<script>x</script>") ||
		!strings.Contains(page.body, "&lt;script&gt;x&lt;/script&gt;") {
		t.Errorf("pending updates page:\n%s", page.body)
	}
	search := c.get("/ui/machines/default/web/web-01/updates?q=perl")
	if n := strings.Count(search.body, `<tr data-update="`); n != 4 || strings.Contains(search.body, `data-update="curl"`) {
		t.Errorf("search for perl shows %d updates:\n%s", n, search.body)
	}
	if inv := c.get("/ui/machines"); !strings.Contains(inv.body, "0 / 4 / 3") {
		t.Errorf("inventory after the assessment has no counts:\n%s", inv.body)
	}
	if mp := c.get("/ui/machines/default/web/web-01"); !strings.Contains(mp.body, `id="machine-update-counts"`) || !strings.Contains(mp.body, "0 / 4 / 3") {
		t.Errorf("machine page has no update card:\n%s", mp.body)
	}

	// Update now: bad input is shown next to the form, nothing deployed.
	r = c.post("/ui/machines/default/web/web-01/updates/deploy", url.Values{"csrf": {csrf}, "reboot": {"Never"}, "window": {"120m"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Choose at least one classification") {
		t.Errorf("deploy without a classification: %d\n%s", r.status, r.body)
	}
	r = c.post("/ui/machines/default/web/web-01/updates/deploy", url.Values{"csrf": {csrf}, "security": {"1"}, "reboot": {"Never"}, "window": {"30m"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "outside 60–235 minutes") {
		t.Errorf("deploy with a 30m window: %d\n%s", r.status, r.body)
	}
	r = c.post("/ui/machines/default/web/web-01/updates/deploy", url.Values{"csrf": {csrf}, "security": {"1"}, "reboot": {"IfRequired"},
		"window": {"120m"}, "exclude": {"libperl*"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/ui/updates/runs/default/") {
		t.Fatalf("update now: %d %s\n%s", r.status, r.location, r.body)
	}
	runPage := r.location
	run := c.get(runPage)
	if !strings.Contains(run.body, "InProgress") || !strings.Contains(run.body, "data-refresh") {
		t.Errorf("run page in progress:\n%s", run.body)
	}
	s.AnswerUpdates(t, m, ups, nil)
	testutil.Eventually(t, 15*time.Second, func() string {
		if run = c.get(runPage); !strings.Contains(run.body, `id="run-status">Succeeded`) {
			return "run not Succeeded yet"
		}
		return ""
	})
	if !strings.Contains(run.body, `data-package="perl"`) || !regexp.MustCompile(`data-package="perl">.*?Installed`).MatchString(strings.ReplaceAll(run.body, "\n", "")) {
		t.Errorf("run page without per-package results:\n%s", run.body)
	}
	if !strings.Contains(c.get("/ui/updates").body, `data-run="`) {
		t.Error("the overview does not list the run")
	}

	// Schedules: a bad cron is refused with the API's message; a good one is
	// listed and can be deleted.
	sp := c.get("/ui/updates/schedules")
	csrf = c.csrf(sp.body)
	r = c.post("/ui/updates/schedules", url.Values{"csrf": {csrf}, "sub": {"default"}, "name": {"sunday"}, "kind": {"Deployment"},
		"cron": {"0 3 * * SUNDAYS"}, "timeZone": {"Europe/Paris"}, "security": {"1"}, "reboot": {"IfRequired"}, "window": {"120m"}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "bad cron expression") {
		t.Errorf("bad cron: %d\n%s", r.status, r.body)
	}
	r = c.post("/ui/updates/schedules", url.Values{"csrf": {csrf}, "sub": {"default"}, "name": {"sunday"}, "kind": {"Deployment"},
		"cron": {"0 3 * * SUN"}, "timeZone": {"Europe/Paris"}, "security": {"1"}, "critical": {"1"}, "reboot": {"IfRequired"}, "window": {"120m"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("create schedule: %d\n%s", r.status, r.body)
	}
	if sp = c.get("/ui/updates/schedules"); !strings.Contains(sp.body, `data-schedule="sunday"`) || !strings.Contains(sp.body, "0 3 * * SUN Europe/Paris") {
		t.Errorf("schedules page:\n%s", sp.body)
	}
	if r = c.post("/ui/updates/schedules/default/sunday/delete", url.Values{"csrf": {csrf}}); r.status != http.StatusSeeOther {
		t.Errorf("delete schedule: %d\n%s", r.status, r.body)
	}

	// A form without the CSRF token reaches nothing.
	if r = c.post("/ui/machines/default/web/web-01/updates/assess", url.Values{}); r.status != http.StatusForbidden {
		t.Errorf("assess without CSRF: %d", r.status)
	}

	// A Reader sees results and changes nothing.
	pw := createUser(t, s, "rita", "Reader", "/")
	rc := newUIClient(t, s)
	rc.signIn("rita", pw)
	page = rc.get("/ui/machines/default/web/web-01/updates")
	if page.status != http.StatusOK || !strings.Contains(page.body, "0 critical, 4 security, 3 other") {
		t.Errorf("reader's view: %d\n%s", page.status, page.body)
	}
	r = rc.post("/ui/machines/default/web/web-01/updates/deploy", url.Values{"csrf": {rc.csrf(page.body)}, "security": {"1"}, "reboot": {"Never"}, "window": {"120m"}})
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "Nothing was deployed") {
		t.Errorf("reader's deploy: %d\n%s", r.status, r.body)
	}
}
