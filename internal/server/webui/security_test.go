package webui_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/browser"
	"github.com/corralhq/corral/internal/wire"
)

// protectedFleet is a server with machine sec-01 in resource group web,
// protection enabled there, a status report and two detections (one with
// markup in its path).
func protectedFleet(t *testing.T) (*testutil.Server, []wire.Alert) {
	t.Helper()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	id, secret := s.OnboardingPrincipal(t, "web")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "web", "sec-01", wire.MachineProperties{OSType: "linux"})
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/web/protection", admin,
		wire.ProtectionEnable{Settings: wire.DefaultProtectionSettings(), Schedule: &wire.ProtectionSchedule{Type: "quick", Every: wire.Duration(24 * time.Hour)}}, nil)
	var reports []wire.Report
	add := func(kind string, body any) {
		b, _ := json.Marshal(body)
		reports = append(reports, wire.Report{ID: kind + string(rune('a'+len(reports))), Kind: kind, TakenAt: time.Now(), Body: b})
	}
	add(wire.ReportProtectionStatus, wire.ProtectionStatus{State: wire.ProtectionRunning, EngineVersion: "2026.11.0", SignatureVersion: 3,
		Signatures: 1201, RealtimeEnabled: true, RealtimeMode: "fanotify", Blocking: true, Action: "quarantine",
		LastScan: &wire.ProtectionScanSummary{ID: "s1", Type: "quick", State: wire.ScanSucceeded, Infected: 1, FinishedAt: time.Now()}})
	add(wire.ReportProtectionDetection, wire.ProtectionDetection{ID: "d1", Time: time.Now().Add(-time.Minute), Path: "/tmp/eicar.com",
		SHA256: strings.Repeat("ab", 32), Signature: "Eicar-Test-Signature", Source: "realtime", Action: wire.DetectionQuarantined,
		Process: "/usr/bin/wget"})
	add(wire.ReportProtectionDetection, wire.ProtectionDetection{ID: "d2", Time: time.Now(), Path: "/srv/<script>alert(1)</script>.com",
		SHA256: strings.Repeat("cd", 32), Signature: "Test.<b>Bold</b>", Source: "scan", ScanID: "s1", Action: wire.DetectionNotRemoved,
		Error: "quarantine failed, the file stays where it was: no space left on device"})
	if status, b := s.DoMachine(t, m, "POST", wire.PathReports, wire.ReportBatch{Reports: reports}); status != 200 {
		t.Fatalf("reports: %d %s", status, b)
	}
	var l wire.List[wire.Alert]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/protection/alerts", admin, nil, &l)
	if len(l.Value) != 2 {
		t.Fatalf("alerts %+v", l.Value)
	}
	return s, l.Value
}

func TestSecurityView(t *testing.T) {
	t.Parallel()
	s, alerts := protectedFleet(t)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	r := c.get("/ui/security")
	if r.status != http.StatusOK {
		t.Fatalf("security page: %d\n%s", r.status, r.body)
	}
	for _, want := range []string{`aria-current="page">Security<`, `id="machine-protection"`, ">sec-01<", "fanotify + blocking", "v3 · 1201",
		"quick Succeeded, 1 infected", "/tmp/eicar.com", "Eicar-Test-Signature", "/usr/bin/wget",
		"quarantine failed, the file stays where it was: no space left on device", "/subscriptions/default/resourceGroups/web</span> (quarantine, real time, quick scan every 24h0m0s)",
		`action="/ui/security/alerts/` + alerts[0].ID + `/acknowledge"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("security page lacks %q", want)
		}
	}
	// Reported text is escaped, never markup.
	if strings.Contains(r.body, "<script>alert(1)") || strings.Contains(r.body, "<b>Bold") || !strings.Contains(r.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("reported path or signature rendered as markup")
	}

	// Filters go to the API; bad ones say what is wrong.
	if r := c.get("/ui/security?state=Active&machine=sec-01&scope=/subscriptions/default/resourceGroups/web"); r.status != http.StatusOK ||
		!strings.Contains(r.body, "2 shown") {
		t.Errorf("filtered: %d", r.status)
	}
	for q, want := range map[string]string{"state=Open": "State must be Active or Acknowledged", "scope=web": "Scope must be a resource path",
		"machine=a/b": "Machine must be a machine name", "top=0": "Page size"} {
		if r := c.get("/ui/security?" + q); r.status != http.StatusBadRequest || !strings.Contains(r.body, want) {
			t.Errorf("security?%s: %d, want 400 with %q", q, r.status, want)
		}
	}
	if r := c.get("/ui/security?state=Active&top=1"); !strings.Contains(r.body, `id="next-page"`) || !strings.Contains(r.body, "1 shown") {
		t.Error("paging: no link to the older alerts")
	}

	// Acknowledge needs the CSRF token; with it the alert is acknowledged
	// and the view comes back with it highlighted.
	ack := "/ui/security/alerts/" + alerts[0].ID + "/acknowledge"
	if r := c.post(ack, url.Values{"back": {"/ui/security?state=Active"}}); r.status != http.StatusForbidden {
		t.Errorf("acknowledge without CSRF: %d", r.status)
	}
	r = c.post(ack, url.Values{"csrf": {c.csrf(r.body)}, "back": {"/ui/security?state=Acknowledged"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/ui/security?state=Acknowledged&acked=") {
		t.Fatalf("acknowledge: %d %q\n%s", r.status, r.location, r.body)
	}
	r = c.get(r.location)
	if !strings.Contains(r.body, "Alert "+alerts[0].ID+" acknowledged.") || !strings.Contains(r.body, `class="highlight"`) || !strings.Contains(r.body, "by admin") {
		t.Errorf("after acknowledging:\n%s", r.body)
	}
	// An open redirect through "back" is not possible.
	page := c.get("/ui/security")
	if r := c.post("/ui/security/alerts/"+alerts[1].ID+"/acknowledge", url.Values{"csrf": {c.csrf(page.body)}, "back": {"https://evil.example/"}}); r.status != http.StatusSeeOther ||
		!strings.HasPrefix(r.location, "/ui/security?") {
		t.Errorf("acknowledge with a foreign back link: %d %q", r.status, r.location)
	}
	if es := activity(t, s, url.Values{"action": {"Corral.Security/alerts/acknowledge/action"}}); len(es) != 2 {
		t.Errorf("acknowledgements in the activity log: %+v", es)
	}
}

func TestReaderSeesAlertsButCannotAcknowledge(t *testing.T) {
	t.Parallel()
	s, alerts := protectedFleet(t)
	pw := createUser(t, s, "sam", "Security Reader", "/subscriptions/default/resourceGroups/web")
	c := newUIClient(t, s)
	c.signIn("sam", pw)
	r := c.get("/ui/security?rg=web")
	if r.status != http.StatusForbidden && r.status != http.StatusOK {
		t.Fatalf("security page as a security reader: %d", r.status)
	}
	// sam reads the group: the alerts of the group and its machines show,
	// the alerts of the group's scope by default.
	r = c.get("/ui/security?rg=web")
	if r.status != http.StatusOK || !strings.Contains(r.body, "/tmp/eicar.com") || !strings.Contains(r.body, ">sec-01<") {
		t.Fatalf("security page of the group as a security reader: %d\n%s", r.status, r.body)
	}
	r = c.post("/ui/security/alerts/"+alerts[0].ID+"/acknowledge", url.Values{"csrf": {c.csrf(r.body)}, "back": {"/ui/security?rg=web"}})
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "was not acknowledged") || !strings.Contains(r.body, "Corral.Security/alerts/acknowledge/action") {
		t.Errorf("acknowledge as a security reader: %d\n%s", r.status, r.body)
	}
	var a wire.Alert
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/protection/alerts/"+alerts[0].ID, s.AdminToken(t), nil, &a)
	if a.State != wire.AlertActive {
		t.Errorf("a refused acknowledgement changed the alert: %+v", a)
	}
}

// TestBrowserSecurityView drives headless Chromium: the Security entry of
// the navigation, the machine's protection status and an alert
// acknowledged with its form, without a console error under the CSP.
func TestBrowserSecurityView(t *testing.T) {
	t.Parallel()
	ctx := browser.New(t, 60*time.Second) // first: skips at once without Chromium
	s, alerts := protectedFleet(t)
	console := collectConsole(ctx, t)
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
	do("sign in and open the security view",
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("signin-form")),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), testutil.AdminPassword),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("machines")),
		chromedp.Click(chromedp.CSS(`a[href="/ui/security"]`)),
		chromedp.WaitVisible(chromedp.ID("alerts")),
	)
	if st := text("#machine-protection"); !strings.Contains(st, "sec-01") || !strings.Contains(st, "Running") || !strings.Contains(st, "fanotify") {
		t.Errorf("protection status table:\n%s", st)
	}
	do("acknowledge the first alert",
		chromedp.Click(chromedp.CSS(`form[action="/ui/security/alerts/`+alerts[0].ID+`/acknowledge"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`.alert-ok`)),
	)
	if n := text(".alert-ok"); !strings.Contains(n, "acknowledged") {
		t.Errorf("notice %q", n)
	}
	var a wire.Alert
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/protection/alerts/"+alerts[0].ID, s.AdminToken(t), nil, &a)
	if a.State != wire.AlertAcknowledged || a.AcknowledgedBy != "admin" {
		t.Errorf("alert after the browser acknowledged it: %+v", a)
	}
	if msgs := console(); len(msgs) > 0 {
		t.Errorf("console errors: %v", msgs)
	}
}
