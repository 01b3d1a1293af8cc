package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/server/authn"
)

// A signing key given with its flag must exist: a replica whose copy is
// missing refuses to start, naming the flag and the path, and creates
// nothing there (a key of its own would split it from the other replicas).
// The default keys in the data directory are still created on first start.
func TestGivenSigningKeysMustExist(t *testing.T) {
	t.Parallel()
	shared := t.TempDir()
	for _, name := range []string{"token.key", "extension.key", "signature.key"} {
		if _, err := authn.LoadOrCreateSigningKey(filepath.Join(shared, name)); err != nil {
			t.Fatal(err)
		}
	}
	base := func(t *testing.T) Config {
		return Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", AdminPassword: "a-long-enough-password",
			Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			TokenKeyFile: filepath.Join(shared, "token.key"), ExtensionKeyFile: filepath.Join(shared, "extension.key"),
			SignatureKeyFile: filepath.Join(shared, "signature.key")}
	}
	for _, tc := range []struct {
		flag string
		set  func(*Config, string)
	}{
		{"--token-signing-key", func(c *Config, p string) { c.TokenKeyFile = p }},
		{"--extension-signing-key", func(c *Config, p string) { c.ExtensionKeyFile = p }},
		{"--signature-signing-key", func(c *Config, p string) { c.SignatureKeyFile = p }},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			t.Parallel()
			cfg := base(t)
			missing := filepath.Join(t.TempDir(), "not-copied.key")
			tc.set(&cfg, missing)
			s, err := New(context.Background(), cfg)
			if err == nil {
				s.closeAll()
				t.Fatalf("started with %s %s missing", tc.flag, missing)
			}
			if !strings.Contains(err.Error(), tc.flag+" "+missing+": no such file") {
				t.Errorf("the error does not name the flag and the path: %v", err)
			}
			if _, err := os.Stat(missing); err == nil {
				t.Errorf("a key was created at %s", missing)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		cfg := base(t)
		cfg.TokenKeyFile, cfg.ExtensionKeyFile, cfg.SignatureKeyFile = "", "", ""
		s, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.closeAll()
		for _, name := range []string{"token-signing.key", "extension-signing.key", "signature-signing.key"} {
			if _, err := os.Stat(filepath.Join(cfg.DataDir, name)); err != nil {
				t.Errorf("default key not created: %v", err)
			}
		}
	})
}
