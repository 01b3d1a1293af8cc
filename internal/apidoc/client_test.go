package apidoc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	// The generated client is compiled inside this module (a build
	// overlay), so the module must require its runtime: importing it here
	// keeps it in go.mod.
	_ "github.com/oapi-codegen/runtime"
	_ "github.com/oapi-codegen/runtime/types"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// driverSummary is what testdata/driver prints.
type driverSummary struct {
	ResourceGroupID      string     `json:"resourceGroupId"`
	ServicePrincipalID   string     `json:"servicePrincipalClientId"`
	RoleAssignmentID     string     `json:"roleAssignmentId"`
	Machines             []string   `json:"machines"`
	Pages                [][]string `json:"pages"`
	ExtensionStates      []string   `json:"extensionStates"`
	NotFoundCode         string     `json:"notFoundCode"`
	ForbiddenCode        string     `json:"forbiddenCode"`
	DesiredGeneration    int64      `json:"desiredGeneration"`
	AcceptedReports      []string   `json:"acceptedReports"`
	OAuthErrorCode       string     `json:"oauthErrorCode"`
	ServicePrincipalRead string     `json:"servicePrincipalCallerType"`
}

// TestGeneratedClient generates a Go client from api/openapi.json with
// oapi-codegen (the go.mod tool), compiles it with testdata/driver, and
// runs the driver against a real server: everything it does goes through
// the generated client, so an operation, parameter or schema missing from
// the document fails the build or the run. The test then checks what the
// driver reported against the server itself.
func TestGeneratedClient(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "go")
	doc := checkedInDocument(t)
	bin, out, err := buildDriver(t, doc)
	if err != nil {
		t.Fatalf("the client generated from api/openapi.json does not compile with testdata/driver: %v\n%s", err, out)
	}

	s := testutil.StartServer(t)
	cmd := exec.Command(bin, "-server", s.URL, "-ca", s.CAFile, "-admin-password", s.AdminPassword)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the generated client could not do what the document promises: %v\n%s", err, stderr.String())
	}
	var sum driverSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("driver output: %v\n%s", err, stdout.String())
	}
	t.Logf("driver: %s", strings.TrimSpace(stdout.String()))

	want := driverSummary{
		ResourceGroupID: "/subscriptions/default/resourceGroups/apiclient",
		Machines:        []string{"web-01", "web-02", "web-03", "web-04", "web-05", "web-06"},
		// web-03 is in AWS: the environment filter leaves it out.
		Pages:                [][]string{{"web-01", "web-02"}, {"web-04", "web-05"}, {"web-06"}},
		ExtensionStates:      []string{wire.ExtCreating, wire.ExtSucceeded},
		NotFoundCode:         wire.CodeNotFound,
		ForbiddenCode:        wire.CodeForbidden,
		AcceptedReports:      []string{"report-1"},
		OAuthErrorCode:       wire.CodeInvalidGrant,
		ServicePrincipalRead: wire.PrincipalServicePrincipal,
	}
	got := sum
	got.ServicePrincipalID, got.RoleAssignmentID, got.DesiredGeneration = "", "", 0
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("what the generated client saw (-want +got):\n%s", d)
	}

	// The server agrees with what the client did.
	admin := s.AdminToken(t)
	var rg wire.ResourceGroup
	s.MustDo(t, http.StatusOK, "GET", "/api/v1"+want.ResourceGroupID, admin, nil, &rg)
	if rg.Tags["owner"] != "platform" {
		t.Errorf("resource group tags: %v", rg.Tags)
	}
	var ra wire.RoleAssignment
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/roleAssignments/"+sum.RoleAssignmentID, admin, nil, &ra)
	if ra.RoleName != "Reader" || ra.Scope != want.ResourceGroupID || ra.PrincipalType != wire.PrincipalServicePrincipal {
		t.Errorf("role assignment: %+v", ra)
	}
	var sp wire.ServicePrincipal
	s.MustDo(t, http.StatusOK, "GET", "/api/v1/servicePrincipals/"+sum.ServicePrincipalID, admin, nil, &sp)
	if sp.DisplayName != "inventory-reader" || ra.PrincipalID == "" {
		t.Errorf("service principal: %+v", sp)
	}
	var ext wire.MachineExtension
	s.MustDo(t, http.StatusOK, "GET", "/api/v1"+want.ResourceGroupID+"/machines/web-01/extensions/rc", admin, nil, &ext)
	if ext.State != wire.ExtSucceeded || ext.Publisher != wire.PublisherCorral {
		t.Errorf("extension: %+v", ext)
	}
	if sum.DesiredGeneration < 2 {
		t.Errorf("desired generation %d: the extension did not bump it", sum.DesiredGeneration)
	}
}

// TestGeneratedClientNeedsTheSchemas: the generated-client test fails when
// the document loses a route's success schema (here: the machine list's),
// because the driver no longer compiles.
func TestGeneratedClientNeedsTheSchemas(t *testing.T) {
	t.Parallel()
	testutil.NeedTool(t, "go")
	var doc map[string]any
	if err := json.Unmarshal(checkedInDocument(t), &doc); err != nil {
		t.Fatal(err)
	}
	op := doc["paths"].(map[string]any)["/api/v1/subscriptions/{sub}/resourceGroups/{rg}/machines"].(map[string]any)["get"].(map[string]any)
	delete(op["responses"].(map[string]any)["200"].(map[string]any), "content")
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	_, out, err := buildDriver(t, b)
	if err == nil {
		t.Fatal("the driver compiled against a document without the machine list's schema")
	}
	if !strings.Contains(string(out), "JSON200") {
		t.Errorf("the build failed, but not for the missing schema:\n%s", out)
	}
}

// buildDriver compiles testdata/driver with the client generated from doc
// and returns the binary, or the compiler's output and error.
func buildDriver(t *testing.T, doc []byte) (string, []byte, error) {
	t.Helper()
	root := repoRoot(t)
	client := generatedClient(t, root, doc)
	// The client and the driver are compiled as a package of this module
	// that exists only in a build overlay: nothing is written to the
	// repository, and go.sum pins the client's runtime.
	pkg := filepath.Join(root, "internal", "apidoc", "genclient")
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{
		filepath.Join(pkg, "client.gen.go"): client,
		filepath.Join(pkg, "main.go"):       filepath.Join(root, "internal", "apidoc", "testdata", "driver", "main.go"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "overlay.json"), overlay, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "driver")
	cmd := exec.Command("go", "build", "-overlay", filepath.Join(dir, "overlay.json"), "-o", bin, "./internal/apidoc/genclient")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return bin, out, err
}

var codegenVersionRE = regexp.MustCompile(`(?m)^\s*github\.com/oapi-codegen/oapi-codegen/v2 (v\S+)`)

// generatedClient runs oapi-codegen on doc once per machine and document
// (the result is cached under CORRAL_TEST_CACHE by the document's and the
// generator's hash: generation takes seconds, reuse none).
func generatedClient(t *testing.T, root string, doc []byte) string {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := codegenVersionRE.FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/oapi-codegen/oapi-codegen/v2 (go get -tool ...)")
	}
	args := []string{"tool", "oapi-codegen", "-generate", "types,client", "-package", "main"}
	sum := sha256.Sum256(append([]byte(string(m[1])+" "+strings.Join(args, " ")+"\n"), doc...))
	cache := os.Getenv("CORRAL_TEST_CACHE")
	if cache == "" {
		cache = "/var/tmp/corral-test-cache"
	}
	dir := filepath.Join(cache, "oapi-client")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, hex.EncodeToString(sum[:12])+".go")
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); err == nil {
		return out
	}
	src := filepath.Join(t.TempDir(), "openapi.json")
	if err := os.WriteFile(src, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := out + ".tmp"
	cmd := exec.Command("go", append(args, "-o", tmp, src)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("oapi-codegen %s could not generate a client from the document: %v\n%s", m[1], err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	return out
}
