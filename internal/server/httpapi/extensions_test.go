package httpapi_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const m1Path = "/api/v1/subscriptions/default/resourceGroups/rg1/machines/m1"

// publisherKit is a test publisher: its key, and helpers to publish
// packages and sign catalogs through the API.
type publisherKit struct {
	name    string
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	entries []wire.CatalogEntry
	serial  int64
}

func newPublisher(t testing.TB, s *testutil.Server, name string) *publisherKit {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/publishers/"+name, s.AdminToken(t), wire.PublisherCreate{PublicKey: pub}, nil)
	return &publisherKit{name: name, priv: priv, pub: pub}
}

func manifest(pub, typ, version string) *wire.ExtensionManifest {
	return &wire.ExtensionManifest{Publisher: pub, Type: typ, Version: version,
		Handlers: wire.ExtensionHandlers{Install: "./install.sh", Enable: "./enable.sh"}}
}

func buildPackage(t testing.TB, man *wire.ExtensionManifest, extra ...extpkg.File) []byte {
	t.Helper()
	files := append([]extpkg.File{{Name: "install.sh", Body: []byte("#!/bin/sh\ntrue\n"), Mode: 0o755}}, extra...)
	b, err := extpkg.BuildArchive(man, files...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// uploadRaw posts a raw body with a content type and returns status and body.
func uploadRaw(t testing.TB, s *testutil.Server, token, path, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// publish uploads a package and lists it in a newly signed catalog.
func (p *publisherKit) publish(t testing.TB, s *testutil.Server, typ, version string) wire.ExtensionPackage {
	t.Helper()
	archive := buildPackage(t, manifest(p.name, typ, version))
	status, b := uploadRaw(t, s, s.AdminToken(t), "/api/v1/publishers/"+p.name+"/packages", "application/gzip", bytes.NewReader(archive))
	if status != http.StatusCreated {
		t.Fatalf("upload %s %s: %d %s", typ, version, status, b)
	}
	var pkg wire.ExtensionPackage
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	p.entries = append(p.entries, wire.CatalogEntry{Type: typ, Version: version, Digest: pkg.Digest, Size: pkg.Size})
	s.MustDo(t, http.StatusOK, "PUT", "/api/v1/publishers/"+p.name+"/catalog", s.AdminToken(t), p.sign(t, nil), nil)
	return pkg
}

// sign signs the next catalog of the kit's entries (or of entries).
func (p *publisherKit) sign(t testing.TB, entries []wire.CatalogEntry) wire.SignedCatalog {
	t.Helper()
	if entries == nil {
		entries = p.entries
	}
	p.serial++
	sc, err := extpkg.SignCatalog(p.priv, wire.Catalog{Publisher: p.name, Serial: p.serial, IssuedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour).UTC(), Packages: entries})
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func errorCode(t *testing.T, b []byte) string { t.Helper(); return testutil.DecodeError(t, b).Code }

func TestPublishersPackagesAndCatalogs(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	kit := newPublisher(t, s, "Contoso")

	// Registering the same key again is fine; another key is refused.
	s.MustDo(t, http.StatusOK, "PUT", "/api/v1/publishers/contoso", admin, wire.PublisherCreate{PublicKey: kit.pub}, nil)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if st, b := s.Do(t, "PUT", "/api/v1/publishers/CONTOSO", admin, wire.PublisherCreate{PublicKey: other}); st != http.StatusConflict {
		t.Errorf("re-register with another key: %d %s", st, b)
	}
	if st, b := s.Do(t, "PUT", "/api/v1/publishers/bad", admin, wire.PublisherCreate{PublicKey: []byte("short")}); st != http.StatusBadRequest {
		t.Errorf("short key: %d %s", st, b)
	}
	var pubs wire.List[wire.Publisher]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/publishers", admin, nil, &pubs)
	if len(pubs.Value) != 2 || pubs.Value[0].Name != "Contoso" || pubs.Value[1].Name != wire.PublisherCorral {
		t.Errorf("publishers = %+v", pubs.Value)
	}

	archive := buildPackage(t, manifest("Contoso", "Agent", "1.0.0"))
	pkgPath := "/api/v1/publishers/Contoso/packages"
	for _, tc := range []struct {
		name, path, ctype string
		body              []byte
		status            int
		code              string
	}{
		{"unknown publisher", "/api/v1/publishers/nobody/packages", "application/gzip", archive, 404, wire.CodeNotFound},
		{"JSON content type", pkgPath, "application/json", archive, 415, wire.CodeUnsupportedMedia},
		{"not an archive", pkgPath, "application/gzip", []byte("hello"), 400, wire.CodeValidation},
		{"empty body", pkgPath, "application/octet-stream", nil, 400, wire.CodeValidation},
		{"manifest of another publisher", pkgPath, "application/gzip", buildPackage(t, manifest("Fabrikam", "Agent", "1.0.0")), 400, wire.CodeValidation},
		{"invalid manifest", pkgPath, "application/gzip", buildPackage(t, manifest("Contoso", "Agent", "1.0")), 400, wire.CodeValidation},
		{"no manifest", pkgPath, "application/gzip", buildPackage(t, nil), 400, wire.CodeValidation},
	} {
		st, b := uploadRaw(t, s, admin, tc.path, tc.ctype, bytes.NewReader(tc.body))
		if st != tc.status || errorCode(t, b) != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, st, b, tc.status, tc.code)
		}
	}

	st, b := uploadRaw(t, s, admin, pkgPath, "application/gzip", bytes.NewReader(archive))
	if st != http.StatusCreated {
		t.Fatalf("upload: %d %s", st, b)
	}
	var pkg wire.ExtensionPackage
	_ = json.Unmarshal(b, &pkg)
	if pkg.Digest != extpkg.Digest(archive) || pkg.Size != int64(len(archive)) || pkg.Listed || pkg.Manifest.Handlers.Install != "./install.sh" ||
		pkg.PublishedBy != "admin" {
		t.Errorf("package = %+v", pkg)
	}
	if st, b := uploadRaw(t, s, admin, pkgPath, "application/gzip", bytes.NewReader(archive)); st != http.StatusOK {
		t.Errorf("the same archive again: %d %s", st, b)
	}
	tampered := buildPackage(t, manifest("Contoso", "Agent", "1.0.0"), extpkg.File{Name: "evil.sh", Body: []byte("rm -rf /")})
	if st, b := uploadRaw(t, s, admin, pkgPath, "application/gzip", bytes.NewReader(tampered)); st != http.StatusConflict {
		t.Errorf("the same version with other bytes: %d %s", st, b)
	}

	// Catalogs: refused unless signed by the registered key, with a growing
	// serial, listing only uploaded packages with their digests.
	entry := wire.CatalogEntry{Type: "Agent", Version: "1.0.0", Digest: pkg.Digest, Size: pkg.Size}
	catPath := "/api/v1/publishers/Contoso/catalog"
	_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)
	forged, _ := extpkg.SignCatalog(wrongKey, wire.Catalog{Publisher: "Contoso", Serial: 1, Packages: []wire.CatalogEntry{entry}})
	if st, b := s.Do(t, "PUT", catPath, admin, forged); st != http.StatusBadRequest || testutil.DecodeError(t, b).Target != "signature" {
		t.Errorf("wrong signature: %d %s", st, b)
	}
	if st, b := s.Do(t, "PUT", "/api/v1/publishers/nobody/catalog", admin, kit.sign(t, []wire.CatalogEntry{entry})); st != http.StatusNotFound {
		t.Errorf("unknown publisher: %d %s", st, b)
	}
	badDigest := entry
	badDigest.Digest = extpkg.Digest(tampered)
	if st, b := s.Do(t, "PUT", catPath, admin, kit.sign(t, []wire.CatalogEntry{badDigest})); st != http.StatusBadRequest ||
		!strings.Contains(string(b), "uploaded package is") {
		t.Errorf("digest of no uploaded package (tampered): %d %s", st, b)
	}
	missing := entry
	missing.Version = "9.9.9"
	if st, b := s.Do(t, "PUT", catPath, admin, kit.sign(t, []wire.CatalogEntry{missing})); st != http.StatusBadRequest ||
		!strings.Contains(string(b), "has not been uploaded") {
		t.Errorf("entry without a package: %d %s", st, b)
	}
	if st, b := s.Do(t, "PUT", catPath, admin, `{"catalog":"not base64!"}`); st != http.StatusBadRequest || errorCode(t, b) != wire.CodeInvalidJSON {
		t.Errorf("malformed JSON: %d %s", st, b)
	}
	if st, _ := s.Do(t, "GET", catPath, admin, nil); st != http.StatusNotFound {
		t.Errorf("catalog before upload: %d", st)
	}
	kit.entries = []wire.CatalogEntry{entry}
	good := kit.sign(t, nil)
	s.MustDo(t, http.StatusOK, "PUT", catPath, admin, good, nil)
	if st, b := s.Do(t, "PUT", catPath, admin, good); st != http.StatusConflict || !strings.Contains(string(b), "replayed") {
		t.Errorf("replay of the same catalog: %d %s", st, b)
	}
	var got wire.SignedCatalog
	s.MustDo(t, http.StatusOK, "GET", catPath, admin, nil, &got)
	if !bytes.Equal(got.Catalog, good.Catalog) || !bytes.Equal(got.Signature, good.Signature) {
		t.Error("the stored catalog is not the signed bytes")
	}

	// list-available: listed flags and filters; the first-party package is there.
	var list wire.List[wire.ExtensionPackage]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/extensionPackages", admin, nil, &list)
	if len(list.Value) != 4 || list.Value[0].Publisher != "Contoso" || !list.Value[0].Listed ||
		list.Value[1].Publisher != wire.PublisherCorral || list.Value[1].Type != wire.ProtectionExtensionType || !list.Value[1].Listed ||
		list.Value[2].Type != "PatchManagement" || list.Value[2].Manifest.Handlers.Install != "builtin:patchmanagement" ||
		list.Value[3].Publisher != wire.PublisherCorral || list.Value[3].Type != "RunCommand" || !list.Value[3].Listed ||
		list.Value[3].Manifest.Handlers.Install != "builtin:runcommand" || list.Value[3].Manifest.Handlers.Enable != "builtin:runcommand" {
		t.Errorf("packages = %+v", list.Value)
	}
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/extensionPackages?publisher=corral&type=runcommand", admin, nil, &list)
	if len(list.Value) != 1 || list.Value[0].Type != "RunCommand" {
		t.Errorf("filtered packages = %+v", list.Value)
	}
	kit.publish(t, s, "Agent", "1.1.0")
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/extensionPackages?publisher=Contoso&$top=1", admin, nil, &list)
	if len(list.Value) != 1 || list.NextLink == "" {
		t.Fatalf("page 1 = %+v", list)
	}
	var page2 wire.List[wire.ExtensionPackage]
	s.MustDo(t, http.StatusOK, "GET", list.NextLink, admin, nil, &page2)
	if len(page2.Value) != 1 || page2.Value[0].Version != "1.1.0" || page2.NextLink != "" {
		t.Errorf("page 2 = %+v", page2)
	}
}

func TestOversizedPackageIsRefused(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	newPublisher(t, s, "Contoso")
	// Declared too large: refused before reading.
	body := io.LimitReader(zeroReader{}, wire.MaxPackageBytes+1)
	st, b := uploadRaw(t, s, s.AdminToken(t), "/api/v1/publishers/Contoso/packages", "application/gzip", io.NopCloser(body))
	if st != http.StatusRequestEntityTooLarge || errorCode(t, b) != wire.CodeTooLarge {
		t.Errorf("oversized package: %d %s", st, b)
	}
	es := activity(t, s, url.Values{"action": {"Corral.Extensions/publishers/packages/write"}})
	if len(es) == 0 || es[0].Result != wire.ResultFailed || es[0].Status != http.StatusRequestEntityTooLarge {
		t.Errorf("no failed activity entry for the oversized upload: %+v", es)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func activity(t *testing.T, s *testutil.Server, q url.Values) []wire.ActivityEntry {
	t.Helper()
	var l wire.List[wire.ActivityEntry]
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/activityLogs?"+q.Encode(), s.AdminToken(t), nil, &l)
	return l.Value
}

// extTestEnv is a server with a connected machine m1 in rg1 and a publisher.
type extTestEnv struct {
	s    *testutil.Server
	m    *testutil.Machine
	conn *websocket.Conn
	kit  *publisherKit
}

func newExtEnv(t *testing.T, opts ...testutil.MachineOption) *extTestEnv {
	t.Helper()
	s := testutil.StartServer(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	m := s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{}, opts...)
	return &extTestEnv{s: s, m: m, conn: s.DialStream(t, m), kit: newPublisher(t, s, "Contoso")}
}

func (e *extTestEnv) set(t *testing.T, name string, body any, want int) wire.MachineExtension {
	t.Helper()
	var out wire.MachineExtension
	e.s.MustDo(t, want, "PUT", m1Path+"/extensions/"+name, e.s.AdminToken(t), body, &out)
	return out
}

func (e *extTestEnv) desired(t *testing.T) wire.DesiredState {
	t.Helper()
	st, b := e.s.DoMachine(t, e.m, "GET", wire.PathDesiredState, nil)
	if st != http.StatusOK {
		t.Fatalf("desired state: %d %s", st, b)
	}
	var ds wire.DesiredState
	if err := json.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

// waitSync reads the stream until a sync of at least gen arrives.
func (e *extTestEnv) waitSync(t *testing.T, gen int64) {
	t.Helper()
	for {
		msg := readMsg(t, e.conn, 5*time.Second)
		if msg.Type == wire.MsgSync && msg.Generation >= gen {
			return
		}
	}
}

func (e *extTestEnv) report(t *testing.T, kind string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	batch := wire.ReportBatch{Reports: []wire.Report{{ID: fmt.Sprintf("r-%d", time.Now().UnixNano()), Kind: kind, TakenAt: time.Now(), Body: b}}}
	st, resp := e.s.DoMachine(t, e.m, "POST", wire.PathReports, batch)
	if st != http.StatusOK {
		t.Fatalf("report: %d %s", st, resp)
	}
}

func (e *extTestEnv) get(t *testing.T, name string) (int, wire.MachineExtension) {
	t.Helper()
	st, b := e.s.Do(t, "GET", m1Path+"/extensions/"+name, e.s.AdminToken(t), nil)
	var out wire.MachineExtension
	if st == http.StatusOK {
		_ = json.Unmarshal(b, &out)
	}
	return st, out
}

func findDesired(ds wire.DesiredState, name string) (wire.DesiredExtension, bool) {
	for _, e := range ds.Extensions {
		if e.Name == name {
			return e, true
		}
	}
	return wire.DesiredExtension{}, false
}

func TestMachineExtensionLifecycle(t *testing.T) {
	t.Parallel()
	e := newExtEnv(t)
	s := e.s
	v1 := e.kit.publish(t, s, "Agent", "1.0.0")

	// Install: latest listed version, sealed protected settings, a sync.
	secret := "hunter2-" + rand.Text()
	ext := e.set(t, "agent", map[string]any{"publisher": "contoso", "type": "agent", "settings": map[string]any{"level": 3},
		"protectedSettings": map[string]any{"password": secret}}, http.StatusCreated)
	seq := ext.SeqNo // a new extension's first seqNo comes from the machine's generation
	if ext.State != wire.ExtCreating || ext.Version != "1.0.0" || ext.Publisher != "Contoso" || ext.Type != "Agent" || seq < 1 ||
		!ext.HasProtectedSettings || string(ext.Settings) != `{"level":3}` || ext.CreatedBy != "admin" ||
		ext.ID != m1Path[len("/api/v1"):]+"/extensions/agent" {
		t.Errorf("after install: %+v", ext)
	}
	var m wire.Machine
	s.MustDo(t, http.StatusOK, "GET", m1Path, s.AdminToken(t), nil, &m)
	e.waitSync(t, 2)

	ds := e.desired(t)
	d, ok := findDesired(ds, "agent")
	if !ok || d.Digest != v1.Digest || d.SeqNo != seq || d.Version != "1.0.0" || string(d.Settings) != `{"level":3}` {
		t.Fatalf("desired state: %+v", ds)
	}
	if len(ds.Publishers) != 1 || ds.Publishers[0].Name != "Contoso" || !bytes.Equal(ds.Publishers[0].PublicKey, e.kit.pub) {
		t.Errorf("publishers in desired state: %+v", ds.Publishers)
	}
	plain, err := sealing.Open(e.m.SealingKey, extensions.SealingAAD(e.m.MachineID, "agent", "Contoso", "Agent"), d.ProtectedSettings)
	if err != nil || string(plain) != `{"password":"`+secret+`"}` {
		t.Errorf("open sealed settings: %q %v", plain, err)
	}
	if bytes.Contains(d.ProtectedSettings, []byte(secret)) {
		t.Error("protected settings travel in the clear")
	}
	if _, err := sealing.Open(e.m.SealingKey, extensions.SealingAAD(e.m.MachineID, "other", "Contoso", "Agent"), d.ProtectedSettings); err == nil {
		t.Error("sealed settings open for another extension name")
	}
	if _, err := sealing.Open(e.m.SealingKey, extensions.SealingAAD(e.m.MachineID, "agent", "Fabrikam", "Agent"), d.ProtectedSettings); err == nil {
		t.Error("sealed settings open for another publisher under the same name")
	}

	// The agent fetches the catalog and the package like the real one.
	var sc wire.SignedCatalog
	st, b := s.DoMachine(t, e.m, "GET", wire.PathCatalogs+"Contoso", nil)
	if st != http.StatusOK || json.Unmarshal(b, &sc) != nil {
		t.Fatalf("agent catalog: %d %s", st, b)
	}
	cat, err := extpkg.VerifyCatalog(ds.Publishers[0].PublicKey, "Contoso", sc)
	if entry, ok := extpkg.Find(cat, "Agent", "1.0.0"); err != nil || !ok || entry.Digest != d.Digest {
		t.Errorf("verify catalog: %v %+v", err, cat)
	}
	st, b = s.DoMachine(t, e.m, "GET", wire.PathPackages+d.Digest, nil)
	if st != http.StatusOK || extpkg.Digest(b) != d.Digest {
		t.Errorf("package download: %d, %d bytes", st, len(b))
	}
	// ...but not a package its desired state does not name.
	v2 := e.kit.publish(t, s, "Agent", "2.0.0")
	for _, digest := range []string{v2.Digest, "sha256:" + strings.Repeat("0", 64), "nonsense"} {
		if st, b := s.DoMachine(t, e.m, "GET", wire.PathPackages+digest, nil); st == http.StatusOK {
			t.Errorf("downloaded undesired package %s: %d bytes", digest, len(b))
		}
	}
	// Bearer tokens cannot use agent routes.
	if st, _ := s.Do(t, "GET", wire.PathPackages+d.Digest, s.AdminToken(t), nil); st != http.StatusUnauthorized {
		t.Errorf("package download with a bearer token: %d", st)
	}

	// Reports: stale seqNos are ignored; a matching one updates the record.
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", SeqNo: seq - 1, Operation: "install", State: wire.ExtFailed, Message: "stale"})
	if _, got := e.get(t, "agent"); got.State != wire.ExtCreating {
		t.Errorf("stale report applied: %+v", got)
	}
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", Publisher: "Contoso", Type: "Agent", Version: "1.0.0", SeqNo: seq,
		Operation: "install", State: wire.ExtSucceeded, Message: "installed"})
	if _, got := e.get(t, "agent"); got.State != wire.ExtSucceeded || got.Message != "installed" {
		t.Errorf("after the Succeeded report: %+v", got)
	}

	// Update (same version), then upgrade (explicit version), each a new seqNo and a sync.
	ext = e.set(t, "agent", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", Version: "1.0.0", Settings: json.RawMessage(`{"level":4}`)}, http.StatusOK)
	if ext.State != wire.ExtUpdating || ext.SeqNo != seq+1 || !ext.HasProtectedSettings {
		t.Errorf("after update: %+v", ext)
	}
	e.waitSync(t, 3)
	ext = e.set(t, "agent", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", Version: "2.0.0", ProtectedSettings: json.RawMessage(`null`)}, http.StatusOK)
	if ext.State != wire.ExtUpdating || ext.SeqNo != seq+2 || ext.Version != "2.0.0" || ext.HasProtectedSettings || ext.Settings != nil {
		t.Errorf("after upgrade: %+v", ext)
	}
	d, _ = findDesired(e.desired(t), "agent")
	if d.Digest != v2.Digest || d.ProtectedSettings != nil {
		t.Errorf("desired after upgrade: %+v", d)
	}
	// A failed upgrade shows the version the agent still has.
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", Version: "1.0.0", SeqNo: seq + 2, Operation: "upgrade", State: wire.ExtFailed, Message: "boom"})
	if _, got := e.get(t, "agent"); got.State != wire.ExtFailed || got.Version != "1.0.0" || got.Message != "boom" {
		t.Errorf("after a failed upgrade: %+v", got)
	}
	// Each request, and the outcome of each the machine finished, in the
	// requester's name and under the request's correlation id.
	var msgs []string
	for _, a := range activity(t, s, url.Values{"action": {"Corral.HybridCompute/machines/extensions/write"}}) {
		msgs = append(msgs, a.Result+" "+a.Message)
		if a.Caller != "admin" || a.CorrelationID == "" {
			t.Errorf("activity entry %+v", a)
		}
	}
	want := []string{"Failed upgrade Contoso/Agent 2.0.0 on m1: Failed: boom", "Succeeded upgrade Contoso/Agent 1.0.0 -> 2.0.0",
		"Succeeded update Contoso/Agent 1.0.0", "Succeeded install Contoso/Agent 1.0.0 on m1: Succeeded: installed", "Succeeded install Contoso/Agent 1.0.0"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Errorf("activity messages = %q, want %q", msgs, want)
	}

	// Delete: Deleting (the agent reported on it), a sync, gone from the
	// desired state; a late install report cannot revive it; Removed drops it.
	gen := e.desired(t).Generation
	var del wire.MachineExtension
	s.MustDo(t, http.StatusAccepted, "DELETE", m1Path+"/extensions/agent", s.AdminToken(t), nil, &del)
	if del.State != wire.ExtDeleting {
		t.Errorf("after delete: %+v", del)
	}
	e.waitSync(t, gen+1)
	if _, ok := findDesired(e.desired(t), "agent"); ok {
		t.Error("a deleting extension is still desired")
	}
	if st, _ := s.DoMachine(t, e.m, "GET", wire.PathPackages+v2.Digest, nil); st == http.StatusOK {
		t.Error("the package of a deleting extension is still served")
	}
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", SeqNo: seq + 2, Operation: "upgrade", State: wire.ExtSucceeded})
	if _, got := e.get(t, "agent"); got.State != wire.ExtDeleting {
		t.Errorf("a late report changed a deleting extension: %+v", got)
	}
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "agent", SeqNo: seq + 2, Operation: "remove", State: wire.ExtSucceeded, Removed: true})
	if st, _ := e.get(t, "agent"); st != http.StatusNotFound {
		t.Errorf("after Removed: status %d, want 404", st)
	}
	if es := activity(t, s, url.Values{"action": {"Corral.HybridCompute/machines/extensions/delete"}}); len(es) != 2 ||
		es[1].Message != "remove Contoso/Agent" || es[1].Caller != "admin" || es[1].Status != http.StatusAccepted ||
		es[0].Message != "remove Contoso/Agent 2.0.0 on m1: Succeeded" || es[0].CorrelationID != es[1].CorrelationID {
		t.Errorf("delete activity = %+v", es)
	}
}

func TestDeleteWithoutAgentReportAndAppliedGeneration(t *testing.T) {
	t.Parallel()
	e := newExtEnv(t)
	s := e.s
	e.kit.publish(t, s, "Agent", "1.0.0")
	body := wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}

	// Never reported on: dropped at once.
	a := e.set(t, "a", body, http.StatusCreated)
	s.MustDo(t, http.StatusAccepted, "DELETE", m1Path+"/extensions/a", s.AdminToken(t), nil, nil)
	if st, _ := e.get(t, "a"); st != http.StatusNotFound {
		t.Errorf("never-reported extension after delete: %d", st)
	}
	if st, _ := s.Do(t, "DELETE", m1Path+"/extensions/a", s.AdminToken(t), nil); st != http.StatusNotFound {
		t.Errorf("second delete: %d", st)
	}
	// Set again under the same name: a seqNo the agent cannot hold yet (it
	// may have been installing the dropped one, its report still on the way).
	again := e.set(t, "a", body, http.StatusCreated)
	if again.SeqNo <= a.SeqNo {
		t.Errorf("re-created extension reuses seqNo %d (first was %d)", again.SeqNo, a.SeqNo)
	}
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "a", SeqNo: a.SeqNo, Operation: "install", State: wire.ExtSucceeded})
	if _, got := e.get(t, "a"); got.State != wire.ExtCreating {
		t.Errorf("the dropped extension's late report applied to the new one: %+v", got)
	}
	s.MustDo(t, http.StatusAccepted, "DELETE", m1Path+"/extensions/a", s.AdminToken(t), nil, nil)

	// Reported, then deleted: gone once the agent applies a desired state without it.
	b := e.set(t, "b", body, http.StatusCreated)
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "b", SeqNo: b.SeqNo, Operation: "install", State: wire.ExtFailed, Message: "blocked by the allowlist"})
	s.MustDo(t, http.StatusAccepted, "DELETE", m1Path+"/extensions/b", s.AdminToken(t), nil, nil)
	gen := e.desired(t).Generation
	e.report(t, wire.ReportApplied, wire.AppliedState{Generation: gen - 1})
	if st, got := e.get(t, "b"); st != http.StatusOK || got.State != wire.ExtDeleting {
		t.Errorf("before the agent applied the delete: %d %+v", st, got)
	}
	e.report(t, wire.ReportApplied, wire.AppliedState{Generation: gen})
	if st, _ := e.get(t, "b"); st != http.StatusNotFound {
		t.Errorf("after the agent applied the delete: %d", st)
	}

	// A failed removal stays, Failed, until deleted again.
	c := e.set(t, "c", body, http.StatusCreated)
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "c", SeqNo: c.SeqNo, Operation: "install", State: wire.ExtSucceeded})
	s.MustDo(t, http.StatusAccepted, "DELETE", m1Path+"/extensions/c", s.AdminToken(t), nil, nil)
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "c", SeqNo: c.SeqNo, Operation: "remove", State: wire.ExtFailed, Message: "uninstall failed"})
	e.report(t, wire.ReportApplied, wire.AppliedState{Generation: e.desired(t).Generation})
	if st, got := e.get(t, "c"); st != http.StatusOK || got.State != wire.ExtFailed || got.Message != "uninstall failed" {
		t.Errorf("after a failed removal: %d %+v", st, got)
	}
	if _, ok := findDesired(e.desired(t), "c"); ok {
		t.Error("an extension whose removal failed is desired again")
	}
	// Set again while it is being deleted: installed afresh with a new seqNo.
	ext := e.set(t, "c", body, http.StatusOK)
	if ext.State != wire.ExtCreating || ext.SeqNo != c.SeqNo+1 {
		t.Errorf("re-set of a deleting extension: %+v", ext)
	}
	if d, ok := findDesired(e.desired(t), "c"); !ok || d.SeqNo != c.SeqNo+1 {
		t.Errorf("re-set extension not desired: %+v", d)
	}
}

func TestSetExtensionRefusals(t *testing.T) {
	t.Parallel()
	e := newExtEnv(t)
	s := e.s
	admin := s.AdminToken(t)
	e.kit.publish(t, s, "Agent", "1.0.0")
	// 1.5.0 is uploaded but not listed.
	st, b := uploadRaw(t, s, admin, "/api/v1/publishers/Contoso/packages", "application/gzip",
		bytes.NewReader(buildPackage(t, manifest("Contoso", "Agent", "1.5.0"))))
	if st != http.StatusCreated {
		t.Fatalf("upload: %d %s", st, b)
	}
	newPublisher(t, s, "Fabrikam") // registered, no catalog

	for _, tc := range []struct {
		name   string
		ext    string
		body   any
		status int
		want   string
	}{
		{"unlisted version", "x", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", Version: "1.5.0"}, 400, "not listed"},
		{"unknown version", "x", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", Version: "3.0.0"}, 404, "does not exist"},
		{"bad version", "x", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", Version: "latest"}, 400, "MAJOR.MINOR.PATCH"},
		{"unknown type", "x", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Nope"}, 404, "no version of Contoso/Nope"},
		{"unknown publisher", "x", wire.MachineExtensionSet{Publisher: "Nobody", Type: "Agent"}, 404, "not registered"},
		{"publisher without catalog", "x", wire.MachineExtensionSet{Publisher: "Fabrikam", Type: "Agent"}, 404, "no version"},
		{"bad name", "bad name", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}, 400, "not valid"},
		{"settings not an object", "x", `{"publisher":"Contoso","type":"Agent","settings":[1,2]}`, 400, "JSON object"},
		{"malformed JSON", "x", `{"publisher":"Contoso",`, 400, "malformed JSON"},
		{"unknown field", "x", `{"publisher":"Contoso","type":"Agent","secret":"x"}`, 400, "unknown field"},
		{"missing machine", "x", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}, 404, "machine"},
	} {
		path := m1Path + "/extensions/" + url.PathEscape(tc.ext)
		if tc.name == "missing machine" {
			path = strings.Replace(path, "/m1/", "/nope/", 1)
		}
		st, b := s.Do(t, "PUT", path, admin, tc.body)
		if st != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s, want %d containing %q", tc.name, st, b, tc.status, tc.want)
		}
	}

	// Changing the type of an existing name is refused.
	e.set(t, "x", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}, http.StatusCreated)
	if st, b := s.Do(t, "PUT", m1Path+"/extensions/x", admin, wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand"}); st != http.StatusConflict {
		t.Errorf("type change: %d %s", st, b)
	}

	// Reader and the onboarding principal are denied, and the denials are logged.
	var sp wire.ServicePrincipalCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: "reader"}, &sp)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: sp.ClientID, Role: "Reader", Scope: "/"}, nil)
	reader := s.ClientToken(t, sp.ClientID, sp.ClientSecret)
	onboardID, onboardSecret := s.OnboardingPrincipal(t, "rg1")
	onboarder := s.ClientToken(t, onboardID, onboardSecret)
	for who, tok := range map[string]string{"reader": reader, "onboarding": onboarder} {
		st, b := s.Do(t, "PUT", m1Path+"/extensions/y", tok, wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"})
		if st != http.StatusForbidden || errorCode(t, b) != wire.CodeForbidden {
			t.Errorf("%s sets an extension: %d %s", who, st, b)
		}
	}
	if st, _ := s.Do(t, "GET", m1Path+"/extensions", reader, nil); st != http.StatusOK {
		t.Errorf("reader lists extensions: %d", st)
	}
	if st, _ := s.Do(t, "GET", m1Path+"/extensions", onboarder, nil); st != http.StatusForbidden {
		t.Errorf("onboarding principal lists extensions: %d", st)
	}
	denied := activity(t, s, url.Values{"action": {"Corral.HybridCompute/machines/extensions/write"}, "result": {wire.ResultDenied}})
	callers := map[string]bool{}
	for _, a := range denied {
		if a.Scope == "/subscriptions/default/resourceGroups/rg1/machines/m1/extensions/y" {
			callers[a.CallerID] = true
		}
	}
	if !callers[sp.ClientID] || !callers[onboardID] {
		t.Errorf("denied entries: %+v", denied)
	}
}

func TestProtectedSettingsNeedASealingKey(t *testing.T) {
	t.Parallel()
	e := newExtEnv(t, testutil.WithoutSealingKey())
	e.kit.publish(t, e.s, "Agent", "1.0.0")
	st, b := e.s.Do(t, "PUT", m1Path+"/extensions/x", e.s.AdminToken(t),
		wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", ProtectedSettings: json.RawMessage(`{"k":"v"}`)})
	if st != http.StatusBadRequest || testutil.DecodeError(t, b).Target != "protectedSettings" || !strings.Contains(string(b), "no sealing key") {
		t.Errorf("protected settings without a sealing key: %d %s", st, b)
	}
	// Without protected settings the extension can be set.
	e.set(t, "x", wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent"}, http.StatusCreated)
}

func TestRunCommands(t *testing.T) {
	t.Parallel()
	e := newExtEnv(t)
	s := e.s
	admin := s.AdminToken(t)
	marker := "script-secret-" + rand.Text()
	var rc wire.RunCommand
	s.MustDo(t, http.StatusCreated, "PUT", m1Path+"/runCommands/hello", admin, wire.RunCommandCreate{
		Script: "echo " + marker + "\n", Parameters: map[string]string{"TOKEN": marker}, RunAsUser: "nobody", Timeout: wire.Duration(30 * time.Second)}, &rc)
	if rc.State != wire.RunPending || rc.Timeout != wire.Duration(30*time.Second) || rc.CreatedBy != "admin" {
		t.Errorf("created: %+v", rc)
	}
	e.waitSync(t, 2)
	ds := e.desired(t)
	if len(ds.RunCommands) != 1 || ds.RunCommands[0].Name != "hello" || ds.RunCommands[0].Parameters["TOKEN"] != marker || ds.RunCommands[0].RunAsUser != "nobody" {
		t.Fatalf("desired runs: %+v", ds.RunCommands)
	}
	if len(ds.Publishers) != 0 {
		t.Errorf("publishers without extensions: %+v", ds.Publishers)
	}
	if st, b := s.Do(t, "PUT", m1Path+"/runCommands/HELLO", admin, wire.RunCommandCreate{Command: "true"}); st != http.StatusConflict {
		t.Errorf("reused name: %d %s", st, b)
	}
	for _, body := range []any{
		wire.RunCommandCreate{}, wire.RunCommandCreate{Script: "a", Command: "b"},
		wire.RunCommandCreate{Command: "x", Timeout: wire.Duration(3 * time.Hour)},
		wire.RunCommandCreate{Command: "x", Parameters: map[string]string{"1BAD": "v"}},
		wire.RunCommandCreate{Command: "x", RunAsUser: "root; rm"},
		`{"command":"x","timeout":"soon"}`,
	} {
		if st, b := s.Do(t, "PUT", m1Path+"/runCommands/bad", admin, body); st != http.StatusBadRequest {
			t.Errorf("invalid run %v: %d %s", body, st, b)
		}
	}

	started := time.Now().UTC().Truncate(time.Millisecond)
	e.report(t, wire.ReportRunCommand, wire.RunCommandResult{Name: "hello", State: wire.RunRunning, StartedAt: started})
	s.MustDo(t, http.StatusOK, "GET", m1Path+"/runCommands/hello", admin, nil, &rc)
	// The start is when the server heard of it (its clock judges overdue runs).
	if rc.State != wire.RunRunning || rc.StartedAt.Before(started) || rc.StartedAt.After(time.Now()) {
		t.Errorf("running: %+v", rc)
	}
	// A start claimed by a skewed agent clock is not trusted.
	e.report(t, wire.ReportRunCommand, wire.RunCommandResult{Name: "hello", State: wire.RunRunning, StartedAt: started.Add(-48 * time.Hour)})
	s.MustDo(t, http.StatusOK, "GET", m1Path+"/runCommands/hello", admin, nil, &rc)
	if rc.StartedAt.Before(started) {
		t.Errorf("start taken from a skewed agent clock: %s", rc.StartedAt)
	}
	// Malformed reports (a NUL PostgreSQL refuses, an exit code beyond 32
	// bits) are acknowledged and dropped, never a 500 that jams the agent's
	// queue, and change nothing.
	for _, bad := range []wire.RunCommandResult{{Name: "hel\x00lo", State: wire.RunRunning}, {Name: "hello", State: wire.RunFailed, ExitCode: ptr(1 << 40)}} {
		body, _ := json.Marshal(bad)
		batch := wire.ReportBatch{Reports: []wire.Report{{ID: "bad-" + rand.Text(), Kind: wire.ReportRunCommand, Body: body}}}
		if st, b := s.DoMachine(t, e.m, "POST", wire.PathReports, batch); st != http.StatusOK {
			t.Errorf("malformed run report %+v: %d %s", bad, st, b)
		}
	}
	s.MustDo(t, http.StatusOK, "GET", m1Path+"/runCommands/hello", admin, nil, &rc)
	if rc.State != wire.RunRunning || rc.ExitCode != nil {
		t.Errorf("a malformed report changed the run: %+v", rc)
	}
	if len(e.desired(t).RunCommands) != 1 {
		t.Error("a running run left the desired state")
	}
	code := 7
	e.report(t, wire.ReportRunCommand, wire.RunCommandResult{Name: "hello", State: wire.RunFailed, ExitCode: &code,
		Stdout: marker + "\n" + strings.Repeat("x", wire.MaxHandlerOutputBytes), Stderr: "oops\x00\xff\n", FinishedAt: started.Add(time.Second)})
	e.report(t, wire.ReportRunCommand, wire.RunCommandResult{Name: "hello", State: wire.RunSucceeded}) // late, ignored
	e.report(t, wire.ReportRunCommand, wire.RunCommandResult{Name: "unknown", State: wire.RunSucceeded})
	s.MustDo(t, http.StatusOK, "GET", m1Path+"/runCommands/hello", admin, nil, &rc)
	if rc.State != wire.RunFailed || rc.ExitCode == nil || *rc.ExitCode != 7 || len(rc.Stdout) != wire.MaxHandlerOutputBytes ||
		rc.Stderr != "oops\uFFFD\n" || !rc.FinishedAt.Equal(started.Add(time.Second)) {
		t.Errorf("finished: state %s exit %v stdout %d bytes stderr %q", rc.State, rc.ExitCode, len(rc.Stdout), rc.Stderr)
	}
	if len(e.desired(t).RunCommands) != 0 {
		t.Error("a finished run is still desired")
	}

	s.MustDo(t, http.StatusCreated, "PUT", m1Path+"/runCommands/second", admin, wire.RunCommandCreate{Command: "uptime"}, nil)
	var list, page2 wire.List[wire.RunCommand]
	s.MustDo(t, http.StatusOK, "GET", m1Path+"/runCommands?$top=1", admin, nil, &list)
	if len(list.Value) != 1 || list.Value[0].Name != "second" || list.NextLink == "" {
		t.Fatalf("page 1: %d runs, next %q", len(list.Value), list.NextLink)
	}
	s.MustDo(t, http.StatusOK, "GET", list.NextLink, admin, nil, &page2)
	if len(page2.Value) != 1 || page2.Value[0].Name != "hello" || page2.NextLink != "" {
		t.Errorf("page 2: %d runs, next %q", len(page2.Value), page2.NextLink)
	}

	// The activity log names the run, never its script or parameters.
	es := activity(t, s, url.Values{"action": {"Corral.HybridCompute/machines/runCommands/write"}})
	var ok bool
	for _, a := range es {
		if strings.Contains(a.Message, marker) {
			t.Errorf("activity entry holds the script or a parameter: %+v", a)
		}
		if a.Result == wire.ResultSucceeded && a.Message == "run Corral/RunCommand script as nobody (timeout 30s)" {
			ok = true
		}
	}
	if !ok {
		t.Errorf("no activity entry for the run: %+v", es)
	}
	if strings.Contains(s.Logs.String(), marker) {
		t.Error("the script or a parameter is in the server log")
	}
}

// TestProtectedSettingsNeverStoredOrLogged greps every file of the server's
// data dir (SQLite database, WAL, keys) and the server log for the
// plaintext of protected settings.
func TestProtectedSettingsNeverStoredOrLogged(t *testing.T) {
	t.Parallel()
	e := newExtEnv(t)
	s := e.s
	e.kit.publish(t, s, "Agent", "1.0.0")
	plaintext := "pt-" + rand.Text()
	e.set(t, "agent", map[string]any{"publisher": "Contoso", "type": "Agent", "protectedSettings": map[string]string{"password": plaintext}}, http.StatusCreated)
	e.set(t, "agent", map[string]any{"publisher": "Contoso", "type": "Agent", "protectedSettings": map[string]string{"password": plaintext + "-2"}}, http.StatusOK)
	// A refused set (bad version) with protected settings leaves nothing either.
	s.Do(t, "PUT", m1Path+"/extensions/agent", s.AdminToken(t), map[string]any{"publisher": "Contoso", "type": "Agent", "version": "9.9.9",
		"protectedSettings": map[string]string{"password": plaintext}})
	d, _ := findDesired(e.desired(t), "agent")
	if len(d.ProtectedSettings) == 0 {
		t.Fatal("no sealed settings in the desired state")
	}
	for _, a := range activity(t, s, url.Values{}) {
		if b, _ := json.Marshal(a); bytes.Contains(b, []byte(plaintext)) {
			t.Errorf("activity entry holds the plaintext: %s", b)
		}
	}
	// Let SQLite's WAL hold everything written, then read every file.
	found := false
	err := filepath.WalkDir(s.DataDir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(plaintext)) {
			t.Errorf("%s holds the protected settings in the clear", p)
		}
		found = found || strings.HasSuffix(p, "-wal") || strings.HasSuffix(p, ".db")
		return nil
	})
	if err != nil || !found {
		t.Fatalf("scan data dir: %v (database found: %v)", err, found)
	}
	s.Stop(t)
	if strings.Contains(s.Logs.String(), plaintext) {
		t.Error("the server log holds the protected settings")
	}
	err = filepath.WalkDir(s.DataDir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(plaintext)) {
			t.Errorf("%s holds the protected settings after shutdown", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExtensionChangesPushSyncAndOpenAPI(t *testing.T) {
	t.Parallel()
	e := newExtEnv(t)
	s := e.s
	start := time.Now()
	ext := e.set(t, "rc", wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand"}, http.StatusCreated)
	e.waitSync(t, 2)
	t.Logf("set -> sync in %s", time.Since(start))
	if ext.Version != "1.0.0" {
		t.Errorf("first-party RunCommand version = %s", ext.Version)
	}
	ds := e.desired(t)
	if len(ds.Publishers) != 1 || ds.Publishers[0].Name != wire.PublisherCorral {
		t.Fatalf("publishers: %+v", ds.Publishers)
	}
	var sc wire.SignedCatalog
	st, b := s.DoMachine(t, e.m, "GET", wire.PathCatalogs+wire.PublisherCorral, nil)
	if st != http.StatusOK || json.Unmarshal(b, &sc) != nil {
		t.Fatalf("Corral catalog: %d %s", st, b)
	}
	if _, err := extpkg.VerifyCatalog(ds.Publishers[0].PublicKey, wire.PublisherCorral, sc); err != nil {
		t.Errorf("the first-party catalog does not verify: %v", err)
	}
	s.MustDo(t, http.StatusAccepted, "DELETE", m1Path+"/extensions/rc", s.AdminToken(t), nil, nil)
	e.waitSync(t, 3)

	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Action      string `json:"x-corral-action"`
		} `json:"paths"`
	}
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/openapi.json", "", nil, &doc)
	ids := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if prev, dup := ids[op.OperationID]; dup {
				t.Errorf("operationId %s of %s %s is also %s", op.OperationID, method, path, prev)
			}
			ids[op.OperationID] = method + " " + path
		}
	}
	for _, want := range []struct{ path, method, action string }{
		{"/api/v1/publishers/{name}", "put", "Corral.Extensions/publishers/write"},
		{"/api/v1/publishers/{name}/packages", "post", "Corral.Extensions/publishers/packages/write"},
		{"/api/v1/publishers/{name}/catalog", "put", "Corral.Extensions/publishers/catalogs/write"},
		{"/api/v1/extensionPackages", "get", "Corral.Extensions/extensionPackages/read"},
		{"/api/v1/subscriptions/{sub}/resourceGroups/{rg}/machines/{name}/extensions/{ext}", "put", "Corral.HybridCompute/machines/extensions/write"},
		{"/api/v1/subscriptions/{sub}/resourceGroups/{rg}/machines/{name}/runCommands/{run}", "put", "Corral.HybridCompute/machines/runCommands/write"},
		{wire.PathPackages + "{digest}", "get", "Corral.HybridCompute/machines/extensionPackages/read"},
	} {
		if got := doc.Paths[want.path][want.method].Action; got != want.action {
			t.Errorf("OpenAPI %s %s: action %q, want %q", want.method, want.path, got, want.action)
		}
	}
}

// TestExtensionRolesAtMachineScope: Connected Machine Resource
// Administrator assigned on one machine manages that machine's extensions
// and runs, and nothing on another machine.
func TestExtensionRolesAtMachineScope(t *testing.T) {
	t.Parallel()
	e := newExtEnv(t)
	s := e.s
	admin := s.AdminToken(t)
	id, secret := s.OnboardingPrincipal(t, "rg1")
	s.OnboardMachine(t, s.ClientToken(t, id, secret), "rg1", "m2", wire.MachineProperties{})
	var sp wire.ServicePrincipalCreated
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/servicePrincipals", admin, wire.ServicePrincipalCreate{DisplayName: "m1-admin"}, &sp)
	s.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: sp.ClientID,
		Role: "Connected Machine Resource Administrator", Scope: "/subscriptions/default/resourceGroups/rg1/machines/m1"}, nil)
	tok := s.ClientToken(t, sp.ClientID, sp.ClientSecret)
	body := wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand"}
	s.MustDo(t, http.StatusCreated, "PUT", m1Path+"/extensions/rc", tok, body, nil)
	s.MustDo(t, http.StatusCreated, "PUT", m1Path+"/runCommands/r1", tok, wire.RunCommandCreate{Command: "true"}, nil)
	s.MustDo(t, http.StatusAccepted, "DELETE", m1Path+"/extensions/rc", tok, nil, nil)
	m2 := strings.Replace(m1Path, "/m1", "/m2", 1)
	for _, c := range []struct{ method, path string }{{"PUT", m2 + "/extensions/rc"}, {"PUT", m2 + "/runCommands/r1"}, {"GET", m2 + "/extensions"}} {
		var b any
		if c.method == "PUT" {
			b = body
			if strings.Contains(c.path, "runCommands") {
				b = wire.RunCommandCreate{Command: "true"}
			}
		}
		if st, _ := s.Do(t, c.method, c.path, tok, b); st != http.StatusForbidden {
			t.Errorf("%s %s on another machine: %d, want 403", c.method, c.path, st)
		}
	}
	if st, _ := s.Do(t, "PUT", "/api/v1/publishers/Mine", tok, wire.PublisherCreate{PublicKey: make([]byte, 32)}); st != http.StatusForbidden {
		t.Errorf("machine-scoped admin registers a publisher: %d", st)
	}
}

// BenchmarkSetExtensionAPI is one "extension set" round trip through the
// API: TLS, authentication, authorization, version resolution from the
// signed catalog, sealing the protected settings, the store transaction,
// the activity entry and the push to the machine's stream.
func BenchmarkSetExtensionAPI(b *testing.B) {
	s := testutil.StartServer(b)
	id, secret := s.OnboardingPrincipal(b, "rg1")
	m := s.OnboardMachine(b, s.ClientToken(b, id, secret), "rg1", "m1", wire.MachineProperties{})
	s.DialStream(b, m)
	kit := newPublisher(b, s, "Contoso")
	kit.publish(b, s, "Agent", "1.0.0")
	admin := s.AdminToken(b)
	i := 0
	for b.Loop() {
		i++
		body := wire.MachineExtensionSet{Publisher: "Contoso", Type: "Agent", Settings: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
			ProtectedSettings: json.RawMessage(`{"key":"0123456789abcdef"}`)}
		if st, resp := s.Do(b, "PUT", m1Path+"/extensions/agent", admin, body); st != http.StatusOK && st != http.StatusCreated {
			b.Fatalf("set: %d %s", st, resp)
		}
	}
}

// TestExtensionsAcrossReplicas runs two replicas on one PostgreSQL schema
// with a shared extension signing key: the second start leaves the
// first-party catalog alone, a set through replica B reaches the stream held
// by replica A, and the agent's reports through A show on B.
func TestExtensionsAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDSN(t)
	a := testutil.StartServer(t, testutil.WithStore(dsn))
	b := testutil.StartServer(t, testutil.WithStore(dsn), testutil.WithCAFrom(a))
	id, secret := a.OnboardingPrincipal(t, "rg1")
	m := a.OnboardMachine(t, a.ClientToken(t, id, secret), "rg1", "m1", wire.MachineProperties{})
	e := &extTestEnv{s: a, m: m, conn: a.DialStream(t, m)}

	var sc wire.SignedCatalog
	b.MustDo(t, http.StatusOK, "GET", "/api/v1/publishers/Corral/catalog", b.AdminToken(t), nil, &sc)
	var c wire.Catalog
	if err := json.Unmarshal(sc.Catalog, &c); err != nil || c.Serial != 1 {
		t.Errorf("first-party catalog after two starts: serial %d (%v)", c.Serial, err)
	}
	var ext wire.MachineExtension
	b.MustDo(t, http.StatusCreated, "PUT", m1Path+"/extensions/rc", b.AdminToken(t),
		wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand", ProtectedSettings: json.RawMessage(`{"k":"v"}`)}, &ext)
	e.waitSync(t, 2)
	d, ok := findDesired(e.desired(t), "rc")
	if !ok {
		t.Fatal("the extension set through B is not in A's desired state")
	}
	if pt, err := sealing.Open(m.SealingKey, extensions.SealingAAD(m.MachineID, "rc", wire.PublisherCorral, "RunCommand"), d.ProtectedSettings); err != nil || string(pt) != `{"k":"v"}` {
		t.Errorf("open sealed settings: %q %v", pt, err)
	}
	e.report(t, wire.ReportExtension, wire.ExtensionStatus{Name: "rc", SeqNo: d.SeqNo, Operation: "install", State: wire.ExtSucceeded})
	b.MustDo(t, http.StatusOK, "GET", m1Path+"/extensions/rc", b.AdminToken(t), nil, &ext)
	if ext.State != wire.ExtSucceeded {
		t.Errorf("state through B: %+v", ext)
	}
}

// TestPackageListIsGlobal: the package list is not scoped, so whoever holds
// its read action anywhere may read it; a principal without it anywhere
// (onboarding) is refused and the refusal is logged.
func TestPackageListIsGlobal(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	admin := s.AdminToken(t)
	s.MustDo(t, 201, "PUT", "/api/v1/subscriptions/default/resourceGroups/rg1", admin, wire.ResourceGroupCreate{}, nil)
	s.MustDo(t, 201, "POST", "/api/v1/users", admin, wire.UserCreate{Name: "carl", Password: "carl-password-1"}, nil)
	s.MustDo(t, 201, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: "carl",
		Role: "Connected Machine Resource Administrator", Scope: "/subscriptions/default/resourceGroups/rg1"}, nil)
	var pkgs wire.List[wire.ExtensionPackage]
	s.MustDo(t, 200, "GET", "/api/v1/extensionPackages", s.PasswordToken(t, "carl", "carl-password-1"), nil, &pkgs)
	if len(pkgs.Value) == 0 || pkgs.Value[0].Publisher != wire.PublisherCorral {
		t.Errorf("packages for a resource-group administrator: %+v", pkgs.Value)
	}
	id, secret := s.OnboardingPrincipal(t, "rg1")
	if st, b := s.Do(t, "GET", "/api/v1/extensionPackages", s.ClientToken(t, id, secret), nil); st != http.StatusForbidden {
		t.Errorf("packages for an onboarding principal: %d %s", st, b)
	}
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, 200, "GET", "/api/v1/activityLogs?result=Denied&caller="+id, admin, nil, &acts)
	if len(acts.Value) != 1 || acts.Value[0].Action != "Corral.Extensions/extensionPackages/read" {
		t.Errorf("the refusal is not in the activity log: %+v", acts.Value)
	}
}

func ptr[T any](v T) *T { return &v }
