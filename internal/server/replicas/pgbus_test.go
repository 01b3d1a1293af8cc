package replicas_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/replicas"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

func startBus(t *testing.T, dsn string, hub *push.Hub) *replicas.PGBus {
	t.Helper()
	b, err := replicas.NewPGBus(dsn, hub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; b.Close() })
	return b
}

// listening starts a sending bus and, on another hub, a receiving one, and
// returns them once a sync sent from the first reached the second (the
// listener connects in the background).
func listening(t *testing.T, dsn string) (*replicas.PGBus, *push.Hub) {
	t.Helper()
	sender := startBus(t, dsn, push.NewHub())
	hub := push.NewHub()
	startBus(t, dsn, hub)
	probe := hub.Register("probe-" + rand.Text())
	testutil.Eventually(t, 10*time.Second, func() string {
		sender.Notify(t.Context(), probe.MachineID, 1)
		select {
		case <-probe.Out:
			return ""
		case <-time.After(100 * time.Millisecond):
			return "no sync reached the other replica's hub"
		}
	})
	return sender, hub
}

// TestNotifyReachesTheReplicaHoldingTheStream sends from one bus and
// receives on another's hub: concurrent notifies all arrive (no sender lock
// serialises them into a lost queue), and a notify whose caller's context
// is already cancelled still goes out, since its change was committed.
func TestNotifyReachesTheReplicaHoldingTheStream(t *testing.T) {
	t.Parallel()
	sender, hub := listening(t, testutil.PostgresDSN(t))
	machine := "m-" + rand.Text()
	stream := hub.Register(machine)
	ctx := t.Context()

	const n = push.QueueSize - 1
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { sender.Notify(ctx, machine, int64(100+i)) })
	}
	wg.Wait()
	got := map[int64]bool{}
	for len(got) < n {
		select {
		case msg := <-stream.Out:
			if msg.Type == wire.MsgSync && msg.Generation >= 100 {
				got[msg.Generation] = true
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d concurrent notifies arrived", len(got), n)
		}
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	sender.Goodbye(cancelled, machine, "deleted")
	select {
	case msg := <-stream.Out:
		if msg.Type != wire.MsgGoodbye || msg.Reason != "deleted" {
			t.Fatalf("got %+v, want the goodbye", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a goodbye sent with a cancelled context was lost")
	}
}

// TestSweeperLockIsExclusive: while one replica sweeps, another cannot.
func TestSweeperLockIsExclusive(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDSN(t)
	a, b := startBus(t, dsn, push.NewHub()), startBus(t, dsn, push.NewHub())
	ctx := t.Context()
	// The lock is database-wide: another test's server may hold it for a
	// moment, so wait for it rather than fail.
	var release func()
	testutil.Eventually(t, 10*time.Second, func() string {
		r, ok := a.SweeperLock(ctx)
		if !ok {
			return "the sweeper lock stayed taken"
		}
		release = r
		return ""
	})
	if r, ok := b.SweeperLock(ctx); ok {
		r()
		t.Fatal("a second replica took the sweeper lock while the first held it")
	}
	release()
	testutil.Eventually(t, 10*time.Second, func() string {
		r, ok := b.SweeperLock(ctx)
		if !ok {
			return "the released lock could not be taken by the other replica"
		}
		r()
		return ""
	})
}

// pool_max_conns, which sizes the store's pool, may be in the DSN every
// replica component shares: the bus's listener does not pass it on to
// PostgreSQL (which would refuse the connection).
func TestBusAcceptsTheStorePoolSize(t *testing.T) {
	t.Parallel()
	listening(t, testutil.PostgresDSN(t)+"&pool_max_conns=7")
}

// A replica hears no push while its listener is down: it says so
// (Listening, which /readyz reports), and once it listens again every agent
// it holds is told to fetch its desired state, so a change notified
// meanwhile is not missed. The same happens at the first LISTEN, for agents
// that connected before it.
func TestResyncWhenTheListenerReconnects(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDSN(t)
	app := "corral-test-" + strings.ToLower(rand.Text()[:10])
	hub := push.NewHub()
	stream := hub.Register("m-1")
	b, err := replicas.NewPGBus(dsn+"&application_name="+app, hub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if b.Listening() {
		t.Fatal("listening before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; b.Close() })

	resynced := func(when string) {
		t.Helper()
		select {
		case msg := <-stream.Out:
			if msg.Type != wire.MsgSync || msg.Generation != 0 {
				t.Fatalf("%s: got %+v, want a sync naming no generation", when, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the agent held here was not told to fetch", when)
		}
	}
	resynced("first LISTEN")
	testutil.Eventually(t, 5*time.Second, func() string {
		if !b.Listening() {
			return "not listening after the first LISTEN"
		}
		return ""
	})

	admin, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var ended int
	if err := admin.QueryRow(t.Context(), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND query = $2",
		app, "LISTEN "+replicas.Channel).Scan(&ended); err != nil || ended != 1 {
		t.Fatalf("end the listener's session: %d ended, %v", ended, err)
	}
	testutil.Eventually(t, 5*time.Second, func() string {
		if b.Listening() {
			return "still says it listens after its session ended"
		}
		return ""
	})
	resynced("LISTEN again")
	if !b.Listening() {
		t.Error("not listening after the resync")
	}
}

// NotifyMany announces thousands of generations in a few statements; each
// machine's stream on another replica gets its own.
func TestNotifyManyReachesEveryMachine(t *testing.T) {
	t.Parallel()
	sender, hub := listening(t, testutil.PostgresDSN(t))
	const n = 2500 // more than one statement's worth
	gens := map[string]int64{}
	streams := map[string]*push.Stream{}
	for i := range n {
		id := fmt.Sprintf("m-%s-%d", rand.Text()[:8], i)
		gens[id] = int64(10 + i)
		streams[id] = hub.Register(id)
	}
	push.NotifyAll(t.Context(), sender, gens)
	deadline := time.After(20 * time.Second)
	for id, st := range streams {
		select {
		case msg := <-st.Out:
			if msg.Type != wire.MsgSync || msg.Generation != gens[id] {
				t.Fatalf("machine %s got %+v, want a sync to %d", id, msg, gens[id])
			}
		case <-deadline:
			t.Fatalf("machine %s got no sync", id)
		}
	}
}
