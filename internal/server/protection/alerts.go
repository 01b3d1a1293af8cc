package protection

import (
	"context"
	"errors"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func parseScope(s string) (resource.ID, error) { return resource.ParseScope(s) }

func toAlert(a store.Alert) wire.Alert {
	return wire.Alert{ID: a.ID, MachineID: a.MachineResource, Machine: a.MachineName, Path: a.Path, Member: a.Member, SHA256: a.SHA256,
		Signature: a.Signature, Action: a.Action, Error: a.Error, Source: a.Source, ScanID: a.ScanID, Process: a.Process, PID: a.PID,
		Time: a.Time, State: a.State, QuarantineID: a.QuarantineID, AcknowledgedAt: a.AcknowledgedAt, AcknowledgedBy: a.AcknowledgedBy,
		ReceivedAt: a.ReceivedAt}
}

// AlertQuery selects alerts.
type AlertQuery struct {
	// Scope is "/" or a subscription, resource group or machine id.
	Scope string
	// Machine is a machine name.
	Machine string
	// State is Active or Acknowledged ("" for both).
	State string
	Page  store.Page
}

// ListAlerts returns alerts newest first.
func (s *Service) ListAlerts(ctx context.Context, q AlertQuery) (store.PageOf[wire.Alert], error) {
	if q.Scope == "" {
		q.Scope = "/"
	}
	if _, err := resource.ParseScope(q.Scope); err != nil {
		return store.PageOf[wire.Alert]{}, refusal.Invalid("scope", "%v", err)
	}
	switch q.State {
	case "", wire.AlertActive, wire.AlertAcknowledged:
	default:
		return store.PageOf[wire.Alert]{}, refusal.Invalid("state", "state %q must be %s or %s", q.State, wire.AlertActive, wire.AlertAcknowledged)
	}
	if q.Machine != "" && !resource.ValidName(q.Machine) {
		return store.PageOf[wire.Alert]{}, refusal.Invalid("machine", "machine name %q is not valid", q.Machine)
	}
	f := store.AlertFilter{ScopePrefix: q.Scope, MachineName: q.Machine, State: q.State}
	rows, after, err := store.FetchPage(q.Page, func(p store.Page) ([]store.Alert, error) {
		f.Page = p
		return s.store.ListAlerts(ctx, f)
	}, func(a store.Alert) string { return a.ID })
	if err != nil {
		return store.PageOf[wire.Alert]{}, err
	}
	out := store.PageOf[wire.Alert]{Items: make([]wire.Alert, 0, len(rows)), After: after}
	for _, a := range rows {
		out.Items = append(out.Items, toAlert(a))
	}
	return out, nil
}

// GetAlert returns one alert; the caller authorizes at its MachineID.
func (s *Service) GetAlert(ctx context.Context, id string) (wire.Alert, error) {
	a, err := s.store.GetAlert(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return wire.Alert{}, refusal.NotFound("alert %q was not found", id)
	}
	if err != nil {
		return wire.Alert{}, err
	}
	return toAlert(a), nil
}

// Acknowledge moves an alert to Acknowledged; it reports whether it
// changed (an alert acknowledged already is left as it was).
func (s *Service) Acknowledge(ctx context.Context, id, by string) (wire.Alert, bool, error) {
	changed, err := s.store.AcknowledgeAlert(ctx, id, by, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return wire.Alert{}, false, refusal.NotFound("alert %q was not found", id)
	}
	if err != nil {
		return wire.Alert{}, false, err
	}
	a, err := s.GetAlert(ctx, id)
	return a, changed, err
}
