// Package statedir owns the agent's state directory: its layout (which file
// and folder holds what), the modes everything is created with, atomic
// writes, the check that the directory is safe to trust, and the list of
// files a support bundle may include. Every other agent package asks it for
// paths and writes through it, so the layout is written down once.
//
// The directory is root-only (0700) and so is every file in it except the
// public certificates. Files are replaced atomically (temp file, fsync,
// rename), so a reader sees the old or the new content, never a torn one.
package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Names of the files and folders in the state directory.
const (
	ConfigFile   = "config.json"  // local configuration (localconfig)
	StateFile    = "state.json"   // machine identity metadata (identity)
	KeyFile      = "key.pem"      // TLS private key
	SealingFile  = "sealing.key"  // X25519 private key for protected settings
	CertFile     = "cert.pem"     // machine client certificate
	CAFile       = "ca.pem"       // the control plane's CA (pinned)
	StatusFile   = "status.json"  // the daemon's connection state for `show`
	DesiredFile  = "desired.json" // the last desired state fetched, without run commands
	OutboxDir    = "outbox"       // reports waiting for delivery
	ExtensionDir = "extensions"   // the extension manager's state and packages
	LogDir       = "logs"         // agent.log and its rotations
	FeaturesDir  = "features"     // FeaturesDir/<name>: each agent feature's own folder
)

// Modes.
const (
	DirMode     os.FileMode = 0o700
	PrivateMode os.FileMode = 0o600
	PublicMode  os.FileMode = 0o644 // certificates only
)

// BundleFiles are the state files a support bundle may include: nothing that
// grants access (keys, the outbox, protected settings) is on it.
var BundleFiles = []string{ConfigFile, StateFile, StatusFile, DesiredFile, CertFile, CAFile}

// Dir is a state directory.
type Dir string

// Path joins elem to the directory.
func (d Dir) Path(elem ...string) string {
	return filepath.Join(append([]string{string(d)}, elem...)...)
}

// FeatureDir returns (and creates, root-only) the folder of one agent feature.
func (d Dir) FeatureDir(name string) (string, error) {
	p := d.Path(FeaturesDir, name)
	return p, MkdirPrivate(p)
}

// MkdirPrivate creates dir and its parents root-only.
func MkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// WriteFileAtomic writes data to a temp file in path's directory, syncs it
// and renames it over path, so readers see the old or the new file, never a
// torn one. The directory must exist.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReplaceFile is WriteFileAtomic without the fsync, for informational files
// written often (the daemon's status): readers still never see a torn file,
// but a crash may lose the latest version.
func ReplaceFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ErrUnsafe is wrapped by CheckSafe's refusals.
var ErrUnsafe = errors.New("unsafe state directory")

// CheckSafe refuses a state directory that someone other than the agent's
// own user could have written: the directory and the files the agent trusts
// (its configuration, identity and CA) must be owned by the agent's user and
// writable by nobody else. A missing directory or file is not unsafe.
func CheckSafe(d Dir) error {
	uid := os.Geteuid()
	check := func(p string, isDir bool) error {
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnsafe, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%w: %s is a symbolic link", ErrUnsafe, p)
		}
		if fi.IsDir() != isDir {
			return fmt.Errorf("%w: %s is not a regular %s", ErrUnsafe, p, map[bool]string{true: "directory", false: "file"}[isDir])
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok && int(st.Uid) != uid {
			return fmt.Errorf("%w: %s is owned by uid %d, not by the agent's uid %d (fix: chown %d %s)", ErrUnsafe, p, st.Uid, uid, uid, p)
		}
		if fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%w: %s is writable by group or others (mode %04o; fix: chmod go-w %s)", ErrUnsafe, p, fi.Mode().Perm(), p)
		}
		return nil
	}
	if err := check(string(d), true); err != nil {
		return err
	}
	for _, f := range []string{ConfigFile, StateFile, KeyFile, SealingFile, CertFile, CAFile} {
		if err := check(d.Path(f), false); err != nil {
			return err
		}
	}
	return nil
}
