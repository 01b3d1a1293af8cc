package loadgen

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// Fleet is a set of simulated agents driven one by one, for tests that need
// more control than Run: onboard them, run each one's push channel under
// its own context (stop one to make its machine go silent), send reports
// of the test's choosing, and watch every channel event. The agents behave
// as in Run: they heartbeat, fetch desired state on each sync and answer
// extensions and endpoint protection like the real agent.
//
// A Fleet is safe for concurrent use; OnEvent is called from the agents'
// goroutines, concurrently.
type Fleet struct{ g *run }

// EventKind says what happened on an agent's push channel.
type EventKind int

// Channel events.
const (
	// EventConnected: the server welcomed the channel; LocalAddr is the
	// local address of the connection that carries it.
	EventConnected EventKind = iota + 1
	// EventSync: a sync arrived (Generation is the new desired state's).
	EventSync
	// EventDown: the channel ended (Err says why); the agent reconnects
	// with backoff unless its context ended.
	EventDown
)

// Event is one channel event of one simulated agent.
type Event struct {
	Kind       EventKind
	Machine    string // machine id
	Name       string // machine resource name
	At         time.Time
	LocalAddr  string // EventConnected
	Generation int64  // EventSync
	Err        error  // EventDown
}

// NewFleet signs in to o.Server as the admin, creates o.ResourceGroup if
// missing and an onboarding service principal for it. Of o, it uses the
// server, CA, credentials, resource group, heartbeat interval and
// transport. onEvent (may be nil) is told of every channel event.
func NewFleet(ctx context.Context, o Options, onEvent func(Event)) (*Fleet, error) {
	if o.Server == "" || o.CAFile == "" || o.HeartbeatInterval <= 0 {
		return nil, errors.New("a fleet needs a server, its CA file and a positive heartbeat interval")
	}
	g, err := newRun(ctx, o)
	if err != nil {
		return nil, err
	}
	g.onEvent = func(Event) {}
	if onEvent != nil {
		g.onEvent = onEvent
	}
	return &Fleet{g: g}, nil
}

// Agent is one simulated agent of a Fleet.
type Agent struct {
	f *Fleet
	a *simAgent
}

// Onboard connects a new machine named name with a fresh key pair and CSR,
// through the real connect endpoint.
func (f *Fleet) Onboard(ctx context.Context, name string) (*Agent, error) {
	a, err := f.g.onboard(ctx, name)
	if err != nil {
		return nil, err
	}
	return &Agent{f: f, a: a}, nil
}

// Errors returns how many errors the fleet's agents met (failed dials,
// channels that ended, failed fetches) and the first one.
func (f *Fleet) Errors() (n int64, first string) {
	first, _ = f.g.firstErr.Load().(string)
	return f.g.stats.errors.Load(), first
}

// Name is the machine's resource name.
func (a *Agent) Name() string { return a.a.name }

// MachineID is the machine's id.
func (a *Agent) MachineID() string { return a.a.machineID }

// Run keeps the agent's push channel up until ctx ends, reconnecting with
// backoff (200 ms doubling to 5 s), heartbeating and answering syncs.
func (a *Agent) Run(ctx context.Context) { a.f.g.stream(ctx, a.a) }

// Report delivers reports on the agent's connection, as the real agent's
// outbox does, and returns the server's acknowledgement: reports not in it
// must be sent again.
func (a *Agent) Report(ctx context.Context, reports []wire.Report) (wire.ReportAck, error) {
	var ack wire.ReportAck
	err := a.a.api.Do(ctx, http.MethodPost, wire.PathReports, wire.ReportBatch{Reports: reports}, &ack)
	return ack, err
}
