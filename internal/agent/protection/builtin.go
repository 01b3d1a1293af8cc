package protection

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/scan/quarantine"
	"github.com/corralhq/corral/internal/wire"
)

// builtin is Corral/EndpointProtection's handlers.
type builtin struct{ f *Feature }

func (builtin) ExtensionName() string { return wire.ExtEndpointProtection }

// RunsWithoutHostChanges: with host changes off, protection runs in
// report-only mode (the daemon checks nothing else on the host changes).
func (builtin) RunsWithoutHostChanges() bool { return true }

// RunHandler validates and records the settings (install, update, enable)
// or switches protection off (disable, uninstall), and starts or stops the
// daemon accordingly.
func (b builtin) RunHandler(ctx context.Context, handler string, in wire.HandlerInput) (string, error) {
	f := b.f
	switch handler {
	case wire.HandlerInstall, wire.HandlerUpdate, wire.HandlerEnable:
		s, err := wire.ParseProtectionSettings(in.Settings)
		if err != nil {
			return "", err
		}
		if handler != wire.HandlerEnable {
			return describe(s), nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ext = extState{Enabled: true, Settings: s, UpdatedAt: f.now()}
		if err := writeJSON(filepath.Join(f.dir, extensionFile), f.ext); err != nil {
			return "", fmt.Errorf("record the settings: %w", err)
		}
		f.reconcile(ctx)
		msg := "endpoint protection enabled: " + describe(s)
		if err := f.env.HostChangesRefused(); err != nil {
			msg += " (report only: " + err.Error() + ")"
		}
		return msg, nil
	case wire.HandlerDisable, wire.HandlerUninstall:
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.ext.Enabled {
			return "endpoint protection is off", nil
		}
		f.ext.Enabled, f.ext.UpdatedAt = false, f.now()
		if err := writeJSON(filepath.Join(f.dir, extensionFile), f.ext); err != nil {
			return "", fmt.Errorf("record the extension off: %w", err)
		}
		f.reconcile(ctx)
		return "endpoint protection stopped; the quarantine is kept", nil
	}
	return "", fmt.Errorf("unknown handler %q", handler)
}

// describe sums settings up in a line.
func describe(s wire.ProtectionSettings) string {
	rt := "real-time off"
	if s.Realtime.Enabled {
		rt = "real-time on " + strings.Join(s.Realtime.Paths, ",")
		if s.Realtime.Block {
			rt += " with blocking"
		}
	}
	return rt + ", action " + s.Action
}

// fetch is fetch.json: the last signature set version handed to the
// daemon (or refused before), so a set is downloaded once.
type fetch struct {
	Version uint64    `json:"version"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// fetchSignatures downloads the desired signature set in the background
// when it is newer than the last one handled. Caller holds f.mu.
func (f *Feature) fetchSignatures(ctx context.Context) {
	ref := f.desired.Signatures
	if ref == nil || f.fetching || f.env.ControlPlane == nil {
		return
	}
	if state, _ := f.allowed(); state != "" {
		return
	}
	var last fetch
	_ = readJSON(filepath.Join(f.dir, fetchFile), &last)
	if ref.Version <= last.Version {
		return
	}
	if ref.Size <= 0 || ref.Size > wire.MaxSignatureSetBytes {
		f.env.LogRefused(ctx, "signature set of an impossible size ignored", "version", ref.Version, "size", ref.Size)
		return
	}
	f.fetching = true
	r := *ref
	parent := f.ctx
	if parent == nil {
		parent = context.WithoutCancel(ctx)
	}
	f.wg.Go(func() {
		defer func() {
			f.mu.Lock()
			f.fetching = false
			f.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(parent, 10*time.Minute)
		defer cancel()
		set, err := f.env.ControlPlane.Download(ctx, wire.PathProtectionSignatures+strconv.FormatUint(r.Version, 10), r.Size)
		if err != nil {
			f.log.Warn("download signature set; retried with the next desired state", "version", r.Version, "err", err)
			return
		}
		sum := sha256.Sum256(set)
		rec := fetch{Version: r.Version, At: f.now()}
		if int64(len(set)) != r.Size || hex.EncodeToString(sum[:]) != r.SHA256 {
			rec.Error = "the downloaded set does not match the digest the desired state names"
			f.log.Error("signature set refused", "version", r.Version, "err", rec.Error)
		} else if err := statedir.WriteFileAtomic(filepath.Join(f.dir, incomingDir, strconv.FormatUint(r.Version, 10)+".sigset"), set, statedir.PrivateMode); err != nil {
			f.log.Error("hand the signature set to the daemon", "version", r.Version, "err", err)
			return
		}
		_ = writeJSON(filepath.Join(f.dir, fetchFile), rec)
	})
}

// restore carries out restore requests. Caller holds f.mu.
func (f *Feature) restore(ctx context.Context, reqs []wire.ProtectionRestoreRequest) {
	for i, r := range reqs {
		if i == maxDesiredScans {
			break
		}
		if !validID(r.ID) {
			continue
		}
		rec := filepath.Join(f.dir, restoresDir, r.ID+".json")
		if err := readJSON(rec, &scanRecord{}); err == nil {
			continue
		}
		if err := writeJSON(rec, scanRecord{State: wire.ScanRunning, At: f.now()}); err != nil {
			continue
		}
		res := f.restoreOne(r)
		res.ID, res.QuarantineID, res.FinishedAt = r.ID, r.QuarantineID, f.now()
		_ = writeJSON(rec, scanRecord{State: res.State, At: f.now()})
		f.report(wire.ReportProtectionRestore, res, "protection:restore:"+r.ID)
		f.log.InfoContext(ctx, "quarantine restore", "restore", r.ID, "entry", r.QuarantineID, "state", res.State, "message", res.Message)
		f.quarantineDue = true
	}
	if len(reqs) > 0 {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// restoreOne puts a quarantined file back: its SHA-256 is excluded first
// (unless asked not to) so real-time protection does not take it again,
// and the exclusion is taken back if the restore fails.
func (f *Feature) restoreOne(r wire.ProtectionRestoreRequest) wire.ProtectionRestoreResult {
	failed := func(err error) wire.ProtectionRestoreResult {
		return wire.ProtectionRestoreResult{State: wire.ScanFailed, Message: err.Error()}
	}
	if err := f.env.Config().CheckExtension(localconfig.OpUpdate, wire.ExtEndpointProtection); err != nil {
		return failed(err)
	}
	if err := f.env.HostChangesRefused(); err != nil {
		return failed(err)
	}
	q, err := quarantine.Open(f.env.StateDir.Path(quarantineDirName))
	if err != nil {
		return failed(err)
	}
	entry, err := q.Get(r.QuarantineID)
	if err != nil {
		if errors.Is(err, quarantine.ErrNotFound) {
			return failed(fmt.Errorf("no quarantine entry %s on this machine", r.QuarantineID))
		}
		return failed(err)
	}
	added := false
	if !r.NoExclusion {
		excl := quarantine.NewExclusions(q.Dir())
		if !excl.Contains(entry.SHA256) {
			if err := q.AddExclusion(quarantine.Exclusion{SHA256: entry.SHA256, Path: f.host.host(entry.Path),
				Reason: "restored from quarantine " + entry.ID + " (request " + r.ID + ")", Time: f.now()}); err != nil {
				return failed(fmt.Errorf("add the exclusion: %w; the file stays in the quarantine", err))
			}
			added = true
		}
	}
	back, err := q.Restore(r.QuarantineID, r.Force)
	if err != nil {
		if added {
			_, _ = q.RemoveExclusion(entry.SHA256)
		}
		return failed(err)
	}
	return wire.ProtectionRestoreResult{State: wire.ScanSucceeded, Path: f.host.host(back.Path), Exclusion: !r.NoExclusion,
		Message: fmt.Sprintf("restored with owner %d:%d and mode %04o", back.UID, back.GID, back.Mode)}
}
