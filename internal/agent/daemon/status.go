package daemon

import (
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/agent/statedir"
)

// StatusFile is where the daemon records its connection state for
// `corral-agent show` (state directory relative).
const StatusFile = statedir.StatusFile

// Status is the daemon's view of its connection.
type Status struct {
	PID               int       `json:"pid,omitempty"`
	StartedAt         time.Time `json:"startedAt,omitzero"`
	Connected         bool      `json:"connected"`
	ConnectedSince    time.Time `json:"connectedSince,omitzero"`
	LastHeartbeat     time.Time `json:"lastHeartbeat,omitzero"`
	LastError         string    `json:"lastError,omitempty"`
	LastErrorAt       time.Time `json:"lastErrorAt,omitzero"`
	AppliedGeneration int64     `json:"appliedGeneration"`
	PendingReports    int       `json:"pendingReports"`
	CertRenewedAt     time.Time `json:"certificateRenewedAt,omitzero"`
}

// ReadStatus reads the status a daemon left in stateDir.
func ReadStatus(stateDir string) (Status, error) {
	var s Status
	b, err := os.ReadFile(stateDir + "/" + StatusFile)
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(b, &s)
	return s, err
}

type statusFile struct {
	path string
	mu   sync.Mutex
	s    Status
}

// update changes the status and writes it (replaced atomically, not
// synced: it is informational, and a heartbeat must not cost an fsync).
// Write errors are ignored: the status file must never stop the agent.
func (f *statusFile) update(change func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := f.s
	change(&f.s)
	if f.s == before {
		return
	}
	b, err := json.MarshalIndent(f.s, "", "  ")
	if err != nil {
		return
	}
	_ = statedir.ReplaceFile(f.path, append(b, '\n'), statedir.PrivateMode)
}

func (f *statusFile) get() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}
