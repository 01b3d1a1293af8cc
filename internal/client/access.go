package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/corralhq/corral/internal/wire"
)

// Secure access: JIT policies and requests, SSH certificates, sessions and
// tunnels.

// SetJITPolicy creates or replaces the JIT policy at scope.
func (c *Client) SetJITPolicy(ctx context.Context, scope string, in wire.JITPolicySet) (wire.JITPolicy, error) {
	var p wire.JITPolicy
	err := c.do(ctx, http.MethodPut, withQuery("/api/v1/jitPolicy", url.Values{"scope": {scope}}), in, &p)
	return p, err
}

// GetJITPolicy reads the policy at exactly scope (IsNotFound when none).
func (c *Client) GetJITPolicy(ctx context.Context, scope string) (wire.JITPolicy, error) {
	var p wire.JITPolicy
	err := c.do(ctx, http.MethodGet, withQuery("/api/v1/jitPolicy", url.Values{"scope": {scope}}), nil, &p)
	return p, err
}

// DeleteJITPolicy removes the policy at scope.
func (c *Client) DeleteJITPolicy(ctx context.Context, scope string) error {
	return c.do(ctx, http.MethodDelete, withQuery("/api/v1/jitPolicy", url.Values{"scope": {scope}}), nil, nil)
}

// ListJITPolicies lists the policies at or below scope the caller may read.
func (c *Client) ListJITPolicies(ctx context.Context, scope string) ([]wire.JITPolicy, error) {
	var out wire.List[wire.JITPolicy]
	err := c.do(ctx, http.MethodGet, withQuery("/api/v1/jitPolicies", url.Values{"scope": {scope}}), nil, &out)
	return out.Value, err
}

// JITStatus is a machine's effective policy and its agent's report.
func (c *Client) JITStatus(ctx context.Context, sub, rg, name string) (wire.JITMachineStatus, error) {
	var st wire.JITMachineStatus
	err := c.do(ctx, http.MethodGet, machinePath(sub, rg, name)+"/jitStatus", nil, &st)
	return st, err
}

// RequestJIT asks for a just-in-time opening of a port of a machine.
func (c *Client) RequestJIT(ctx context.Context, sub, rg, name string, in wire.JITRequestCreate) (wire.JITRequest, error) {
	var r wire.JITRequest
	err := c.do(ctx, http.MethodPost, machinePath(sub, rg, name)+"/jitRequests", in, &r)
	return r, err
}

// GetJITRequest reads one request.
func (c *Client) GetJITRequest(ctx context.Context, id string) (wire.JITRequest, error) {
	var r wire.JITRequest
	err := c.do(ctx, http.MethodGet, "/api/v1/jitRequests/"+seg(id), nil, &r)
	return r, err
}

// ListJITRequests lists the requests at or below scope ("" is "/"),
// newest first; active keeps those waiting or open.
func (c *Client) ListJITRequests(ctx context.Context, scope string, active bool) ([]wire.JITRequest, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", scope)
	}
	if active {
		q.Set("active", "true")
	}
	return listAll[wire.JITRequest](ctx, c, withQuery("/api/v1/jitRequests", q), 0)
}

// JITRequestAction approves, rejects or revokes a request (action
// "approve", "reject" or "revoke").
func (c *Client) JITRequestAction(ctx context.Context, id, action string) (wire.JITRequest, error) {
	var r wire.JITRequest
	err := c.do(ctx, http.MethodPost, "/api/v1/jitRequests/"+seg(id)+"/"+action, nil, &r)
	return r, err
}

// SSHCertificate has the control plane sign a public key for a machine.
func (c *Client) SSHCertificate(ctx context.Context, sub, rg, name string, in wire.SSHCertificateRequest) (wire.SSHCertificate, error) {
	var out wire.SSHCertificate
	err := c.do(ctx, http.MethodPost, machinePath(sub, rg, name)+"/sshCertificate", in, &out)
	return out, err
}

// ListSSHSessions lists sessions at or below scope ("" is "/"), newest
// first; active keeps the running ones.
func (c *Client) ListSSHSessions(ctx context.Context, scope string, active bool) ([]wire.SSHSession, error) {
	q := url.Values{}
	if scope != "" {
		q.Set("scope", scope)
	}
	if active {
		q.Set("active", "true")
	}
	return listAll[wire.SSHSession](ctx, c, withQuery("/api/v1/sshSessions", q), 0)
}

// GetSSHSession reads one session.
func (c *Client) GetSSHSession(ctx context.Context, id string) (wire.SSHSession, error) {
	var x wire.SSHSession
	err := c.do(ctx, http.MethodGet, "/api/v1/sshSessions/"+seg(id), nil, &x)
	return x, err
}

// EndSSHSession ends a running session, whichever replica relays it.
func (c *Client) EndSSHSession(ctx context.Context, id string) (wire.SSHSession, error) {
	var x wire.SSHSession
	err := c.do(ctx, http.MethodPost, "/api/v1/sshSessions/"+seg(id)+"/end", nil, &x)
	return x, err
}

// TunnelPath is the path of a machine's tunnel to port; certificate, when
// set, names the SSH certificate the session logs in with.
func TunnelPath(sub, rg, name string, port int, certificate string) string {
	q := url.Values{"port": {strconv.Itoa(port)}}
	if certificate != "" {
		q.Set("certificate", certificate)
	}
	return withQuery(machinePath(sub, rg, name)+"/tunnel", q)
}
