// Package realtime is on-access protection: files written and closed under
// the watched paths are scanned at once and acted on (report, quarantine,
// delete); with blocking on, opening or executing a detected file is
// denied.
//
// It uses fanotify (mount marks on every mount under the watched paths,
// filtered to those paths in user space): FAN_CLOSE_WRITE for scans after
// writes, FAN_OPEN_PERM and FAN_OPEN_EXEC_PERM for blocking. Decisions go
// through a verdict cache keyed on (device, inode, size, mtime, ctime), so
// a clean file costs one fstat the second time (answered by the reading
// goroutine itself, as are opens of empty files). Every permission decision
// has a deadline counted from the moment the event is read: past it the
// open is allowed (fail open) and counted in Stats.Timeouts; the scan goes
// on and its verdict is cached. Events caused by this process are allowed
// at once (the quarantine's own copies must never wait on themselves). If
// the process dies, the kernel allows every pending event when the
// fanotify descriptor closes, so a dead watcher never blocks anyone.
//
// A blocking watcher must live in a process that never starts programs
// stored on a watched mount: Go starts programs with vfork, and a vforked
// child the kernel holds on the watcher's exec permission event keeps its
// parent thread suspended, which can stall that process's garbage
// collector — and with it the goroutines that would answer the event — for
// good. The agent runs the watcher as its own daemon for that reason.
//
// Where fanotify is unavailable (or Config.Mode is "inotify") the watcher
// falls back to inotify on every directory under the paths: scans after
// writes only, no blocking; Stats.Mode says which one runs and why.
//
// A Watcher is started once by Run, which owns its goroutines and
// descriptors and returns when ctx is cancelled; Stats and SetEngine are
// safe to call concurrently.
package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/quarantine"
)

// Action is what happens to a file detected after a write.
type Action string

// Actions.
const (
	ActionReport     Action = "report"
	ActionQuarantine Action = "quarantine"
	ActionDelete     Action = "delete"
)

// Modes of Stats.Mode and Config.Mode.
const (
	ModeFanotify = "fanotify"
	ModeInotify  = "inotify"
)

// Exclusions are never scanned.
type Exclusions struct {
	Paths      []string // path prefixes
	Extensions []string // file name extensions, with or without the dot, any case
	Processes  []string // executable paths (of the process that wrote or opens)
}

// Config configures a Watcher.
type Config struct {
	Paths      []string // directories watched, recursively
	Block      bool     // deny opening and executing detected files (fanotify only)
	Action     Action   // after a write; default report
	Exclusions Exclusions
	Engine     *scan.Engine
	Quarantine *quarantine.Quarantine // needed for ActionQuarantine; its directory is excluded
	// OnDetection is called for every detection, from the watcher's
	// goroutines (one at a time).
	OnDetection func(Detection)
	// Mode forces ModeFanotify or ModeInotify; empty chooses fanotify when
	// available.
	Mode string
	// DecisionTimeout bounds one permission decision (default 2s).
	DecisionTimeout time.Duration
	// CacheEntries bounds the verdict cache (default 65,536).
	CacheEntries int
	Logger       *slog.Logger
}

// Detection is one detected file and what was done about it.
type Detection struct {
	Time         time.Time `json:"time"`
	Path         string    `json:"path"`
	Signature    string    `json:"signature"`
	Kind         string    `json:"kind"`
	Member       string    `json:"member,omitempty"`
	SHA256       string    `json:"sha256"`
	Event        string    `json:"event"`  // "close-write", "open" or "exec"
	Action       string    `json:"action"` // "reported", "quarantined", "deleted", "denied"
	QuarantineID string    `json:"quarantineId,omitempty"`
	// Error says why the action failed (e.g. the quarantine is full: the
	// file stays where it was).
	Error   string `json:"error,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Process string `json:"process,omitempty"`
}

// Stats are the watcher's counters.
type Stats struct {
	Mode       string `json:"mode"`                 // fanotify or inotify ("" before Run)
	ModeReason string `json:"modeReason,omitempty"` // why inotify
	Blocking   bool   `json:"blocking"`
	Scanned    uint64 `json:"scanned"`
	Detections uint64 `json:"detections"`
	CacheHits  uint64 `json:"cacheHits"`
	Timeouts   uint64 `json:"timeouts"`
	Denied     uint64 `json:"denied"`
	Errors     uint64 `json:"errors"`
	Overflows  uint64 `json:"overflows"`
}

// Watcher is on-access protection for Config.Paths.
type Watcher struct {
	cfg    Config
	log    *slog.Logger
	engine atomic.Pointer[scan.Engine]
	cache  *verdictCache
	self   int

	mu         sync.Mutex // serialises OnDetection
	mode       atomic.Value
	modeReason atomic.Value

	scanned, detections, cacheHits, timeouts, denied, errs, overflows atomic.Uint64
}

// New checks cfg and returns a Watcher; Run starts it.
func New(cfg Config) (*Watcher, error) {
	if cfg.Engine == nil {
		return nil, errors.New("realtime: an engine is required")
	}
	if len(cfg.Paths) == 0 {
		return nil, errors.New("realtime: no paths to watch")
	}
	switch cfg.Action {
	case "":
		cfg.Action = ActionReport
	case ActionReport, ActionDelete:
	case ActionQuarantine:
		if cfg.Quarantine == nil {
			return nil, errors.New("realtime: action quarantine needs a quarantine")
		}
	default:
		return nil, fmt.Errorf("realtime: action %q is not report, quarantine or delete", cfg.Action)
	}
	if cfg.Mode != "" && cfg.Mode != ModeFanotify && cfg.Mode != ModeInotify {
		return nil, fmt.Errorf("realtime: mode %q is not fanotify or inotify", cfg.Mode)
	}
	for i, p := range cfg.Paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("realtime: %w", err)
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		cfg.Paths[i] = abs
	}
	if cfg.Quarantine != nil {
		cfg.Exclusions.Paths = append(cfg.Exclusions.Paths, cfg.Quarantine.Dir())
	}
	for i, e := range cfg.Exclusions.Extensions {
		cfg.Exclusions.Extensions[i] = "." + strings.ToLower(strings.TrimPrefix(e, "."))
	}
	if cfg.DecisionTimeout <= 0 {
		cfg.DecisionTimeout = 2 * time.Second
	}
	if cfg.CacheEntries <= 0 {
		cfg.CacheEntries = 1 << 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger.With("component", "realtime"), cache: newVerdictCache(cfg.CacheEntries), self: os.Getpid()}
	w.engine.Store(cfg.Engine)
	w.mode.Store("")
	w.modeReason.Store("")
	return w, nil
}

// SetEngine replaces the engine (new signatures); cached verdicts are
// dropped.
func (w *Watcher) SetEngine(e *scan.Engine) {
	w.engine.Store(e)
	w.cache.clear()
}

// Stats returns the counters.
func (w *Watcher) Stats() Stats {
	mode := w.mode.Load().(string)
	return Stats{Mode: mode, ModeReason: w.modeReason.Load().(string), Blocking: w.cfg.Block && mode == ModeFanotify,
		Scanned: w.scanned.Load(), Detections: w.detections.Load(), CacheHits: w.cacheHits.Load(),
		Timeouts: w.timeouts.Load(), Denied: w.denied.Load(), Errors: w.errs.Load(), Overflows: w.overflows.Load()}
}

// Run watches until ctx is cancelled. It returns an error if neither
// fanotify nor inotify can watch the paths.
func (w *Watcher) Run(ctx context.Context) error {
	if w.cfg.Mode != ModeInotify {
		fan, err := w.startFanotify()
		if err == nil {
			w.mode.Store(ModeFanotify)
			return fan.run(ctx)
		}
		if w.cfg.Mode == ModeFanotify {
			return err
		}
		w.modeReason.Store(err.Error())
		w.log.WarnContext(ctx, "fanotify unavailable, falling back to inotify (no blocking)", "err", err)
	} else {
		w.modeReason.Store("inotify requested")
	}
	in, err := w.startInotify()
	if err != nil {
		return err
	}
	w.mode.Store(ModeInotify)
	return in.run(ctx)
}

// watched reports whether path is under a watched path and not excluded.
func (w *Watcher) watched(path string) bool {
	in := false
	for _, p := range w.cfg.Paths {
		if under(path, p) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range w.cfg.Exclusions.Paths {
		if under(path, p) {
			return false
		}
	}
	if len(w.cfg.Exclusions.Extensions) > 0 {
		ext := strings.ToLower(filepath.Ext(path))
		for _, e := range w.cfg.Exclusions.Extensions {
			if ext == e {
				return false
			}
		}
	}
	return true
}

func under(path, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return dir == "" || path == dir || strings.HasPrefix(path, dir+"/")
}

// excludedProcess reports whether pid runs an excluded executable.
func (w *Watcher) excludedProcess(pid int) (bool, string) {
	if len(w.cfg.Exclusions.Processes) == 0 || pid <= 0 {
		return false, ""
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false, ""
	}
	for _, p := range w.cfg.Exclusions.Processes {
		if exe == p {
			return true, exe
		}
	}
	return false, exe
}

// scanFile scans an open file and returns the result (cached by identity).
func (w *Watcher) scanFile(ctx context.Context, f *os.File, path string) (scan.FileResult, bool) {
	key, ok := fileKey(f)
	if ok {
		if r, hit := w.cache.get(key); hit {
			w.cacheHits.Add(1)
			r.Path = path
			return r, true
		}
	}
	r := w.engine.Load().ScanOpenFile(ctx, f, path)
	w.scanned.Add(1)
	if r.Error != "" {
		w.errs.Add(1)
		return r, false
	}
	if ok {
		w.cache.put(key, r)
	}
	return r, false
}

// act applies the configured action to a file detected after a write (or
// denied on open) and reports the detection.
func (w *Watcher) act(ctx context.Context, r scan.FileResult, event string, pid int, exe string, denied bool) {
	f := r.Findings[0]
	d := Detection{Time: time.Now().UTC(), Path: r.Path, Signature: f.Signature, Kind: f.Kind, Member: f.Member,
		SHA256: f.SHA256, Event: event, Action: "reported", PID: pid, Process: exe}
	if denied {
		d.Action = "denied"
	}
	if f.Kind == scan.KindSignature {
		switch w.cfg.Action {
		case ActionQuarantine:
			rec, err := w.cfg.Quarantine.Add(r.Path, f.Signature, d.Time)
			if err != nil {
				d.Error = err.Error()
				w.errs.Add(1)
			} else {
				d.Action, d.QuarantineID = "quarantined", rec.ID
			}
		case ActionDelete:
			if err := os.Remove(r.Path); err != nil {
				d.Error = "delete: " + err.Error()
				w.errs.Add(1)
			} else {
				d.Action = "deleted"
			}
		}
	}
	w.detections.Add(1)
	w.log.WarnContext(ctx, "malware detected", "path", d.Path, "signature", d.Signature, "action", d.Action, "err", d.Error)
	if w.cfg.OnDetection != nil {
		w.mu.Lock()
		w.cfg.OnDetection(d)
		w.mu.Unlock()
	}
}

// key identifies a file's content version.
type key struct {
	dev, ino           uint64
	size               int64
	mtime, ctime       int64
	mtimeNs, ctimeNsec int64
}

func fileKey(f *os.File) (key, bool) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return key{}, false
	}
	return statKey(&st), true
}

func statKey(st *unix.Stat_t) key {
	return key{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Sec, mtimeNs: st.Mtim.Nsec,
		ctime: st.Ctim.Sec, ctimeNsec: st.Ctim.Nsec}
}

// verdictCache remembers scan results by file version. When full it is
// emptied: simple, bounded, and a re-scan is always correct.
type verdictCache struct {
	mu  sync.Mutex
	max int
	m   map[key]scan.FileResult
}

func newVerdictCache(n int) *verdictCache {
	return &verdictCache{max: n, m: make(map[key]scan.FileResult)}
}

func (c *verdictCache) get(k key) (scan.FileResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	return r, ok
}

func (c *verdictCache) put(k key, r scan.FileResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	r.Notes = nil
	c.m[k] = r
}

func (c *verdictCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}
