package cli

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

func TestGoldenExtensionTables(t *testing.T) {
	var b bytes.Buffer
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(renderPublishers(&b, outTable, []wire.Publisher{{ID: "/publishers/Contoso", Name: "Contoso", PublicKey: bytes.Repeat([]byte{7}, 32), CreatedAt: t0, CreatedBy: "admin"}}))
	b.WriteString("\n")
	digest := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	must(renderPackages(&b, outTable, []wire.ExtensionPackage{
		{Publisher: "Contoso", Type: "Agent", Version: "1.10.0", Digest: digest, Size: 2048, Listed: true, PublishedAt: t0},
		{Publisher: "Contoso", Type: "Agent", Version: "2.0.0", Digest: digest, Size: 4096, PublishedAt: t0.Add(time.Hour)},
	}))
	b.WriteString("\n")
	exts := []wire.MachineExtension{
		{Name: "agent", Publisher: "Contoso", Type: "Agent", Version: "1.10.0", State: wire.ExtSucceeded, Message: "enabled", UpdatedAt: t0},
		{Name: "broken", Publisher: "Contoso", Type: "Broken", Version: "1.0.0", State: wire.ExtFailed,
			Message: "install failed: exit status 4:\ndisk full, and a long explanation that does not fit in one table cell at all", UpdatedAt: t0},
	}
	must(renderExtensions(&b, outTable, exts))
	b.WriteString("\n")
	exts[0].Settings, exts[0].HasProtectedSettings, exts[0].SeqNo, exts[0].CreatedAt, exts[0].CreatedBy = json.RawMessage(`{"level":2}`), true, 3, t0, "admin"
	must(renderExtensionDetail(&b, exts[0]))
	b.WriteString("\n")
	code := 3
	runs := []wire.RunCommand{
		{Name: "r1", State: wire.RunFailed, ExitCode: &code, Command: "echo hello; exit 3", Timeout: wire.Duration(10 * time.Minute),
			CreatedAt: t0, CreatedBy: "admin", StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(2 * time.Second), Stdout: "hello\n", Stderr: "oops"},
		{Name: "r2", State: wire.RunPending, Script: "uptime\n", RunAsUser: "nobody", CreatedAt: t0.Add(time.Minute), CreatedBy: "ci"},
	}
	must(renderRuns(&b, outTable, runs))
	b.WriteString("\n")
	must(renderRunDetail(&b, runs[0]))
	golden(t, "extensions.golden", b.String())
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{{nil, 0}, {errNotLoggedIn, 1}, {&ExitError{Code: 3}, 3}, {&ExitError{Code: 300}, 1}, {&ExitError{Code: -1}, 1}} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
