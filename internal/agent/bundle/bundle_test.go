package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{
		"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----",
		"crl_pat_Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4",
		"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzcC0xMjMifQ.c2lnbmF0dXJlc2lnbmF0dXJl",
	} {
		if got := Redact("before " + secret + " after"); strings.Contains(got, secret) || !strings.Contains(got, "REDACTED") {
			t.Errorf("Redact kept %q: %q", secret, got)
		}
	}
	got := Redact(`{"clientSecret":"s3cr3t-value","name":"web"} password=hunter2`)
	if strings.Contains(got, "s3cr3t-value") || strings.Contains(got, "hunter2") || !strings.Contains(got, `"name":"web"`) {
		t.Errorf("Redact of fields: %s", got)
	}
}

func TestWriteIncludesStateAndLogsButNoKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(p, body string) {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o700)
		if err := os.WriteFile(full, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("key.pem", "-----BEGIN PRIVATE KEY-----\nSECRETKEYBODY\n-----END PRIVATE KEY-----\n")
	write("state.json", `{"machineId":"m1"}`)
	write("config.json", `{"config.mode":"monitor"}`)
	write("logs/agent.log", `{"msg":"hello","token":"crl_pat_abcdefghijklmnopqrstuvwxyz"}`+"\n")
	write("outbox/0001_x_y.json", `{"body":"private"}`)
	logTime := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(dir, "logs/agent.log"), logTime, logTime); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.Local)
	var buf bytes.Buffer
	if err := Write(&buf, dir, now, Extra{Name: "show.txt", Body: "machine m1"}); err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !gz.ModTime.Equal(now.Truncate(time.Second)) {
		t.Errorf("gzip header time %v, want %v", gz.ModTime, now.Truncate(time.Second))
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	times := map[string]time.Time{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
		times[h.Name] = h.ModTime
		if h.Uname != "root" || h.ModTime.Nanosecond() != 0 {
			t.Errorf("%s: owner %q time %v, want root and whole seconds", h.Name, h.Uname, h.ModTime)
		}
	}
	if !times["logs/agent.log"].Equal(logTime) {
		t.Errorf("log entry time %v, want the file's own %v", times["logs/agent.log"], logTime)
	}
	if !times["show.txt"].Equal(now.Truncate(time.Second)) {
		t.Errorf("generated entry time %v, want %v", times["show.txt"], now)
	}
	for _, want := range []string{"state/state.json", "state/config.json", "logs/agent.log", "state/outbox.txt", "show.txt"} {
		if _, ok := files[want]; !ok {
			t.Errorf("bundle lacks %s (has %v)", want, files)
		}
	}
	for name, body := range files {
		if strings.Contains(body, "SECRETKEYBODY") || strings.Contains(body, "abcdefghijklmnop") || strings.Contains(body, "private") {
			t.Errorf("%s leaks a secret: %q", name, body)
		}
	}
}
