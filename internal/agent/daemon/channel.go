package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/corralhq/corral/internal/client"
)

// webSocketFor is how long an agent that had to fall back to the WebSocket
// keeps using it before it tries HTTP/2 again.
const webSocketFor = time.Hour

// dialChannel opens the push channel: over HTTP/2, on the same connection as
// every other request of the agent, or — where the server or a proxy on the
// way speaks only HTTP/1.1 — over a WebSocket.
func (d *Daemon) dialChannel(ctx context.Context) (client.Channel, error) {
	if until := d.wsUntil.Load(); until == 0 || time.Now().UnixNano() > until {
		ch, err := d.api.DialChannel(ctx)
		if !errors.Is(err, client.ErrNeedsWebSocket) {
			return ch, err
		}
		d.log.InfoContext(ctx, "the control plane cannot be reached over HTTP/2; using a WebSocket for the push channel", "err", err)
		d.wsUntil.Store(time.Now().Add(webSocketFor).UnixNano())
	}
	return d.api.DialWebSocket(ctx)
}
