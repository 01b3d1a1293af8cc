// Package replicas lets several control-plane replicas share one PostgreSQL
// store: a change made on one replica must reach agent streams held by
// another, and singleton jobs (the status sweeper) must run on one replica
// at a time. Both use PostgreSQL itself — LISTEN/NOTIFY and advisory locks —
// so there is no home-made consensus.
//
// With SQLite there is one server; the local hub is the whole bus.
package replicas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/wire"
)

// Channel is the PostgreSQL notification channel of push messages.
const Channel = "corral_push"

// sweeperLockKey is the advisory lock id of the status sweeper.
const sweeperLockKey = 0x636f7272616c01 // "corral" + 1

// Notifier delivers push messages to whichever replica holds the stream.
type Notifier interface {
	Notify(machineID string, gen int64)
	Goodbye(machineID, reason string)
}

// Local is the single-server notifier: the local hub.
type Local struct{ Hub *push.Hub }

// Notify implements Notifier.
func (l Local) Notify(id string, gen int64) { l.Hub.Notify(id, gen) }

// Goodbye implements Notifier.
func (l Local) Goodbye(id, reason string) { l.Hub.Goodbye(id, reason) }

// PGBus fans push messages out through LISTEN/NOTIFY. Every replica,
// including the sender, receives each message and delivers it to its own
// hub if it holds the machine's stream.
type PGBus struct {
	DSN string
	Hub *push.Hub
	Log *slog.Logger

	mu     sync.Mutex
	sender *pgx.Conn // NOTIFY and advisory locks
}

// Notify implements Notifier.
func (b *PGBus) Notify(id string, gen int64) {
	b.publish("sync " + id + " " + strconv.FormatInt(gen, 10))
}

// Goodbye implements Notifier.
func (b *PGBus) Goodbye(id, reason string) { b.publish("bye " + id + " " + reason) }

func (b *PGBus) publish(payload string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.withSender(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, payload)
		return err
	})
	if err != nil {
		// Deliver locally at least; remote agents catch up on reconnect.
		b.Log.Error("push notify failed; delivering locally only", "err", err)
		b.deliver(payload)
	}
}

func (b *PGBus) withSender(ctx context.Context, f func(*pgx.Conn) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sender == nil || b.sender.IsClosed() {
		c, err := pgx.Connect(ctx, b.DSN)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		b.sender = c
	}
	err := f(b.sender)
	if err != nil && b.sender.PgConn().IsClosed() {
		b.sender = nil
	}
	return err
}

// Run listens until ctx is done, reconnecting on failure.
func (b *PGBus) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := b.listen(ctx)
		if ctx.Err() != nil {
			break
		}
		b.Log.Warn("push listener lost its connection; reconnecting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	b.mu.Lock()
	if b.sender != nil {
		_ = b.sender.Close(context.Background())
	}
	b.mu.Unlock()
}

func (b *PGBus) listen(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, b.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		b.deliver(n.Payload)
	}
}

func (b *PGBus) deliver(payload string) {
	kind, rest, _ := strings.Cut(payload, " ")
	id, arg, _ := strings.Cut(rest, " ")
	switch kind {
	case "sync":
		gen, err := strconv.ParseInt(arg, 10, 64)
		if err == nil {
			b.Hub.Notify(id, gen)
		}
	case "bye":
		b.Hub.Send(id, wire.StreamMessage{Type: wire.MsgGoodbye, Reason: arg})
	}
}

// SweeperLock takes the sweeper's advisory lock if no other replica holds
// it. The lock lives on the sender connection's session and is released
// after the sweep.
func (b *PGBus) SweeperLock(ctx context.Context) (release func(), ok bool) {
	var got bool
	err := b.withSender(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", sweeperLockKey).Scan(&got)
	})
	if err != nil {
		b.Log.Error("sweeper lock failed", "err", err)
		return nil, false
	}
	if !got {
		return nil, false
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := b.withSender(ctx, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SELECT pg_advisory_unlock($1)", sweeperLockKey)
			return err
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			b.Log.Error("sweeper unlock failed", "err", err)
		}
	}, true
}
