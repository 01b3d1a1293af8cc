package loadgen_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/loadgen"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// A Fleet's agents are driven one by one: each reports its channel's
// connection, a change made through the API arrives as a sync with a newer
// generation, and reports sent on the agent's connection are acknowledged.
func TestFleet(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	var mu sync.Mutex
	events := map[string][]loadgen.Event{}
	fleet, err := loadgen.NewFleet(t.Context(), loadgen.Options{Server: s.URL, CAFile: s.CAFile, Username: "admin",
		Password: testutil.AdminPassword, ResourceGroup: "fleet", HeartbeatInterval: 200 * time.Millisecond},
		func(ev loadgen.Event) {
			mu.Lock()
			defer mu.Unlock()
			events[ev.Machine] = append(events[ev.Machine], ev)
		})
	if err != nil {
		t.Fatal(err)
	}
	a, err := fleet.Onboard(t.Context(), "sim-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { stop(); <-done }()
	last := func(kind loadgen.EventKind) (loadgen.Event, bool) {
		mu.Lock()
		defer mu.Unlock()
		evs := events[a.MachineID()]
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Kind == kind {
				return evs[i], true
			}
		}
		return loadgen.Event{}, false
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		if ev, ok := last(loadgen.EventConnected); !ok || ev.LocalAddr == "" || ev.Name != "sim-1" {
			return "no connected event with the connection's address"
		}
		return ""
	})
	s.MustDo(t, 200, "PATCH", "/api/v1/subscriptions/default/resourceGroups/fleet/machines/sim-1", s.AdminToken(t),
		wire.MachineUpdate{Tags: map[string]string{"pushed": "yes"}}, nil)
	testutil.Eventually(t, 10*time.Second, func() string {
		if ev, ok := last(loadgen.EventSync); !ok || ev.Generation < 1 {
			return "no sync after the tag change"
		}
		return ""
	})
	det, _ := json.Marshal(wire.ProtectionDetection{ID: "det-1", Path: "/tmp/x", Signature: "Eicar-Test-Signature",
		SHA256: "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", Source: "realtime", Action: wire.DetectionQuarantined})
	ack, err := a.Report(t.Context(), []wire.Report{{ID: "r-1", Kind: wire.ReportProtectionDetection, TakenAt: time.Now(), Body: det}})
	if err != nil || len(ack.Accepted) != 1 || ack.Accepted[0] != "r-1" {
		t.Fatalf("report: %+v %v", ack, err)
	}
	if n, first := fleet.Errors(); n != 0 {
		t.Errorf("%d errors, first %s", n, first)
	}
}
