package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/corralhq/corral/internal/wire"
)

// maxAPIResponse bounds what one in-process API answer may buffer (a page of
// 1,000 machines is well under 4 MiB).
const maxAPIResponse = 32 << 20

// apiCall is one UI request's view of the API: the handler to call, the
// browser request whose source address and host it carries, the bearer token
// and the correlation id every call of this UI request shares. It lives for
// one UI request and is not safe for concurrent use.
type apiCall struct {
	api           http.Handler
	browser       *http.Request
	token         string
	correlationID string
}

// get calls GET path?query and decodes a 2xx JSON answer into out.
func (c *apiCall) get(ctx context.Context, path string, query url.Values, out any) error {
	return c.do(ctx, http.MethodGet, path, query, nil, "", out)
}

// do calls the API in process. A non-2xx answer is returned as a
// *wire.APIError carrying the API's own code and message.
func (c *apiCall) do(ctx context.Context, method, path string, query url.Values, body []byte, contentType string, out any) error {
	u, err := url.Parse(path)
	if err != nil {
		return fmt.Errorf("api path %q: %w", path, err)
	}
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("build api request: %w", err)
	}
	// The API sees the browser's address, host and TLS state: its activity
	// log records the real source IP and its throttles key on it.
	req.RemoteAddr = c.browser.RemoteAddr
	req.Host = c.browser.Host
	req.TLS = c.browser.TLS
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "corral-webui")
	req.Header.Set("X-Correlation-ID", c.correlationID)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	rec := &recorder{header: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.overflow {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxAPIResponse)
	}
	if rec.status < 200 || rec.status > 299 {
		return decodeAPIError(rec.status, rec.body.Bytes())
	}
	if out == nil || rec.status == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// decodeAPIError reads the API's error body, or the OAuth2 error body of the
// token endpoint, into a *wire.APIError.
func decodeAPIError(status int, b []byte) error {
	var e wire.ErrorResponse
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return &wire.APIError{Status: status, ErrorBody: e.Error}
	}
	var oe wire.OAuthError
	if json.Unmarshal(b, &oe) == nil && oe.Error != "" {
		msg := oe.ErrorDescription
		if msg == "" {
			msg = oe.Error
		}
		return &wire.APIError{Status: status, ErrorBody: wire.ErrorBody{Code: oe.Error, Message: msg}}
	}
	return &wire.APIError{Status: status, ErrorBody: wire.ErrorBody{Code: http.StatusText(status),
		Message: strings.TrimSpace("the API answered " + http.StatusText(status))}}
}

// recorder is the http.ResponseWriter of an in-process API call.
type recorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(b) > maxAPIResponse {
		r.overflow = true
		return 0, fmt.Errorf("api answer larger than %d bytes", maxAPIResponse)
	}
	return r.body.Write(b)
}

// apiPath joins escaped path segments under /api/v1.
func apiPath(segments ...string) string {
	var b strings.Builder
	b.WriteString("/api/v1")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// skipTokenOf extracts the opaque $skipToken from an API nextLink.
func skipTokenOf(nextLink string) string {
	if nextLink == "" {
		return ""
	}
	u, err := url.Parse(nextLink)
	if err != nil {
		return ""
	}
	return u.Query().Get("$skipToken")
}
