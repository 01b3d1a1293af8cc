package localconfig

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/agentmux"
)

// Proxy is the proxy for r under the local configuration, for
// http.Transport.Proxy: proxy.url unless r's host matches proxy.bypass (a
// host, a ".domain" suffix, an IP or a CIDR); the environment's proxy
// settings when proxy.url is unset.
func (cfg *Effective) Proxy(r *http.Request) (*url.URL, error) {
	if cfg == nil || cfg.ProxyURL == "" {
		return http.ProxyFromEnvironment(r)
	}
	host := r.URL.Hostname()
	ip := net.ParseIP(host)
	for _, b := range cfg.ProxyBypass {
		if _, n, err := net.ParseCIDR(b); err == nil {
			if ip != nil && n.Contains(ip) {
				return nil, nil
			}
			continue
		}
		if strings.EqualFold(b, host) || strings.HasPrefix(b, ".") && strings.HasSuffix(strings.ToLower(host), strings.ToLower(b)) {
			return nil, nil
		}
	}
	return url.Parse(cfg.ProxyURL)
}

// NewHTTPClient is the agent's client for the control plane: every
// outbound call (onboarding, the daemon, check, disconnect) goes through
// proxy (normally an Effective's Proxy, which honours proxy.url/proxy.bypass)
// with tlsCfg's trust and client certificate. It never follows a redirect:
// the control plane has no reason to send one, and following it would let a
// compromised one aim the agent's requests (and their error text, reported
// back) at services only this machine can reach.
//
// The one HTTP/2 connection is checked with a PING after PingAfterSilence
// without a frame from the server and closed when none comes back within
// PingTimeout: a connection the network lost silently (a link cut, a NAT or
// load balancer that forgot it) is then given up within a minute, and the
// push channel reconnects, instead of waiting out TCP's retransmissions
// (about 15 minutes) while pushes go nowhere.
//
// The connection speaks agentmux (the agent's own protocol, negotiated in
// the TLS handshake) when it goes straight to a server that offers it, and
// HTTP/2 otherwise: through a proxy, or to a server (or a TLS-terminating
// load balancer) that does not offer it. Both hold everything on one
// connection; agentmux costs the server less memory per idle agent.
func NewHTTPClient(tlsCfg *tls.Config, proxy func(*http.Request) (*url.URL, error)) *http.Client {
	h2 := &http.Transport{
		TLSClientConfig: tlsCfg, Proxy: proxy, ForceAttemptHTTP2: true,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 15 * time.Second,
		HTTP2: &http.HTTP2Config{SendPingTimeout: PingAfterSilence, PingTimeout: PingTimeout},
	}
	return &http.Client{Timeout: 60 * time.Second, CheckRedirect: RefuseRedirect, Transport: &agentmux.Transport{
		TLSClientConfig: tlsCfg, Proxy: proxy, Fallback: h2,
		HandshakeTimeout: 15 * time.Second, IdleTimeout: 90 * time.Second,
		PingAfterSilence: PingAfterSilence, PingTimeout: PingTimeout,
	}}
}

// Liveness of the agent's connection (see NewHTTPClient).
const (
	PingAfterSilence = 30 * time.Second
	PingTimeout      = 15 * time.Second
)

// ErrRedirect is returned for any redirect the control plane answers with.
var ErrRedirect = errors.New("the control plane answered with a redirect, which the agent never follows")

// RefuseRedirect is an http.Client CheckRedirect that follows no redirect.
func RefuseRedirect(*http.Request, []*http.Request) error { return ErrRedirect }
