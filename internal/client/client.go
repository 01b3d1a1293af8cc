package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/capped"
	"github.com/corralhq/corral/internal/wire"
)

// Size caps of response bodies read by the client.
const (
	// MaxResponseBytes caps a successful response body.
	MaxResponseBytes = 32 << 20
	// MaxErrorBytes caps an error response body.
	MaxErrorBytes = 64 << 10
	// MaxCABytes caps a CA file.
	MaxCABytes = 1 << 20
)

// DefaultTimeout is the per-request timeout unless WithTimeout says otherwise.
const DefaultTimeout = 60 * time.Second

// Client calls one Corral control plane.
type Client struct {
	base      *url.URL
	hc        *http.Client
	token     string
	userAgent string
}

type config struct {
	caPEM     []byte
	token     string
	hc        *http.Client
	timeout   time.Duration
	userAgent string
}

// Option configures New.
type Option func(*config) error

// WithCAFile trusts only the PEM certificates in path (instead of the system roots).
func WithCAFile(path string) Option {
	return func(c *config) error {
		b, err := capped.ReadFile(path, MaxCABytes)
		if err != nil {
			return fmt.Errorf("read CA file: %w", err)
		}
		c.caPEM = b
		return nil
	}
}

// WithCAPEM trusts only the given PEM certificates (instead of the system roots).
// An empty pem means the system roots.
func WithCAPEM(pem []byte) Option {
	return func(c *config) error { c.caPEM = pem; return nil }
}

// WithToken sets the bearer token sent with every API request.
func WithToken(token string) Option {
	return func(c *config) error { c.token = token; return nil }
}

// WithHTTPClient uses hc as is (its TLS settings win over WithCAFile/WithCAPEM).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error { c.hc = hc; return nil }
}

// WithTimeout sets the per-request timeout (0 = none).
func WithTimeout(d time.Duration) Option {
	return func(c *config) error { c.timeout = d; return nil }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *config) error { c.userAgent = ua; return nil }
}

// New returns a client of the control plane at server, an https:// URL (a bare
// host:port means https).
func New(server string, opts ...Option) (*Client, error) {
	cfg := config{timeout: DefaultTimeout, userAgent: "corral-client"}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	base, err := ParseServerURL(server)
	if err != nil {
		return nil, err
	}
	hc := cfg.hc
	if hc == nil {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if len(bytes.TrimSpace(cfg.caPEM)) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(cfg.caPEM) {
				return nil, errors.New("the CA bundle holds no PEM certificate")
			}
			tlsCfg.RootCAs = pool
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		hc = &http.Client{Transport: tr, Timeout: cfg.timeout}
	}
	return &Client{base: base, hc: hc, token: cfg.token, userAgent: cfg.userAgent}, nil
}

// ParseServerURL validates a control plane address and returns it without a
// trailing slash. A bare host[:port] means https.
func ParseServerURL(server string) (*url.URL, error) {
	s := strings.TrimSpace(server)
	if s == "" {
		return nil, errors.New("server URL is empty")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid server URL %q", server)
	}
	if u.Scheme == "http" {
		return nil, fmt.Errorf("invalid server URL %q: Corral speaks only HTTPS; use https://%s", server, u.Host)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("invalid server URL %q: scheme must be https", server)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid server URL %q: no host", server)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("invalid server URL %q: only scheme, host, port and path are allowed", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Server returns the base URL of the control plane.
func (c *Client) Server() string { return c.base.String() }

// resolve turns an API path ("/api/v1/...", optionally with a query) into a URL
// on the server. It refuses absolute URLs so a nextLink cannot redirect the
// token to another host.
func (c *Client) resolve(pathAndQuery string) (string, error) {
	ref, err := url.Parse(pathAndQuery)
	if err != nil || ref.IsAbs() || ref.Host != "" || !strings.HasPrefix(ref.Path, "/") {
		return "", fmt.Errorf("refusing to follow link %q: not a path on the server", pathAndQuery)
	}
	u := *c.base
	u.Path = c.base.Path + ref.Path
	u.RawPath = ""
	if ref.RawPath != "" {
		u.RawPath = c.base.EscapedPath() + ref.RawPath
	}
	u.RawQuery = ref.RawQuery
	return u.String(), nil
}

// do sends a request with an optional JSON body and decodes a JSON answer into
// out (if non-nil). want lists the accepted statuses (default: any 2xx).
func (c *Client) do(ctx context.Context, method, pathAndQuery string, in, out any) error {
	var body io.Reader
	switch v := in.(type) {
	case nil:
	case json.RawMessage:
		// Sent as is: the caller keeps the only copy and may clear it
		// afterwards (protected settings).
		body = bytes.NewReader(v)
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	target, err := c.resolve(pathAndQuery)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.send(req, out)
}

func (c *Client) send(req *http.Request, out any) error {
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportError(req, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBytes))
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", req.Method, req.URL.Path, err)
	}
	if len(b) > MaxResponseBytes {
		return fmt.Errorf("%s %s: response larger than %d bytes", req.Method, req.URL.Path, MaxResponseBytes)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: invalid JSON response: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// transportError describes a failed round trip without echoing anything but
// the method and URL (which never hold secrets).
func transportError(req *http.Request, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var uaErr x509.UnknownAuthorityError
	if errors.As(err, &uaErr) {
		return fmt.Errorf("%s %s: the server certificate is not trusted: pass the server CA with --ca-file (or CORRAL_CA_FILE)", req.Method, req.URL.Redacted())
	}
	var hostErr x509.HostnameError
	if errors.As(err, &hostErr) && hostErr.Certificate != nil {
		names := append([]string{}, hostErr.Certificate.DNSNames...)
		for _, ip := range hostErr.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		return fmt.Errorf("%s %s: the server certificate is for %s, not %s: start the server with --host %s (its certificate then covers that name) or connect with one of those names",
			req.Method, req.URL.Redacted(), strings.Join(names, ", "), hostErr.Host, hostErr.Host)
	}
	return fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
}

// decodeError turns a non-2xx response into *wire.APIError. Both the API error
// shape and the OAuth2 error shape are understood; anything else becomes a
// generic error with the HTTP status.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBytes))
	apiErr := &wire.APIError{Status: resp.StatusCode, RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var er wire.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Error.Code != "" {
		apiErr.ErrorBody = er.Error
		return apiErr
	}
	var oe wire.OAuthError
	if json.Unmarshal(b, &oe) == nil && oe.Error != "" {
		apiErr.Code = oe.Error
		apiErr.Message = oauthMessage(oe)
		return apiErr
	}
	apiErr.Code = fmt.Sprintf("HTTP%d", resp.StatusCode)
	apiErr.Message = "unexpected response from the server: " + http.StatusText(resp.StatusCode)
	return apiErr
}

func oauthMessage(oe wire.OAuthError) string {
	if oe.ErrorDescription != "" {
		return oe.ErrorDescription
	}
	switch oe.Error {
	case wire.CodeInvalidGrant:
		return "the credentials were refused"
	case wire.CodeInvalidClient:
		return "client authentication failed"
	case "unsupported_grant_type":
		return "the server does not support this sign-in method"
	case "invalid_request":
		return "the sign-in request was incomplete"
	}
	return "the sign-in failed"
}

// IsNotFound reports whether err is an API 404.
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsConflict reports whether err is an API 409.
func IsConflict(err error) bool { return statusOf(err) == http.StatusConflict }

func statusOf(err error) int {
	var ae *wire.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// listAll follows nextLink from path, collecting up to max items (0 = all).
func listAll[T any](ctx context.Context, c *Client, path string, max int) ([]T, error) {
	out := []T{}
	next := path
	for next != "" {
		var page wire.List[T]
		if err := c.do(ctx, http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Value...)
		if max > 0 && len(out) >= max {
			return out[:max], nil
		}
		if page.NextLink == next {
			return nil, fmt.Errorf("server returned a nextLink that points at the same page")
		}
		next = page.NextLink
	}
	return out, nil
}

func seg(s string) string { return url.PathEscape(s) }

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// MaxRetryAfter caps what a server's Retry-After can make a client wait.
const MaxRetryAfter = 10 * time.Minute

// ParseRetryAfter reads a Retry-After header (delay-seconds or an HTTP date),
// capped at MaxRetryAfter; zero when absent or unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		// Bounded before the multiplication, which would wrap a huge n
		// around to a short wait.
		d = time.Duration(min(max(n, 0), int(MaxRetryAfter/time.Second)+1)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}
