// Package agenttest runs the real agent in tests: onboarding against a test
// control plane and the daemon loop in-process. It lives apart from
// testutil because the agent imports the API client, whose own tests use
// testutil.
package agenttest

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/agent/onboard"
	"github.com/corralhq/corral/internal/testutil"
)

// ConnectAgent onboards a real agent state directory into resource group rg
// of s with a fresh onboarding service principal, reading the host under
// root (a t.TempDir() when empty). It returns the state directory.
func ConnectAgent(t testing.TB, s *testutil.API, rg, name, root string) string {
	t.Helper()
	clientID, secret := s.OnboardingPrincipal(t, rg)
	if root == "" {
		root = t.TempDir()
	}
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := onboard.Connect(ctx, onboard.Options{
		Server: s.URL, SubscriptionID: "default", ResourceGroup: rg, Name: name, CAFile: s.CAFile,
		ServicePrincipalID: clientID, ServicePrincipalSecret: secret, StateDir: state, Host: hostinfo.Host{Root: root},
		Version: "2026.11.0",
	}); err != nil {
		t.Fatalf("connect agent %s: %v", name, err)
	}
	return state
}

// RunningAgent is a real agent daemon running in the test process.
type RunningAgent struct {
	Logs *testutil.SyncBuffer
	stop context.CancelFunc
	done chan struct{}
	err  error
}

// StartAgent runs the daemon on cfg (StateDir set; short poll intervals are
// filled in) until the test ends or Stop is called.
func StartAgent(t testing.TB, cfg daemon.Config) *RunningAgent {
	t.Helper()
	a := &RunningAgent{Logs: &testutil.SyncBuffer{}, done: make(chan struct{})}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(a.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.Version == "" {
		cfg.Version = "2026.11.0"
	}
	if cfg.ConfigPollInterval == 0 {
		cfg.ConfigPollInterval = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 500 * time.Millisecond
	}
	if cfg.Host.Root == "" {
		cfg.Host.Root = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	go func() { a.err = daemon.Run(ctx, cfg); close(a.done) }()
	t.Cleanup(func() { a.Stop(t) })
	return a
}

// Stop stops the daemon and returns what Run returned.
func (a *RunningAgent) Stop(t testing.TB) error {
	t.Helper()
	a.stop()
	select {
	case <-a.done:
		return a.err
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not stop within 20s")
		return errors.New("agent did not stop")
	}
}

// Done is closed when the daemon stops; Err then says why.
func (a *RunningAgent) Done() <-chan struct{} { return a.done }

// Err is what Run returned, once Done is closed.
func (a *RunningAgent) Err() error { return a.err }

// MachineHTTPClient is an HTTP client with an agent's mTLS configuration.
func MachineHTTPClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}
