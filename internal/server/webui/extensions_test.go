package webui_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const (
	machineAPI    = "/api/v1/subscriptions/default/resourceGroups/web/machines/web-01"
	machineScope  = "/subscriptions/default/resourceGroups/web/machines/web-01"
	extensionsURL = machineWeb + "/extensions"
	runsURL       = machineWeb + "/runCommands"
)

// startExtensionFleet starts a server with machine web-01 onboarded as a
// current agent does (with a sealing key), and publisher Contoso listing
// Agent 1.0.0 and 1.1.0 in its signed catalog. The returned machine speaks
// the agent protocol, so tests can report as its agent would.
func startExtensionFleet(t *testing.T) (*testutil.Server, *testutil.Machine) {
	t.Helper()
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "web")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "web", "web-01", awsProps)
	pub := s.NewPublisher(t, "Contoso")
	for _, v := range []string{"1.0.0", "1.1.0"} {
		pub.Publish(t, s.API, wire.ExtensionManifest{Publisher: "Contoso", Type: "Agent", Version: v,
			Handlers: wire.ExtensionHandlers{Install: "./install.sh", Enable: "./install.sh"}},
			extpkg.File{Name: "install.sh", Body: []byte("#!/bin/sh\ntrue\n"), Mode: 0o755})
	}
	return s, m
}

// report posts one report as the machine's agent, over its mTLS identity.
func report(t *testing.T, s *testutil.Server, m *testutil.Machine, kind string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	batch := wire.ReportBatch{Reports: []wire.Report{{ID: fmt.Sprintf("r-%d", time.Now().UnixNano()), Kind: kind, TakenAt: time.Now(), Body: b}}}
	if st, resp := s.DoMachine(t, m, "POST", wire.PathReports, batch); st != http.StatusOK {
		t.Fatalf("report %s: %d %s", kind, st, resp)
	}
}

// getExtension reads an extension through the API as the admin.
func getExtension(t *testing.T, s *testutil.Server, name string) (int, wire.MachineExtension) {
	t.Helper()
	st, b := s.Do(t, "GET", machineAPI+"/extensions/"+name, s.AdminToken(t), nil)
	var e wire.MachineExtension
	if st == http.StatusOK {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
	}
	return st, e
}

// extensionRow is the table row of an extension on a machine page.
func extensionRow(t *testing.T, body, name string) string {
	t.Helper()
	i := strings.Index(body, `<tr data-extension="`+name+`"`)
	if i < 0 {
		t.Fatalf("no row for extension %s on the page:\n%s", name, body)
	}
	end := strings.Index(body[i:], "</tr>")
	return body[i : i+end]
}

// secretFree fails the test if a page or the server log holds secret.
func secretFree(t *testing.T, s *testutil.Server, secret string, pages ...result) {
	t.Helper()
	for i, p := range pages {
		if strings.Contains(p.body, secret) {
			t.Errorf("page %d shows the protected settings:\n%s", i, p.body)
		}
	}
	if strings.Contains(s.Logs.String(), secret) {
		t.Error("the server log holds the protected settings")
	}
}

func TestExtensionsOnMachinePage(t *testing.T) {
	t.Parallel()
	s, m := startExtensionFleet(t)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	secret := "protected-" + rand.Text()
	var seen []result

	page := c.get(machineWeb)
	seen = append(seen, page)
	for _, want := range []string{
		`id="extension-list"`, "No extensions on this machine.", `id="extension-form"`, `action="/ui/machines/default/web/web-01/extensions#extensions"`,
		// the select lists what the signed catalogs list, with versions newest first
		`<option value="Contoso/Agent">Contoso/Agent (1.1.0, 1.0.0)</option>`, `<option value="Corral/RunCommand">Corral/RunCommand (1.0.0)</option>`,
		`<optgroup label="Contoso/Agent">`, `<option value="">Latest listed</option>`,
		`id="run-form"`, `id="run-list"`, "No runs.",
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("machine page lacks %q", want)
		}
	}
	if strings.Contains(page.body, "data-refresh") {
		t.Error("a page with nothing in progress reloads itself")
	}
	token := c.csrf(page.body)

	// Install with public and protected settings: the API gets exactly the
	// form's values; the protected ones are sealed to the machine.
	r := c.post(extensionsURL, url.Values{"csrf": {token}, "name": {"agent"}, "package": {"Contoso/Agent"}, "version": {"1.0.0"},
		"settings": {"{\r\n  \"level\": \"debug\"\r\n}"}, "protectedSettings": {`{"apiKey":"` + secret + `"}`}})
	if r.status != http.StatusSeeOther || r.location != machineWeb+"?extension=agent#extensions" {
		t.Fatalf("set: %d %q\n%s", r.status, r.location, r.body)
	}
	st, e := getExtension(t, s, "agent")
	if st != http.StatusOK || e.Publisher != "Contoso" || e.Type != "Agent" || e.Version != "1.0.0" || string(e.Settings) != `{"level":"debug"}` ||
		!e.HasProtectedSettings || e.State != wire.ExtCreating || e.UpdatedBy != "admin" || e.SeqNo < 1 {
		t.Fatalf("extension after the form: %d %+v", st, e)
	}
	seq := e.SeqNo
	st, b := s.DoMachine(t, m, "GET", wire.PathDesiredState, nil)
	var ds wire.DesiredState
	if st != http.StatusOK || json.Unmarshal(b, &ds) != nil || len(ds.Extensions) != 1 {
		t.Fatalf("desired state: %d %s", st, b)
	}
	if plain, err := sealing.Open(m.SealingKey, extensions.SealingAAD(m.MachineID, "agent", "Contoso", "Agent"), ds.Extensions[0].ProtectedSettings); err != nil ||
		string(plain) != `{"apiKey":"`+secret+`"}` {
		t.Errorf("sealed protected settings open to %q (%v)", plain, err)
	}
	if es := activity(t, s, url.Values{"action": {"Corral.HybridCompute/machines/extensions/write"}}); len(es) != 1 ||
		es[0].Caller != "admin" || es[0].Message != "install Contoso/Agent 1.0.0" || es[0].SourceIP != "127.0.0.1" {
		t.Errorf("activity of the set: %+v", es)
	}

	// The page shows the new state, marks the row and reloads itself while
	// the agent works.
	page = c.get(machineWeb + "?extension=agent")
	seen = append(seen, page)
	row := extensionRow(t, page.body, "agent")
	for _, want := range []string{`class="highlight"`, ">Contoso/Agent<", ">1.0.0<", `<span class="badge badge-busy">Creating</span>`,
		"by admin", `<td data-label="Protected settings">yes</td>`, `href="/ui/machines/default/web/web-01?edit=agent#extension-form"`,
		`action="/ui/machines/default/web/web-01/extensions/agent/delete"`, `data-confirm="Remove extension agent (Contoso/Agent) from machine web-01?`} {
		if !strings.Contains(row, want) {
			t.Errorf("row lacks %q:\n%s", want, row)
		}
	}
	if !strings.Contains(page.body, `Extension &#34;agent&#34; was submitted`) || !strings.Contains(page.body, `<body data-refresh="1">`) ||
		!strings.Contains(page.body, `id="refresh-note"`) {
		t.Errorf("page after the set lacks the notice or the self-reload:\n%s", page.body)
	}

	// The agent refuses it by its local configuration: Failed with the reason.
	blocked := "blocked by the local agent configuration: Contoso/Agent is in extensions.blocklist"
	report(t, s, m, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", Publisher: "Contoso", Type: "Agent", SeqNo: seq,
		Operation: "install", State: wire.ExtFailed, Message: blocked})
	page = c.get(machineWeb)
	seen = append(seen, page)
	if row := extensionRow(t, page.body, "agent"); !strings.Contains(row, `<span class="badge badge-bad">Failed</span>`) || !strings.Contains(row, blocked) {
		t.Errorf("failed row:\n%s", row)
	}
	if strings.Contains(page.body, "data-refresh") {
		t.Error("the page still reloads itself with nothing in progress")
	}

	// Change: the form is filled from the extension, except the protected
	// settings, which are never shown.
	page = c.get(machineWeb + "?edit=agent")
	seen = append(seen, page)
	for _, want := range []string{"Change extension agent", `id="ext-name" name="name" value="agent"`,
		`<option value="Contoso/Agent" selected>`, `<option value="1.0.0" selected>1.0.0</option>`,
		"{\n  &#34;level&#34;: &#34;debug&#34;\n}</textarea>", `placeholder="leave empty to keep the current protected settings"></textarea>`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("change form lacks %q", want)
		}
	}
	// Upgrade without protected settings: the sealed ones are kept.
	r = c.post(extensionsURL, url.Values{"csrf": {token}, "name": {"agent"}, "package": {"Contoso/Agent"}, "version": {""},
		"settings": {`{"level":"info"}`}, "protectedSettings": {""}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("upgrade: %d\n%s", r.status, r.body)
	}
	if _, e := getExtension(t, s, "agent"); e.Version != "1.1.0" || e.State != wire.ExtUpdating || !e.HasProtectedSettings ||
		string(e.Settings) != `{"level":"info"}` || e.SeqNo != seq+1 {
		t.Errorf("after the upgrade: %+v", e)
	}
	page = c.get(machineWeb)
	seen = append(seen, page)
	if row := extensionRow(t, page.body, "agent"); !strings.Contains(row, `badge-busy">Updating<`) || !strings.Contains(row, ">1.1.0<") {
		t.Errorf("updating row:\n%s", row)
	}
	report(t, s, m, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", Publisher: "Contoso", Type: "Agent", Version: "1.1.0", SeqNo: seq + 1,
		Operation: "upgrade", State: wire.ExtSucceeded, Message: "enabled"})
	page = c.get(machineWeb)
	seen = append(seen, page)
	if row := extensionRow(t, page.body, "agent"); !strings.Contains(row, `<span class="badge badge-ok">Succeeded</span>`) || !strings.Contains(row, ">enabled<") {
		t.Errorf("succeeded row:\n%s", row)
	}

	// Bad input: the form's own checks and the API's, each shown next to the
	// form with the values kept — but never the protected settings.
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		msg    string
	}{
		{"settings not JSON", url.Values{"package": {"Contoso/Agent"}, "settings": {"level=debug"}}, 400, "Public settings are not valid JSON."},
		{"settings not an object", url.Values{"package": {"Contoso/Agent"}, "settings": {"[1]"}}, 400, "settings must be a JSON object"},
		{"protected not JSON", url.Values{"package": {"Contoso/Agent"}, "protectedSettings": {"apiKey=" + secret}}, 400, "Protected settings are not valid JSON."},
		{"no package", url.Values{"name": {"x"}}, 400, "Choose a package"},
		{"bad name", url.Values{"name": {"../x"}, "package": {"Contoso/Agent"}}, 400, "Name must be 1-63 letters"},
		{"version not listed", url.Values{"name": {"other"}, "package": {"Contoso/Agent"}, "version": {"9.9.9"},
			"protectedSettings": {`{"apiKey":"` + secret + `"}`}}, 404, "Contoso/Agent version 9.9.9 does not exist"},
		{"another type behind the name", url.Values{"name": {"agent"}, "package": {"Corral/RunCommand"},
			"protectedSettings": {`{"apiKey":"` + secret + `"}`}}, 409, "delete it before using the name"},
	} {
		tc.form.Set("csrf", token)
		r := c.post(extensionsURL, tc.form)
		seen = append(seen, r)
		if r.status != tc.status || !strings.Contains(html.UnescapeString(r.body), "The extension was not set: ") ||
			!strings.Contains(html.UnescapeString(r.body), tc.msg) || !strings.Contains(r.body, `id="extension-error"`) {
			t.Errorf("%s: %d, want %d with %q\n%s", tc.name, r.status, tc.status, tc.msg, r.body)
		}
		if s := tc.form.Get("settings"); s != "" && !strings.Contains(r.body, html.EscapeString(s)+"</textarea>") {
			t.Errorf("%s: the public settings were not kept in the form", tc.name)
		}
	}
	if r := seen[len(seen)-1]; !strings.Contains(r.body, "Change extension agent") {
		t.Error("a refused change of agent is no longer shown as a change")
	}
	if st, _ := getExtension(t, s, "other"); st != http.StatusNotFound {
		t.Errorf("a refused set created extension other: %d", st)
	}

	// Remove through the confirm form: Deleting until the agent reports it
	// gone, then the row disappears.
	r = c.post(extensionsURL+"/agent/delete", url.Values{"csrf": {token}})
	if r.status != http.StatusSeeOther || r.location != machineWeb+"?removed=agent#extensions" {
		t.Fatalf("remove: %d %q\n%s", r.status, r.location, r.body)
	}
	page = c.get(machineWeb + "?removed=agent")
	seen = append(seen, page)
	if row := extensionRow(t, page.body, "agent"); !strings.Contains(row, `badge-busy">Deleting<`) || strings.Contains(row, ">Remove<") ||
		!strings.Contains(page.body, "Removal of extension &#34;agent&#34; was requested.") {
		t.Errorf("deleting row:\n%s", row)
	}
	report(t, s, m, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", Publisher: "Contoso", Type: "Agent", SeqNo: seq + 1,
		Operation: "remove", State: wire.ExtSucceeded, Removed: true})
	page = c.get(machineWeb)
	seen = append(seen, page)
	if strings.Contains(page.body, `data-extension="agent"`) || !strings.Contains(page.body, "No extensions on this machine.") {
		t.Error("the removed extension is still listed")
	}
	if r := c.post(extensionsURL+"/agent/delete", url.Values{"csrf": {token}}); r.status != http.StatusNotFound ||
		!strings.Contains(r.body, "The extension was not removed: ") {
		t.Errorf("removing it again: %d\n%s", r.status, r.body)
	}
	if r := c.get(machineWeb + "?edit=nope"); r.status != http.StatusOK || !strings.Contains(r.body, "There is no extension &#34;nope&#34; on this machine") {
		t.Errorf("changing an unknown extension: %d", r.status)
	}
	secretFree(t, s, secret, seen...)
}

func TestReaderSeesExtensionsButCannotChangeThem(t *testing.T) {
	t.Parallel()
	s, _ := startExtensionFleet(t)
	admin := s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "PUT", machineAPI+"/extensions/rc", admin, wire.MachineExtensionSet{Publisher: "Corral", Type: "RunCommand"}, nil)
	pw := createUser(t, s, "rita", "Reader", "/subscriptions/default/resourceGroups/web")
	c := newUIClient(t, s)
	c.signIn("rita", pw)
	secret := "protected-" + rand.Text()

	// Rita sees the sections and, reading packages being part of her role
	// somewhere, the package select (the list is global).
	page := c.get(machineWeb)
	if page.status != http.StatusOK || !strings.Contains(extensionRow(t, page.body, "rc"), "Corral/RunCommand") ||
		!strings.Contains(page.body, `id="extension-form"`) || !strings.Contains(page.body, `id="run-form"`) ||
		!strings.Contains(page.body, `<select id="ext-package" name="package"`) {
		t.Fatalf("reader's machine page: %d\n%s", page.status, page.body)
	}
	token := c.csrf(page.body)
	for _, tc := range []struct {
		name, path, action, prefix string
		form                       url.Values
	}{
		{"set", extensionsURL, "Corral.HybridCompute/machines/extensions/write", "The extension was not set: ",
			url.Values{"name": {"agent"}, "package": {"Contoso/Agent"}, "protectedSettings": {`{"k":"` + secret + `"}`}}},
		{"remove", extensionsURL + "/rc/delete", "Corral.HybridCompute/machines/extensions/delete", "The extension was not removed: ", url.Values{}},
		{"run", runsURL, "Corral.HybridCompute/machines/runCommands/write", "The command was not run: ", url.Values{"command": {"id"}}},
	} {
		tc.form.Set("csrf", token)
		r := c.post(tc.path, tc.form)
		want := tc.prefix + `User "rita" does not have authorization to perform action "` + tc.action + `"`
		if r.status != http.StatusForbidden || !strings.Contains(html.UnescapeString(r.body), want) {
			t.Errorf("reader %s: %d, want 403 with %q\n%s", tc.name, r.status, want, r.body)
		}
		secretFree(t, s, secret, r)
		if es := activity(t, s, url.Values{"caller": {"rita"}, "action": {tc.action}}); len(es) != 1 || es[0].Result != wire.ResultDenied {
			t.Errorf("reader %s: activity %+v, want one denial", tc.name, es)
		}
	}
	// Nothing changed.
	var list wire.List[wire.MachineExtension]
	s.MustDo(t, http.StatusOK, "GET", machineAPI+"/extensions", admin, nil, &list)
	if len(list.Value) != 1 || list.Value[0].Name != "rc" || list.Value[0].State != wire.ExtCreating {
		t.Errorf("extensions after the reader's posts: %+v", list.Value)
	}
	var runs wire.List[wire.RunCommand]
	s.MustDo(t, http.StatusOK, "GET", machineAPI+"/runCommands", admin, nil, &runs)
	if len(runs.Value) != 0 {
		t.Errorf("runs after the reader's post: %+v", runs.Value)
	}
	// Viewing the page was not refused anything.
	if es := activity(t, s, url.Values{"caller": {"rita"}, "result": {wire.ResultDenied}, "action": {"Corral.Extensions/extensionPackages/read"}}); len(es) != 0 {
		t.Errorf("the package list was refused to rita: %+v", es)
	}

	// A Connected Machine Resource Administrator of this one machine may
	// act on it.
	pw = createUser(t, s, "carl", "Connected Machine Resource Administrator", machineScope)
	carl := newUIClient(t, s)
	carl.signIn("carl", pw)
	page = carl.get(machineWeb)
	r := carl.post(extensionsURL, url.Values{"csrf": {carl.csrf(page.body)}, "package": {"Contoso/Agent"}, "version": {"1.0.0"}})
	if r.status != http.StatusSeeOther || r.location != machineWeb+"?extension=Agent#extensions" {
		t.Fatalf("resource administrator's set: %d %q\n%s", r.status, r.location, r.body)
	}
	if st, e := getExtension(t, s, "Agent"); st != http.StatusOK || e.Version != "1.0.0" || e.UpdatedBy != "carl" {
		t.Errorf("extension set by carl: %d %+v", st, e)
	}
}

func TestExtensionAndRunFormsNeedCSRF(t *testing.T) {
	t.Parallel()
	s, _ := startExtensionFleet(t)
	s.MustDo(t, http.StatusCreated, "PUT", machineAPI+"/extensions/rc", s.AdminToken(t), wire.MachineExtensionSet{Publisher: "Corral", Type: "RunCommand"}, nil)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	token := c.csrf(c.get(machineWeb).body)
	for _, path := range []string{extensionsURL, extensionsURL + "/rc/delete", runsURL} {
		form := url.Values{"name": {"x"}, "package": {"Corral/RunCommand"}, "command": {"id"}}
		for _, tc := range []struct {
			name    string
			csrf    string
			headers []string
		}{
			{"no token", "", nil},
			{"token of another session", otherSessionToken(t, s), nil},
			{"foreign Origin", token, []string{"Origin", "https://evil.example"}},
			{"cross-site fetch", token, []string{"Origin", "", "Sec-Fetch-Site", "cross-site"}},
		} {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			if tc.csrf != "" {
				f.Set("csrf", tc.csrf)
			}
			if r := c.post(path, f, tc.headers...); r.status != http.StatusForbidden || !strings.Contains(r.body, "not submitted from this site") {
				t.Errorf("%s, %s: %d, want 403", path, tc.name, r.status)
			}
		}
	}
	// None reached the API.
	for _, action := range []string{"Corral.HybridCompute/machines/extensions/*", "Corral.HybridCompute/machines/runCommands/*"} {
		for _, e := range activity(t, s, url.Values{"action": {action}}) {
			if e.Caller != "admin" || e.Message != "install Corral/RunCommand 1.0.0" {
				t.Errorf("a refused post reached the API: %+v", e)
			}
		}
	}
	// A script larger than the other forms' bound is still accepted here.
	big := strings.Repeat("echo 0123456789abcdef\n", 2000) // 44 KB
	if r := c.post(runsURL, url.Values{"csrf": {token}, "script": {big}}); r.status != http.StatusSeeOther {
		t.Errorf("a 44 KB script: %d\n%.500s", r.status, r.body)
	}
}

func TestRunCommandFromMachinePage(t *testing.T) {
	t.Parallel()
	s, m := startExtensionFleet(t)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	token := c.csrf(c.get(machineWeb).body)

	r := c.post(runsURL, url.Values{"csrf": {token}, "script": {"#!/bin/sh\r\necho \"$GREETING\"\r\nexit 3\r\n"}, "runAs": {"nobody"},
		"timeout": {"30s"}, "parameters": {"GREETING=hello=world\r\n\r\nTOKEN=s3cret\r\n"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, runsURL+"/run-") || !strings.HasSuffix(r.location, "?created=1") {
		t.Fatalf("run: %d %q\n%s", r.status, r.location, r.body)
	}
	name := strings.TrimSuffix(strings.TrimPrefix(r.location, runsURL+"/"), "?created=1")
	var rc wire.RunCommand
	s.MustDo(t, http.StatusOK, "GET", machineAPI+"/runCommands/"+name, s.AdminToken(t), nil, &rc)
	if rc.Script != "#!/bin/sh\necho \"$GREETING\"\nexit 3\n" || rc.Command != "" || rc.RunAsUser != "nobody" ||
		rc.Timeout != wire.Duration(30*time.Second) || len(rc.Parameters) != 2 || rc.Parameters["GREETING"] != "hello=world" ||
		rc.Parameters["TOKEN"] != "s3cret" || rc.State != wire.RunPending || rc.CreatedBy != "admin" {
		t.Fatalf("run created by the form: %+v", rc)
	}

	runPage := c.get(r.location)
	for _, want := range []string{`<span class="badge badge-busy" id="run-state">Pending</span>`, "The run was requested.",
		`<body data-refresh="1">`, `<span class="chip mono">GREETING</span>`, `<span class="chip mono">TOKEN</span>`, "(values are not shown)",
		"echo &#34;$GREETING&#34;", ">nobody<", ">30s<", "No output yet."} {
		if !strings.Contains(runPage.body, want) {
			t.Errorf("run page lacks %q", want)
		}
	}
	if strings.Contains(runPage.body, "s3cret") || strings.Contains(runPage.body, "hello=world") {
		t.Error("the run page shows parameter values")
	}

	// The agent runs it; whatever it printed is shown as text.
	code := 3
	report(t, s, m, wire.ReportRunCommand, wire.RunCommandResult{Name: name, State: wire.RunRunning, StartedAt: time.Now().UTC()})
	if p := c.get(r.location); !strings.Contains(p.body, `id="run-state">Running<`) || !strings.Contains(p.body, "data-refresh") {
		t.Errorf("running run page:\n%s", p.body)
	}
	report(t, s, m, wire.ReportRunCommand, wire.RunCommandResult{Name: name, State: wire.RunFailed, ExitCode: &code,
		Stdout: "<script>alert(\"pwned\")</script>\n<b>bold</b>", Stderr: "it & failed", FinishedAt: time.Now().UTC()})
	runPage = c.get(strings.TrimSuffix(r.location, "?created=1"))
	for _, want := range []string{`<span class="badge badge-bad" id="run-state">Failed</span>`, `<dd class="mono" id="run-exit-code">3</dd>`,
		`<pre class="output" id="run-stdout">&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;` + "\n&lt;b&gt;bold&lt;/b&gt;</pre>",
		`<pre class="output" id="run-stderr">it &amp; failed</pre>`} {
		if !strings.Contains(runPage.body, want) {
			t.Errorf("finished run page lacks %q:\n%s", want, runPage.body)
		}
	}
	if strings.Contains(runPage.body, "<script>alert") || strings.Contains(runPage.body, "<b>bold") || strings.Contains(runPage.body, "data-refresh") {
		t.Error("the run's output is interpreted as HTML, or the finished page still reloads itself")
	}

	// The machine page lists it; a command run joins it, newest first.
	s.MustDo(t, http.StatusCreated, "PUT", machineAPI+"/runCommands/second", s.AdminToken(t), wire.RunCommandCreate{Command: "uptime"}, nil)
	page := c.get(machineWeb)
	list := page.body[strings.Index(page.body, `id="run-list"`):]
	first, second := strings.Index(list, `data-run="second"`), strings.Index(list, `data-run="`+name+`"`)
	if first < 0 || second < first {
		t.Fatalf("runs not listed newest first:\n%s", list)
	}
	row := list[second:]
	row = row[:strings.Index(row, "</tr>")]
	for _, want := range []string{`href="` + runsURL + "/" + name + `"`, ">script<", ">nobody<", `badge-bad">Failed<`, `<td data-label="Exit code" class="mono">3</td>`, "by admin"} {
		if !strings.Contains(row, want) {
			t.Errorf("run row lacks %q:\n%s", want, row)
		}
	}
	if !strings.Contains(page.body, `badge-busy">Pending<`) || !strings.Contains(page.body, "data-refresh") {
		t.Error("the pending second run does not make the machine page reload itself")
	}

	// Bad input: the form's checks and the API's, with what was typed kept.
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		msg    string
	}{
		{"nothing to run", url.Values{"script": {"  \r\n"}}, 400, "give a script or a command"},
		{"both", url.Values{"script": {"id"}, "command": {"id"}}, 400, "give a script or a command, not both"},
		{"bad timeout", url.Values{"command": {"id"}, "timeout": {"soon"}}, 400, "Timeout must be a duration"},
		{"timeout too long", url.Values{"command": {"id"}, "timeout": {"3h"}}, 400, "timeout must be between"},
		{"parameter without =", url.Values{"command": {"id"}, "parameters": {"A=1\nnovalue"}}, 400, "Parameters: line 2 is not KEY=VALUE."},
		{"bad parameter name", url.Values{"command": {"id"}, "parameters": {"1BAD=x"}}, 400, `parameter name "1BAD" is not valid`},
		{"bad user", url.Values{"command": {"id"}, "runAs": {"root; rm"}}, 400, "is not a valid account name"},
	} {
		tc.form.Set("csrf", token)
		r := c.post(runsURL, tc.form)
		body := html.UnescapeString(r.body)
		if r.status != tc.status || !strings.Contains(body, "The command was not run: ") || !strings.Contains(body, tc.msg) ||
			!strings.Contains(r.body, `id="run-error"`) {
			t.Errorf("%s: %d, want %d with %q\n%s", tc.name, r.status, tc.status, tc.msg, r.body)
		}
		if cmd := tc.form.Get("command"); cmd != "" && !strings.Contains(r.body, `id="run-command" name="command" value="`+cmd+`"`) {
			t.Errorf("%s: the command was not kept in the form", tc.name)
		}
	}
	var runs wire.List[wire.RunCommand]
	s.MustDo(t, http.StatusOK, "GET", machineAPI+"/runCommands", s.AdminToken(t), nil, &runs)
	if len(runs.Value) != 2 {
		t.Errorf("%d runs after the refused posts, want 2", len(runs.Value))
	}

	// Ten runs later the form's run is on the second page of the list.
	for i := range 10 {
		s.MustDo(t, http.StatusCreated, "PUT", fmt.Sprintf("%s/runCommands/later-%02d", machineAPI, i), s.AdminToken(t), wire.RunCommandCreate{Command: "true"}, nil)
	}
	page = c.get(machineWeb)
	if strings.Contains(page.body, `data-run="`+name+`"`) || !strings.Contains(page.body, `data-run="later-09"`) {
		t.Errorf("first page of runs: wrong runs")
	}
	older := c.get(hrefOf(t, page.body, `id="older-runs"`))
	if !strings.Contains(older.body, `data-run="`+name+`"`) || strings.Contains(older.body, `data-run="later-09"`) ||
		!strings.Contains(older.body, ">Newest runs<") || strings.Contains(older.body, `id="older-runs"`) {
		t.Errorf("second page of runs:\n%s", older.body)
	}
	if r := c.get(runsURL + "/nope"); r.status != http.StatusNotFound || !strings.Contains(r.body, "run command &#34;nope&#34; was not found") {
		t.Errorf("unknown run: %d\n%s", r.status, r.body)
	}
	if strings.Contains(s.Logs.String(), "s3cret") {
		t.Error("a parameter value is in the server log")
	}
}

// Runs are time-bound: on a machine that is away, the run page must not
// promise the run starts whenever the agent connects again; it starts only
// within its timeout, and fails without running after that.
func TestRunPageOfADisconnectedMachineSaysTheRunIsTimeBound(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	id, secret := s.OnboardingPrincipal(t, "web")
	s.OnboardMachine(t, s.ClientToken(t, id, secret), "web", "web-01", awsProps)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var m wire.Machine
		s.MustDo(t, http.StatusOK, "GET", machineAPI, s.AdminToken(t), nil, &m)
		if m.Status == wire.StatusDisconnected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the machine stayed %s", m.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.MustDo(t, http.StatusCreated, "PUT", machineAPI+"/runCommands/away", s.AdminToken(t),
		wire.RunCommandCreate{Command: "true", Timeout: wire.Duration(time.Hour)}, nil)
	c := newUIClient(t, s)
	c.signIn("admin", testutil.AdminPassword)
	page := c.get(runsURL + "/away")
	if want := "within its timeout (1h0m0s from when it was asked for); after that it fails without running"; !strings.Contains(page.body, want) {
		t.Errorf("the run page of a disconnected machine lacks %q:\n%s", want, page.body)
	}
}
