// Package retention keeps the store from growing without bound where
// nothing else would: it purges device codes an hour after they expired,
// and — only when an operator set a retention — activity entries older than
// it, after writing them to an export file (JSON Lines, one entry a line,
// mode 0600, fsynced before anything is deleted). The activity log keeps
// everything by default.
//
// Run is a singleton job: with PostgreSQL it takes an advisory lock
// (Lock) around each pass, so one replica purges at a time. A pass that
// fails (the export directory is full, the store is away) deletes nothing
// it has not exported, logs, and tries again at the next interval.
package retention

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Store is what the job needs.
type Store interface {
	DeleteExpiredDeviceCodes(ctx context.Context, before time.Time) (int, error)
	ListActivityBefore(ctx context.Context, before time.Time, limit int) ([]store.ActivityEntry, error)
	PurgeActivity(ctx context.Context, throughID string, before time.Time) (int, error)
}

// DeviceCodeGrace is how long after its expiry a device code is kept (an
// agent polling a little late still gets "expired", not "unknown").
const DeviceCodeGrace = time.Hour

// batch is how many activity entries are exported and purged at a time.
const batch = 1000

// Job purges on a schedule.
type Job struct {
	Store    Store
	Clock    func() time.Time
	Logger   *slog.Logger
	Interval time.Duration
	// ActivityRetention is how long activity entries are kept; 0 keeps
	// everything.
	ActivityRetention time.Duration
	// ExportDir receives purged activity entries.
	ExportDir string
	// Lock, when set, is taken around each pass (one replica at a time).
	Lock func(ctx context.Context) (release func(), ok bool)
	// Seal, when set, seals the activity written so far into the hash
	// chain before a pass: only sealed entries are exported and purged (a
	// prefix of the chain, whose last entry becomes the chain's base).
	Seal func(ctx context.Context) (int, error)
}

// Result is what one pass did.
type Result struct {
	DeviceCodes int
	Activity    int
	ExportFile  string
}

// Run makes a pass every Interval until ctx is done.
func (j *Job) Run(ctx context.Context) {
	t := time.NewTicker(j.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := j.Once(ctx); err != nil && ctx.Err() == nil {
				j.Logger.ErrorContext(ctx, "retention pass failed", "err", err)
			}
		}
	}
}

// Once makes one pass.
func (j *Job) Once(ctx context.Context) (Result, error) {
	var res Result
	if j.Lock != nil {
		release, ok := j.Lock(ctx)
		if !ok {
			return res, nil
		}
		defer release()
	}
	now := j.Clock().UTC()
	n, err := j.Store.DeleteExpiredDeviceCodes(ctx, now.Add(-DeviceCodeGrace))
	if err != nil {
		return res, fmt.Errorf("purge expired device codes: %w", err)
	}
	res.DeviceCodes = n
	if j.ActivityRetention <= 0 {
		return res, nil
	}
	before := now.Add(-j.ActivityRetention)
	if j.Seal != nil {
		if _, err := j.Seal(ctx); err != nil {
			return res, fmt.Errorf("seal activity before exporting it: %w", err)
		}
	}
	for {
		es, err := j.Store.ListActivityBefore(ctx, before, batch)
		if err != nil {
			return res, fmt.Errorf("read activity to export: %w", err)
		}
		if len(es) == 0 {
			break
		}
		if res.ExportFile == "" {
			res.ExportFile = filepath.Join(j.ExportDir, "activity-"+now.Format("20060102T150405Z")+".jsonl")
		}
		if err := appendEntries(res.ExportFile, es); err != nil {
			return res, fmt.Errorf("export activity to %s (nothing was purged): %w", res.ExportFile, err)
		}
		n, err := j.Store.PurgeActivity(ctx, es[len(es)-1].ID, before)
		if err != nil {
			return res, fmt.Errorf("purge exported activity: %w", err)
		}
		res.Activity += n
		if len(es) < batch {
			break
		}
	}
	if res.Activity > 0 || res.DeviceCodes > 0 {
		j.Logger.InfoContext(ctx, "retention pass", "device_codes", res.DeviceCodes, "activity_entries", res.Activity, "export", res.ExportFile)
	}
	return res, nil
}

// appendEntries appends es to path as JSON Lines and syncs the file before
// returning, so entries are on disk before they are deleted from the store.
func appendEntries(path string, es []store.ActivityEntry) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, e := range es {
		if err := enc.Encode(exported(e)); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// exported is an entry as written to the export: the API's shape, so
// `corral activity list -o json` and an export read alike.
func exported(e store.ActivityEntry) wire.ActivityEntry { return wire.ActivityEntry(e) }
