package webui

import (
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"/ui/activity?result=Denied":  "/ui/activity?result=Denied",
		"/ui/devicecodes?code=BCDF":   "/ui/devicecodes?code=BCDF",
		"":                            "/ui/machines",
		"https://evil.example/ui/":    "/ui/machines",
		"//evil.example/ui/":          "/ui/machines",
		"/ui/\\evil.example":          "/ui/machines",
		"/api/v1/me":                  "/ui/machines",
		"/ui/signin?next=/ui/signin":  "/ui/machines",
		"/ui/static/style.css":        "/ui/machines",
		"/ui/machines\r\nSet-Cookie:": "/ui/machines",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestCheckSameOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                  string
		origin, referer, site string
		ok                    bool
	}{
		{"no headers (script, old browser): the token decides", "", "", "", true},
		{"same origin", "https://cp.example:8443", "", "same-origin", true},
		{"user-typed navigation", "", "", "none", true},
		{"same-origin referer", "", "https://cp.example:8443/ui/machines", "", true},
		{"other origin", "https://evil.example", "", "", false},
		{"other port", "https://cp.example:9443", "", "", false},
		{"http downgrade", "http://cp.example:8443", "", "", false},
		{"opaque origin", "null", "", "", false},
		{"same-site is not same-origin", "", "", "same-site", false},
		{"cross-site", "", "", "cross-site", false},
		{"foreign referer", "", "https://evil.example/x", "", false},
	} {
		r := httptest.NewRequest("POST", "https://cp.example:8443/ui/signout", nil)
		for k, v := range map[string]string{"Origin": tc.origin, "Referer": tc.referer, "Sec-Fetch-Site": tc.site} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		if err := checkSameOrigin(r); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestSessionCSRF(t *testing.T) {
	t.Parallel()
	a, b := sessionCSRF("token-a"), sessionCSRF("token-b")
	if a == b || a != sessionCSRF("token-a") || len(a) != 43 {
		t.Errorf("sessionCSRF: %q %q", a, b)
	}
	if tokenMatches("", "") || tokenMatches(a, "") || !tokenMatches(a, a) || tokenMatches(b, a) {
		t.Error("tokenMatches accepts what it must refuse or refuses its own token")
	}
}

func TestRelativeTimes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		got, want string
	}{
		{ago(now, time.Time{}), "never"},
		{ago(now, now.Add(-45*time.Second)), "45s ago"},
		{ago(now, now.Add(-3*time.Minute)), "3m ago"},
		{ago(now, now.Add(-30*time.Hour)), "30h ago"},
		{ago(now, now.Add(-72*time.Hour)), "3d ago"},
		{ago(now, now.Add(14*time.Minute)), "in 14m"},
		{expiry(now, now.Add(89*24*time.Hour+time.Hour)), "in 89 days"},
		{expiry(now, now.Add(5*time.Hour)), "in 5h"},
		{expiry(now, now.Add(-48*time.Hour)), "expired 2d ago"},
		{expiry(now, time.Time{}), ""},
		{formatBytes(16 << 30), "16.0 GiB"},
		{formatBytes(1536), "1.5 KiB"},
		{formatBytes(0), "—"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestInputParsing(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"bcdf-ghjk": "BCDF-GHJK", " BCDFGHJK ": "BCDF-GHJK", "BCDF-GHJK": "BCDF-GHJK"} {
		if got, ok := normalizeUserCode(in); !ok || got != want {
			t.Errorf("normalizeUserCode(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "BCDF", "BCDF-GHJK-X", "BC/F-GHJK", "../../x"} {
		if _, ok := normalizeUserCode(in); ok {
			t.Errorf("normalizeUserCode(%q) accepted", in)
		}
	}
	for in, want := range map[string]string{
		"2026-11-24T08:00":          "2026-11-24T08:00:00Z",
		"2026-11-24T08:00:30":       "2026-11-24T08:00:30Z",
		"2026-11-24T08:00:00+01:00": "2026-11-24T07:00:00Z",
		"2026-11-24":                "2026-11-24T00:00:00Z",
	} {
		got, err := parseFormTime("From", in)
		if err != nil || got.Format(time.RFC3339) != want {
			t.Errorf("parseFormTime(%q) = %v %v, want %s", in, got, err, want)
		}
	}
	if _, err := parseFormTime("From", "last tuesday"); err == nil {
		t.Error("parseFormTime accepted prose")
	}
}

func TestRefreshAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for age, want := range map[time.Duration]int{-time.Second: 1, 0: 1, 9 * time.Second: 1, 30 * time.Second: 2,
		5 * time.Minute: 5, time.Hour: 15} {
		if got := refreshAfter(now, now.Add(-age)); got != want {
			t.Errorf("refreshAfter(%v old) = %d, want %d", age, got, want)
		}
	}
}

func TestParseParameters(t *testing.T) {
	t.Parallel()
	got, err := parseParameters("A=1\r\n\r\n  B = x=y \r\nEMPTY=\n")
	if err != nil || len(got) != 3 || got["A"] != "1" || got["B"] != " x=y " || got["EMPTY"] != "" {
		t.Errorf("parseParameters = %q, %v", got, err)
	}
	if got, err := parseParameters(" \r\n"); err != nil || got != nil {
		t.Errorf("blank parameters = %q, %v, want none", got, err)
	}
	for text, msg := range map[string]string{
		"A=1\nsecret-value": "Parameters: line 2 is not KEY=VALUE.",
		"=secret-value":     "Parameters: line 1 is not KEY=VALUE.",
		"A=1\nA=2":          "Parameters: A is given twice.",
	} {
		if _, err := parseParameters(text); err == nil || err.Error() != msg {
			t.Errorf("parseParameters(%q) error %v, want %q", text, err, msg)
		}
	}
}

func TestExtensionSetBody(t *testing.T) {
	t.Parallel()
	f := extensionForm{Package: "Corral/RunCommand", Version: "1.0.0", Settings: " {\"a\": 1}\r\n"}
	b, err := extensionSetBody(&f, ` {"k":"v"} `, false)
	if err != nil || f.Name != "RunCommand" ||
		string(b) != `{"publisher":"Corral","type":"RunCommand","version":"1.0.0","settings":{"a":1},"protectedSettings":{"k":"v"}}` {
		t.Errorf("body %s, name %q, err %v", b, f.Name, err)
	}
	f = extensionForm{Name: "x", Package: "Corral/RunCommand"}
	if b, err := extensionSetBody(&f, "", true); err != nil || string(b) != `{"publisher":"Corral","type":"RunCommand","protectedSettings":{}}` {
		t.Errorf("clear protected settings: %s %v", b, err)
	}
	const secret = "do-not-echo"
	for _, tc := range []struct {
		form      extensionForm
		protected string
		clear     bool
	}{
		{extensionForm{Package: "Corral"}, "", false},
		{extensionForm{Package: "a/b/c"}, "", false},
		{extensionForm{Package: "Corral/RunCommand", Name: "a b"}, "", false},
		{extensionForm{Package: "Corral/RunCommand", Settings: "{"}, "", false},
		{extensionForm{Package: "Corral/RunCommand"}, "{" + secret, false},
		{extensionForm{Package: "Corral/RunCommand"}, `{"k":"` + secret + `"}`, true},
	} {
		_, err := extensionSetBody(&tc.form, tc.protected, tc.clear)
		if _, ok := err.(formError); !ok || strings.Contains(err.Error(), secret) {
			t.Errorf("%+v: error %v, want a form error without the protected settings", tc.form, err)
		}
	}
}

func TestPackageChoices(t *testing.T) {
	t.Parallel()
	got := packageChoices([]wire.ExtensionPackage{
		{Publisher: "Zeta", Type: "Agent", Version: "1.0.0", Listed: true},
		{Publisher: "Contoso", Type: "Agent", Version: "1.2.0", Listed: true},
		{Publisher: "Contoso", Type: "Agent", Version: "1.10.0", Listed: true},
		{Publisher: "Contoso", Type: "Agent", Version: "2.0.0"}, // uploaded, not in the catalog
		{Publisher: "Contoso", Type: "Hidden", Version: "1.0.0"},
	})
	want := []packageChoice{{Value: "Contoso/Agent", Versions: []string{"1.10.0", "1.2.0"}}, {Value: "Zeta/Agent", Versions: []string{"1.0.0"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("packageChoices = %+v, want %+v", got, want)
	}
}

func TestOutputCapped(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"":        false,
		"hello\n": false,
		"aaa\n[output truncated: 134502 more bytes]":          true,
		strings.Repeat("a", wire.MaxHandlerOutputBytes):       true,
		"[output truncated: 3 more bytes] is what it printed": false,
		"x\n[output truncated: 3 more bytes]\nand more":       false,
	} {
		if got := outputCapped(s); got != want {
			t.Errorf("outputCapped(%.40q) = %v, want %v", s, got, want)
		}
	}
}
