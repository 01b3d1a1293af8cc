package protection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/quarantine"
	"github.com/corralhq/corral/internal/scan/realtime"
	"github.com/corralhq/corral/internal/scan/sigset"
	"github.com/corralhq/corral/internal/wire"
)

// DaemonCommand is the hidden command of the agent binary that runs the
// daemon (`corral-agent protection-daemon`).
const DaemonCommand = "protection-daemon"

// daemonConfig is features/protection/daemon.json, written by the feature
// before it starts the daemon; the daemon reads it once.
type daemonConfig struct {
	HostRoot string                  `json:"hostRoot"`
	StateDir string                  `json:"stateDir"`
	Settings wire.ProtectionSettings `json:"settings"`
	// ReportOnly, when set, is why detections are only reported (host
	// changes are off).
	ReportOnly   string `json:"reportOnly,omitempty"`
	SignatureKey []byte `json:"signatureKey,omitempty"`
	KeyRefused   string `json:"keyRefused,omitempty"`
	Version      string `json:"version"`
}

// DaemonMain runs the daemon with command-line args (a leading
// "protection-daemon" is skipped) until SIGTERM or SIGINT, and returns its
// exit status.
func DaemonMain(args []string) int {
	if len(args) > 0 && args[0] == DaemonCommand {
		args = args[1:]
	}
	fl := flag.NewFlagSet(DaemonCommand, flag.ContinueOnError)
	stateDir := fl.String("state-dir", "", "the agent's state directory")
	dir := fl.String("dir", "", "the protection feature's folder")
	fl.String("config-digest", "", "digest of daemon.json (a new one restarts the daemon)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *stateDir == "" || *dir == "" {
		fmt.Fprintln(os.Stderr, "protection-daemon: --state-dir and --dir are required")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := RunDaemon(ctx, *stateDir, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "protection-daemon:", err)
		return 1
	}
	return 0
}

// daemon is one run of the protection daemon.
type daemon struct {
	cfg   daemonConfig
	dir   string
	log   *slog.Logger
	host  hostFS
	out   *spool
	q     *quarantine.Quarantine
	excl  *quarantine.Exclusions
	store *sigset.Store

	engine  atomic.Pointer[scan.Engine]
	watcher *realtime.Watcher
	action  realtime.Action

	mu             sync.Mutex // guards the status fields below
	sigVersion     uint64
	sigCount       int
	sigError       string
	realtimeErr    string
	lastScan       *wire.ProtectionScanSummary
	statusDue      bool
	lastStatusSent time.Time
}

// RunDaemon runs endpoint protection for the feature folder dir until ctx
// ends: real-time protection of the configured paths, on-demand scans
// asked for in dir/requests, signature sets delivered to dir/incoming.
// Everything it finds goes to dir/spool.
func RunDaemon(ctx context.Context, stateDir, dir string) error {
	log, closeLog := daemonLogger(dir)
	defer closeLog()
	d := &daemon{dir: dir, log: log, out: &spool{dir: filepath.Join(dir, spoolDir)}}
	if err := readJSON(filepath.Join(dir, daemonConfigFile), &d.cfg); err != nil {
		return fmt.Errorf("read the daemon configuration: %w", err)
	}
	if err := d.cfg.Settings.Validate(); err != nil {
		return err
	}
	d.host = newHostFS(d.cfg.HostRoot)
	var err error
	if d.q, err = quarantine.Open(filepath.Join(stateDir, quarantineDirName)); err != nil {
		return err
	}
	d.excl = quarantine.NewExclusions(d.q.Dir())
	d.action = realtime.Action(d.cfg.Settings.Action)
	if d.cfg.ReportOnly != "" {
		d.action = realtime.ActionReport
	}
	d.store = &sigset.Store{Dir: filepath.Join(dir, signaturesDir), PublicKey: d.cfg.SignatureKey}
	d.loadSignatures()
	var last wire.ProtectionScanSummary
	if readJSON(filepath.Join(dir, lastScanFile), &last) == nil && last.ID != "" {
		d.lastScan = &last
	}
	log.Info("protection daemon starting", "pid", os.Getpid(), "signatures", d.sigCount, "signatureVersion", d.sigVersion,
		"action", d.action, "reportOnly", d.cfg.ReportOnly)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if d.cfg.Settings.Realtime.Enabled {
		d.startRealtime(ctx, &wg)
	}
	scans := make(chan scanJob, 64)
	wg.Go(func() { d.runScans(ctx, scans) })
	d.failInterrupted()
	d.installIncoming()
	d.markStatus()

	kick := make(chan struct{}, 1)
	go watchDirs(ctx, []string{filepath.Join(dir, requestsDir), filepath.Join(dir, incomingDir)}, time.Second, kick)
	statusTick := time.NewTicker(time.Second)
	defer statusTick.Stop()
	for {
		select {
		case <-ctx.Done():
			close(scans)
			wg.Wait()
			log.Info("protection daemon stopped")
			return nil
		case <-kick:
			d.installIncoming()
			d.takeRequests(scans)
		case <-statusTick.C:
		}
		d.flushStatus(false)
	}
}

func daemonLogger(dir string) (*slog.Logger, func()) {
	path := filepath.Join(dir, daemonLogFile)
	if fi, err := os.Stat(path); err == nil && fi.Size() > 10<<20 {
		os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)), func() {}
	}
	return slog.New(slog.NewJSONHandler(io.MultiWriter(f, os.Stderr), nil)).With("component", "protection-daemon"), func() { f.Close() }
}

// loadSignatures builds the engine from the installed set (verified again
// with the trusted key) or, without one, the built-in signature only.
func (d *daemon) loadSignatures() {
	db, h, err := func() (*scan.DB, sigset.Header, error) {
		if len(d.cfg.SignatureKey) == 0 {
			return nil, sigset.Header{}, fs.ErrNotExist
		}
		return d.store.Load()
	}()
	switch {
	case err == nil:
		d.sigVersion = h.Version
	case errors.Is(err, fs.ErrNotExist):
		db = scan.NewBuilder(false).Build()
	default:
		d.sigError = fmt.Sprintf("the installed signature set was not loaded (%v); only the built-in signature is in use", err)
		d.log.Error("load signature set", "err", err)
		db = scan.NewBuilder(false).Build()
	}
	d.setEngine(db)
}

func (d *daemon) setEngine(db *scan.DB) {
	excluded := []string{d.q.Dir()}
	if real, err := filepath.EvalSymlinks(d.cfg.StateDir); err == nil {
		excluded = append(excluded, real)
	}
	e := scan.New(db, scan.Options{ExcludeSHA256: d.excl.Contains, ExcludePaths: excluded})
	d.engine.Store(e)
	d.mu.Lock()
	d.sigCount = db.Stats().Total()
	d.mu.Unlock()
	if d.watcher != nil {
		d.watcher.SetEngine(e)
	}
}

// startRealtime starts on-access protection of the configured paths that
// exist under the host root.
func (d *daemon) startRealtime(ctx context.Context, wg *sync.WaitGroup) {
	s := d.cfg.Settings
	var paths []string
	for _, p := range s.Realtime.Paths {
		lp := d.host.local(p)
		if fi, err := os.Stat(lp); err == nil && fi.IsDir() {
			paths = append(paths, lp)
		} else {
			d.log.Warn("real-time path not watched: not a directory on this machine", "path", p)
		}
	}
	if len(paths) == 0 {
		d.realtimeErr = "none of the real-time paths is a directory on this machine"
		return
	}
	excl := realtime.Exclusions{Extensions: slices.Clone(s.Exclusions.Extensions)}
	for _, p := range s.Exclusions.Paths {
		excl.Paths = append(excl.Paths, d.host.local(p))
	}
	if real, err := filepath.EvalSymlinks(d.cfg.StateDir); err == nil {
		excl.Paths = append(excl.Paths, real)
	}
	w, err := realtime.New(realtime.Config{Paths: paths, Block: s.Realtime.Block, Action: d.action, Exclusions: excl,
		Engine: d.engine.Load(), Quarantine: d.q, OnDetection: d.onRealtime, Logger: d.log})
	if err != nil {
		d.realtimeErr = err.Error()
		return
	}
	d.watcher = w
	wg.Go(func() {
		if err := w.Run(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("real-time protection stopped", "err", err)
			d.mu.Lock()
			d.realtimeErr = err.Error()
			d.mu.Unlock()
			d.markStatus()
		}
	})
	// The mode is known once the watcher has placed its marks.
	for deadline := time.Now().Add(5 * time.Second); w.Stats().Mode == "" && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(5 * time.Millisecond)
	}
}

func newDetectionID() string {
	var b [8]byte
	rand.Read(b[:])
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + hex.EncodeToString(b[:])
}

// onRealtime turns a watcher detection into a spool message.
func (d *daemon) onRealtime(x realtime.Detection) {
	det := wire.ProtectionDetection{ID: newDetectionID(), Time: x.Time, Path: d.host.host(x.Path), Member: x.Member, SHA256: x.SHA256,
		Signature: x.Signature, Kind: x.Kind, Source: "realtime", Event: x.Event, Action: x.Action, QuarantineID: x.QuarantineID,
		Process: d.host.host(x.Process), PID: x.PID}
	if det.Process == "" {
		det.Process = x.Process
	}
	if x.Error != "" {
		det.Action = wire.DetectionNotRemoved
		det.Error = notRemoved(string(d.action), x.Error)
	}
	d.emit(det)
}

// notRemoved is the alert text of an action that failed.
func notRemoved(action, err string) string {
	return fmt.Sprintf("%s failed, the file stays where it was: %s", action, err)
}

func (d *daemon) emit(det wire.ProtectionDetection) {
	if err := d.out.put(wire.ReportProtectionDetection, det); err != nil {
		d.log.Error("spool a detection", "path", det.Path, "err", err)
	}
	d.markStatus()
}

// markStatus asks for a status message at the next flush.
func (d *daemon) markStatus() {
	d.mu.Lock()
	d.statusDue = true
	d.mu.Unlock()
}

// flushStatus sends the status if it is due (at most every 2 s, unless now).
func (d *daemon) flushStatus(now bool) {
	d.mu.Lock()
	due := d.statusDue && (now || time.Since(d.lastStatusSent) >= 2*time.Second)
	if due {
		d.statusDue, d.lastStatusSent = false, time.Now()
	}
	d.mu.Unlock()
	if due {
		if err := d.out.put(wire.ReportProtectionStatus, d.status()); err != nil {
			d.log.Error("spool status", "err", err)
		}
	}
}

func (d *daemon) status() wire.ProtectionStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := wire.ProtectionStatus{State: wire.ProtectionRunning, EngineVersion: d.cfg.Version, SignatureVersion: d.sigVersion,
		Signatures: d.sigCount, SignatureError: d.sigError, Action: string(d.action), ReportOnly: d.cfg.ReportOnly,
		LastScan: d.lastScan, At: time.Now().UTC()}
	if d.cfg.KeyRefused != "" && st.SignatureError == "" {
		st.SignatureError = d.cfg.KeyRefused
	}
	if recs, err := d.q.List(); err == nil {
		st.Quarantined = len(recs)
	}
	if d.watcher != nil && d.realtimeErr == "" {
		s := d.watcher.Stats()
		st.RealtimeEnabled, st.RealtimeMode, st.RealtimeReason, st.Blocking = s.Mode != "", s.Mode, s.ModeReason, s.Blocking
	} else if d.cfg.Settings.Realtime.Enabled {
		st.RealtimeReason = d.realtimeErr
	}
	return st
}

// installIncoming installs the newest signature set waiting in incoming/
// (older ones are dropped): verified with the trusted key and loaded
// completely before it replaces the current one, which stays on any
// failure.
func (d *daemon) installIncoming() {
	in := filepath.Join(d.dir, incomingDir)
	entries, err := os.ReadDir(in)
	if err != nil {
		return
	}
	var best string
	var bestV uint64
	for _, e := range entries {
		v, ok := strings.CutSuffix(e.Name(), ".sigset")
		n, err := strconv.ParseUint(v, 10, 64)
		if !ok || err != nil || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if best != "" {
			if n <= bestV {
				os.Remove(filepath.Join(in, e.Name()))
				continue
			}
			os.Remove(filepath.Join(in, best))
		}
		best, bestV = e.Name(), n
	}
	if best == "" {
		return
	}
	path := filepath.Join(in, best)
	defer os.Remove(path)
	set, err := os.ReadFile(path)
	if err != nil {
		return
	}
	d.mu.Lock()
	cur := d.sigVersion
	d.mu.Unlock()
	var db *scan.DB
	var h sigset.Header
	if len(d.cfg.SignatureKey) == 0 {
		err = errors.New("no signature key is trusted on this machine yet")
	} else {
		db, h, err = d.store.Install(set)
	}
	d.mu.Lock()
	if err != nil {
		d.sigError = fmt.Sprintf("signature set %d refused, version %d kept: %v", bestV, cur, err)
		if d.cfg.KeyRefused != "" {
			d.sigError += " (" + d.cfg.KeyRefused + ")"
		}
		d.mu.Unlock()
		d.log.Error("signature set refused", "version", bestV, "kept", cur, "err", err)
	} else {
		d.sigVersion, d.sigError = h.Version, ""
		d.mu.Unlock()
		d.setEngine(db)
		d.log.Info("signature set installed", "version", h.Version, "signatures", h.Total())
	}
	d.markStatus()
	d.flushStatus(true)
}
