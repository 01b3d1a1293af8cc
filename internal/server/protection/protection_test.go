package protection_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/scan/sigset"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const (
	rgWeb       = "/api/v1/subscriptions/default/resourceGroups/web"
	machineBase = rgWeb + "/machines/"
)

// env is a control plane with machines that speak the agent protocol.
type env struct {
	t     *testing.T
	s     *testutil.Server
	admin string
	onb   string
	seq   int
}

func newEnv(t *testing.T, opts ...testutil.Option) *env {
	s := testutil.StartServer(t, opts...)
	e := &env{t: t, s: s, admin: s.AdminToken(t)}
	id, secret := s.OnboardingPrincipal(t, "web")
	e.onb = s.ClientToken(t, id, secret)
	return e
}

func (e *env) onboard(name string) *testutil.Machine {
	e.t.Helper()
	return e.s.OnboardMachine(e.t, e.onb, "web", name, wire.MachineProperties{OSType: "linux", Hostname: name})
}

// report delivers one report as machine m.
func (e *env) report(m *testutil.Machine, kind string, body any) wire.ReportAck {
	e.t.Helper()
	e.seq++
	b, _ := json.Marshal(body)
	batch := wire.ReportBatch{Reports: []wire.Report{{ID: fmt.Sprintf("r-%d", e.seq), Kind: kind, TakenAt: time.Now().UTC(), Body: b}}}
	status, resp := e.s.DoMachine(e.t, m, "POST", wire.PathReports, batch)
	if status != 200 {
		e.t.Fatalf("report %s: %d %s", kind, status, resp)
	}
	var ack wire.ReportAck
	json.Unmarshal(resp, &ack)
	return ack
}

func (e *env) desired(m *testutil.Machine) (wire.DesiredState, wire.ProtectionDesired) {
	e.t.Helper()
	status, b := e.s.DoMachine(e.t, m, "GET", wire.PathDesiredState, nil)
	if status != 200 {
		e.t.Fatalf("desired state: %d %s", status, b)
	}
	var ds wire.DesiredState
	if err := json.Unmarshal(b, &ds); err != nil {
		e.t.Fatal(err)
	}
	var pd wire.ProtectionDesired
	if raw := ds.Features[wire.FeatureProtection]; raw != nil {
		if err := json.Unmarshal(raw, &pd); err != nil {
			e.t.Fatal(err)
		}
	}
	return ds, pd
}

func (e *env) extension(name string) (wire.MachineExtension, int) {
	e.t.Helper()
	var x wire.MachineExtension
	status, b := e.s.Do(e.t, "GET", machineBase+name+"/extensions/EndpointProtection", e.admin, nil)
	if status == 200 {
		json.Unmarshal(b, &x)
	}
	return x, status
}

// importSet uploads files as multipart parts.
func (e *env) importSet(tok string, files map[string]string) (int, []byte) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for name, content := range files {
		w, _ := mw.CreateFormFile("file", name)
		io.WriteString(w, content)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", e.s.URL+"/api/v1/protection/signatureSets", &body)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := e.s.Client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *env) tokenFor(role string) string {
	e.t.Helper()
	var sp wire.ServicePrincipalCreated
	e.s.MustDo(e.t, 201, "POST", "/api/v1/servicePrincipals", e.admin, wire.ServicePrincipalCreate{DisplayName: "sp-" + strings.ReplaceAll(role, " ", "-")}, &sp)
	e.s.MustDo(e.t, 201, "POST", "/api/v1/roleAssignments", e.admin, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: role, Scope: "/"}, nil)
	return e.s.ClientToken(e.t, sp.ClientID, sp.ClientSecret)
}

func errCode(t *testing.T, b []byte) string { return testutil.DecodeError(t, b).Code }

func TestProtectionSQLite(t *testing.T) { protectionFlow(t) }

func TestProtectionPostgres(t *testing.T) {
	protectionFlow(t, testutil.WithStore(testutil.PostgresDSN(t)))
}

// protectionFlow runs the context through the API and the agent protocol
// on a real store: enablement (and machines that join later), bad input,
// reports (detections, duplicates, malformed ones), scans, restores,
// signature sets, alerts, roles and disablement.
func protectionFlow(t *testing.T, opts ...testutil.Option) {
	e := newEnv(t, opts...)
	s, admin := e.s, e.admin
	m1 := e.onboard("vm1")

	// Bad input: refused with the field, nothing stored.
	for _, tc := range []struct {
		body   any
		status int
		want   string
	}{
		{wire.ProtectionEnable{Settings: wire.ProtectionSettings{Action: "shred"}}, 400, `shred`},
		{wire.ProtectionEnable{Settings: wire.ProtectionSettings{Action: "report", Realtime: wire.ProtectionRealtime{Enabled: true, Paths: []string{"rel"}}}}, 400, "not absolute"},
		{wire.ProtectionEnable{Settings: wire.DefaultProtectionSettings(), Schedule: &wire.ProtectionSchedule{Type: "quick", Every: wire.Duration(time.Minute)}}, 400, "every hour"},
		{`{"settings":{"action":"report"},"extra":1}`, 400, "extra"},
	} {
		status, b := s.Do(t, "PUT", rgWeb+"/protection", admin, tc.body)
		if status != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("enable %v: %d %s, want %d with %q", tc.body, status, b, tc.status, tc.want)
		}
	}
	if status, _ := s.Do(t, "GET", rgWeb+"/protection", admin, nil); status != 404 {
		t.Errorf("a refused enable stored something: %d", status)
	}
	if _, status := e.extension("vm1"); status != 404 {
		t.Errorf("a refused enable installed the extension: %d", status)
	}
	if status, b := s.Do(t, "PUT", "/api/v1/subscriptions/default/resourceGroups/nope/protection", admin, wire.ProtectionEnable{Settings: wire.DefaultProtectionSettings()}); status != 404 {
		t.Errorf("enable on a missing group: %d %s", status, b)
	}

	// Enable: installs on the machine in the group.
	settings := wire.ProtectionSettings{Realtime: wire.ProtectionRealtime{Enabled: true, Paths: []string{"/home", "/tmp"}, Block: true},
		Action: wire.ProtectionQuarantine, Exclusions: wire.ProtectionExclusions{Paths: []string{"/var/cache"}, Extensions: []string{"iso"}}}
	var a wire.ProtectionAssignment
	s.MustDo(t, 201, "PUT", rgWeb+"/protection", admin, wire.ProtectionEnable{Settings: settings,
		Schedule: &wire.ProtectionSchedule{Type: wire.ScanQuick, Every: wire.Duration(24 * time.Hour)}}, &a)
	if a.Scope != "/subscriptions/default/resourceGroups/web" || a.Machines != 1 || a.Settings.Action != "quarantine" || a.Schedule == nil {
		t.Errorf("assignment %+v", a)
	}
	x, status := e.extension("vm1")
	if status != 200 || x.Publisher != "Corral" || x.Type != "EndpointProtection" || x.State != wire.ExtCreating {
		t.Fatalf("extension after enable: %d %+v", status, x)
	}
	if got, err := wire.ParseProtectionSettings(x.Settings); err != nil || !got.Realtime.Block || got.Exclusions.Extensions[0] != "iso" {
		t.Errorf("extension settings %s: %v", x.Settings, err)
	}
	// The same settings again change nothing on the machine.
	s.MustDo(t, 200, "PUT", rgWeb+"/protection", admin, wire.ProtectionEnable{Settings: settings,
		Schedule: &wire.ProtectionSchedule{Type: wire.ScanQuick, Every: wire.Duration(24 * time.Hour)}}, &a)
	if x2, _ := e.extension("vm1"); x2.SeqNo != x.SeqNo {
		t.Errorf("enabling with the same settings re-installed the extension: seq %d -> %d", x.SeqNo, x2.SeqNo)
	}
	ds, pd := e.desired(m1)
	if len(pd.SignatureKey) != ed25519.PublicKeySize || pd.Schedule == nil || pd.Schedule.Type != "quick" || pd.Signatures != nil ||
		!strings.Contains(fmt.Sprint(ds.Extensions), "EndpointProtection") {
		t.Errorf("desired protection slice %+v", pd)
	}

	// A machine joining the group later gets it when its agent reports.
	m2 := e.onboard("vm2")
	if _, status := e.extension("vm2"); status != 404 {
		t.Errorf("extension before the agent reported: %d", status)
	}
	e.report(m2, wire.ReportProperties, wire.MachineProperties{OSType: "linux", Hostname: "vm2"})
	if x, status := e.extension("vm2"); status != 200 || !strings.Contains(string(x.Settings), `"block":true`) {
		t.Errorf("extension of a machine that joined later: %d %+v", status, x)
	}

	// Detections become alerts; one reported twice is one alert; a
	// malformed one is dropped (acknowledged) and stores nothing.
	det := wire.ProtectionDetection{ID: "d-1", Time: time.Now().UTC(), Path: "/tmp/eicar.com", SHA256: strings.Repeat("ab", 32),
		Signature: "Eicar-Test-Signature", Source: "realtime", Event: "close-write", Action: wire.DetectionQuarantined,
		QuarantineID: "0123456789abcdef", Process: "/usr/bin/wget", PID: 42}
	e.report(m1, wire.ReportProtectionDetection, det)
	e.report(m1, wire.ReportProtectionDetection, det)
	full := det
	full.ID, full.Path, full.Action, full.Error = "d-2", "/srv/x.com", wire.DetectionNotRemoved, "quarantine failed, the file stays where it was: no space left on device"
	e.report(m2, wire.ReportProtectionDetection, full)
	for _, bad := range []wire.ProtectionDetection{
		{ID: "d-3", Path: "/x", Signature: "S", Source: "realtime", Action: "vaporised"},
		{ID: "d-4", Path: "", Signature: "S", Source: "realtime", Action: wire.DetectionReported},
		{ID: "d-5", Path: "/x\x00y", Signature: "S", Source: "realtime", Action: wire.DetectionReported},
		{ID: "../../d", Path: "/x", Signature: "S", Source: "realtime", Action: wire.DetectionReported},
		{ID: "d-6", Path: "/x", Signature: "S", SHA256: "nothex", Source: "realtime", Action: wire.DetectionReported},
	} {
		if ack := e.report(m1, wire.ReportProtectionDetection, bad); len(ack.Accepted) != 1 {
			t.Errorf("malformed detection %+v not acknowledged: %+v", bad, ack)
		}
	}
	var alerts wire.List[wire.Alert]
	s.MustDo(t, 200, "GET", "/api/v1/protection/alerts", admin, nil, &alerts)
	if len(alerts.Value) != 2 {
		t.Fatalf("alerts %+v", alerts.Value)
	}
	s.MustDo(t, 200, "GET", "/api/v1/protection/alerts?machine=vm1&state=Active&scope=/subscriptions/default/resourceGroups/web", admin, nil, &alerts)
	if len(alerts.Value) != 1 || alerts.Value[0].Path != "/tmp/eicar.com" || alerts.Value[0].Machine != "vm1" || alerts.Value[0].Process != "/usr/bin/wget" ||
		alerts.Value[0].MachineID != "/subscriptions/default/resourceGroups/web/machines/vm1" {
		t.Fatalf("filtered alerts %+v", alerts.Value)
	}
	first := alerts.Value[0].ID
	for q, want := range map[string]string{"?state=Open": "state", "?scope=relative": "scope", "?machine=a/b": "machine", "?$top=0": "$top"} {
		if status, b := s.Do(t, "GET", "/api/v1/protection/alerts"+q, admin, nil); status != 400 || !strings.Contains(string(b), want) {
			t.Errorf("alerts%s: %d %s", q, status, b)
		}
	}

	// Roles: readers read, only Security Admin (and Owner) acknowledge.
	secReader, secAdmin, reader, contributor := e.tokenFor(authz.RoleSecurityReader), e.tokenFor(authz.RoleSecurityAdmin),
		e.tokenFor(authz.RoleReader), e.tokenFor(authz.RoleContributor)
	for _, tok := range []string{secReader, reader} {
		s.MustDo(t, 200, "GET", "/api/v1/protection/alerts", tok, nil, nil)
		s.MustDo(t, 200, "GET", "/api/v1/protection/alerts/"+first, tok, nil, nil)
		if status, b := s.Do(t, "POST", "/api/v1/protection/alerts/"+first+"/acknowledge", tok, nil); status != 403 {
			t.Errorf("a reader acknowledged: %d %s", status, b)
		}
	}
	var acked wire.Alert
	s.MustDo(t, 200, "POST", "/api/v1/protection/alerts/"+first+"/acknowledge", secAdmin, nil, &acked)
	if acked.State != wire.AlertAcknowledged || acked.AcknowledgedBy == "" {
		t.Errorf("acknowledged alert %+v", acked)
	}
	if status, _ := s.Do(t, "POST", "/api/v1/protection/alerts/nosuch/acknowledge", secAdmin, nil); status != 404 {
		t.Errorf("acknowledge a missing alert: %d", status)
	}

	// Scans: bad input refused; a scan reaches the desired state and its
	// result and outcome are recorded.
	for _, body := range []any{wire.ScanCreate{Type: "deep"}, wire.ScanCreate{Type: "quick", Paths: []string{"/x"}},
		wire.ScanCreate{Type: "custom"}, wire.ScanCreate{Type: "custom", Paths: []string{"../etc"}}} {
		if status, b := s.Do(t, "POST", machineBase+"vm1/scans", admin, body); status != 400 {
			t.Errorf("scan %+v: %d %s", body, status, b)
		}
	}
	var sc wire.Scan
	s.MustDo(t, 201, "POST", machineBase+"vm1/scans", secAdmin, wire.ScanCreate{Type: wire.ScanCustom, Paths: []string{"/srv"}}, &sc)
	if status, _ := s.Do(t, "POST", machineBase+"vm1/scans", secReader, wire.ScanCreate{Type: wire.ScanQuick}); status != 403 {
		t.Errorf("a security reader started a scan: %d", status)
	}
	_, pd = e.desired(m1)
	if len(pd.Scans) != 1 || pd.Scans[0].ID != sc.ID || pd.Scans[0].Paths[0] != "/srv" {
		t.Errorf("desired scans %+v", pd.Scans)
	}
	e.report(m1, wire.ReportProtectionScan, wire.ProtectionScanResult{ID: sc.ID, Type: "custom", State: wire.ScanRunning, StartedAt: time.Now()})
	e.report(m1, wire.ReportProtectionScan, wire.ProtectionScanResult{ID: sc.ID, Type: "custom", State: wire.ScanSucceeded, Files: 12, Infected: 1,
		FinishedAt: time.Now()})
	e.report(m1, wire.ReportProtectionScan, wire.ProtectionScanResult{ID: sc.ID, Type: "custom", State: wire.ScanFailed, Message: "late"})
	s.MustDo(t, 200, "GET", machineBase+"vm1/scans/"+sc.ID, admin, nil, &sc)
	if sc.State != wire.ScanSucceeded || sc.Files != 12 || sc.Infected != 1 {
		t.Errorf("scan after reports %+v", sc)
	}
	if _, pd = e.desired(m1); len(pd.Scans) != 0 {
		t.Errorf("a finished scan is still desired: %+v", pd.Scans)
	}
	// Its final state delivered again logs nothing more; a scan whose
	// final state was stored by a server that died before logging its
	// outcome gets it when the agent sends the report again (below).
	e.report(m1, wire.ReportProtectionScan, wire.ProtectionScanResult{ID: sc.ID, Type: "custom", State: wire.ScanSucceeded, Files: 12, Infected: 1})
	var crashed wire.Scan
	s.MustDo(t, 201, "POST", machineBase+"vm1/scans", secAdmin, wire.ScanCreate{Type: wire.ScanQuick}, &crashed)
	if _, err := s.Srv.Store.UpdateScan(t.Context(), m1.MachineID, crashed.ID, store.ScanUpdate{State: wire.ScanFailed, Message: "disk error",
		FinishedAt: time.Now(), At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		e.report(m1, wire.ReportProtectionScan, wire.ProtectionScanResult{ID: crashed.ID, Type: "quick", State: wire.ScanFailed, Message: "disk error"})
	}
	// A scheduled scan the machine started itself is recorded.
	e.report(m1, wire.ReportProtectionScan, wire.ProtectionScanResult{ID: "scheduled-20261129-020000", Type: "quick", State: wire.ScanSucceeded,
		Scheduled: true, Files: 3})
	var scans wire.List[wire.Scan]
	s.MustDo(t, 200, "GET", machineBase+"vm1/scans", admin, nil, &scans)
	if len(scans.Value) != 3 || !slices.ContainsFunc(scans.Value, func(s wire.Scan) bool { return s.Scheduled }) {
		t.Errorf("scans %+v", scans.Value)
	}
	// A machine without protection refuses scans with the reason.
	s.MustDo(t, 201, "PUT", "/api/v1/subscriptions/default/resourceGroups/other", admin, wire.ResourceGroupCreate{}, nil)
	id, secret := s.OnboardingPrincipal(t, "other")
	s.OnboardMachine(t, s.ClientToken(t, id, secret), "other", "bare", wire.MachineProperties{})
	if status, b := s.Do(t, "POST", "/api/v1/subscriptions/default/resourceGroups/other/machines/bare/scans", admin, wire.ScanCreate{Type: "quick"}); status != 409 ||
		!strings.Contains(string(b), "not enabled") {
		t.Errorf("scan of an unprotected machine: %d %s", status, b)
	}

	// Quarantine and restores.
	e.report(m1, wire.ReportProtectionQuarantine, wire.ProtectionQuarantineReport{Entries: []wire.QuarantineEntry{{ID: "0123456789abcdef",
		Path: "/tmp/eicar.com", SHA256: strings.Repeat("ab", 32), Signature: "Eicar-Test-Signature", Size: 68}}})
	var q wire.List[wire.QuarantineEntry]
	s.MustDo(t, 200, "GET", machineBase+"vm1/quarantine", reader, nil, &q)
	if len(q.Value) != 1 || q.Value[0].Path != "/tmp/eicar.com" {
		t.Errorf("quarantine %+v", q.Value)
	}
	if status, _ := s.Do(t, "POST", machineBase+"vm1/quarantine/NOT-AN-ID/restore", admin, wire.RestoreCreate{}); status != 400 {
		t.Errorf("restore of a bad id: %d", status)
	}
	var rs wire.Restore
	s.MustDo(t, 202, "POST", machineBase+"vm1/quarantine/0123456789abcdef/restore", secAdmin, wire.RestoreCreate{NoExclusion: true}, &rs)
	if _, pd = e.desired(m1); len(pd.Restores) != 1 || !pd.Restores[0].NoExclusion || pd.Restores[0].QuarantineID != "0123456789abcdef" {
		t.Errorf("desired restores %+v", pd.Restores)
	}
	e.report(m1, wire.ReportProtectionRestore, wire.ProtectionRestoreResult{ID: rs.ID, QuarantineID: "0123456789abcdef", State: wire.ScanSucceeded,
		Path: "/tmp/eicar.com", FinishedAt: time.Now()})
	s.MustDo(t, 200, "GET", machineBase+"vm1/restores/"+rs.ID, admin, nil, &rs)
	if rs.State != wire.ScanSucceeded || rs.Path != "/tmp/eicar.com" {
		t.Errorf("restore after its report %+v", rs)
	}
	e.report(m1, wire.ReportProtectionRestore, wire.ProtectionRestoreResult{ID: rs.ID, QuarantineID: "0123456789abcdef", State: wire.ScanSucceeded,
		Path: "/tmp/eicar.com", FinishedAt: time.Now()})

	// Signature sets: malformed files refused with file and line, nothing
	// stored; a good import is signed, named in the desired state and
	// downloadable by machines, verifying with the key the slice presents.
	for files, want := range map[string]map[string]string{
		"bad.ndb line 2":            {"bad.ndb": "Good:0:*:41424344\nBroken:0:*:4G\n"},
		"no signature":              {"x.ndb": "Other:1:*:41424344\n"},
		"not a signature file name": {"x.exe": "x"},
		"hashes.hdb line 1":         {"hashes.hdb": "nothex:12:Name\n"},
		// The part's path is dropped: only the base name is used.
		"passwd.ndb line 1": {"../../etc/passwd.ndb": "x"},
	} {
		status, b := e.importSet(admin, want)
		if status != 400 || !strings.Contains(string(b), files) {
			t.Errorf("import %v: %d %s, want 400 with %q", want, status, b, files)
		}
	}
	if status, b := s.Do(t, "POST", "/api/v1/protection/signatureSets", admin, `{}`); status != 415 {
		t.Errorf("import as JSON: %d %s", status, b)
	}
	var sets wire.List[wire.SignatureSet]
	s.MustDo(t, 200, "GET", "/api/v1/protection/signatureSets", admin, nil, &sets)
	if len(sets.Value) != 0 {
		t.Fatalf("refused imports stored %+v", sets.Value)
	}
	if status, _ := e.importSet(contributor, map[string]string{"a.ndb": "A:0:*:41424344\n"}); status != 403 {
		t.Errorf("a contributor imported signatures: %d", status)
	}
	status, b := e.importSet(secAdmin, map[string]string{"main.hdb": "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Hash\n",
		"body.ndb": "Body.Test:0:*:41424344\nUnsupported.Test:1:*:41424344\n"})
	var set wire.SignatureSet
	if err := json.Unmarshal(b, &set); status != 201 || err != nil || set.Version != 1 || set.HashSignatures != 1 || set.BodySignatures != 1 ||
		set.Unsupported != 1 || len(set.UnsupportedLines) != 1 {
		t.Fatalf("import: %d %s", status, b)
	}
	_, pd = e.desired(m1)
	if pd.Signatures == nil || pd.Signatures.Version != 1 || pd.Signatures.SHA256 != set.SHA256 {
		t.Fatalf("desired signatures %+v", pd.Signatures)
	}
	status, raw := s.DoMachine(t, m1, "GET", wire.PathProtectionSignatures+"1", nil)
	if status != 200 || int64(len(raw)) != pd.Signatures.Size {
		t.Fatalf("download set 1: %d (%d bytes)", status, len(raw))
	}
	if h, _, err := sigset.Verify(pd.SignatureKey, raw); err != nil || h.Version != 1 || h.Total() != 2 {
		t.Errorf("the downloaded set does not verify with the presented key: %+v %v", h, err)
	}
	for path, want := range map[string]int{wire.PathProtectionSignatures + "2": 404, wire.PathProtectionSignatures + "x": 400,
		wire.PathProtectionSignatures + "-1": 400} {
		if status, _ := s.DoMachine(t, m1, "GET", path, nil); status != want {
			t.Errorf("GET %s: %d, want %d", path, status, want)
		}
	}
	if status, _ := s.Do(t, "GET", wire.PathProtectionSignatures+"1", admin, nil); status != 401 {
		t.Errorf("a signature set downloaded without a machine certificate: %d", status)
	}

	// Status reports show on the machine.
	e.report(m1, wire.ReportProtectionStatus, wire.ProtectionStatus{State: wire.ProtectionRunning, EngineVersion: "2026.11.0", SignatureVersion: 1,
		Signatures: 3, RealtimeEnabled: true, RealtimeMode: "fanotify", Action: "quarantine", At: time.Now()})
	if ack := e.report(m1, wire.ReportProtectionStatus, map[string]any{"state": ""}); len(ack.Accepted) != 1 {
		t.Errorf("malformed status not acknowledged")
	}
	var mp wire.MachineProtection
	s.MustDo(t, 200, "GET", machineBase+"vm1/protection", reader, nil, &mp)
	if mp.Status == nil || mp.Status.RealtimeMode != "fanotify" || mp.Scope != "/subscriptions/default/resourceGroups/web" || mp.ActiveAlerts != 0 {
		t.Errorf("machine protection %+v %+v", mp, mp.Status)
	}
	var all wire.List[wire.MachineProtection]
	s.MustDo(t, 200, "GET", rgWeb+"/machineProtection", admin, nil, &all)
	if len(all.Value) != 2 || all.Value[1].ActiveAlerts != 1 {
		t.Errorf("machine protection of the group %+v", all.Value)
	}

	// The activity log has the outcomes of the scans and the restore, each
	// once, in the requester's name.
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, 200, "GET", "/api/v1/activityLogs?action=Corral.Security/*", admin, nil, &acts)
	outcomes := map[string]int{}
	for _, a := range acts.Value {
		for _, what := range []string{"scan " + sc.ID, "scan " + crashed.ID, "restore quarantine entry"} {
			if a.Method == "AGENT" && strings.Contains(a.Message, what) {
				outcomes[what]++
				if a.Caller != "sp-Security-Admin" {
					t.Errorf("outcome not in the requester's name: %+v", a)
				}
			}
		}
	}
	if want := map[string]int{"scan " + sc.ID: 1, "scan " + crashed.ID: 1, "restore quarantine entry": 1}; !maps.Equal(outcomes, want) {
		t.Errorf("outcomes in the activity log %v, want %v", outcomes, want)
	}

	// Disable: the extension goes (Deleting), protection is gone.
	if status, _ := s.Do(t, "DELETE", rgWeb+"/protection", secReader, nil); status != 403 {
		t.Errorf("a security reader disabled protection: %d", status)
	}
	s.MustDo(t, 204, "DELETE", rgWeb+"/protection", secAdmin, nil, nil)
	if x, status := e.extension("vm1"); status == 200 && x.State != wire.ExtDeleting {
		t.Errorf("extension after disable: %+v", x)
	}
	if status, _ := s.Do(t, "GET", rgWeb+"/protection", admin, nil); status != 404 {
		t.Errorf("protection after disable: %d", status)
	}
	if status, _ := s.Do(t, "DELETE", rgWeb+"/protection", admin, nil); status != 404 {
		t.Errorf("disable twice: %d", status)
	}
}
