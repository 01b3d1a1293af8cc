package sigset

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/internal/scan"
)

// Store keeps the agent's installed set in Dir: current.sigset and the one
// it replaced, previous.sigset. Install and Load verify with PublicKey,
// the key pinned in the agent's configuration. A Store is not safe for
// concurrent use; the endpoint-protection daemon owns it.
type Store struct {
	Dir       string
	PublicKey ed25519.PublicKey
	NoBuiltin bool
}

const (
	currentFile  = "current.sigset"
	previousFile = "previous.sigset"
)

// Install verifies set, loads it completely and only then makes it the
// current set. A set with a bad signature, a malformed body or a version
// older than the current one is refused and the current set stays.
func (s *Store) Install(set []byte) (*scan.DB, Header, error) {
	db, h, err := Load(s.PublicKey, set, s.NoBuiltin)
	if err != nil {
		return nil, h, fmt.Errorf("refused signature set, keeping the current one: %w", err)
	}
	if cur, err := s.Current(); err == nil && h.Version < cur.Version {
		return nil, h, fmt.Errorf("refused signature set, keeping the current one: %w (version %d < %d)", ErrOlder, h.Version, cur.Version)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, h, fmt.Errorf("signature store: %w", err)
	}
	tmp := filepath.Join(s.Dir, currentFile+".tmp")
	if err := writeSync(tmp, set); err != nil {
		os.Remove(tmp)
		return nil, h, fmt.Errorf("write signature set, keeping the current one: %w", err)
	}
	cur := filepath.Join(s.Dir, currentFile)
	if err := os.Link(cur, filepath.Join(s.Dir, previousFile+".tmp")); err == nil {
		os.Rename(filepath.Join(s.Dir, previousFile+".tmp"), filepath.Join(s.Dir, previousFile))
	}
	if err := os.Rename(tmp, cur); err != nil {
		os.Remove(tmp)
		return nil, h, fmt.Errorf("install signature set, keeping the current one: %w", err)
	}
	if d, err := os.Open(s.Dir); err == nil {
		d.Sync()
		d.Close()
	}
	return db, h, nil
}

// Load loads the current set, verifying it again. With none installed it
// returns fs.ErrNotExist.
func (s *Store) Load() (*scan.DB, Header, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, currentFile))
	if err != nil {
		return nil, Header{}, fmt.Errorf("signature set: %w", err)
	}
	return Load(s.PublicKey, b, s.NoBuiltin)
}

// Current returns the header of the installed set.
func (s *Store) Current() (Header, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, currentFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Header{}, err
	}
	if err != nil {
		return Header{}, fmt.Errorf("signature set: %w", err)
	}
	h, _, err := Verify(s.PublicKey, b)
	return h, err
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
