package extensions

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/wire"
)

// repo plays the control plane's download side: a publisher with a signed
// catalog and package blobs. It is not a mock of the agent's logic — the
// manager under test runs its real verification, unpacking and handlers.
type repo struct {
	mu        sync.Mutex
	pub       ed25519.PublicKey
	priv      ed25519.PrivateKey
	catalog   wire.Catalog
	signed    wire.SignedCatalog
	packages  map[string][]byte
	downloads int
}

func newRepo(t *testing.T) *repo {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &repo{pub: pub, priv: priv, catalog: wire.Catalog{Publisher: "Acme", ExpiresAt: time.Now().Add(time.Hour)}, packages: map[string][]byte{}}
}

func (r *repo) Catalog(_ context.Context, publisher string) (wire.SignedCatalog, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if publisher != "Acme" {
		return wire.SignedCatalog{}, errors.New("NotFound: no such publisher")
	}
	return r.signed, nil
}

func (r *repo) Package(_ context.Context, digest string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.downloads++
	b, ok := r.packages[digest]
	if !ok {
		return nil, errors.New("NotFound: no such package")
	}
	return b, nil
}

// publish adds a package whose handlers append "<handler> <version>" to
// log, and returns its desired-state entry.
func (r *repo) publish(t *testing.T, version, log string, change func(*wire.ExtensionManifest)) wire.DesiredExtension {
	t.Helper()
	h := func(name string) string {
		return fmt.Sprintf(`read input; echo "%s %s $CORRAL_OPERATION $input" >> %s; echo "%s done"`, name, version, log, name)
	}
	m := &wire.ExtensionManifest{Publisher: "Acme", Type: "Monitor", Version: version, Handlers: wire.ExtensionHandlers{
		Install: h("install"), Enable: h("enable"), Disable: h("disable"), Update: h("update"), Uninstall: h("uninstall")}}
	if change != nil {
		change(m)
	}
	arc, err := extpkg.BuildArchive(m, extpkg.File{Name: "bin/tool", Body: []byte("#!/bin/sh\n"), Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	return r.add(t, version, arc)
}

func (r *repo) add(t *testing.T, version string, arc []byte) wire.DesiredExtension {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	d := extpkg.Digest(arc)
	r.packages[d] = arc
	r.catalog.Serial++
	r.catalog.Packages = append(r.catalog.Packages, wire.CatalogEntry{Type: "Monitor", Version: version, Digest: d, Size: int64(len(arc))})
	sc, err := extpkg.SignCatalog(r.priv, r.catalog)
	if err != nil {
		t.Fatal(err)
	}
	r.signed = sc
	return wire.DesiredExtension{Name: "monitor", Publisher: "Acme", Type: "Monitor", Version: version, Digest: d, SeqNo: 1}
}

type harness struct {
	t       *testing.T
	m       *Manager
	repo    *repo
	cp      *controlPlane
	state   string
	dir     string
	log     string
	mu      sync.Mutex
	reports []any
	sealPub []byte
	sealKey []byte
	// builtins are the first-party extensions the agent under test ships.
	builtins map[string]feature.Builtin
}

// controlPlane serves a fetcher's catalogs and packages on the agent's
// paths, as the real control plane does over mTLS.
type controlPlane struct {
	mu    sync.Mutex
	fetch fetcher
}

type fetcher interface {
	Catalog(ctx context.Context, publisher string) (wire.SignedCatalog, error)
	Package(ctx context.Context, digest string) ([]byte, error)
}

func (c *controlPlane) use(f fetcher) { c.mu.Lock(); c.fetch = f; c.mu.Unlock() }

func (c *controlPlane) Do(ctx context.Context, method, path string, _, out any) error {
	c.mu.Lock()
	f := c.fetch
	c.mu.Unlock()
	pub, ok := strings.CutPrefix(path, wire.PathCatalogs)
	if method != "GET" || !ok {
		return fmt.Errorf("unexpected %s %s", method, path)
	}
	sc, err := f.Catalog(ctx, pub)
	if err != nil {
		return err
	}
	*out.(*wire.SignedCatalog) = sc
	return nil
}

func (c *controlPlane) Download(ctx context.Context, path string, _ int64) ([]byte, error) {
	c.mu.Lock()
	f := c.fetch
	c.mu.Unlock()
	digest, ok := strings.CutPrefix(path, wire.PathPackages)
	if !ok {
		return nil, fmt.Errorf("unexpected download %s", path)
	}
	return f.Package(ctx, strings.ReplaceAll(digest, "%3A", ":"))
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	state := t.TempDir()
	h := &harness{t: t, repo: newRepo(t), state: state, dir: filepath.Join(state, "extensions"),
		log: filepath.Join(t.TempDir(), "handlers.log"), builtins: map[string]feature.Builtin{}}
	h.cp = &controlPlane{fetch: h.repo}
	priv, pub, err := sealing.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	h.sealPub, h.sealKey = pub, priv
	h.open()
	return h
}

// open starts a Manager on the harness's state directory, as a new agent
// process would.
func (h *harness) open() {
	m := New()
	err := m.Start(context.Background(), feature.Env{
		Logger: slog.New(slog.DiscardHandler), StateDir: statedir.Dir(h.state), Dir: filepath.Join(h.state, "features", Name),
		Report: func(kind string, body any, _ string) {
			h.mu.Lock()
			h.reports = append(h.reports, body)
			h.mu.Unlock()
		},
		Config: func() localconfig.Effective {
			e, _ := localconfig.Current(h.state)
			return e
		},
		ControlPlane: h.cp,
		Machine:      feature.Machine{ID: "m1", SealingKey: func() ([]byte, error) { return h.sealKey, nil }},
		Builtins:     h.builtins,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.m = m
	h.t.Cleanup(func() { m.Close() })
}

func (h *harness) desired(exts ...wire.DesiredExtension) wire.DesiredState {
	return wire.DesiredState{Extensions: exts, Publishers: []wire.PublisherKey{{Name: "Acme", PublicKey: h.repo.pub}}}
}

// configure writes the local configuration as root would.
func (h *harness) configure(cfg localconfig.Config) {
	h.t.Helper()
	if err := localconfig.Save(h.state, cfg); err != nil {
		h.t.Fatal(err)
	}
}

// apply applies ds under cfg (written to disk first) and returns what
// Apply returned.
func (h *harness) apply(ctx context.Context, ds wire.DesiredState, cfg localconfig.Config) error {
	h.configure(cfg)
	return h.m.Apply(ctx, feature.Desired{State: ds, Fresh: true})
}

func (h *harness) reconcile(ds wire.DesiredState, cfg localconfig.Config) {
	h.t.Helper()
	if err := h.apply(context.Background(), ds, cfg); err != nil {
		h.t.Logf("apply: %v", err)
	}
}

// last is the latest extension status reported.
func (h *harness) last() wire.ExtensionStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.reports) - 1; i >= 0; i-- {
		if s, ok := h.reports[i].(wire.ExtensionStatus); ok {
			return s
		}
	}
	return wire.ExtensionStatus{}
}

func (h *harness) handlerLog() string {
	b, _ := os.ReadFile(h.log)
	return string(b)
}

func handlerSequence(log string) string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimSpace(log), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			out = append(out, f[0]+" "+f[1])
		}
	}
	return strings.Join(out, ", ")
}

func TestInstallUpdateUpgradeRemove(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1 := h.repo.publish(t, "1.0.0", h.log, nil)
	v1.Settings = json.RawMessage(`{"level":"info"}`)
	var cfg localconfig.Config

	h.reconcile(h.desired(v1), cfg)
	if s := h.last(); s.State != wire.ExtSucceeded || s.Operation != "install" || s.Message != "enable done" {
		t.Fatalf("install status %+v", s)
	}
	if got := handlerSequence(h.handlerLog()); got != "install 1.0.0, enable 1.0.0" {
		t.Errorf("install ran %q", got)
	}
	if !strings.Contains(h.handlerLog(), `"settings":{"level":"info"}`) {
		t.Errorf("settings not handed to the handler: %s", h.handlerLog())
	}
	// Converged: nothing runs again.
	h.reconcile(h.desired(v1), cfg)
	if got := handlerSequence(h.handlerLog()); got != "install 1.0.0, enable 1.0.0" {
		t.Errorf("a converged reconcile ran handlers: %q", got)
	}

	// Reconfigure: a new seqNo runs update and enable.
	os.Remove(h.log)
	v1.SeqNo = 2
	h.reconcile(h.desired(v1), cfg)
	if got := handlerSequence(h.handlerLog()); got != "update 1.0.0, enable 1.0.0" {
		t.Errorf("update ran %q", got)
	}

	// Upgrade: old disable, new update, new install, old uninstall, new enable.
	os.Remove(h.log)
	v2 := h.repo.publish(t, "2.0.0", h.log, nil)
	v2.SeqNo = 3
	h.reconcile(h.desired(v2), cfg)
	if got, want := handlerSequence(h.handlerLog()), "disable 1.0.0, update 2.0.0, install 2.0.0, uninstall 1.0.0, enable 2.0.0"; got != want {
		t.Errorf("upgrade ran %q, want %q", got, want)
	}
	if s := h.last(); s.State != wire.ExtSucceeded || s.Operation != "upgrade" || s.Version != "2.0.0" {
		t.Errorf("upgrade status %+v", s)
	}
	pkgs, _ := os.ReadDir(filepath.Join(h.dir, "packages"))
	if len(pkgs) != 1 {
		t.Errorf("%d package directories after upgrade, want 1", len(pkgs))
	}

	// Removed from the desired set: disable and uninstall, then gone.
	os.Remove(h.log)
	h.reconcile(h.desired(), cfg)
	if got := handlerSequence(h.handlerLog()); got != "disable 2.0.0, uninstall 2.0.0" {
		t.Errorf("remove ran %q", got)
	}
	if s := h.last(); !s.Removed || s.State != wire.ExtSucceeded {
		t.Errorf("remove status %+v", s)
	}
	pkgs, _ = os.ReadDir(filepath.Join(h.dir, "packages"))
	if len(pkgs) != 0 {
		t.Errorf("package directory left after remove")
	}
}

func TestLocallyDeletedExtensionIsReinstalled(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1 := h.repo.publish(t, "1.0.0", h.log, nil)
	h.reconcile(h.desired(v1), localconfig.Config{})
	if err := os.RemoveAll(filepath.Join(h.dir, "packages")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(h.dir, "packages"), 0o700)
	os.Remove(h.log)
	h.reconcile(h.desired(v1), localconfig.Config{})
	if got := handlerSequence(h.handlerLog()); got != "install 1.0.0, enable 1.0.0" {
		t.Errorf("reinstall ran %q", got)
	}
	if s := h.last(); s.State != wire.ExtSucceeded {
		t.Errorf("status %+v", s)
	}
}

func TestProtectedSettingsReachOnlyTheHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1 := h.repo.publish(t, "1.0.0", h.log, nil)
	const secret = "pa55-w0rd-only-for-the-handler"
	sealed, err := sealing.Seal(h.sealPub, sealing.ExtensionAAD("m1", "monitor", "Acme", "Monitor"), []byte(`{"password":"`+secret+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	v1.ProtectedSettings = sealed
	h.reconcile(h.desired(v1), localconfig.Config{})
	if s := h.last(); s.State != wire.ExtSucceeded {
		t.Fatalf("status %+v", s)
	}
	if !strings.Contains(h.handlerLog(), secret) {
		t.Error("the handler did not receive the protected settings")
	}
	// Nothing the agent keeps holds the plaintext.
	filepath.WalkDir(h.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
				t.Errorf("%s holds the protected settings", p)
			}
		}
		return nil
	})
	// Sealed for another extension instance: refused, nothing runs.
	other := v1
	other.Name, other.SeqNo = "other", 1
	os.Remove(h.log)
	h.reconcile(h.desired(v1, other), localconfig.Config{})
	if s := h.last(); s.Name != "other" || s.State != wire.ExtFailed || !strings.Contains(s.Message, "not sealed to this machine") {
		t.Errorf("foreign sealed settings: %+v", s)
	}
}

func TestTrustChainRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, h *harness) wire.DesiredState
		want    string
	}{
		{"tampered package", func(t *testing.T, h *harness) wire.DesiredState {
			d := h.repo.publish(t, "1.0.0", h.log, nil)
			arc := h.repo.packages[d.Digest]
			tampered := append([]byte{}, arc...)
			tampered[len(tampered)-10] ^= 0xff
			h.repo.packages[d.Digest] = tampered
			return h.desired(d)
		}, "does not match the signed catalog"},
		{"tampered catalog", func(t *testing.T, h *harness) wire.DesiredState {
			d := h.repo.publish(t, "1.0.0", h.log, nil)
			h.repo.signed.Catalog = []byte(strings.Replace(string(h.repo.signed.Catalog), `"serial":1`, `"serial":9`, 1))
			return h.desired(d)
		}, "signature does not verify"},
		{"wrong signature", func(t *testing.T, h *harness) wire.DesiredState {
			d := h.repo.publish(t, "1.0.0", h.log, nil)
			_, other, _ := ed25519.GenerateKey(nil)
			h.repo.signed, _ = extpkg.SignCatalog(other, h.repo.catalog)
			return h.desired(d)
		}, "signature does not verify"},
		{"unknown publisher", func(t *testing.T, h *harness) wire.DesiredState {
			d := h.repo.publish(t, "1.0.0", h.log, nil)
			ds := h.desired(d)
			ds.Publishers = nil
			return ds
		}, "unknown publisher"},
		{"digest not in catalog", func(t *testing.T, h *harness) wire.DesiredState {
			d := h.repo.publish(t, "1.0.0", h.log, nil)
			d.Digest = extpkg.Digest([]byte("something else"))
			return h.desired(d)
		}, "does not match the signed catalog"},
		{"path traversal archive", func(t *testing.T, h *harness) wire.DesiredState {
			m := &wire.ExtensionManifest{Publisher: "Acme", Type: "Monitor", Version: "1.0.0",
				Handlers: wire.ExtensionHandlers{Install: "touch " + h.log, Enable: "touch " + h.log}}
			arc, _ := extpkg.BuildArchive(m, extpkg.File{Name: "../../escaped", Body: []byte("x")})
			return h.desired(h.repo.add(t, "1.0.0", arc))
		}, "leaves the package directory"},
		{"manifest names another extension", func(t *testing.T, h *harness) wire.DesiredState {
			return h.desired(h.repo.publish(t, "1.0.0", h.log, func(m *wire.ExtensionManifest) { m.Type = "Shell" }))
		}, "manifest says"},
		{"oversized archive", func(t *testing.T, h *harness) wire.DesiredState {
			d := h.repo.publish(t, "1.0.0", h.log, nil)
			h.repo.packages[d.Digest] = make([]byte, wire.MaxPackageBytes+1)
			return h.desired(d)
		}, "does not match the signed catalog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			ds := tt.prepare(t, h)
			h.reconcile(ds, localconfig.Config{})
			s := h.last()
			if s.State != wire.ExtFailed || !strings.Contains(s.Message, tt.want) {
				t.Fatalf("status %+v, want Failed with %q", s, tt.want)
			}
			if _, err := os.Stat(h.log); err == nil {
				t.Errorf("a handler ran: %s", h.handlerLog())
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(h.dir), "escaped")); err == nil {
				t.Error("a file escaped the package directory")
			}
		})
	}
}

func TestPinnedPublisherKeyAndCatalogReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v1 := h.repo.publish(t, "1.0.0", h.log, nil)
	old := h.repo.signed
	v2 := h.repo.publish(t, "2.0.0", h.log, nil)
	v2.SeqNo = 2
	h.reconcile(h.desired(v2), localconfig.Config{}) // sees serial 2
	// The control plane now serves the older catalog: refused.
	h.repo.signed = old
	v1.SeqNo = 3
	h.reconcile(h.desired(v1), localconfig.Config{})
	if s := h.last(); s.State != wire.ExtFailed || !strings.Contains(s.Message, "replay") {
		t.Errorf("replayed catalog: %+v", s)
	}
	// A different key for the same publisher: refused.
	pub2, _, _ := ed25519.GenerateKey(nil)
	ds := h.desired(v1)
	ds.Publishers[0].PublicKey = pub2
	v1.SeqNo = 4
	ds.Extensions[0] = v1
	h.reconcile(ds, localconfig.Config{})
	if s := h.last(); s.State != wire.ExtFailed || !strings.Contains(s.Message, "different from the one pinned") {
		t.Errorf("key change accepted: %+v", s)
	}
}

func TestInterruptedInstallIsRedoneAfterRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	started := filepath.Join(t.TempDir(), "started")
	d := h.repo.publish(t, "1.0.0", h.log, func(m *wire.ExtensionManifest) {
		m.Handlers.Install = fmt.Sprintf(`if [ ! -e %[1]s ]; then touch %[1]s; sleep 30; fi; echo "install 1.0.0" >> %[2]s`, started, h.log)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.apply(ctx, h.desired(d), localconfig.Config{}) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(started); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // the agent is killed in the middle of install
	<-done
	// A new agent process on the same state directory converges.
	h.open()
	h.reconcile(h.desired(d), localconfig.Config{})
	if s := h.last(); s.State != wire.ExtSucceeded || s.Operation != "install" {
		t.Fatalf("after restart: %+v", s)
	}
	if got := handlerSequence(h.handlerLog()); got != "install 1.0.0, enable 1.0.0" {
		t.Errorf("handlers after restart %q", got)
	}
}

func TestHandlerFailureAndTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	d := h.repo.publish(t, "1.0.0", h.log, func(m *wire.ExtensionManifest) {
		m.Handlers.Install = `echo "disk full" >&2; exit 7`
	})
	h.reconcile(h.desired(d), localconfig.Config{})
	if s := h.last(); s.State != wire.ExtFailed || !strings.Contains(s.Message, "code 7: disk full") {
		t.Errorf("failing handler: %+v", s)
	}
	// Not retried until a new request.
	before := len(h.reports)
	h.reconcile(h.desired(d), localconfig.Config{})
	if len(h.reports) != before {
		t.Error("a failed operation was retried without a new request")
	}
	d2 := h.repo.publish(t, "1.0.1", h.log, func(m *wire.ExtensionManifest) {
		m.Handlers.Install = "sleep 120"
		m.Timeouts = map[string]wire.Duration{"install": wire.Duration(200 * time.Millisecond)}
	})
	d2.SeqNo = 2
	start := time.Now()
	h.reconcile(h.desired(d2), localconfig.Config{})
	if s := h.last(); s.State != wire.ExtFailed || !strings.Contains(s.Message, "timed out") {
		t.Errorf("slow handler: %+v", s)
	}
	if time.Since(start) > 60*time.Second { // the handler sleeps 120 s: only the timeout ends it sooner
		t.Errorf("timeout took %s", time.Since(start))
	}
}

func TestLockDownRefusesAndRetriesWhenAllowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	d := h.repo.publish(t, "1.0.0", h.log, nil)
	var cfg localconfig.Config
	if err := cfg.Set(localconfig.KeyAllowlist, "Corral/EndpointProtection"); err != nil {
		t.Fatal(err)
	}
	h.reconcile(h.desired(d), cfg)
	if s := h.last(); s.State != wire.ExtFailed || !strings.Contains(s.Message, "not in extensions.allowlist") {
		t.Fatalf("blocked install: %+v", s)
	}
	if _, err := os.Stat(h.log); err == nil || h.repo.downloads != 0 {
		t.Fatal("a blocked extension was downloaded or run")
	}
	// Root allows it locally: the next reconcile installs it.
	if err := cfg.Set(localconfig.KeyAllowlist, "Acme/Monitor"); err != nil {
		t.Fatal(err)
	}
	// The allowlist names Acme: without Acme's key configured, nothing is
	// installed — the key the control plane presents is not enough.
	h.reconcile(h.desired(d), cfg)
	if s := h.last(); s.State != wire.ExtFailed || !strings.Contains(s.Message, "corral-agent publisher trust Acme") {
		t.Fatalf("allowlisted publisher without a configured key: %+v", s)
	}
	if err := cfg.Set(localconfig.KeyPublisherKeys, "Acme="+extpkg.FormatPublicKey(h.repo.pub)); err != nil {
		t.Fatal(err)
	}
	h.reconcile(h.desired(d), cfg)
	if s := h.last(); s.State != wire.ExtSucceeded {
		t.Fatalf("after allowing: %+v", s)
	}
	// Disabled extension manager: even removal is refused, the extension stays.
	if err := cfg.Set(localconfig.KeyExtensionsEnabled, "false"); err != nil {
		t.Fatal(err)
	}
	h.reconcile(h.desired(), cfg)
	if s := h.last(); s.State != wire.ExtFailed || s.Removed || !strings.Contains(s.Message, "disabled") {
		t.Errorf("remove with the manager disabled: %+v", s)
	}
}

// rogueFetcher serves a catalog and packages of its own under any
// publisher name, as a compromised control plane would.
type rogueFetcher struct {
	signed   wire.SignedCatalog
	packages map[string][]byte
}

func (f rogueFetcher) Catalog(context.Context, string) (wire.SignedCatalog, error) {
	return f.signed, nil
}

func (f rogueFetcher) Package(_ context.Context, digest string) ([]byte, error) {
	if b, ok := f.packages[digest]; ok {
		return b, nil
	}
	return nil, errors.New("NotFound: no such package")
}

// Publisher names are case-insensitive like everywhere else (the control
// plane, the allowlist): a control plane presenting another key for
// "ACME" once "Acme" is pinned must not get its package installed as
// Acme's, even through an allowlist that names Acme/Monitor.
func TestPinnedPublisherKeyCannotBeBypassedByCase(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var cfg localconfig.Config
	if err := cfg.Set(localconfig.KeyAllowlist, "Acme/Monitor"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Set(localconfig.KeyPublisherKeys, "Acme="+extpkg.FormatPublicKey(h.repo.pub)); err != nil {
		t.Fatal(err)
	}
	v1 := h.repo.publish(t, "1.0.0", h.log, nil)
	h.reconcile(h.desired(v1), cfg)
	if s := h.last(); s.State != wire.ExtSucceeded {
		t.Fatalf("install: %+v", s)
	}

	// The rogue key signs a catalog and a package for "ACME".
	roguePub, roguePriv, _ := ed25519.GenerateKey(nil)
	marker := filepath.Join(t.TempDir(), "rogue-ran")
	man := &wire.ExtensionManifest{Publisher: "ACME", Type: "Monitor", Version: "2.0.0",
		Handlers: wire.ExtensionHandlers{Install: "touch " + marker, Enable: "touch " + marker}}
	arc, err := extpkg.BuildArchive(man)
	if err != nil {
		t.Fatal(err)
	}
	digest := extpkg.Digest(arc)
	signed, err := extpkg.SignCatalog(roguePriv, wire.Catalog{Publisher: "ACME", Serial: 100,
		Packages: []wire.CatalogEntry{{Type: "Monitor", Version: "2.0.0", Digest: digest, Size: int64(len(arc))}}})
	if err != nil {
		t.Fatal(err)
	}
	h.cp.use(rogueFetcher{signed: signed, packages: map[string][]byte{digest: arc}})
	ds := wire.DesiredState{
		Publishers: []wire.PublisherKey{{Name: "ACME", PublicKey: roguePub}},
		Extensions: []wire.DesiredExtension{{Name: "monitor", Publisher: "ACME", Type: "Monitor", Version: "2.0.0", Digest: digest, SeqNo: 2}},
	}
	h.reconcile(ds, cfg)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a package signed by an unpinned key for a pinned publisher ran")
	}
	if s := h.last(); s.State != wire.ExtFailed || !strings.Contains(s.Message, "different from the one configured") {
		t.Errorf("status %+v, want Failed: the presented key is not the one root configured", s)
	}
}

// An agent killed right after starting a handler may die before it saved
// the handler's process group; what that handler started must still be
// found and killed before the operation is done again, or two attempts
// run at once. Every handler of an attempt carries the attempt's id.
func TestLeftoversOfAnAttemptAreKilledWithoutItsProcessGroup(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	started := filepath.Join(t.TempDir(), "started")
	d := h.repo.publish(t, "1.0.0", h.log, func(m *wire.ExtensionManifest) {
		m.Handlers.Install = fmt.Sprintf(`if [ ! -e %[1]s ]; then setsid sleep 30 & echo $! > %[1]s; fi`, started)
	})
	h.reconcile(h.desired(d), localconfig.Config{})
	b, err := os.ReadFile(started)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 1 {
		t.Fatalf("pid file %q", b)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	// As if the agent had been killed during that install, before it
	// recorded the handler's process group.
	rec := h.m.st.Extensions[d.Name]
	rec.InProgress, rec.Installed, rec.PGID, rec.State = true, false, 0, wire.ExtCreating
	if err := h.m.st.save(h.dir); err != nil {
		t.Fatal(err)
	}
	h.open()
	h.reconcile(h.desired(d), localconfig.Config{})
	if s := h.last(); s.State != wire.ExtSucceeded {
		t.Fatalf("redo: %+v", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("what the interrupted attempt started is still running: %s", stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUnusedPackageDirectoriesAreRemovedAtStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	d := h.repo.publish(t, "1.0.0", h.log, nil)
	h.reconcile(h.desired(d), localconfig.Config{})
	stray := filepath.Join(h.dir, "packages", "acme.monitor-0.9.0-0123456789ab")
	if err := os.MkdirAll(filepath.Join(stray, "bin"), 0o700); err != nil {
		t.Fatal(err)
	}
	h.open() // the agent restarts
	entries, _ := os.ReadDir(filepath.Join(h.dir, "packages"))
	if len(entries) != 1 || entries[0].Name() == filepath.Base(stray) {
		t.Errorf("package directories after restart: %v", entries)
	}
}
