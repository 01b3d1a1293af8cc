package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// Tunnel is a byte stream both ways over one HTTP/2 stream of the client's
// connection.
type Tunnel struct {
	pw     *io.PipeWriter
	body   io.ReadCloser
	cancel context.CancelFunc
	once   sync.Once
}

// Read reads what the other side sent.
func (t *Tunnel) Read(p []byte) (int, error) { return t.body.Read(p) }

// Write sends p to the other side.
func (t *Tunnel) Write(p []byte) (int, error) { return t.pw.Write(p) }

// CloseWrite tells the other side nothing more will be written.
func (t *Tunnel) CloseWrite() error { return t.pw.Close() }

// Close ends the tunnel both ways.
func (t *Tunnel) Close() error {
	t.once.Do(func() {
		t.pw.Close()
		t.cancel()
		t.body.Close()
	})
	return nil
}

// openStream POSTs to path with a request body that stays open (first
// writing first, if not nil; ending after it with onlyFirst) and returns the
// full-duplex stream once the answer's headers arrived. It needs HTTP/2 on
// the way.
func (c *Client) openStream(ctx context.Context, path string, header http.Header, first []byte, onlyFirst bool) (*Tunnel, error) {
	u, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel) // ctx ends the stream only until it is open
	pr, pw := io.Pipe()
	context.AfterFunc(sctx, func() { pw.CloseWithError(errors.New("tunnel closed")) })
	req, err := http.NewRequestWithContext(sctx, http.MethodPost, u, pr)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if first != nil {
		go func() {
			if _, err := pw.Write(first); err == nil && onlyFirst {
				pw.Close()
			}
		}()
	}
	hc := &http.Client{Transport: c.hc.Transport, CheckRedirect: c.hc.CheckRedirect}
	resp, err := hc.Do(req)
	stop()
	if err != nil {
		cancel()
		return nil, transportError(req, err)
	}
	if resp.StatusCode != http.StatusOK {
		err := decodeError(resp)
		resp.Body.Close()
		cancel()
		return nil, err
	}
	if resp.ProtoMajor < 2 {
		resp.Body.Close()
		cancel()
		return nil, errors.New("a tunnel needs HTTP/2 to the control plane; something on the way speaks only HTTP/1.1")
	}
	return &Tunnel{pw: pw, body: resp.Body, cancel: cancel}, nil
}

// AgentTunnel opens the agent's side of tunnel id (wire.PathTunnels) and
// sends verdict first. A refusal (verdict.Error set) is the whole request:
// its body ends after the verdict, and AgentTunnel returns (the tunnel
// closed) once the server has answered to the end, or after refusalWait,
// so the verdict is never overtaken by the reset of the stream.
func (c *Client) AgentTunnel(ctx context.Context, id string, verdict wire.TunnelVerdict) (*Tunnel, error) {
	b, err := json.Marshal(verdict)
	if err != nil {
		return nil, err
	}
	refusal := verdict.Error != ""
	t, err := c.openStream(ctx, wire.PathTunnels+url.PathEscape(id), nil, append(b, '\n'), refusal)
	if err != nil {
		return nil, fmt.Errorf("open tunnel %s: %w", id, err)
	}
	if refusal {
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, io.LimitReader(t.body, 1<<16))
			close(done)
		}()
		timer := time.NewTimer(refusalWait)
		select {
		case <-done:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		t.Close()
	}
	return t, nil
}

// refusalWait bounds how long a refused tunnel waits for the server to
// take its verdict.
const refusalWait = 10 * time.Second

// OpenStream opens a full-duplex stream on path (an API route that takes
// one, e.g. a machine's tunnel): it is how `corral ssh-proxy` reaches a
// machine's port.
func (c *Client) OpenStream(ctx context.Context, path string) (*Tunnel, error) {
	return c.openStream(ctx, path, nil, nil, false)
}
