package quarantine

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// RemoveExclusion drops sha256 from the exclusion list and reports whether
// it was there: a restore that failed after its exclusion was added takes
// it back, so a file still in the quarantine is never excluded.
func (q *Quarantine) RemoveExclusion(sha256 string) (bool, error) {
	unlock, err := q.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	path := filepath.Join(q.dir, ExclusionsFile)
	doc, err := readExclusions(path)
	if err != nil {
		return false, err
	}
	n := len(doc.Exclusions)
	doc.Exclusions = slices.DeleteFunc(doc.Exclusions, func(e Exclusion) bool { return e.SHA256 == sha256 })
	if len(doc.Exclusions) == n {
		return false, nil
	}
	tmp := path + ".tmp"
	if err := writeJSONSync(tmp, doc); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("write exclusions: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("write exclusions: %w", err)
	}
	syncDir(q.dir)
	return true, nil
}

// Get returns the record of entry id.
func (q *Quarantine) Get(id string) (Record, error) { return q.read(id) }
