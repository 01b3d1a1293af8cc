// Package bundle writes the agent's support bundle (`corral-agent logs`): a
// tar.gz of what support needs to diagnose an agent — logs, local
// configuration, identity metadata, status, desired state and an inventory
// snapshot — and nothing that grants access: private keys and outbox
// contents are never included, and every text is passed through Redact.
package bundle

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/agent/statedir"
)

// maxFile caps one file in the bundle.
const maxFile = 32 << 20

var redactions = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----`), "[REDACTED PRIVATE KEY]"},
	{regexp.MustCompile(`crl_[a-z]+_[A-Za-z0-9_-]{16,}`), "[REDACTED TOKEN]"},
	{regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`), "[REDACTED JWT]"},
	{regexp.MustCompile(`(?i)("?(?:client_?secret|password|secret|token|access_?token|protected_?settings|authorization)"?\s*[:=]\s*)("[^"]*"|[^\s,}]+)`), `$1"[REDACTED]"`},
}

// Redact removes anything that looks like a secret.
func Redact(s string) string {
	for _, r := range redactions {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return s
}

// Extra is a generated file to include (e.g. `show` output).
type Extra struct {
	Name string
	Body string
}

// Write writes the bundle of stateDir to w. Files copied from the state
// directory keep their own modification time (when a log last grew is a
// diagnostic fact); generated entries carry now. Times are whole seconds,
// owners are "root", so the archive lists sanely with any tar.
func Write(w io.Writer, stateDir string, now time.Time, extras ...Extra) error {
	now = now.UTC().Truncate(time.Second)
	gz := gzip.NewWriter(w)
	gz.ModTime = now
	tw := tar.NewWriter(gz)
	add := func(name, body string, mod time.Time) error {
		body = Redact(body)
		h := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), ModTime: mod.UTC().Truncate(time.Second),
			Typeflag: tar.TypeReg, Uname: "root", Gname: "root"}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := io.WriteString(tw, body)
		return err
	}
	readCapped := func(p string) (string, time.Time, error) {
		f, err := os.Open(p)
		if err != nil {
			return "", time.Time{}, err
		}
		defer f.Close()
		mod := now
		if fi, err := f.Stat(); err == nil && fi.ModTime().Unix() > 0 && !fi.ModTime().After(now.Add(time.Hour)) {
			mod = fi.ModTime()
		}
		b, err := io.ReadAll(io.LimitReader(f, maxFile))
		return string(b), mod, err
	}
	for _, f := range statedir.BundleFiles {
		body, mod, err := readCapped(filepath.Join(stateDir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		if err := add("state/"+f, body, mod); err != nil {
			return err
		}
	}
	logDir := filepath.Join(stateDir, statedir.LogDir)
	err := filepath.WalkDir(logDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		body, mod, err := readCapped(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(stateDir, p)
		return add(filepath.ToSlash(rel), body, mod)
	})
	if err != nil {
		return fmt.Errorf("collect logs: %w", err)
	}
	if entries, err := os.ReadDir(filepath.Join(stateDir, statedir.OutboxDir)); err == nil {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if err := add("state/outbox.txt", fmt.Sprintf("%d pending reports\n%s\n", len(names), strings.Join(names, "\n")), now); err != nil {
			return err
		}
	}
	for _, e := range extras {
		if err := add(e.Name, e.Body, now); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}
