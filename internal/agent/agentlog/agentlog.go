// Package agentlog writes the agent's logs: JSON lines to STATE/logs/agent.log
// (rotated by size, a few generations kept, 0600) for the support bundle,
// and human-readable text to stderr for journald. Nothing logged by the
// agent carries a secret; the support bundle redacts anyway.
package agentlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/corralhq/corral/internal/agent/statedir"
)

// Dir is the log directory inside the state directory.
const Dir = statedir.LogDir

// File is the current log file's name.
const File = "agent.log"

// Rotating is an io.Writer that starts a new file once the current one
// reaches MaxBytes, keeping Keep old ones (agent.log.1 is the newest).
type Rotating struct {
	Path     string
	MaxBytes int64
	Keep     int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Write implements io.Writer.
func (r *Rotating) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.size+int64(len(p)) > r.MaxBytes && r.size > 0 {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *Rotating) open() error {
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(r.Path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

func (r *Rotating) rotate() error {
	r.f.Close()
	r.f = nil
	for i := r.Keep - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", r.Path, i), fmt.Sprintf("%s.%d", r.Path, i+1))
	}
	if r.Keep > 0 {
		if err := os.Rename(r.Path, r.Path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		_ = os.Remove(r.Path)
	}
	return r.open()
}

// Close closes the current file.
func (r *Rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// New returns a logger writing JSON to stateDir/logs/agent.log (10 MiB × 4)
// and text to stderr (nil = no console), and the closer of the file.
func New(stateDir string, stderr io.Writer, level slog.Level) (*slog.Logger, io.Closer) {
	file := &Rotating{Path: filepath.Join(stateDir, Dir, File), MaxBytes: 10 << 20, Keep: 3}
	opts := &slog.HandlerOptions{Level: level}
	handlers := []slog.Handler{slog.NewJSONHandler(file, opts)}
	if stderr != nil {
		handlers = append(handlers, slog.NewTextHandler(stderr, opts))
	}
	return slog.New(fanout(handlers)), file
}

// fanout sends every record to each handler.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
