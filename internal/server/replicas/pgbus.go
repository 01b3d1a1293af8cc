// Package replicas lets several control-plane replicas share one PostgreSQL
// store: a change made on one replica must reach agent streams held by
// another, and singleton jobs (the status sweeper) must run on one replica
// at a time. Both use PostgreSQL itself — LISTEN/NOTIFY and advisory locks —
// so there is no home-made consensus.
//
// With SQLite there is one server; its push.Hub is the whole bus.
//
// A replica hears nothing before its first LISTEN and while its listener
// reconnects: it reports that (Listening; /readyz answers 503 meanwhile),
// and each time it listens again it tells every agent it holds to fetch its
// desired state, so a change notified in the gap is not missed.
//
// Concurrency: PGBus holds no lock of its own. NOTIFYs and the sweeper's
// advisory lock go through a small connection pool (pgxpool), so a slow
// NOTIFY delays only its own caller; the listener has its own connection,
// owned by Run.
package replicas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/wire"
)

// Channel is the PostgreSQL notification channel of push messages.
const Channel = "corral_push"

// SweeperLockKey is the PostgreSQL advisory lock id (session level) the
// status sweeper holds while it sweeps; one replica sweeps at a time.
const SweeperLockKey = 0x636f7272616c01 // "corral" + 1

const sweeperLockKey = SweeperLockKey

// retentionLockKey is the advisory lock id of the retention job (device
// code and activity purges).
const retentionLockKey = 0x636f7272616c02 // "corral" + 2

// RetentionLock takes the retention job's advisory lock if no other
// replica holds it (see SweeperLock).
func (b *PGBus) RetentionLock(ctx context.Context) (release func(), ok bool) {
	return b.tryLock(ctx, retentionLockKey)
}

// senderConns bounds the connections PGBus opens for NOTIFY and the
// sweeper lock (the listener has one more of its own).
const senderConns = 4

// publishTimeout bounds one NOTIFY. It runs even when the caller's context
// was cancelled after its change was committed: the change must be announced.
const publishTimeout = 5 * time.Second

// PGBus fans push messages out through LISTEN/NOTIFY. Every replica,
// including the sender, receives each message and delivers it to its own
// hub if it holds the machine's stream.
type PGBus struct {
	// listenCfg is the listener's connection (the DSN without pgxpool's
	// pool_* parameters, which PostgreSQL itself would refuse).
	listenCfg *pgx.ConnConfig
	hub       *push.Hub
	log       *slog.Logger
	pool      *pgxpool.Pool
	// OnTunnel receives every tunnel announced by any replica (set it
	// before Run): the relay asks the agent if this replica holds its
	// channel.
	OnTunnel func(machineID string, t wire.TunnelRequest, origin string)
	// listening is true while the listener's LISTEN is in place.
	listening atomic.Bool
	// OnEndSession, when set, receives every request to end an SSH session
	// (each replica ends it if it relays it).
	OnEndSession func(id string)
}

var _ push.Notifier = (*PGBus)(nil)

// NewPGBus returns a bus over the PostgreSQL database of dsn, delivering to
// hub. It connects lazily; Close releases its connections.
func NewPGBus(dsn string, hub *push.Hub, log *slog.Logger) (*PGBus, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("push bus: %w", err)
	}
	cfg.MaxConns = senderConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("push bus: %w", err)
	}
	return &PGBus{listenCfg: cfg.ConnConfig.Copy(), hub: hub, log: log, pool: pool}, nil
}

// Close releases the sender connections. Call it after Run has returned.
func (b *PGBus) Close() { b.pool.Close() }

// Notify implements push.Notifier.
func (b *PGBus) Notify(ctx context.Context, id string, gen int64) {
	b.publish(ctx, "sync "+id+" "+strconv.FormatInt(gen, 10))
}

// notifyBatch bounds the notifications one NotifyMany statement sends.
const notifyBatch = 1000

// NotifyMany implements push.ManyNotifier: the same messages as Notify,
// a thousand to a statement, so a fleet-wide change is announced in a few
// round trips instead of one per machine.
func (b *PGBus) NotifyMany(ctx context.Context, gens map[string]int64) {
	payloads := make([]string, 0, len(gens))
	for id, gen := range gens {
		payloads = append(payloads, "sync "+id+" "+strconv.FormatInt(gen, 10))
	}
	for chunk := range slices.Chunk(payloads, notifyBatch) {
		b.publish(ctx, chunk...)
	}
}

// Goodbye implements push.Notifier.
func (b *PGBus) Goodbye(ctx context.Context, id, reason string) { b.publish(ctx, "bye "+id+" "+reason) }

// AnnounceTunnel tells every replica about a tunnel a user waits for on
// origin; the one holding the machine's channel asks its agent.
func (b *PGBus) AnnounceTunnel(ctx context.Context, machineID string, t wire.TunnelRequest, origin string) {
	b.publish(ctx, "tunnel "+machineID+" "+t.ID+" "+strconv.Itoa(t.Port)+" "+origin)
}

// EndSession asks every replica to end the SSH session id.
func (b *PGBus) EndSession(ctx context.Context, id string) { b.publish(ctx, "endsession "+id) }

// publish sends payloads in one statement; if it fails they are at least
// delivered to this replica's agents (remote ones catch up on reconnect).
func (b *PGBus) publish(ctx context.Context, payloads ...string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if _, err := b.pool.Exec(ctx, "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", Channel, payloads); err != nil {
		b.log.ErrorContext(ctx, "push notify failed; delivering locally only", "messages", len(payloads), "err", err)
		for _, p := range payloads {
			b.deliver(ctx, p)
		}
	}
}

// Run listens until ctx is done, reconnecting on failure.
func (b *PGBus) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := b.listen(ctx)
		if ctx.Err() != nil {
			break
		}
		b.log.WarnContext(ctx, "push listener lost its connection; reconnecting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (b *PGBus) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, b.listenCfg.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	b.listening.Store(true)
	defer b.listening.Store(false)
	b.resync(ctx)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		b.deliver(ctx, n.Payload)
	}
}

// Listening reports whether this replica hears the other replicas' pushes
// now. It is false until Run's first LISTEN and while the listener
// reconnects: a replica that does not hear them is not ready for agents.
func (b *PGBus) Listening() bool { return b.listening.Load() }

// resync asks every agent whose channel is held here to fetch its desired
// state: whatever was notified before this LISTEN (at start, or while the
// listener reconnected) was not heard. The sync names no generation; the
// agent fetches and sees.
func (b *PGBus) resync(ctx context.Context) {
	ids := b.hub.MachineIDs()
	for _, id := range ids {
		b.hub.Notify(ctx, id, 0)
	}
	if len(ids) > 0 {
		b.log.InfoContext(ctx, "listening for pushes again; the agents held here fetch their desired state", "agents", len(ids))
	}
}

func (b *PGBus) deliver(ctx context.Context, payload string) {
	kind, rest, _ := strings.Cut(payload, " ")
	id, arg, _ := strings.Cut(rest, " ")
	switch kind {
	case "sync":
		gen, err := strconv.ParseInt(arg, 10, 64)
		if err == nil {
			b.hub.Notify(ctx, id, gen)
		}
	case "bye":
		b.hub.Send(id, wire.StreamMessage{Type: wire.MsgGoodbye, Reason: arg})
	case "endsession":
		if b.OnEndSession != nil {
			b.OnEndSession(id)
		}
	case "tunnel":
		f := strings.Fields(arg)
		if len(f) != 3 || b.OnTunnel == nil {
			return
		}
		port, err := strconv.Atoi(f[1])
		if err == nil {
			b.OnTunnel(id, wire.TunnelRequest{ID: f[0], Port: port}, f[2])
		}
	}
}

// SweeperLock takes the sweeper's advisory lock if no other replica holds
// it. The lock lives on one pooled connection's session, kept out of the
// pool until release unlocks it.
func (b *PGBus) SweeperLock(ctx context.Context) (release func(), ok bool) {
	return b.tryLock(ctx, sweeperLockKey)
}

func (b *PGBus) tryLock(ctx context.Context, key int64) (release func(), ok bool) {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		b.log.ErrorContext(ctx, "sweeper lock failed", "err", err)
		return nil, false
	}
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil || !got {
		if err != nil {
			b.log.ErrorContext(ctx, "sweeper lock failed", "err", err)
		}
		conn.Release()
		return nil, false
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			if !errors.Is(err, context.Canceled) {
				b.log.ErrorContext(ctx, "sweeper unlock failed", "err", err)
			}
			// The session may still hold the lock: close it rather than
			// return it to the pool.
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}, true
}

// TryLock takes the advisory lock named name (one per singleton job, e.g.
// "updates" for the update scheduler) if no other replica holds it, like
// SweeperLock. The lock is keyed by name and the connection's schema, so
// servers sharing a database in separate schemas do not exclude each other.
func (b *PGBus) TryLock(ctx context.Context, name string) (release func(), ok bool) {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		b.log.ErrorContext(ctx, "advisory lock failed", "lock", name, "err", err)
		return nil, false
	}
	const q = "SELECT pg_try_advisory_lock(hashtext('corral:' || $1), hashtext(current_schema()))"
	var got bool
	if err := conn.QueryRow(ctx, q, name).Scan(&got); err != nil || !got {
		if err != nil && ctx.Err() == nil {
			b.log.ErrorContext(ctx, "advisory lock failed", "lock", name, "err", err)
		}
		conn.Release()
		return nil, false
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock(hashtext('corral:' || $1), hashtext(current_schema()))", name); err != nil {
			b.log.ErrorContext(ctx, "advisory unlock failed", "lock", name, "err", err)
			_ = conn.Conn().Close(ctx)
		}
		conn.Release()
	}, true
}
