package e2e

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keyBody is the base64 body of a PEM private key, the part that must never leak.
func keyBody(pemText string) string {
	lines := strings.Split(strings.TrimSpace(pemText), "\n")
	if len(lines) < 3 {
		return pemText
	}
	return strings.Join(lines[1:len(lines)-1], "")
}

func scanForSecrets(t *testing.T, secrets map[string]string, text, where string) {
	t.Helper()
	flat := strings.ReplaceAll(text, "\n", "")
	for name, s := range secrets {
		if s != "" && (strings.Contains(text, s) || strings.Contains(flat, s)) {
			t.Errorf("the %s appears in %s", name, where)
		}
	}
}

func scanTree(t *testing.T, secrets map[string]string, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, ".key") || strings.HasSuffix(p, "key.pem") {
			return nil // the key files themselves
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		scanForSecrets(t, secrets, string(b), p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func scanTarGz(t *testing.T, secrets map[string]string, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		scanForSecrets(t, secrets, string(b), "support bundle "+h.Name)
		n++
	}
	if n == 0 {
		t.Error("support bundle is empty")
	}
}
