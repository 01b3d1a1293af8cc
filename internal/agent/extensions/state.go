package extensions

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/corralhq/corral/internal/agent/statedir"
)

// record is what the agent knows about one extension instance. It is
// persisted before and after every operation, so an agent killed in the
// middle of an install finds InProgress set and does the operation again
// (handlers must be idempotent, as in every extension system).
type record struct {
	Name      string `json:"name"`
	Publisher string `json:"publisher"`
	Type      string `json:"type"`
	// Installed says Version/Digest/Dir describe a package whose install
	// handler succeeded.
	Installed bool   `json:"installed"`
	Version   string `json:"version,omitempty"`
	Digest    string `json:"digest,omitempty"`
	Dir       string `json:"dir,omitempty"` // package directory name under packages/
	// AttemptSeq is the seqNo of the last request acted upon.
	AttemptSeq int64  `json:"attemptSeq"`
	Op         string `json:"op,omitempty"`
	InProgress bool   `json:"inProgress,omitempty"`
	// AttemptID identifies the operation attempt InProgress; its handlers
	// carry it in their environment (CORRAL_ATTEMPT_ID), so what they left
	// after the agent was killed is found even if PGID was not saved yet.
	AttemptID string `json:"attemptId,omitempty"`
	// PGID is the process group of the handler running for InProgress.
	PGID    int    `json:"pgid,omitempty"`
	State   string `json:"state,omitempty"`
	Message string `json:"message,omitempty"`
	// Blocked marks a failure caused by the local lock-down: it is retried
	// when the local configuration later allows it.
	Blocked bool `json:"blocked,omitempty"`
	// RefusedGeneration is the desired-state generation whose removal of
	// the extension the local configuration refused (and was reported).
	RefusedGeneration int64 `json:"refusedGeneration,omitempty"`
}

// pin is a publisher's pinned signing key and the highest catalog serial seen.
type pin struct {
	PublicKey []byte `json:"publicKey"`
	Serial    int64  `json:"serial"`
}

// state is STATE/extensions/state.json.
type state struct {
	Extensions map[string]*record `json:"extensions"`
	Publishers map[string]*pin    `json:"publishers"`
}

// pinned returns the pin of publisher name, compared case-insensitively.
func (s *state) pinned(name string) (*pin, bool) {
	if p, ok := s.Publishers[name]; ok {
		return p, true
	}
	for n, p := range s.Publishers {
		if strings.EqualFold(n, name) {
			return p, true
		}
	}
	return nil, false
}

func loadState(dir string) (*state, error) {
	st := &state{Extensions: map[string]*record{}, Publishers: map[string]*pin{}}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("extension state %s is damaged: %w", filepath.Join(dir, "state.json"), err)
	}
	if st.Extensions == nil {
		st.Extensions = map[string]*record{}
	}
	if st.Publishers == nil {
		st.Publishers = map[string]*pin{}
	}
	return st, nil
}

func (s *state) save(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return statedir.WriteFileAtomic(filepath.Join(dir, "state.json"), append(b, '\n'), 0o600)
}
