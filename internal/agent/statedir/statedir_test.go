package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckSafeRefusesWhatOthersCouldHaveWritten(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
	}{
		{"group-writable directory", func(t *testing.T, dir string) { os.Chmod(dir, 0o770) }},
		{"world-writable config", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte("{}"), 0o600)
			os.Chmod(filepath.Join(dir, ConfigFile), 0o666)
		}},
		{"config is a symbolic link", func(t *testing.T, dir string) {
			os.Symlink("/etc/hostname", filepath.Join(dir, ConfigFile))
		}},
		{"CA is a directory", func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, CAFile), 0o700) }},
		{"config owned by another user", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("chown needs root")
			}
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte("{}"), 0o600)
			os.Chown(filepath.Join(dir, ConfigFile), 65534, 65534)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "state")
			if err := MkdirPrivate(dir); err != nil {
				t.Fatal(err)
			}
			tt.prepare(t, dir)
			if err := CheckSafe(Dir(dir)); !errors.Is(err, ErrUnsafe) {
				t.Errorf("CheckSafe = %v, want ErrUnsafe", err)
			}
		})
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, ConfigFile), []byte("{}"), PrivateMode); err != nil {
		t.Fatal(err)
	}
	if err := CheckSafe(Dir(dir)); err != nil {
		t.Errorf("a root-only state directory: %v", err)
	}
	if err := CheckSafe(Dir(filepath.Join(dir, "missing"))); err != nil {
		t.Errorf("a missing state directory: %v", err)
	}
}
