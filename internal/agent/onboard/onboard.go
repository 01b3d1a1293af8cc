// Package onboard connects a machine to a control plane (`corral-agent
// connect`): it establishes trust in the server (a CA file, a pinned CA
// fingerprint, or the system roots), obtains an onboarding token (service
// principal, access token or an operator-approved device code), makes the
// machine's key pair locally, sends a CSR with the inventory and the local
// configuration, and stores the identity the server signed.
//
// The onboarding credential is used for this one call and never stored or
// logged; only the machine certificate is kept.
package onboard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/agent/cloud"
	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/agent/identity"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/wire"
)

// Credential kinds.
const (
	CredServicePrincipal = "service-principal"
	CredAccessToken      = "access-token"
	CredDeviceCode       = "device-code"
)

// Options describe one onboarding.
type Options struct {
	Server         string
	SubscriptionID string
	ResourceGroup  string
	Name           string // default: the host name
	Tags           map[string]string

	// Exactly one credential.
	ServicePrincipalID     string
	ServicePrincipalSecret string // read from a file by the CLI, never argv
	AccessToken            string
	UseDeviceCode          bool

	CAFile        string // PEM of the control plane CA
	CAPEM         []byte // alternative to CAFile (corral dev)
	CAFingerprint string // sha256:HEX of the CA certificate

	StateDir string
	Host     hostinfo.Host
	IMDS     string
	Version  string
	// Prompt receives the device-code instructions for the operator, and
	// notices that a busy control plane asked it to wait.
	Prompt  io.Writer
	Timeout time.Duration // whole onboarding; default 5 minutes (device code waits)
}

var fingerprintRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Validate checks the options before anything touches the network.
func (o *Options) Validate() error {
	var errs []error
	if o.Server == "" {
		errs = append(errs, errors.New("--server is required"))
	} else if _, err := client.ParseServerURL(o.Server); err != nil {
		errs = append(errs, fmt.Errorf("--server: %w", err))
	}
	if o.SubscriptionID == "" {
		errs = append(errs, errors.New("--subscription-id is required"))
	}
	if o.ResourceGroup == "" {
		errs = append(errs, errors.New("--resource-group is required"))
	}
	n := 0
	if o.ServicePrincipalID != "" || o.ServicePrincipalSecret != "" {
		n++
		if o.ServicePrincipalID == "" || o.ServicePrincipalSecret == "" {
			errs = append(errs, errors.New("--service-principal-id and --service-principal-secret-file go together"))
		}
	}
	if o.AccessToken != "" {
		n++
	}
	if o.UseDeviceCode {
		n++
	}
	if n != 1 {
		errs = append(errs, errors.New("give exactly one credential: --service-principal-id with --service-principal-secret-file, --access-token-file, or --use-device-code"))
	}
	if o.CAFile != "" && o.CAFingerprint != "" {
		errs = append(errs, errors.New("--ca-file and --ca-fingerprint are alternatives; give one"))
	}
	if o.CAFingerprint != "" {
		o.CAFingerprint = strings.ToLower(strings.ReplaceAll(o.CAFingerprint, ":", ""))
		o.CAFingerprint = strings.Replace(o.CAFingerprint, "sha256", "sha256:", 1)
		if !fingerprintRE.MatchString(o.CAFingerprint) {
			errs = append(errs, errors.New("--ca-fingerprint must be sha256: followed by 64 hex digits, as `corral server` prints it"))
		}
	}
	if o.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	return errors.Join(errs...)
}

// ParseTags reads "k=v,k2=v2".
func ParseTags(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--tags: %q is not key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--tags: key %q given twice", k)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

// Connect onboards the machine and stores its identity in o.StateDir.
func Connect(ctx context.Context, o Options) (identity.State, error) {
	if err := o.Validate(); err != nil {
		return identity.State{}, err
	}
	if identity.Exists(o.StateDir) {
		id, err := identity.Load(o.StateDir)
		if err == nil && id.State.Revoked == "" {
			return identity.State{}, fmt.Errorf("this machine is already connected as %s: run \"corral-agent disconnect\" first", id.State.ResourceID)
		}
		// A revoked or damaged identity is replaced.
		_ = identity.Remove(o.StateDir)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	server, err := client.ParseServerURL(o.Server)
	if err != nil {
		return identity.State{}, err
	}
	stored, err := localconfig.Load(o.StateDir)
	if err != nil {
		return identity.State{}, err
	}
	cfg := stored.Effective()
	caPEM := o.CAPEM
	switch {
	case o.CAFile != "":
		caPEM, err = os.ReadFile(o.CAFile)
		if err != nil {
			return identity.State{}, fmt.Errorf("--ca-file: %w", err)
		}
	case o.CAFingerprint != "":
		caPEM, err = identity.CAByFingerprint(ctx, server.String(), o.CAFingerprint, cfg.Proxy)
		if err != nil {
			return identity.State{}, err
		}
	}
	pool, err := identity.RootPool(caPEM)
	if err != nil {
		return identity.State{}, err
	}
	hc := localconfig.NewHTTPClient(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, cfg.Proxy)
	ua := client.WithUserAgent("corral-agent/" + o.Version)
	c, err := client.New(server.String(), client.WithHTTPClient(hc), ua)
	if err != nil {
		return identity.State{}, err
	}
	token, err := o.token(ctx, c)
	if err != nil {
		return identity.State{}, err
	}

	name := o.Name
	props := o.Host.Collect(ctx)
	props.Environment, props.Cloud = cloud.Detector{Host: o.Host, IMDS: o.IMDS}.Detect(ctx)
	props = props.Cleaned()
	if name == "" {
		name, _, _ = strings.Cut(props.Hostname, ".")
	}
	keyPEM, csrPEM, err := machinekey.New(name)
	if err != nil {
		return identity.State{}, err
	}
	sealPriv, sealPub, err := sealing.NewKey()
	if err != nil {
		return identity.State{}, err
	}
	req := wire.ConnectRequest{
		ProtocolVersion: wire.ProtocolVersion, SubscriptionID: o.SubscriptionID, ResourceGroup: o.ResourceGroup, Name: name,
		Tags: o.Tags, CSR: string(csrPEM), AgentVersion: o.Version, Properties: props, AgentConfig: cfg.Wire(), SealingKey: sealPub,
	}
	tc, err := client.New(server.String(), client.WithHTTPClient(hc), client.WithToken(token), ua)
	if err != nil {
		return identity.State{}, err
	}
	var resp wire.ConnectResponse
	if err := connectPaced(ctx, tc, req, &resp, o.Prompt); err != nil {
		return identity.State{}, fmt.Errorf("onboarding refused: %w", err)
	}
	if len(caPEM) == 0 {
		// Trusted through the system roots: keep trusting them.
		caPEM = nil
	}
	st := identity.State{
		Server: server.String(), ResourceID: resp.ResourceID, MachineID: resp.MachineID, SubscriptionID: o.SubscriptionID,
		ResourceGroup: o.ResourceGroup, Name: name, HeartbeatInterval: resp.HeartbeatInterval, ConnectedAt: time.Now().UTC(),
	}
	if err := identity.Save(o.StateDir, st, keyPEM, []byte(resp.Certificate), caPEM, sealPriv); err != nil {
		return identity.State{}, err
	}
	return st, nil
}

// token obtains the onboarding bearer token.
func (o *Options) token(ctx context.Context, c *client.Client) (string, error) {
	switch {
	case o.AccessToken != "":
		return strings.TrimSpace(o.AccessToken), nil
	case o.ServicePrincipalID != "":
		tr, err := c.ClientCredentialsToken(ctx, o.ServicePrincipalID, strings.TrimSpace(o.ServicePrincipalSecret))
		if err != nil {
			return "", fmt.Errorf("service principal sign-in: %w", err)
		}
		return tr.AccessToken, nil
	}
	dc, err := c.RequestDeviceCode(ctx, o.SubscriptionID, o.ResourceGroup, o.Name)
	if err != nil {
		return "", fmt.Errorf("request a device code: %w", err)
	}
	if o.Prompt != nil {
		fmt.Fprintf(o.Prompt, "To onboard this machine, an operator with the Connected Machine Onboarding role on resource group %q runs\n\n    corral machine approve %s\n\nor approves code %s at %s (it expires in %s).\nWaiting for approval...\n",
			o.ResourceGroup, dc.UserCode, dc.UserCode, dc.VerificationURI, time.Duration(dc.ExpiresIn)*time.Second)
	}
	interval := time.Duration(max(dc.Interval, 1)) * time.Second
	for {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("device code %s was not approved in time", dc.UserCode)
		case <-time.After(interval):
		}
		tr, err := c.DeviceCodeToken(ctx, dc.DeviceCode)
		if err == nil {
			return tr.AccessToken, nil
		}
		var ae *wire.APIError
		if errors.As(err, &ae) && ae.Code == wire.CodeAuthorizationPending {
			continue
		}
		if errors.As(err, &ae) && ae.Code == "slow_down" {
			interval += 5 * time.Second
			continue
		}
		return "", fmt.Errorf("device code %s: %w", dc.UserCode, err)
	}
}

// MaxBusyWait bounds how long connect waits for a busy control plane.
const MaxBusyWait = 5 * time.Minute

// connectPaced makes the connect request; while the control plane is too
// busy (503 or 429 with a Retry-After: many machines onboarding at once) it
// waits what it was told plus up to as much again, at most MaxBusyWait in
// all, saying so on progress. Such a refusal changed nothing, so the
// request is simply made again.
func connectPaced(ctx context.Context, tc *client.Client, req wire.ConnectRequest, resp *wire.ConnectResponse, progress io.Writer) error {
	start := time.Now()
	for {
		err := tc.Do(ctx, http.MethodPost, wire.PathConnect, req, resp)
		var ae *wire.APIError
		if err == nil || !errors.As(err, &ae) || ae.RetryAfter <= 0 ||
			(ae.Status != http.StatusServiceUnavailable && ae.Status != http.StatusTooManyRequests) {
			return err
		}
		wait := ae.RetryAfter + time.Duration(rand.Int64N(int64(ae.RetryAfter)))
		if time.Since(start)+wait > MaxBusyWait {
			return err
		}
		if progress != nil {
			fmt.Fprintf(progress, "The control plane is busy (%s); trying again in %s.\n", ae.Message, wait.Round(time.Second))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
