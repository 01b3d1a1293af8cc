package runcommand

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/wire"
)

// Issue 7, finding 14: protected parameters arrive sealed to this machine
// for their run; the agent opens them in memory and hands them to the
// process as environment variables, and nothing it writes holds them. A
// blob sealed for another run, or another machine, is refused.
func TestProtectedParameters(t *testing.T) {
	t.Parallel()
	priv, pub, err := sealing.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, state: t.TempDir()}
	f := New()
	if err := f.Start(context.Background(), feature.Env{
		Logger: slog.New(slog.DiscardHandler), StateDir: statedir.Dir(h.state),
		Report: func(_ string, body any, _ string) {
			h.mu.Lock()
			h.reports = append(h.reports, body.(wire.RunCommandResult))
			h.mu.Unlock()
		},
		Config:  func() localconfig.Effective { e, _ := localconfig.Current(h.state); return e },
		Machine: feature.Machine{ID: "machine-1", SealingKey: func() ([]byte, error) { return priv, nil }},
	}); err != nil {
		t.Fatal(err)
	}
	h.f = f
	t.Cleanup(func() { f.Close() })

	const secret = "s3cret-value-Zq9"
	seal := func(run string, v map[string]string) []byte {
		b, _ := json.Marshal(v)
		s, err := sealing.Seal(pub, sealing.RunCommandAAD("machine-1", run), b)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h.apply(true,
		wire.DesiredRunCommand{Name: "uses-secret", Command: `printf '%s|%s' "$DBPASS" "$LEVEL"`, Parameters: map[string]string{"LEVEL": "2"},
			ProtectedParameters: seal("uses-secret", map[string]string{"DBPASS": secret})},
		wire.DesiredRunCommand{Name: "moved", Command: "true", ProtectedParameters: seal("another-run", map[string]string{"X": "1"})},
		wire.DesiredRunCommand{Name: "clash", Command: "true", Parameters: map[string]string{"X": "a"},
			ProtectedParameters: seal("clash", map[string]string{"X": "b"})},
	)
	got := h.waitFinal(3)
	if r := got["uses-secret"]; r.State != wire.RunSucceeded || r.Stdout != secret+"|2" {
		t.Errorf("uses-secret: %+v", r)
	}
	if r := got["moved"]; r.State != wire.RunFailed || !strings.Contains(r.Message, "protected parameters") {
		t.Errorf("a blob sealed for another run: %+v", r)
	}
	if r := got["clash"]; r.State != wire.RunFailed || !strings.Contains(r.Message, "both") {
		t.Errorf("a name in both maps: %+v", r)
	}
	// Nothing the agent wrote holds the secret.
	err = filepath.WalkDir(h.state, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), secret) {
			t.Errorf("%s holds the protected parameter", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
