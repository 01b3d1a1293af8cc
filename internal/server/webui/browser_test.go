package webui_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/browser"
	"github.com/corralhq/corral/internal/wire"
)

// TestBrowser drives real headless Chromium through the UI: sign in as the
// admin, find a machine onboarded through the connect endpoint in the
// inventory, open its detail page, set an extension and run a command
// there and watch the pages follow the (simulated) agent's reports, open
// the activity log, and delete a second machine through the confirm dialog
// of ui.js. Every page must load under its Content-Security-Policy without
// a console error.
func TestBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser.New(t, 60*time.Second) // first: skips at once without Chromium
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "web")
	onboardTok := s.ClientToken(t, id, secret)
	web01 := s.OnboardMachine(t, onboardTok, "web", "web-01", awsProps)
	s.OnboardMachine(t, onboardTok, "web", "web-02", onPremProps)

	start := time.Now()
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
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("signin-form")),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), testutil.AdminPassword),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("machines")),
	)
	if user, roles := text("#signed-in-user"), text(".user .roles"); user != "admin" || !strings.Contains(roles, "Owner") {
		t.Errorf("nav bar shows user %q roles %q", user, roles)
	}
	inventory := text("#machines")
	for _, want := range []string{"web-01", "web-02", "Connected", "AWS", "OnPrem", "Debian GNU/Linux 12 (bookworm)", "2026.11.0"} {
		if !strings.Contains(inventory, want) {
			t.Errorf("inventory lacks %q:\n%s", want, inventory)
		}
	}

	// The session cookie is out of reach of scripts and locked to the UI,
	// and the stylesheet applied despite the strict CSP.
	if jsCookie, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`)); err != nil || jsCookie != "" {
		t.Errorf("document.cookie = %q (%v), want nothing visible to scripts", jsCookie, err)
	}
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{s.URL + "/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == "corral_session" {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly || !session.Secure || session.SameSite != network.CookieSameSiteStrict || session.Path != "/ui/" {
		t.Errorf("session cookie: %s", describeCookie(session))
	}
	bg, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector(".topbar")).backgroundColor`))
	if err != nil || bg != "rgb(36, 41, 47)" {
		t.Errorf("the stylesheet did not apply: .topbar background %q (%v)", bg, err)
	}

	do("open the machine",
		chromedp.Click(chromedp.CSS(`a[href="/ui/machines/default/web/web-01"]`)),
		chromedp.WaitVisible(chromedp.ID("agent-config")),
	)
	if st, env, cfg := text("#machine-status"), text("#machine-environment"), text("#agent-config"); st != "Connected" || env != "AWS" ||
		!strings.Contains(cfg, "config.mode") || !strings.Contains(cfg, "full") {
		t.Errorf("detail: status %q environment %q configuration %q", st, env, cfg)
	}

	// Set Corral/RunCommand through the form: the page lists it Creating
	// and, once the agent reports, ui.js has reloaded it to Succeeded.
	protected := "browser-secret-" + rand.Text()
	do("set an extension",
		chromedp.SendKeys(chromedp.ID("ext-name"), "runcmd"),
		chromedp.SetValue(chromedp.ID("ext-package"), "Corral/RunCommand"),
		chromedp.SendKeys(chromedp.ID("ext-settings"), `{"source":"browser"}`),
		chromedp.SendKeys(chromedp.ID("ext-protected"), `{"token":"`+protected+`"}`),
		chromedp.Click(chromedp.ID("ext-submit")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-extension="runcmd"]`)),
	)
	if row := text(`tr[data-extension="runcmd"]`); !strings.Contains(row, "Corral/RunCommand") || !strings.Contains(row, "Creating") ||
		!strings.Contains(row, "yes") {
		t.Errorf("extension row after the set: %q", row)
	}
	var runcmd wire.MachineExtension
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/subscriptions/default/resourceGroups/web/machines/web-01/extensions/runcmd", s.AdminToken(t), nil, &runcmd)
	report(t, s, web01, wire.ReportExtension, wire.ExtensionStatus{Name: "runcmd", Publisher: "Corral", Type: "RunCommand", Version: "1.0.0",
		SeqNo: runcmd.SeqNo, Operation: "install", State: wire.ExtSucceeded, Message: "enabled"})
	do("see the extension succeed", chromedp.WaitVisible(chromedp.CSS(`tr[data-extension="runcmd"] .badge-ok`)))
	if html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); err != nil || strings.Contains(html, protected) {
		t.Errorf("the machine page shows the protected settings (%v)", err)
	}

	// Run a command; its page follows the run and shows what it printed as
	// text: a <script> in the output must not run.
	do("run a command",
		chromedp.SendKeys(chromedp.ID("run-command"), "cat /etc/motd"),
		chromedp.Click(chromedp.ID("run-submit")),
		chromedp.WaitVisible(chromedp.ID("run-state")),
	)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	runName := path.Base(u.Path)
	code := 0
	report(t, s, web01, wire.ReportRunCommand, wire.RunCommandResult{Name: runName, State: wire.RunSucceeded, ExitCode: &code,
		Stdout: `<script>alert("pwned")</script>`, FinishedAt: time.Now().UTC()})
	do("see the run's output", chromedp.WaitVisible(chromedp.ID("run-stdout")))
	if out, st := text("#run-stdout"), text("#run-state"); out != `<script>alert("pwned")</script>` || st != "Succeeded" {
		t.Errorf("run page: state %q output %q", st, out)
	}

	do("open the activity log",
		chromedp.Click(chromedp.CSS(`nav a[href="/ui/activity"]`)),
		chromedp.WaitVisible(chromedp.ID("activity")),
	)
	activityText := text("#activity")
	for _, want := range []string{"Corral.HybridCompute/machines/onboard/action", "Corral.Identity/oauth2/token/action", "127.0.0.1", "Succeeded"} {
		if !strings.Contains(activityText, want) {
			t.Errorf("activity log lacks %q", want)
		}
	}

	// Delete web-02 through its page: ui.js asks for confirmation, the
	// dialog is accepted, the API deletes the machine.
	do("delete a machine",
		chromedp.Navigate(s.URL+"/ui/machines/default/web/web-02"),
		chromedp.Click(chromedp.ID("delete-machine")),
		chromedp.WaitVisible(chromedp.CSS(".alert-ok")),
	)
	if notice := text(".alert-ok"); !strings.Contains(notice, `Machine "web-02" was deleted.`) {
		t.Errorf("notice after delete: %q", notice)
	}
	if got := dialogs(); len(got) != 1 || !strings.HasPrefix(got[0], "Delete machine web-02?") {
		t.Errorf("dialogs %q, want only the delete confirmation of ui.js (no alert from a run's output)", got)
	}
	if strings.Contains(s.Logs.String(), protected) {
		t.Error("the server log holds the protected settings typed in the browser")
	}
	if st, _ := s.Do(t, "GET", "/api/v1/subscriptions/default/resourceGroups/web/machines/web-02", s.AdminToken(t), nil); st != http.StatusNotFound {
		t.Errorf("web-02 after delete: the API answers %d, want 404", st)
	}
	t.Logf("browser session took %v", time.Since(start).Round(time.Millisecond))
	if msgs := console(); len(msgs) > 0 {
		t.Errorf("the pages logged errors (CSP violations, failed loads, exceptions):\n%s", strings.Join(msgs, "\n"))
	}
}

// collectConsole records the console errors and exceptions of the tab and
// the browser's own error log entries (CSP violations, failed loads). The
// returned func stops recording and returns what was seen.
func collectConsole(ctx context.Context, t *testing.T) func() []string {
	t.Helper()
	cctx, cancel := context.WithCancel(ctx)
	var (
		mu   sync.Mutex
		seen []string
		done = make(chan struct{})
	)
	messages := chromedp.Console(cctx)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				seen = append(seen, m.String()+" ("+m.URL+")")
				mu.Unlock()
			}
		}
	}()
	stop := func() []string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
	t.Cleanup(func() { stop() })
	return stop
}

// acceptDialogs subscribes now and, until ctx ends, accepts every
// JavaScript dialog (the delete confirmation) from another goroutine: an
// open dialog blocks the click that opened it. The returned func lists the
// messages of the dialogs accepted so far.
func acceptDialogs(ctx context.Context) func() []string {
	var (
		mu   sync.Mutex
		seen []string
	)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			mu.Lock()
			seen = append(seen, ev.Message)
			mu.Unlock()
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				return
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func describeCookie(c *network.Cookie) string {
	if c == nil {
		return "<none>"
	}
	return "path=" + c.Path + " httpOnly=" + boolText(c.HTTPOnly) + " secure=" + boolText(c.Secure) + " sameSite=" + string(c.SameSite)
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
