package updates

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzValidID: an assessment or deployment id from the control plane that
// the agent accepts names a record file directly in its state directory.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"01a22736-f574-779f-bb0e-db4fa5a6ced9", "..", ".hidden", "a/b", "a\x00", strings.Repeat("a", 101)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !validID(id) {
			return
		}
		j := filepath.Join("/state/updates", recordFile(id))
		if filepath.Dir(j) != "/state/updates" || filepath.Base(j) != recordFile(id) || strings.HasPrefix(id, ".") {
			t.Fatalf("id %q accepted, which is not one file name (%s)", id, j)
		}
	})
}
