package webui_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/browser"
	"github.com/corralhq/corral/internal/wire"
)

// TestBrowserPolicy drives headless Chromium from the Policy navigation
// entry to the compliance of a scope, an assignment's machines and a
// machine's rule with its evidence and the non-compliance message, and on
// to the machine page's compliance card, with no console error under the
// Content-Security-Policy.
func TestBrowserPolicy(t *testing.T) {
	t.Parallel()
	ctx := browser.New(t, 90*time.Second)
	s := startFleet(t)
	admin := s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/policyDefinitions", admin, `{"name":"need-owner","properties":{"mode":"Indexed",
		"policyRule":{"if":{"field":"tags['owner']","exists":false},"then":{"effect":"audit"}}}}`, nil)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/policyAssignments/owner", admin, wire.PolicyAssignmentCreate{Definition: "need-owner",
		Scope: "/subscriptions/default/resourceGroups/web", NonComplianceMessage: "every machine needs an owner"}, nil)
	console := collectConsole(ctx, t)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("sign in",
		chromedp.Navigate(s.URL+"/ui/signin"),
		chromedp.WaitVisible(chromedp.ID("signin-form")),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), testutil.AdminPassword),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("machines")),
	)
	do("open the policy page and an assignment",
		chromedp.Click(chromedp.CSS(`a[href="/ui/policy"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-assignment="owner"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-assignment="owner"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`details[data-machine="web-01"] tr[data-rule="need-owner"]`)),
	)
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`details[data-machine="web-01"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v, "NonCompliant") || !strings.Contains(v, "every machine needs an owner") {
		t.Errorf("web-01's compliance: %q", v)
	}
	do("follow the machine link to its compliance card",
		chromedp.Click(chromedp.CSS(`details[data-machine="web-01"] summary a`)),
		chromedp.WaitVisible(chromedp.CSS(`#machine-compliance tr[data-rule="need-owner"]`)),
	)
	if msgs := console(); len(msgs) > 0 {
		t.Errorf("console errors: %v", msgs)
	}
}
