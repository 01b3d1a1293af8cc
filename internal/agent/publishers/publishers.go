// Package publishers decides which signing key the agent accepts for each
// extension publisher, so that the local lock-down holds even against a
// control plane that lies about keys.
//
// Two sources, in order:
//
//  1. Keys root configured on the machine (extensions.publisherkeys, set with
//     `corral-agent publisher trust`). A publisher named in the allowlist must
//     have one: allowing "Contoso/Agent" means Contoso's real key, never
//     whatever key the control plane presents.
//  2. Keys pinned on first use, recorded in STATE/extensions/pins.json — only
//     when an install of that publisher's extension is allowed and starts,
//     never merely because a desired state mentions the publisher.
//
// A pinned key never changes by itself: a different key presented later is
// refused until root forgets the pin. The pins file also records the highest
// catalog serial seen per publisher (replay protection). It is changed by
// the daemon and by `corral-agent publisher forget` under a file lock.
package publishers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/extpkg"
)

// FileName is the pins file, relative to the state directory.
const FileName = statedir.ExtensionDir + "/pins.json"

// Pin is what the agent holds for one publisher.
type Pin struct {
	Publisher string    `json:"publisher"`
	Key       []byte    `json:"key"`
	Serial    int64     `json:"serial"`
	PinnedAt  time.Time `json:"pinnedAt,omitzero"`
}

// Source says where an accepted key comes from.
const (
	SourceConfigured = "configured by root"
	SourcePinned     = "pinned on first use"
)

// Entry is one publisher as `corral-agent publisher list` shows it.
type Entry struct {
	Publisher string `json:"publisher"`
	Key       string `json:"key"`
	Source    string `json:"source"`
	Serial    int64  `json:"serial"`
}

// Store is the pins file of a state directory.
type Store struct{ path, lock string }

// Open returns the store of stateDir (nothing is read yet).
func Open(stateDir string) *Store {
	d := statedir.Dir(stateDir)
	return &Store{path: d.Path(FileName), lock: d.Path(FileName + ".lock")}
}

// ErrUntrusted is wrapped by every refusal of Resolve.
var ErrUntrusted = errors.New("publisher key not trusted")

// Resolve returns the key to verify publisher's catalogs with, given the key
// the control plane presents (nil if it presented none). pinIfNew pins the
// presented key when nothing is configured or pinned yet: callers pass it
// only when an install of the publisher's extension is allowed and starts.
func (s *Store) Resolve(cfg localconfig.Effective, publisher string, presented []byte, pinIfNew bool, now time.Time) ([]byte, error) {
	if err := s.Check(cfg, publisher, presented); err != nil {
		return nil, err
	}
	if key, ok := cfg.PublisherKey(publisher); ok {
		return key, nil
	}
	var out []byte
	err := s.update(func(pins map[string]*Pin) (bool, error) {
		if p := find(pins, publisher); p != nil {
			if presented != nil && !bytes.Equal(presented, p.Key) {
				return false, fmt.Errorf("%w: publisher %s presents a signing key different from the one pinned on this machine (\"corral-agent publisher forget %s\" as root accepts a new one)",
					ErrUntrusted, publisher, publisher)
			}
			out = p.Key
			return false, nil
		}
		if presented == nil {
			return false, fmt.Errorf("%w: unknown publisher %s: the control plane sent no signing key for it", ErrUntrusted, publisher)
		}
		if !pinIfNew {
			return false, fmt.Errorf("%w: publisher %s is not pinned yet", ErrUntrusted, publisher)
		}
		pins[strings.ToLower(publisher)] = &Pin{Publisher: publisher, Key: slices.Clone(presented), PinnedAt: now.UTC()}
		out = presented
		return true, nil
	})
	return out, err
}

// Check says, without pinning anything, whether publisher's extensions could
// be trusted with the presented key: nil when the key is configured and
// matches, pinned and matches, or would be pinned on first use.
func (s *Store) Check(cfg localconfig.Effective, publisher string, presented []byte) error {
	if key, ok := cfg.PublisherKey(publisher); ok {
		if presented != nil && !bytes.Equal(presented, key) {
			return fmt.Errorf("%w: the control plane presents a signing key for publisher %s different from the one configured on this machine (%s)",
				ErrUntrusted, publisher, localconfig.KeyPublisherKeys)
		}
		return nil
	}
	if named := allowlisted(cfg, publisher); named != "" {
		return fmt.Errorf("%w: extensions.allowlist names %s, but no signing key for publisher %s is configured on this machine; as root run \"corral-agent publisher trust %s ed25519:KEY\" with the key from \"corral publisher list\"",
			ErrUntrusted, named, publisher, publisher)
	}
	pins, err := s.load()
	if err != nil {
		return err
	}
	if p := find(pins, publisher); p != nil && presented != nil && !bytes.Equal(presented, p.Key) {
		return fmt.Errorf("%w: publisher %s presents a signing key different from the one pinned on this machine (\"corral-agent publisher forget %s\" as root accepts a new one)",
			ErrUntrusted, publisher, publisher)
	}
	return nil
}

// allowlisted returns the allowlist entry naming publisher, if any.
func allowlisted(cfg localconfig.Effective, publisher string) string {
	for _, e := range cfg.Allowlist {
		if p, _, ok := strings.Cut(e, "/"); ok && strings.EqualFold(p, publisher) && !localconfig.IsAllowNone(e) {
			return e
		}
	}
	return ""
}

// Serial is the highest catalog serial seen for publisher.
func (s *Store) Serial(publisher string) (int64, error) {
	pins, err := s.load()
	if err != nil {
		return 0, err
	}
	if p := find(pins, publisher); p != nil {
		return p.Serial, nil
	}
	return 0, nil
}

// SeeSerial records serial as seen for publisher; it refuses one lower than
// already seen (a replayed catalog).
func (s *Store) SeeSerial(publisher string, serial int64) error {
	return s.update(func(pins map[string]*Pin) (bool, error) {
		p := find(pins, publisher)
		if p == nil {
			p = &Pin{Publisher: publisher}
			pins[strings.ToLower(publisher)] = p
		}
		switch {
		case serial < p.Serial:
			return false, fmt.Errorf("catalog of %s refused: serial %d is older than %d already seen (replay)", publisher, serial, p.Serial)
		case serial == p.Serial:
			return false, nil
		}
		p.Serial = serial
		return true, nil
	})
}

// Forget removes publisher's pin (and its serial).
func (s *Store) Forget(publisher string) (bool, error) {
	if pins, err := s.load(); err != nil || find(pins, publisher) == nil {
		return false, err // nothing to forget: touch nothing
	}
	found := false
	err := s.update(func(pins map[string]*Pin) (bool, error) {
		if find(pins, publisher) == nil {
			return false, nil
		}
		found = true
		delete(pins, strings.ToLower(publisher))
		return true, nil
	})
	return found, err
}

// Import adds pins of an older agent's state that the store lacks.
func (s *Store) Import(old []Pin) error {
	return s.update(func(pins map[string]*Pin) (bool, error) {
		changed := false
		for _, o := range old {
			if find(pins, o.Publisher) == nil && len(o.Key) > 0 {
				p := o
				pins[strings.ToLower(o.Publisher)] = &p
				changed = true
			}
		}
		return changed, nil
	})
}

// List returns every publisher with a configured or pinned key.
func (s *Store) List(cfg localconfig.Effective) ([]Entry, error) {
	pins, err := s.load()
	if err != nil {
		return nil, err
	}
	var out []Entry
	seen := map[string]bool{}
	for _, pk := range cfg.PublisherKeys {
		e := Entry{Publisher: pk.Publisher, Key: extpkg.FormatPublicKey(pk.Key), Source: SourceConfigured}
		if p := find(pins, pk.Publisher); p != nil {
			e.Serial = p.Serial
		}
		out = append(out, e)
		seen[strings.ToLower(pk.Publisher)] = true
	}
	for k, p := range pins {
		if seen[k] || len(p.Key) == 0 {
			continue
		}
		out = append(out, Entry{Publisher: p.Publisher, Key: extpkg.FormatPublicKey(p.Key), Source: SourcePinned, Serial: p.Serial})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return strings.Compare(strings.ToLower(a.Publisher), strings.ToLower(b.Publisher))
	})
	return out, nil
}

func find(pins map[string]*Pin, publisher string) *Pin { return pins[strings.ToLower(publisher)] }

func (s *Store) load() (map[string]*Pin, error) {
	pins := map[string]*Pin{}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return pins, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read publisher pins: %w", err)
	}
	if err := json.Unmarshal(b, &pins); err != nil {
		return nil, fmt.Errorf("publisher pins %s are damaged (%v): fix or remove the file as root", s.path, err)
	}
	return pins, nil
}

// update changes the pins under an exclusive lock and saves them if change
// says so.
func (s *Store) update(change func(map[string]*Pin) (bool, error)) error {
	if err := statedir.MkdirPrivate(strings.TrimSuffix(s.path, "/pins.json")); err != nil {
		return err
	}
	lf, err := os.OpenFile(s.lock, os.O_CREATE|os.O_RDWR, statedir.PrivateMode)
	if err != nil {
		return fmt.Errorf("lock publisher pins: %w", err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock publisher pins: %w", err)
	}
	pins, err := s.load()
	if err != nil {
		return err
	}
	changed, err := change(pins)
	if err != nil || !changed {
		return err
	}
	b, err := json.MarshalIndent(pins, "", "  ")
	if err != nil {
		return err
	}
	return statedir.WriteFileAtomic(s.path, append(b, '\n'), statedir.PrivateMode)
}
