package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/outbox"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/wire"
)

// DesiredFile is the last desired state fetched (state directory relative),
// without its run commands; reconcilers re-apply it after a restart even
// before the server answers.
const DesiredFile = statedir.DesiredFile

// maxBatch matches the server's limit on reports per batch.
const maxBatch = 100

// reportSettle is how long new reports wait before they are delivered
// (Config.ReportSettle), so the reports of one change go together: a quick
// operation's Creating is superseded by its final state, which goes with
// the desired state's applied report in one request (after a fleet-wide
// change, one request per agent fewer on the control plane). An operation
// that takes longer shows Creating after this delay.
const reportSettle = 50 * time.Millisecond

// addReport puts an observation in the outbox; key supersedes older ones.
func (d *Daemon) addReport(kind string, body any, key string) {
	b, err := json.Marshal(body)
	if err != nil {
		d.log.Error("encode report", "kind", kind, "err", err)
		return
	}
	r := wire.Report{ID: outbox.NewID(), Kind: kind, TakenAt: d.cfg.Clock().UTC(), AgentVersion: d.cfg.Version, Body: b}
	if err := d.out.Add(r, key); err != nil {
		d.log.Error("store report", "kind", kind, "err", err)
	}
}

// reportInventory collects the host inventory and cloud environment and
// reports it if it changed since the last report of this run.
func (d *Daemon) reportInventory(ctx context.Context) {
	p := d.cfg.Host.Collect(ctx)
	p.Environment, p.Cloud = d.newCloudDetector().Detect(ctx)
	p = p.Cleaned() // a NUL or escape read from the host must not get the report refused
	b, _ := json.Marshal(p)
	if bytes.Equal(b, d.lastInventory) {
		return
	}
	d.lastInventory = b
	d.addReport(wire.ReportProperties, p, wire.ReportProperties)
}

// reportConfig reports the local configuration (read-only on the server),
// and, once per change, that it was changed outside corral-agent config.
func (d *Daemon) reportConfig(c localconfig.Effective) {
	d.addReport(wire.ReportAgentConfig, c.Wire(), wire.ReportAgentConfig)
	if c.ChangedOutside == "" {
		return
	}
	d.log.Warn("the local configuration was changed outside corral-agent config; it is in force, and reported to the control plane",
		"detail", c.ChangedOutside)
	d.addReport(wire.ReportLocalConfigChanged, wire.LocalConfigChanged{Detail: c.ChangedOutside, Config: c.Wire()}, "")
}

// configState is what a change of the local configuration is judged by:
// the values in force and whether the file came from corral-agent config.
func configState(c localconfig.Effective) []byte {
	b, _ := json.Marshal(struct {
		Config  wire.AgentConfig
		Outside string
	}{c.Wire(), c.ChangedOutside})
	return b
}

// desiredLoop fetches desired state when the server says it changed (or on
// reconnect) and hands it to the reconcilers, retrying with backoff.
func (d *Daemon) desiredLoop(ctx context.Context) {
	d.reconcileCached(ctx)
	again := time.NewTicker(d.cfg.ReconcileInterval)
	defer again.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-again.C:
			d.reconcileCached(ctx)
			continue
		case <-d.recheck:
			// Root changed the local configuration: what it now allows or
			// forbids is applied from the cached desired state at once,
			// without waiting for (or needing) the server.
			d.reconcileCached(ctx)
			continue
		case <-d.fetch:
		}
		for attempt := 0; ; attempt++ {
			err := d.syncDesired(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			d.log.WarnContext(ctx, "fetch desired state", "err", err)
			// A sync or a welcome (which kicks fetch) ends the wait.
			if !sleepUnless(ctx, retryDelay(err, attempt, d.cfg.MaxBackoff), d.fetch) {
				return
			}
		}
	}
}

func (d *Daemon) syncDesired(ctx context.Context) error {
	var ds wire.DesiredState
	if err := d.api.Do(ctx, http.MethodGet, wire.PathDesiredState, nil, &ds); err != nil {
		return err
	}
	// The cached copy never starts runs (see reconcileCached), and a run's
	// script and parameters may hold secrets that the state directory and
	// the support bundle must not keep: they are left out of it.
	cached := ds
	cached.RunCommands = nil
	b, err := json.MarshalIndent(cached, "", "  ")
	if err != nil {
		return err
	}
	if err := statedir.WriteFileAtomic(filepath.Join(d.cfg.StateDir, DesiredFile), append(b, '\n'), 0o600); err != nil {
		return err
	}
	d.applyFeatures(ctx, feature.Desired{State: ds, Fresh: true})
	d.status.update(func(s *Status) { s.AppliedGeneration = ds.Generation })
	d.addReport(wire.ReportApplied, wire.AppliedState{Generation: ds.Generation}, wire.ReportApplied)
	return nil
}

// reconcileCached re-applies the last desired state fetched, so extensions
// are put back even while the server is away. Run commands are left out:
// they run only from a freshly fetched desired state, never from a copy
// that may be days old.
func (d *Daemon) reconcileCached(ctx context.Context) {
	ds, err := readDesired(d.cfg.StateDir)
	if err != nil {
		return
	}
	ds.RunCommands = nil
	d.applyFeatures(ctx, feature.Desired{State: ds})
}

func readDesired(stateDir string) (wire.DesiredState, error) {
	var ds wire.DesiredState
	b, err := os.ReadFile(filepath.Join(stateDir, DesiredFile))
	if err != nil {
		return ds, err
	}
	return ds, json.Unmarshal(b, &ds)
}

// deliverLoop sends outbox reports in order, in batches, until the outbox is
// empty, ReportSettle after new ones arrive; failures back off and retry, at
// once when the push channel is welcomed again (the server is back). A
// report the server rejects as invalid would block the queue forever, so
// rejected batches are retried one by one and the bad report is dropped
// (and logged). A batch larger than the server accepts (413) is sent again
// halved, down to one report; a single report that is still too large is
// dropped like a rejected one.
func (d *Daemon) deliverLoop(ctx context.Context) {
	select { // the connection the channel makes carries the reports too
	case <-ctx.Done():
		return
	case <-d.dialed:
	}
	retry := time.NewTicker(30 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.out.Ready():
			if !sleepUnless(ctx, d.cfg.ReportSettle, nil) {
				return
			}
		case <-retry.C:
		}
		for attempt, size := 0, maxBatch; d.out.Len() > 0; {
			err := d.deliverBatch(ctx, size)
			if err == nil {
				attempt = 0
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if isTooLarge(err) && size > 1 {
				size /= 2
				continue
			}
			if isRejected(err) || isTooLarge(err) {
				if err := d.deliverBatch(ctx, 1); isRejected(err) || isTooLarge(err) {
					first, _ := d.out.Pending(1)
					if len(first) == 1 {
						d.log.ErrorContext(ctx, "the control plane rejected a report; dropping it", "kind", first[0].Kind, "err", err)
						_ = d.out.Ack([]string{first[0].ID})
					}
				}
				continue
			}
			d.log.WarnContext(ctx, "deliver reports", "pending", d.out.Len(), "err", err)
			// A welcome on the push channel means the server is back:
			// deliver at once rather than at the end of a backoff that
			// grew while it was away.
			if !sleepUnless(ctx, retryDelay(err, attempt, d.cfg.MaxBackoff), d.welcomed) {
				return
			}
			attempt++
		}
		d.status.update(func(s *Status) { s.PendingReports = 0 })
	}
}

func (d *Daemon) deliverBatch(ctx context.Context, n int) error {
	batch, err := d.out.Pending(n)
	if err != nil || len(batch) == 0 {
		return err
	}
	var ack wire.ReportAck
	if err := d.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: batch}, &ack); err != nil {
		return err
	}
	return d.out.Ack(ack.Accepted)
}

func isRejected(err error) bool {
	var ae *wire.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest
}

func isTooLarge(err error) bool {
	var ae *wire.APIError
	return errors.As(err, &ae) && ae.Status == http.StatusRequestEntityTooLarge
}

// watchLoop watches the local configuration (changed only by root with
// `corral-agent config`; inotify, with a poll as fallback) and periodically
// re-reads the inventory. A change is reported to the control plane, told
// to the features (which stop what it forbids) and applied from the cached
// desired state. Decisions do not wait for this loop: they read the file.
func (d *Daemon) watchLoop(ctx context.Context) {
	cfgTick := time.NewTicker(d.cfg.ConfigPollInterval)
	defer cfgTick.Stop()
	invTick := time.NewTicker(d.cfg.InventoryInterval)
	defer invTick.Stop()
	changed, stop := watchFile(d.dir.Path(statedir.ConfigFile), d.log)
	defer stop()
	last := configState(*d.localCfg.Load())
	for {
		select {
		case <-ctx.Done():
			return
		case <-invTick.C:
			d.reportInventory(ctx)
			continue
		case <-cfgTick.C:
		case <-changed:
		}
		c := d.currentConfig()
		b := configState(c)
		if bytes.Equal(b, last) {
			continue
		}
		last = b
		d.localCfg.Store(&c)
		d.log.InfoContext(ctx, "local configuration changed")
		d.reportConfig(c)
		d.closeForbiddenTunnels(c)
		d.configChanged(ctx)
		kick(d.recheck)
	}
}

// renewLoop rotates the machine certificate once two thirds of its life
// have passed.
func (d *Daemon) renewLoop(ctx context.Context) {
	for {
		if d.id.NeedsRenewal(d.cfg.Clock()) {
			err := d.id.Renew(ctx, func(ctx context.Context, csr []byte) ([]byte, error) {
				var resp wire.RenewResponse
				err := d.api.Do(ctx, http.MethodPost, wire.PathCertificate, wire.RenewRequest{CSR: string(csr)}, &resp)
				return []byte(resp.Certificate), err
			})
			if err != nil {
				d.log.WarnContext(ctx, "renew machine certificate", "err", err)
			} else {
				d.log.InfoContext(ctx, "machine certificate renewed", "notAfter", d.id.Leaf().NotAfter)
				now := d.cfg.Clock()
				d.status.update(func(s *Status) { s.CertRenewedAt = now })
			}
		}
		if !sleep(ctx, d.cfg.RenewCheckInterval) {
			return
		}
	}
}
