package apidoc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testutil"
)

// redoclyVersion is the Redocly CLI the document is linted with.
const redoclyVersion = "2.77.0"

// lintResult is Redocly CLI's `lint --format json` output.
type lintResult struct {
	Totals struct {
		Errors   int `json:"errors"`
		Warnings int `json:"warnings"`
		Ignored  int `json:"ignored"`
	} `json:"totals"`
	Problems []struct {
		RuleID   string `json:"ruleId"`
		Severity string `json:"severity"`
		Message  string `json:"message"`
		Location []struct {
			Pointer string `json:"pointer"`
		} `json:"location"`
	} `json:"problems"`
}

func (r lintResult) String() string {
	var b strings.Builder
	for _, p := range r.Problems {
		ptr := ""
		if len(p.Location) > 0 {
			ptr = p.Location[0].Pointer
		}
		b.WriteString("\n  " + p.Severity + " " + p.RuleID + " at " + ptr + ": " + p.Message)
	}
	return b.String()
}

// redoclyLint lints doc with api/redocly.yaml (and the deliberate
// exceptions beside it) and returns what Redocly found.
func redoclyLint(t *testing.T, doc string) lintResult {
	t.Helper()
	dir := testutil.NpmPackage(t, "@redocly/cli", redoclyVersion)
	cli := filepath.Join(dir, "node_modules", "@redocly", "cli", "bin", "cli.js")
	root := repoRoot(t)
	cmd := exec.Command("node", cli, "lint", "--config", filepath.Join(root, "api", "redocly.yaml"), "--format", "json", doc)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run() // exits 1 when it finds errors; the JSON says which
	var res lintResult
	if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil {
		t.Fatalf("redocly lint %s: %v, output is not its JSON report (%v):\n%s\n%s", doc, err, jerr, stdout.String(), stderr.String())
	}
	return res
}

// TestRedoclyLint: the checked-in document passes Redocly CLI's
// recommended rules with no error and no warning; the only exceptions are
// the deliberate ones in api/.redocly.lint-ignore.yaml, each of which must
// still match a problem (a stale exception fails too).
func TestRedoclyLint(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	res := redoclyLint(t, filepath.Join(root, "api", "openapi.json"))
	t.Logf("Redocly CLI %s: %d errors, %d warnings, %d deliberate exceptions", redoclyVersion,
		res.Totals.Errors, res.Totals.Warnings, res.Totals.Ignored)
	if res.Totals.Errors != 0 || res.Totals.Warnings != 0 {
		t.Errorf("api/openapi.json: %d errors and %d warnings (fix the generator in internal/server/httpapi/openapi.go, "+
			"or, if a rule does not fit on purpose, list the place with why in api/.redocly.lint-ignore.yaml):%s",
			res.Totals.Errors, res.Totals.Warnings, res)
	}
	if want := ignoreEntries(t, filepath.Join(root, "api", ".redocly.lint-ignore.yaml")); res.Totals.Ignored != want {
		t.Errorf("%d problems were ignored, but api/.redocly.lint-ignore.yaml lists %d: remove the exceptions that no longer apply",
			res.Totals.Ignored, want)
	}

	// The lint can fail: a document without servers and with an operation
	// that answers nothing is refused.
	var doc map[string]any
	if err := json.Unmarshal(checkedInDocument(t), &doc); err != nil {
		t.Fatal(err)
	}
	doc["servers"] = []any{}
	doc["paths"].(map[string]any)["/api/v1/me"].(map[string]any)["get"].(map[string]any)["responses"] = map[string]any{}
	broken := filepath.Join(t.TempDir(), "broken.json")
	b, _ := json.Marshal(doc)
	if err := os.WriteFile(broken, b, 0o600); err != nil {
		t.Fatal(err)
	}
	res = redoclyLint(t, broken)
	found := map[string]bool{}
	for _, p := range res.Problems {
		for _, l := range p.Location {
			found[p.RuleID+" "+l.Pointer] = true
		}
	}
	for _, want := range []string{"no-empty-servers #/servers", "operation-2xx-response #/paths/~1api~1v1~1me/get/responses"} {
		if !found[want] {
			t.Errorf("a broken document lints without %s:%s", want, res)
		}
	}
	if res.Totals.Errors == 0 {
		t.Errorf("a document without servers lints without errors:%s", res)
	}
}

// ignoreEntries counts the JSON pointers listed in a Redocly ignore file.
func ignoreEntries(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(strings.TrimSpace(sc.Text()), "- '#/") {
			n++
		}
	}
	return n
}
