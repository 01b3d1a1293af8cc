package agentlog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotatingKeepsGenerations(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := &Rotating{Path: filepath.Join(dir, "a.log"), MaxBytes: 100, Keep: 2}
	line := bytes.Repeat([]byte("x"), 59)
	line = append(line, '\n')
	for range 7 { // 60 bytes each: a new file every 2nd line... every line after the first
		if _, err := r.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", e.Name(), fi.Mode().Perm())
		}
	}
	if got := strings.Join(names, ","); got != "a.log,a.log.1,a.log.2" {
		t.Errorf("files %s", got)
	}
}

func TestNewWritesJSONAndText(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var console bytes.Buffer
	log, c := New(dir, &console, 0)
	log.With("component", "agent").Info("hello", "machine", "m1")
	c.Close()
	b, err := os.ReadFile(filepath.Join(dir, Dir, File))
	if err != nil || !strings.Contains(string(b), `"msg":"hello"`) || !strings.Contains(string(b), `"component":"agent"`) {
		t.Errorf("file log %q %v", b, err)
	}
	if !strings.Contains(console.String(), "msg=hello") {
		t.Errorf("console log %q", console.String())
	}
}
