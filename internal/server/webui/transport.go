package webui

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/corralhq/corral/internal/client"
)

// maxAPIResponse bounds what one in-process API answer may buffer: the
// client's own cap.
const maxAPIResponse = client.MaxResponseBytes

// inProcess is the http.RoundTripper of the UI's API client: it serves each
// request with the API handler in this process, as if it came from the
// browser request — its source address, host and TLS state, so the API's
// activity log records the real source IP and its throttles key on it —
// with the correlation id every call of one UI request shares. It lives for
// one UI request.
type inProcess struct {
	api           http.Handler
	browser       *http.Request
	correlationID string
}

// RoundTrip implements http.RoundTripper.
func (t *inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RemoteAddr = t.browser.RemoteAddr
	r.Host = t.browser.Host
	r.TLS = t.browser.TLS
	r.RequestURI = r.URL.RequestURI()
	r.Header.Set("X-Correlation-ID", t.correlationID)
	rec := &recorder{header: http.Header{}}
	t.api.ServeHTTP(rec, r)
	if req.Body != nil {
		_ = req.Body.Close()
	}
	if rec.overflow {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", req.Method, req.URL.Path, maxAPIResponse)
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status: strconv.Itoa(rec.status) + " " + http.StatusText(rec.status), StatusCode: rec.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// apiFor is the API client of one UI request, acting with token ("" for
// the token endpoint).
func (h *Handler) apiFor(r *http.Request, token string) *client.Client {
	t := &inProcess{api: h.cfg.API, browser: r, correlationID: correlationID(r)}
	c, err := client.New("https://corral.in-process", client.WithHTTPClient(&http.Client{Transport: t}),
		client.WithToken(token), client.WithUserAgent("corral-webui"))
	if err != nil {
		panic(err) // the URL is a constant: cannot happen
	}
	return c
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

// withQuery appends q to an API path.
func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
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
