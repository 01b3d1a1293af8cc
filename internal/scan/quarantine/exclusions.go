package quarantine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ExclusionsFile is the name of the exclusion list inside the quarantine
// directory.
const ExclusionsFile = "exclusions.json"

// Exclusion is one SHA-256 whose detections are dropped.
type Exclusion struct {
	SHA256 string    `json:"sha256"`
	Path   string    `json:"path,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
}

type exclusionsDoc struct {
	Exclusions []Exclusion `json:"exclusions"`
}

// Exclusions reads DIR/exclusions.json, re-reading it when it changes, so
// that an engine holding Contains honours a restore done by another
// process (the CLI) without a restart. Safe for concurrent use.
type Exclusions struct {
	path string
	mu   sync.Mutex
	mod  time.Time
	size int64
	ino  uint64
	set  map[string]bool
	err  error
}

// NewExclusions reads the list in quarantine directory dir (a missing file
// is an empty list).
func NewExclusions(dir string) *Exclusions {
	return &Exclusions{path: filepath.Join(dir, ExclusionsFile)}
}

// Contains reports whether sha256 (lower-case hex) is excluded. A list that
// cannot be read excludes nothing; Err says why.
func (x *Exclusions) Contains(sha256 string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.refresh()
	return x.set[sha256]
}

// Err is the last error reading the list.
func (x *Exclusions) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.refresh()
	return x.err
}

func (x *Exclusions) refresh() {
	fi, err := os.Stat(x.path)
	if errors.Is(err, fs.ErrNotExist) {
		x.set, x.err, x.mod, x.size = nil, nil, time.Time{}, 0
		return
	}
	if err != nil {
		x.set, x.err = nil, fmt.Errorf("exclusions: %w", err)
		return
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	if fi.ModTime().Equal(x.mod) && fi.Size() == x.size && ino == x.ino && x.set != nil {
		return
	}
	doc, err := readExclusions(x.path)
	if err != nil {
		x.set, x.err = nil, err
		return
	}
	x.set = make(map[string]bool, len(doc.Exclusions))
	for _, e := range doc.Exclusions {
		x.set[e.SHA256] = true
	}
	x.err, x.mod, x.size, x.ino = nil, fi.ModTime(), fi.Size(), ino
}

func readExclusions(path string) (exclusionsDoc, error) {
	var doc exclusionsDoc
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return doc, fmt.Errorf("exclusions: %w", err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, fmt.Errorf("exclusions %s: %w", path, err)
	}
	return doc, nil
}

// ListExclusions returns the exclusion list.
func (q *Quarantine) ListExclusions() ([]Exclusion, error) {
	doc, err := readExclusions(filepath.Join(q.dir, ExclusionsFile))
	return doc.Exclusions, err
}

// AddExclusion adds e to the list (once per SHA-256).
func (q *Quarantine) AddExclusion(e Exclusion) error {
	unlock, err := q.lock()
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(q.dir, ExclusionsFile)
	doc, err := readExclusions(path)
	if err != nil {
		return err
	}
	for _, x := range doc.Exclusions {
		if x.SHA256 == e.SHA256 {
			return nil
		}
	}
	doc.Exclusions = append(doc.Exclusions, e)
	tmp := path + ".tmp"
	if err := writeJSONSync(tmp, doc); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write exclusions: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write exclusions: %w", err)
	}
	syncDir(q.dir)
	return nil
}
