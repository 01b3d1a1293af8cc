// Package outbox keeps the agent's reports on disk until the control plane
// acknowledges them, so an agent that cannot reach the server loses nothing
// and delivers in order once it can.
//
// Each report is one file named by a sequence number. State-like reports
// (inventory, local configuration, applied generation) are superseded: a new
// one replaces any still-pending report of the same key, which also bounds
// the outbox while the server is away for days. Event reports keep every
// entry up to Max, after which the oldest are dropped (and counted).
//
// An Outbox is safe for concurrent use within one process.
package outbox

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/wire"
)

// Max is the most reports kept.
const Max = 10000

// Outbox is a directory of pending reports.
type Outbox struct {
	dir string

	mu      sync.Mutex
	seq     uint64
	entries []entry // in sequence order
	dropped int
	notify  chan struct{}
}

type entry struct {
	seq  uint64
	key  string // hashKey of the supersede key; "" for events
	id   string
	file string
}

// Open opens (creating) the outbox in dir.
func Open(dir string) (*Outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create outbox: %w", err)
	}
	o := &Outbox{dir: dir, notify: make(chan struct{}, 1)}
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	for _, f := range files {
		name := f.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		seqStr, rest, ok := strings.Cut(strings.TrimSuffix(name, ".json"), "_")
		seq, err := strconv.ParseUint(seqStr, 10, 64)
		if !ok || err != nil {
			continue
		}
		key, id, _ := strings.Cut(rest, "_")
		o.entries = append(o.entries, entry{seq: seq, key: key, id: id, file: name})
		o.seq = max(o.seq, seq)
	}
	slices.SortFunc(o.entries, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	if len(o.entries) > 0 {
		o.signal()
	}
	return o, nil
}

// hashKey is how a supersede key appears in file names: a fixed-length
// hash, so that no key (the control plane chooses some of their parts) can
// make a file name too long or unusual.
func hashKey(k string) string {
	if k == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:16])
}

// NewID returns a random report id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Ready is signalled whenever reports are waiting.
func (o *Outbox) Ready() <-chan struct{} { return o.notify }

// Kick signals Ready if reports are waiting (e.g. after a reconnect).
func (o *Outbox) Kick() {
	if o.Len() > 0 {
		o.signal()
	}
}

func (o *Outbox) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// Add stores r. A non-empty supersedeKey replaces any pending report with
// the same key. The report is on disk when Add returns.
func (o *Outbox) Add(r wire.Report, supersedeKey string) error {
	if r.ID == "" {
		r.ID = NewID()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	e := entry{seq: o.seq, key: hashKey(supersedeKey), id: r.ID}
	e.file = fmt.Sprintf("%020d_%s_%s.json", e.seq, e.key, r.ID)
	if err := statedir.WriteFileAtomic(filepath.Join(o.dir, e.file), b, 0o600); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if supersedeKey != "" {
		o.entries = slices.DeleteFunc(o.entries, func(old entry) bool {
			if old.key == e.key && old.seq != e.seq {
				os.Remove(filepath.Join(o.dir, old.file))
				return true
			}
			return false
		})
	}
	o.entries = append(o.entries, e)
	for len(o.entries) > Max {
		os.Remove(filepath.Join(o.dir, o.entries[0].file))
		o.entries = o.entries[1:]
		o.dropped++
	}
	o.signal()
	return nil
}

// Pending returns up to n of the oldest reports, in order. Unreadable files
// are removed (a torn write cannot happen, so they are not ours).
func (o *Outbox) Pending(n int) ([]wire.Report, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []wire.Report
	var bad []string
	for _, e := range o.entries {
		if len(out) >= n {
			break
		}
		b, err := os.ReadFile(filepath.Join(o.dir, e.file))
		var r wire.Report
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			bad = append(bad, e.id)
			continue
		}
		out = append(out, r)
	}
	if len(bad) > 0 {
		o.removeLocked(bad)
	}
	return out, nil
}

// Ack removes delivered reports.
func (o *Outbox) Ack(ids []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.removeLocked(ids)
}

func (o *Outbox) removeLocked(ids []string) error {
	var errs []error
	o.entries = slices.DeleteFunc(o.entries, func(e entry) bool {
		if !slices.Contains(ids, e.id) {
			return false
		}
		if err := os.Remove(filepath.Join(o.dir, e.file)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		return true
	})
	return errors.Join(errs...)
}

// Len is the number of pending reports.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.entries)
}

// Dropped is how many reports were dropped because the outbox was full.
func (o *Outbox) Dropped() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}
