package cli

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A publisher's key cannot be replaced once registered, so "publisher
// create" must not delete the private key when it cannot tell whether the
// server registered the public half: the connection dropped after the
// request was sent. Only a definite refusal removes it.
func TestPublisherCreateKeepsTheKeyWhenTheOutcomeIsUnknown(t *testing.T) {
	dir := isolate(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			// The request arrived (and may have been committed); the answer is lost.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvServer, srv.URL)
	t.Setenv(EnvToken, "crl_pat_test")
	t.Setenv(EnvCAFile, ca)

	keyFile := filepath.Join(dir, "contoso.key")
	_, _, err := run(t, "", "publisher", "create", "Contoso", "--key-file", keyFile)
	if err == nil {
		t.Fatal("publisher create succeeded against a server that dropped the connection")
	}
	if _, serr := os.Stat(keyFile); serr != nil {
		t.Fatalf("the private key was deleted although the publisher may be registered with it: %v", serr)
	}
	if !strings.Contains(err.Error(), keyFile) {
		t.Errorf("the error does not say where the key was kept: %v", err)
	}
}
