package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// streamLoop keeps the push channel up, reconnecting with full-jitter
// exponential backoff (1s doubling to MaxBackoff; reset after a welcome).
// It returns only when ctx ends (nil) or the server says goodbye (ErrRevoked).
func (d *Daemon) streamLoop(ctx context.Context) error {
	attempt := 0
	for {
		welcomed, err := d.streamOnce(ctx)
		if errors.Is(err, ErrRevoked) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if welcomed {
			attempt = 0
		}
		d.status.update(func(s *Status) {
			s.Connected = false
			if err != nil {
				s.LastError, s.LastErrorAt = err.Error(), d.cfg.Clock()
			}
		})
		if err != nil {
			d.log.WarnContext(ctx, "push channel down; reconnecting", "err", err)
		}
		if !sleep(ctx, retryDelay(err, attempt, d.cfg.MaxBackoff)) {
			return nil
		}
		attempt++
	}
}

// Heartbeat interval bounds, whatever the control plane asks for.
const (
	MinHeartbeatInterval = 5 * time.Second
	MaxHeartbeatInterval = 10 * time.Minute
)

// retryDelay is how long to wait before retrying after err: when the
// server said (Retry-After, on a refusal it gives under load), at least
// that long plus up to as much again at random, so that agents refused
// together do not come back together; otherwise backoff.
func retryDelay(err error, attempt int, maxDelay time.Duration) time.Duration {
	var ae *wire.APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return ae.RetryAfter + time.Duration(rand.Int64N(int64(ae.RetryAfter)))
	}
	return backoff(attempt, maxDelay)
}

// backoff is a full-jitter delay for the attempt-th retry.
func backoff(attempt int, maxDelay time.Duration) time.Duration {
	ceil := time.Second << min(attempt, 10)
	if ceil > maxDelay || ceil <= 0 {
		ceil = maxDelay
	}
	return time.Duration(rand.Int64N(int64(ceil))) + 100*time.Millisecond
}

// streamOnce runs one connection; welcomed says whether the server accepted it.
func (d *Daemon) streamOnce(ctx context.Context) (welcomed bool, err error) {
	ch, err := d.dialChannel(ctx)
	d.dialedOnce.Do(func() { close(d.dialed) })
	if err != nil {
		return false, err
	}
	defer ch.Close()

	hello := wire.StreamMessage{Type: wire.MsgHello, ProtocolVersion: wire.ProtocolVersion, AgentVersion: d.cfg.Version}
	if err := ch.Write(ctx, hello); err != nil {
		return false, err
	}
	readCtx, cancelRead := context.WithTimeout(ctx, 30*time.Second)
	welcome, err := ch.Read(readCtx)
	cancelRead()
	if err != nil {
		return false, fmt.Errorf("waiting for welcome: %w", closeReason(err))
	}
	if welcome.Type == wire.MsgGoodbye {
		return false, fmt.Errorf("%w: %s", ErrRevoked, welcome.Reason)
	}
	if welcome.Type != wire.MsgWelcome {
		return false, fmt.Errorf("expected welcome, got %q (%s)", welcome.Type, welcome.Reason)
	}
	if welcome.HeartbeatInterval > 0 {
		// Clamped: a control plane asking for a beat every microsecond
		// must not turn the agent into a disk and network load.
		d.heartbeatInterval.Store(int64(min(max(time.Duration(welcome.HeartbeatInterval), MinHeartbeatInterval), MaxHeartbeatInterval)))
	}
	now := d.cfg.Clock()
	d.status.update(func(s *Status) { s.Connected, s.ConnectedSince, s.LastHeartbeat, s.LastError = true, now, now, "" })
	d.log.InfoContext(ctx, "push channel connected", "generation", welcome.Generation, "transport", ch.Transport())
	// Catch up: whatever changed while we were away, and reports waiting.
	if welcome.Generation != d.status.get().AppliedGeneration {
		kick(d.fetch)
	}
	d.out.Kick()
	kick(d.welcomed)

	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	hbErr := make(chan error, 1)
	go func() { hbErr <- d.heartbeats(streamCtx, ch) }()
	msgs, readErr := make(chan wire.StreamMessage), make(chan error, 1)
	go func() {
		for {
			msg, err := ch.Read(streamCtx)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- msg:
			case <-streamCtx.Done():
				return
			}
		}
	}()
	for {
		var msg wire.StreamMessage
		select {
		case <-ctx.Done():
			ch.End("agent stopping")
			return true, nil
		case err := <-hbErr:
			return true, err
		case err := <-readErr:
			return true, closeReason(err)
		case msg = <-msgs:
		}
		switch msg.Type {
		case wire.MsgSync:
			d.log.DebugContext(ctx, "sync", "generation", msg.Generation)
			kick(d.fetch)
		case wire.MsgPing:
			_ = ch.Write(streamCtx, wire.StreamMessage{Type: wire.MsgPong, Seq: msg.Seq})
		case wire.MsgTunnel:
			if msg.Tunnel != nil {
				t := *msg.Tunnel
				d.tun.wg.Go(func() { d.openTunnel(ctx, t) })
			}
		case wire.MsgClose:
			return true, fmt.Errorf("the server closed the push channel: %s", msg.Reason)
		case wire.MsgGoodbye:
			ch.End("goodbye")
			return true, fmt.Errorf("%w: %s", ErrRevoked, msg.Reason)
		}
	}
}

func (d *Daemon) heartbeats(ctx context.Context, ch client.Channel) error {
	for {
		if !sleep(ctx, time.Duration(d.heartbeatInterval.Load())) {
			return nil
		}
		if err := ch.Write(ctx, wire.StreamMessage{Type: wire.MsgHeartbeat, AgentVersion: d.cfg.Version}); err != nil {
			return fmt.Errorf("send heartbeat: %w", err)
		}
		now := d.cfg.Clock()
		d.status.update(func(s *Status) { s.LastHeartbeat = now; s.PendingReports = d.out.Len() })
	}
}

func closeReason(err error) error { return client.CloseReason(err) }
