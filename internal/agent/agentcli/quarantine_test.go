package agentcli_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/agentcli"
	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/quarantine"
)

// TestQuarantineListRestoreAndExclusion: a file quarantined by endpoint
// protection is listed, restored with its mode, and its hash is then
// excluded from scans unless --no-exclusion was given.
func TestQuarantineListRestoreAndExclusion(t *testing.T) {
	t.Parallel()
	state, dir := t.TempDir(), t.TempDir()
	run := func(args ...string) (string, error) {
		return agent(t, "", append([]string{"--state-dir", state}, args...)...)
	}
	if out, err := run("quarantine", "list"); err != nil || !strings.Contains(out, "empty") {
		t.Fatalf("empty list: %v %s", err, out)
	}
	q, err := quarantine.Open(filepath.Join(state, "quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.com"), filepath.Join(dir, "b.com")
	os.WriteFile(a, scan.EICAR(), 0o640)
	os.WriteFile(b, append(scan.EICAR(), '\n'), 0o600)
	ra, _ := q.Add(a, scan.EICARName, time.Now())
	rb, _ := q.Add(b, scan.EICARName, time.Now().Add(time.Second))
	out, err := run("quarantine", "list", "-o", "json")
	var recs []quarantine.Record
	if err != nil || json.Unmarshal([]byte(out), &recs) != nil || len(recs) != 2 || recs[0].ID != ra.ID {
		t.Fatalf("list: %v %s", err, out)
	}
	if out, err := run("quarantine", "list"); err != nil || !strings.Contains(out, ra.ID) || !strings.Contains(out, a) {
		t.Errorf("table: %v %s", err, out)
	}
	if out, err := run("quarantine", "restore", ra.ID); err != nil || !strings.Contains(out, "Added an exclusion") {
		t.Fatalf("restore: %v %s", err, out)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("restored: %v %v", fi, err)
	}
	if out, err := run("quarantine", "restore", rb.ID, "--no-exclusion"); err != nil || strings.Contains(out, "exclusion") {
		t.Fatalf("restore --no-exclusion: %v %s", err, out)
	}
	// a.com is excluded by its hash; b.com (other content) is still found.
	out, err = run("scan", "-o", "json", dir)
	var rep agentcli.ScanReport
	json.Unmarshal([]byte(out), &rep)
	var ee *agentcli.ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || len(rep.Findings) != 1 || rep.Findings[0].Path != b ||
		len(rep.Excluded) != 1 || rep.Excluded[0] != a {
		t.Errorf("scan after restore: %v %+v", err, rep)
	}
	if _, err := run("quarantine", "restore", ra.ID); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("restore twice: %v", err)
	}
}
