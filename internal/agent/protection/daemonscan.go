package protection

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/realtime"
	"github.com/corralhq/corral/internal/wire"
)

// scanRequest is requests/scan-ID.json, written by the feature.
type scanRequest struct {
	wire.ProtectionScanRequest
	Scheduled bool `json:"scheduled,omitempty"`
}

type scanJob struct {
	req  scanRequest
	file string // requests/running/...
}

// takeRequests moves each waiting scan request to requests/running (so it
// runs at most once) and queues it.
func (d *daemon) takeRequests(jobs chan<- scanJob) {
	dir := filepath.Join(d.dir, requestsDir)
	for _, name := range pending(dir) {
		from, to := filepath.Join(dir, name), filepath.Join(d.dir, runningDir, name)
		var req scanRequest
		if err := readJSON(from, &req); err != nil {
			d.log.Error("unreadable scan request dropped", "file", name, "err", err)
			os.Remove(from)
			continue
		}
		if err := os.Rename(from, to); err != nil {
			d.log.Error("take scan request", "file", name, "err", err)
			continue
		}
		select {
		case jobs <- scanJob{req: req, file: to}:
		default:
			d.finishScan(scanJob{req: req, file: to}, wire.ProtectionScanResult{State: wire.ScanFailed,
				Message: "too many scans are waiting on this machine; ask again later"})
		}
	}
}

// failInterrupted reports the scans a previous daemon started and did not
// finish: they are not run again.
func (d *daemon) failInterrupted() {
	dir := filepath.Join(d.dir, runningDir)
	for _, name := range pending(dir) {
		var req scanRequest
		_ = readJSON(filepath.Join(dir, name), &req)
		d.finishScan(scanJob{req: req, file: filepath.Join(dir, name)}, wire.ProtectionScanResult{State: wire.ScanFailed,
			Message: "the protection daemon stopped during the scan; it was not run again"})
	}
}

// runScans runs queued scans one at a time until ctx ends.
func (d *daemon) runScans(ctx context.Context, jobs <-chan scanJob) {
	for job := range jobs {
		if ctx.Err() != nil {
			d.finishScan(job, wire.ProtectionScanResult{State: wire.ScanFailed, Message: "endpoint protection stopped before the scan started"})
			continue
		}
		d.finishScan(job, d.runScan(ctx, job))
	}
}

// finishScan reports a scan's final result and forgets its request.
func (d *daemon) finishScan(job scanJob, res wire.ProtectionScanResult) {
	r := job.req
	res.ID, res.Type, res.Paths, res.Scheduled = r.ID, r.Type, r.Paths, r.Scheduled
	if res.FinishedAt.IsZero() {
		res.FinishedAt = time.Now().UTC()
	}
	if res.ID != "" {
		if err := d.out.put(wire.ReportProtectionScan, res); err != nil {
			d.log.Error("spool scan result", "scan", res.ID, "err", err)
		}
		d.mu.Lock()
		d.lastScan = &wire.ProtectionScanSummary{ID: res.ID, Type: res.Type, State: res.State, Infected: res.Infected, FinishedAt: res.FinishedAt}
		d.mu.Unlock()
		_ = writeJSON(filepath.Join(d.dir, lastScanFile), d.lastScan)
		d.markStatus()
	}
	os.Remove(job.file)
}

// scanRoots resolves a request to local roots under the host root and
// the paths a full scan leaves out.
func (d *daemon) scanRoots(r scanRequest) (roots, skip []string, err error) {
	var hostPaths []string
	switch r.Type {
	case wire.ScanQuick:
		hostPaths = quickScanPaths
	case wire.ScanFull:
		hostPaths = []string{"/"}
		skip = d.host.networkMounts()
	case wire.ScanCustom:
		if len(r.Paths) == 0 {
			return nil, nil, errors.New("a custom scan needs at least one path")
		}
		for _, p := range r.Paths {
			if err := wire.CheckHostPath(p); err != nil {
				return nil, nil, err
			}
		}
		hostPaths = r.Paths
	default:
		return nil, nil, fmt.Errorf("unknown scan type %q", r.Type)
	}
	for _, p := range hostPaths {
		lp := d.host.local(p)
		real, err := filepath.EvalSymlinks(lp)
		if err != nil {
			if r.Type == wire.ScanCustom {
				return nil, nil, fmt.Errorf("%s: %w", p, errors.Unwrap(err))
			}
			continue // a drop location this machine does not have
		}
		if !d.host.inside(real) {
			if r.Type == wire.ScanCustom {
				return nil, nil, fmt.Errorf("%s leads out of the host's root", p)
			}
			continue
		}
		roots = append(roots, real)
	}
	return roots, skip, nil
}

// runScan runs one scan, acting on and reporting each detection.
func (d *daemon) runScan(ctx context.Context, job scanJob) wire.ProtectionScanResult {
	r := job.req
	res := wire.ProtectionScanResult{ID: r.ID, Type: r.Type, Paths: r.Paths, Scheduled: r.Scheduled, State: wire.ScanRunning,
		StartedAt: time.Now().UTC()}
	roots, skip, err := d.scanRoots(r)
	if err != nil {
		res.State, res.Message = wire.ScanFailed, err.Error()
		return res
	}
	if err := d.out.put(wire.ReportProtectionScan, res); err != nil {
		d.log.Error("spool scan progress", "scan", r.ID, "err", err)
	}
	d.log.Info("scan started", "scan", r.ID, "type", r.Type, "roots", len(roots))
	base := d.engine.Load()
	e := base
	if len(skip) > 0 || len(d.cfg.Settings.Exclusions.Paths) > 0 {
		opt := scan.Options{ExcludeSHA256: d.excl.Contains, ExcludePaths: append([]string{d.q.Dir()}, skip...)}
		if real, err := filepath.EvalSymlinks(d.cfg.StateDir); err == nil {
			opt.ExcludePaths = append(opt.ExcludePaths, real)
		}
		for _, p := range d.cfg.Settings.Exclusions.Paths {
			opt.ExcludePaths = append(opt.ExcludePaths, d.host.local(p))
		}
		e = scan.New(base.DB(), opt)
	}
	exts := map[string]bool{}
	for _, x := range d.cfg.Settings.Exclusions.Extensions {
		exts["."+strings.ToLower(strings.TrimPrefix(x, "."))] = true
	}
	var mu sync.Mutex
	var infected int64
	sum, err := e.Scan(ctx, roots, func(fr scan.FileResult) {
		if !fr.Infected() || exts[strings.ToLower(filepath.Ext(fr.Path))] {
			return
		}
		mu.Lock()
		infected++
		mu.Unlock()
		d.emit(d.act(fr, r.ID))
	})
	res.Files, res.Bytes, res.Errors, res.Skipped, res.Infected = sum.Files, sum.Bytes, sum.Errors, sum.Skipped, infected
	res.FinishedAt = time.Now().UTC()
	switch {
	case err != nil:
		res.State, res.Message = wire.ScanFailed, "stopped: endpoint protection was stopped during the scan"
	default:
		res.State = wire.ScanSucceeded
		if sum.Errors > 0 {
			res.Message = fmt.Sprintf("%d files could not be read", sum.Errors)
		}
	}
	d.log.Info("scan finished", "scan", r.ID, "files", sum.Files, "infected", infected, "errors", sum.Errors, "took", sum.Duration)
	return res
}

// act applies the action in force to a file an on-demand scan found.
func (d *daemon) act(fr scan.FileResult, scanID string) wire.ProtectionDetection {
	f := fr.Findings[0]
	det := wire.ProtectionDetection{ID: newDetectionID(), Time: time.Now().UTC(), Path: d.host.host(fr.Path), Member: f.Member,
		SHA256: f.SHA256, Signature: f.Signature, Kind: f.Kind, Source: "scan", ScanID: scanID, Action: wire.DetectionReported}
	if f.Kind != scan.KindSignature {
		return det // a decompression bomb is reported, never removed
	}
	switch d.action {
	case realtime.ActionQuarantine:
		rec, err := d.q.Add(fr.Path, f.Signature, det.Time)
		if err != nil {
			det.Action, det.Error = wire.DetectionNotRemoved, notRemoved(wire.ProtectionQuarantine, err.Error())
		} else {
			det.Action, det.QuarantineID = wire.DetectionQuarantined, rec.ID
		}
	case realtime.ActionDelete:
		if err := os.Remove(fr.Path); err != nil {
			det.Action, det.Error = wire.DetectionNotRemoved, notRemoved(wire.ProtectionDelete, err.Error())
		} else {
			det.Action = wire.DetectionDeleted
		}
	}
	return det
}
