package apidoc

import (
	"bytes"
	"testing"

	"github.com/corralhq/corral/internal/testutil"
)

// TestCheckedInDocumentIsServed: api/openapi.json is byte for byte the
// document a running server serves, so the file tools consume cannot drift
// from the route table.
func TestCheckedInDocumentIsServed(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t)
	got, want := served(t, s), checkedInDocument(t)
	if !bytes.Equal(got, want) {
		t.Fatalf("api/openapi.json is not what the server serves at /api/v1/openapi.json: run go generate ./... "+
			"and commit the result (first difference at %s)", firstDifference(want, got))
	}
}
