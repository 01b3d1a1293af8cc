package webui_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/browser"
	"github.com/corralhq/corral/internal/wire"
)

// TestBrowserUpdates drives headless Chromium through update management:
// from the inventory's update cell to the machine's updates page, "Check
// for updates", the pending list following the (simulated) agent's answer,
// a search by name, "Update now" with the confirm-free machine form, and
// the run page following the agent's result to Succeeded. No page may log
// a console error under its Content-Security-Policy.
func TestBrowserUpdates(t *testing.T) {
	t.Parallel()
	ctx := browser.New(t, 90*time.Second)
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "web")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "web", "web-01", awsProps)
	console := collectConsole(ctx, t)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	do("sign in",
		chromedp.Navigate(s.URL+"/ui/signin"),
		chromedp.WaitVisible(chromedp.ID("signin-form")),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), testutil.AdminPassword),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("machines")),
	)
	do("open the machine's updates from the inventory",
		chromedp.Click(chromedp.CSS(`a[href="/ui/machines/default/web/web-01/updates"]`)),
		chromedp.WaitVisible(chromedp.ID("check-updates")),
		chromedp.Click(chromedp.ID("check-updates")),
	)
	// The page after the request, not the one before it (its table was
	// visible already): the assessment is asked for.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		state, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#assessment-state")))
		if err == nil && strings.HasPrefix(state, wire.AssessmentPending) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the assessment is not shown Pending after the request: %q, %v", state, err)
		}
	}
	do("see the pending table", chromedp.WaitVisible(chromedp.ID("pending-updates")))
	s.AnswerUpdates(t, m, testutil.SamplePendingUpdates(), nil)
	do("see the answer (the page reloads itself while the assessment is pending)",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-update="perl-base"]`)))
	if counts := text("#pending-counts"); !strings.Contains(counts, "4 security, 2 other") {
		t.Errorf("pending counts: %q", counts)
	}
	do("search by name",
		chromedp.SendKeys(chromedp.ID("update-search-name"), "curl"),
		chromedp.Submit(chromedp.ID("update-search-name")),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-update="perl"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-update="curl"]`)),
	)
	if rows := text("#pending-updates tbody"); strings.Contains(rows, "perl") {
		t.Errorf("search for curl shows perl: %s", rows)
	}
	do("update now",
		chromedp.Click(chromedp.ID("deploy-submit")),
		chromedp.WaitVisible(chromedp.ID("run-status")),
	)
	s.AnswerUpdates(t, m, testutil.SamplePendingUpdates(), nil)
	do("see the run succeed", chromedp.WaitVisible(chromedp.CSS(`#run-status.badge-ok`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-package="perl"]`)))
	if msgs := console(); len(msgs) > 0 {
		t.Errorf("console errors: %v", msgs)
	}
}
