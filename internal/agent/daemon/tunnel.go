package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/wire"
)

// tunnels are the tunnels open on this agent, so that a local
// configuration change that forbids incoming connections ends them.
type tunnels struct {
	mu   sync.Mutex
	open map[string]tunnelEnd
	wg   sync.WaitGroup
}

type tunnelEnd struct {
	port  int
	close func()
}

// tunnelRefusal says why the local configuration refuses a tunnel to port
// now, or "" if it allows it.
func tunnelRefusal(cfg localconfig.Effective, port int) string {
	switch {
	case cfg.Damaged != nil:
		return fmt.Sprintf("the local configuration of this machine cannot be read (%v)", cfg.Damaged)
	case !cfg.IncomingEnabled:
		return "incoming connections are off on this machine (incomingconnections.enabled=false)"
	case !slices.Contains(cfg.IncomingPorts, port):
		return fmt.Sprintf("port %d is not in incomingconnections.ports on this machine", port)
	}
	return ""
}

// openTunnel serves one tunnel the control plane asked for: the local
// configuration as it is now decides, then the agent connects
// 127.0.0.1:port — never another address — and splices it to the tunnel
// it opens on its connection to the control plane.
func (d *Daemon) openTunnel(ctx context.Context, t wire.TunnelRequest) {
	if !wire.ValidResourceName(t.ID) {
		d.log.WarnContext(ctx, "tunnel with an invalid id ignored")
		return
	}
	var verdict wire.TunnelVerdict
	var local net.Conn
	if t.Port < 1 || t.Port > 65535 {
		verdict.Error = fmt.Sprintf("port %d is not a port number", t.Port)
	} else if why := tunnelRefusal(d.currentConfig(), t.Port); why != "" {
		verdict.Error = why
	} else {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(t.Port)))
		if err != nil {
			verdict.Error = fmt.Sprintf("nothing accepts connections on port %d of this machine (%v)", t.Port, err)
		} else {
			local = c
		}
	}
	tun, err := d.api.AgentTunnel(ctx, t.ID, verdict)
	if err != nil {
		d.log.WarnContext(ctx, "open tunnel", "tunnel", t.ID, "err", err)
		if local != nil {
			local.Close()
		}
		return
	}
	if verdict.Error != "" {
		d.log.InfoContext(ctx, "tunnel refused", "tunnel", t.ID, "port", t.Port, "reason", verdict.Error)
		tun.Close()
		return
	}
	d.log.InfoContext(ctx, "tunnel open", "tunnel", t.ID, "port", t.Port)
	end := func() { tun.Close(); local.Close() }
	d.tun.mu.Lock()
	if d.tun.open == nil {
		d.tun.open = map[string]tunnelEnd{}
	}
	d.tun.open[t.ID] = tunnelEnd{port: t.Port, close: end}
	d.tun.mu.Unlock()
	defer func() {
		d.tun.mu.Lock()
		delete(d.tun.open, t.ID)
		d.tun.mu.Unlock()
		end()
		d.log.InfoContext(ctx, "tunnel closed", "tunnel", t.ID)
	}()
	stop := context.AfterFunc(ctx, end)
	defer stop()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(local, tun)
		if tc, ok := local.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(tun, local)
		_ = tun.CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
}

// closeForbiddenTunnels ends the open tunnels the new local configuration
// no longer allows.
func (d *Daemon) closeForbiddenTunnels(cfg localconfig.Effective) {
	d.tun.mu.Lock()
	defer d.tun.mu.Unlock()
	for id, t := range d.tun.open {
		if why := tunnelRefusal(cfg, t.port); why != "" {
			d.log.Warn("closing a tunnel the local configuration now forbids", "tunnel", id, "reason", why)
			t.close()
		}
	}
}
