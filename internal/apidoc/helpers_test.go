package apidoc

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/internal/testutil"
)

// repoRoot is the repository's root directory (tests run in the package's).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// checkedInDocument reads api/openapi.json.
func checkedInDocument(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "api", "openapi.json"))
	if err != nil {
		t.Fatalf("read the checked-in document (run go generate ./...): %v", err)
	}
	return b
}

// served fetches the document a running server serves.
func served(t *testing.T, s *testutil.Server) []byte {
	t.Helper()
	resp, err := s.Client.Get(s.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json: %d %v: %s", resp.StatusCode, err, b)
	}
	return b
}

// firstDifference names the first line where a and b differ.
func firstDifference(a, b []byte) string {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y []byte
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if !bytes.Equal(x, y) {
			return fmt.Sprintf("line %d: checked in %s, served %s", i+1, quote(x), quote(y))
		}
	}
	return "none"
}

func quote(b []byte) string {
	if len(b) > 160 {
		b = append(b[:160:160], "..."...)
	}
	return "`" + string(bytes.TrimSpace(b)) + "`"
}
