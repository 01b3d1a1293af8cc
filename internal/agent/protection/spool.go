package protection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/internal/agent/statedir"
)

// The channel between the daemon and the feature is two directories in
// the feature's folder, both root-only:
//
//   - spool/: messages from the daemon (detections, scan progress, status),
//     each one file written to a hidden temporary name, fsynced and renamed
//     into place, so the feature never reads half a message. The feature
//     hands each to the agent's outbox (on disk until the control plane
//     acknowledges it) and only then removes it. A message is therefore
//     never lost: if the agent stops between the two steps the message is
//     reported again after the restart, and the server takes a detection
//     reported twice as one alert.
//   - requests/ (scans) and incoming/ (signature sets): work for the
//     daemon, written the same way by the feature. A scan request moves to
//     requests/running/ before it starts, so a scan runs at most once.

// message is one spool file.
type message struct {
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// spool writes messages into a directory.
type spool struct {
	dir string
	seq atomic.Uint64
}

// put writes one message durably.
func (s *spool) put(kind string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", kind, err)
	}
	m, _ := json.Marshal(message{Kind: kind, Body: b})
	name := fmt.Sprintf("%020d-%06d.json", time.Now().UnixNano(), s.seq.Add(1)%1_000_000)
	if err := statedir.WriteFileAtomic(filepath.Join(s.dir, name), m, statedir.PrivateMode); err != nil {
		return fmt.Errorf("write %s message: %w", kind, err)
	}
	return nil
}

// pending lists the spool's messages, oldest first (hidden files are
// messages being written).
func pending(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".json") && e.Type().IsRegular() {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// readMessage reads one spool file.
func readMessage(path string) (message, error) {
	var m message
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("spool message %s: %w", filepath.Base(path), err)
	}
	return m, nil
}

// writeJSON writes v durably and root-only.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return statedir.WriteFileAtomic(path, append(b, '\n'), statedir.PrivateMode)
}

// readJSON reads v; a missing file is os.ErrNotExist.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// watchDirs sends on kick (without blocking) whenever a file is written or
// moved into one of dirs, and every poll in any case (inotify may be
// unavailable or its queue may overflow). It returns when ctx ends.
func watchDirs(ctx context.Context, dirs []string, poll time.Duration, kick chan<- struct{}) {
	send := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if f, err := inotifyDirs(dirs); err == nil {
		go func() {
			<-ctx.Done()
			f.Close()
		}()
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := f.Read(buf); err != nil {
					if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
						return
					}
					time.Sleep(poll)
				}
				send()
			}
		}()
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			send()
		}
	}
}

func inotifyDirs(dirs []string) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(fd, d, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_ONLYDIR); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	return os.NewFile(uintptr(fd), "inotify"), nil
}
