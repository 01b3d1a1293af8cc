// Package devmode runs `corral dev`: a control plane on an embedded SQLite
// store in a temp dir plus a local agent connected to it, with nothing to set
// up. The agent reads the real host (inventory, cloud detection) but writes
// only inside the temp dir; features that change the host stay off.
package devmode

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/wire"
)

// Options configure a dev run.
type Options struct {
	Listen string // default 127.0.0.1:8443
	Dir    string // default: a new temp dir, removed on exit unless Keep
	Keep   bool
	// NoAgent starts only the control plane.
	NoAgent bool
	Logger  *slog.Logger
}

// ResourceGroup is where the local agent is onboarded.
const ResourceGroup = "dev"

// AgentParams is what the local agent needs to onboard and run.
type AgentParams struct {
	Server, CAFile, Subscription, ResourceGroup string
	ClientID, ClientSecret                      string
	StateDir                                    string
	Root                                        string
	Logger                                      *slog.Logger
}

// Run starts everything, prints how to use it and blocks until ctx ends.
// runAgent onboards and runs the local agent; it must return when ctx ends.
func Run(ctx context.Context, o Options, out io.Writer, runAgent func(context.Context, AgentParams) error) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8443"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "corral-dev-")
		if err != nil {
			return err
		}
		dir = d
		if !o.Keep {
			defer os.RemoveAll(dir)
		}
	}
	// The admin password is CORRAL_ADMIN_PASSWORD or the one the server
	// generates into its admin-password file (0600): it is never printed,
	// the login line reads it from the file.
	password := os.Getenv("CORRAL_ADMIN_PASSWORD")
	srv, err := server.New(ctx, server.Config{DataDir: filepath.Join(dir, "server"), Listen: o.Listen, AdminPassword: password, Logger: o.Logger})
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	pwFile := srv.Bootstrap.AdminPasswordFile
	if pwFile != "" {
		b, err := os.ReadFile(pwFile)
		if err != nil {
			return fmt.Errorf("read the generated admin password: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()

	caFile := srv.Bootstrap.CACertPath
	c, err := newClient(srv.URL(), caFile)
	if err != nil {
		return err
	}
	passwordText, login := "in "+pwFile, "< "+pwFile
	switch {
	case !srv.Bootstrap.AdminCreated:
		passwordText, login = "(unchanged: the admin user already existed in "+dir+")", "<<< 'PASSWORD'"
	case pwFile == "":
		passwordText, login = "from CORRAL_ADMIN_PASSWORD", `<<< "$CORRAL_ADMIN_PASSWORD"`
	}

	var wg sync.WaitGroup
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	agentErr := make(chan error, 1)
	if !o.NoAgent && srv.Bootstrap.AdminCreated {
		p, err := c.onboardingPrincipal(ctx, password)
		if err != nil {
			return fmt.Errorf("prepare local agent: %w", err)
		}
		p.CAFile, p.StateDir, p.Root, p.Logger = caFile, filepath.Join(dir, "agent"), "/", o.Logger.With("component", "agent")
		wg.Go(func() { agentErr <- runAgent(agentCtx, p) })
	}

	fmt.Fprintf(out, `
Corral is running (data in %s).

  Web UI:      %s/ui/
  Admin:       user "admin", password %s
  CA:          %s (%s)
  CLI:         go run ./cmd/corral login --server %s --username admin --password-stdin --ca-file %s %s
               go run ./cmd/corral machine list

A local agent reads this host and writes only under %s/agent.
Press Ctrl-C to stop.
`, dir, srv.URL(), passwordText, caFile, srv.Bootstrap.CAFingerprint, srv.URL(), caFile, login, dir)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-served:
	case err := <-agentErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(out, "local agent stopped: %v\n", err)
		}
		<-ctx.Done()
	}
	stopAgent()
	wg.Wait()
	stopServe()
	if runErr == nil {
		runErr = <-served
	}
	return runErr
}

type client struct {
	url  string
	http *http.Client
}

func newClient(u, caFile string) (*client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &client{url: u, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}, nil
}

// onboardingPrincipal creates the dev resource group and a service principal
// that may only onboard into it, through the real API as the admin.
func (c *client) onboardingPrincipal(ctx context.Context, password string) (AgentParams, error) {
	var tr wire.TokenResponse
	resp, err := c.http.PostForm(c.url+wire.PathToken, url.Values{"grant_type": {wire.GrantPassword}, "username": {"admin"}, "password": {password}})
	if err != nil {
		return AgentParams{}, err
	}
	err = decode(resp, http.StatusOK, &tr)
	if err != nil {
		return AgentParams{}, fmt.Errorf("admin sign-in: %w", err)
	}
	tok := tr.AccessToken
	if err := c.do(ctx, "PUT", "/api/v1/subscriptions/default/resourceGroups/"+ResourceGroup, tok, wire.ResourceGroupCreate{}, http.StatusCreated, nil); err != nil {
		return AgentParams{}, err
	}
	var sp wire.ServicePrincipalCreated
	if err := c.do(ctx, "POST", "/api/v1/servicePrincipals", tok, wire.ServicePrincipalCreate{DisplayName: "dev-onboarding"}, http.StatusCreated, &sp); err != nil {
		return AgentParams{}, err
	}
	if err := c.do(ctx, "POST", "/api/v1/roleAssignments", tok, wire.RoleAssignmentCreate{Principal: sp.ClientID,
		Role: "Connected Machine Onboarding", Scope: "/subscriptions/default/resourceGroups/" + ResourceGroup}, http.StatusCreated, nil); err != nil {
		return AgentParams{}, err
	}
	return AgentParams{Server: c.url, Subscription: "default", ResourceGroup: ResourceGroup, ClientID: sp.ClientID, ClientSecret: sp.ClientSecret}, nil
}

func (c *client) do(ctx context.Context, method, path, tok string, body any, want int, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	return decode(resp, want, out)
}

func decode(resp *http.Response, want int, out any) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
