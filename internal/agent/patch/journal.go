package patch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// JournalState is whether a deployment's journal was closed.
type JournalState string

// Journal states. A journal still Running when read by a later run means
// the agent died during that deployment.
const (
	JournalRunning  JournalState = "Running"
	JournalFinished JournalState = "Finished"
)

// journalFile is the journal's name inside Deployment.JournalDir.
const journalFile = "deployment.json"

// Journal is the record a deployment keeps while it runs: rewritten
// atomically (write, fsync, rename) before every install and every
// package-manager command, so it survives the agent being killed.
type Journal struct {
	ID      string       `json:"id"`
	Manager Kind         `json:"manager"`
	State   JournalState `json:"state"`
	Started time.Time    `json:"started"`
	Updated time.Time    `json:"updated"`
	// Current is the package being installed ("" between installs).
	Current string `json:"current,omitempty"`
	// PGID is the process group of the command running last.
	PGID     int             `json:"pgid,omitempty"`
	Packages []PackageResult `json:"packages,omitempty"`
	Status   Status          `json:"status,omitempty"`
	Reason   Reason          `json:"reason,omitempty"`
}

// LastRun reads the journal of the last deployment in dir: nil when there
// was none. A journal whose State is JournalRunning while no deployment
// runs is a run the agent never finished; the agent reports it at start-up.
func LastRun(dir string) (*Journal, error) {
	b, err := os.ReadFile(filepath.Join(dir, journalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the deployment journal: %w", err)
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("read the deployment journal %s: %w", filepath.Join(dir, journalFile), err)
	}
	return &j, nil
}

// writeJournal replaces the journal atomically and durably.
func writeJournal(dir string, j *Journal) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, journalFile+".*")
	if err != nil {
		return fmt.Errorf("write the deployment journal: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write the deployment journal: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write the deployment journal: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the deployment journal: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, journalFile)); err != nil {
		return fmt.Errorf("write the deployment journal: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
