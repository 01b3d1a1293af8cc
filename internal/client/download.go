package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Download GETs a raw body (not JSON) of at most max bytes from path.
func (c *Client) Download(ctx context.Context, path string, max int64) ([]byte, error) {
	target, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, transportError(req, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	if resp.ContentLength > max {
		return nil, fmt.Errorf("GET %s: %d bytes is more than the %d allowed", req.URL.Path, resp.ContentLength, max)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("GET %s: more than the %d bytes allowed", req.URL.Path, max)
	}
	return b, nil
}
