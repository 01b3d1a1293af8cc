package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const metricsToken = "metrics-token-0123456789abcdef"

// TestMetricsNeedATokenOrTheirOwnListener: /metrics discloses the fleet
// by status; it is not served to anyone on the main listener (issue 7).
func TestMetricsNeedATokenOrTheirOwnListener(t *testing.T) {
	t.Parallel()
	plain := testutil.StartServer(t)
	if st, b := get(t, plain, "/metrics"); st != http.StatusNotFound || strings.Contains(b, "corral_machines") {
		t.Errorf("/metrics without --metrics-token-file: %d, want 404", st)
	}
	tokenFile := testutil.WriteSecretFile(t, metricsToken)
	s := testutil.StartServer(t, func(c *server.Config) { c.MetricsTokenFile, c.MetricsListen = tokenFile, "127.0.0.1:0" })
	for _, tok := range []string{"", "wrong-token-0123456789abcdef", metricsToken + "x"} {
		if st, b := getWith(t, s, "/metrics", tok); st != http.StatusUnauthorized || strings.Contains(b, "corral_machines") {
			t.Errorf("/metrics with token %q: %d, want 401", tok, st)
		}
	}
	if st, b := getWith(t, s, "/metrics", metricsToken); st != 200 || !strings.Contains(b, "corral_machines") {
		t.Errorf("/metrics with the token: %d", st)
	}
	resp, err := http.Get("http://" + s.Srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "go_goroutines") {
		t.Errorf("--metrics-listen: %d", resp.StatusCode)
	}
	if _, err := server.New(t.Context(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", MetricsTokenFile: testutil.WriteSecretFile(t, "short"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil {
		t.Error("a metrics token of 5 characters was accepted")
	}
}

// dialFrom opens a TLS connection to s from the loopback address src.
func dialFrom(t *testing.T, s *testutil.Server, src string) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	u, _ := url.Parse(s.URL)
	return tls.DialWithDialer(d, "tcp", u.Host, s.TLSConfig(t))
}

// TestSlowBodiesAndConnectionLimits (issue 7, finding 3): a client
// trickling request bodies holds each connection only until the body
// deadline, it cannot hold more than its share of connections, and while
// it tries, everyone else is served.
func TestSlowBodiesAndConnectionLimits(t *testing.T) {
	t.Parallel()
	const perSource = 4
	s := testutil.StartServer(t, func(c *server.Config) {
		c.Limits.MaxConnectionsPerSource, c.Limits.BodyReadTimeout = perSource, time.Second
	})
	const attacker = "127.0.0.2"
	if c, err := dialFrom(t, s, attacker); err != nil {
		t.Skipf("cannot use %s as a second loopback source here: %v", attacker, err)
	} else {
		c.Close()
	}
	// The attacker's slow connections: a form body promised, a byte sent.
	type slow struct {
		conn *tls.Conn
		done chan error // the connection ended (nil) or the client gave up
	}
	var slows []slow
	for i := range perSource {
		// The probe's connection is released by the server a moment after
		// it closed: until then the source is one over its share.
		var c *tls.Conn
		testutil.Eventually(t, 5*time.Second, func() string {
			var err error
			if c, err = dialFrom(t, s, attacker); err != nil {
				return fmt.Sprintf("slow connection %d: %v", i, err)
			}
			return ""
		})
		fmt.Fprintf(c, "POST /oauth2/token HTTP/1.1\r\nHost: corral\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\ng")
		sl := slow{conn: c, done: make(chan error, 1)}
		go func() {
			// Trickle a byte every 100 ms, as the probe did every 5 s.
			for range 200 {
				time.Sleep(100 * time.Millisecond)
				if _, err := c.Write([]byte("r")); err != nil {
					return
				}
			}
		}()
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := io.Copy(io.Discard, c)
			sl.done <- err
		}()
		slows = append(slows, sl)
		t.Cleanup(func() { c.Close() })
	}
	// A connection over the per-source limit is closed before TLS.
	if c, err := dialFrom(t, s, attacker); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, rerr := c.Read(make([]byte, 1))
		c.Close()
		var ne net.Error
		if errors.As(rerr, &ne) && ne.Timeout() {
			t.Errorf("connection %d from one source was accepted and kept open", perSource+1)
		}
	}
	// Everyone else is served meanwhile.
	if st, _ := get(t, s, "/healthz"); st != 200 {
		t.Errorf("another client got %d while the slow connections were open", st)
	}
	// Each slow connection ends at the body deadline (1 s), far before the
	// client would give up (20 s).
	for i, sl := range slows {
		if err := <-sl.done; err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("slow connection %d was still open after 20 s: the body deadline did not end it", i)
			}
		}
	}
	// Their slots are free again.
	testutil.Eventually(t, 10*time.Second, func() string {
		c, err := dialFrom(t, s, attacker)
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: corral\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
			return "healthz from the freed source: " + firstLine(string(b))
		}
		return ""
	})
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// startAt runs a control plane on dataDir until the returned stop is
// called (or the test ends).
func startAt(t *testing.T, dataDir string, mod func(*server.Config)) (*server.Server, func()) {
	t.Helper()
	cfg := server.Config{DataDir: dataDir, Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	}
	t.Cleanup(stop)
	return srv, stop
}

// TestBootstrapOnce (issue 7, finding 8): the first admin is made once in
// the life of the store. Deleted, it stays deleted across restarts even
// with CORRAL_ADMIN_PASSWORD still set; a generated password is written to
// a 0600 file, not printed.
func TestBootstrapOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, stop := startAt(t, dir, nil)
	pwFile := srv.Bootstrap.AdminPasswordFile
	if pwFile != filepath.Join(dir, server.AdminPasswordFile) {
		t.Fatalf("generated password file %q, want %s", pwFile, filepath.Join(dir, server.AdminPasswordFile))
	}
	fi, err := os.Stat(pwFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v, mode %v; want 0600", err, fi.Mode())
	}
	pw, _ := os.ReadFile(pwFile)
	api := testutil.NewAPI(t, srv.URL(), srv.Bootstrap.CACertPath, strings.TrimSpace(string(pw)))
	admin := api.AdminToken(t)
	// A second Owner retires the bootstrap admin.
	api.MustDo(t, http.StatusCreated, "POST", "/api/v1/users", admin, wire.UserCreate{Name: "ops", Password: "ops-password-12345"}, nil)
	api.MustDo(t, http.StatusCreated, "POST", "/api/v1/roleAssignments", admin, wire.RoleAssignmentCreate{Principal: "ops", Role: "Owner", Scope: "/"}, nil)
	ops := api.PasswordToken(t, "ops", "ops-password-12345")
	api.MustDo(t, http.StatusNoContent, "DELETE", "/api/v1/users/admin", ops, nil, nil)
	stop()

	const envPassword = "env-admin-password-123"
	srv, _ = startAt(t, dir, func(c *server.Config) { c.AdminPassword = envPassword })
	if srv.Bootstrap.AdminCreated || srv.Bootstrap.AdminPasswordFile != "" {
		t.Errorf("restart re-created the admin: %+v", srv.Bootstrap)
	}
	api = testutil.NewAPI(t, srv.URL(), srv.Bootstrap.CACertPath, envPassword)
	resp, err := api.Client.PostForm(srv.URL()+wire.PathToken, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {envPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the deleted admin signed in with CORRAL_ADMIN_PASSWORD after a restart: %d", resp.StatusCode)
	}
	var users wire.List[wire.User]
	api.MustDo(t, 200, "GET", "/api/v1/users", api.PasswordToken(t, "ops", "ops-password-12345"), nil, &users)
	if len(users.Value) != 1 || users.Value[0].Name != "ops" {
		t.Errorf("users after the restart: %+v", users.Value)
	}
}

// TestAdminMustChangePassword: with --admin-must-change-password the first
// sign-in may only change the password.
func TestAdminMustChangePassword(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, func(c *server.Config) { c.AdminMustChangePassword = true })
	tok := s.PasswordToken(t, "admin", testutil.AdminPassword)
	st, b := s.Do(t, "GET", "/api/v1/users", tok, nil)
	if st != http.StatusForbidden || testutil.DecodeError(t, b).Code != wire.CodePasswordChangeRequired {
		t.Fatalf("a must-change session listed users: %d %s", st, b)
	}
	var me wire.Me
	s.MustDo(t, 200, "GET", "/api/v1/me", tok, nil, &me)
	if !me.PasswordChangeRequired {
		t.Error("/api/v1/me does not say the password must change")
	}
	s.MustDo(t, http.StatusNoContent, "PUT", wire.PathMyPassword, tok, wire.PasswordChange{CurrentPassword: testutil.AdminPassword, NewPassword: "a-new-admin-password-1"}, nil)
	tok = s.PasswordToken(t, "admin", "a-new-admin-password-1")
	s.MustDo(t, 200, "GET", "/api/v1/users", tok, nil, nil)
}

// TestRetention (issue 7, finding 5): expired device codes are purged;
// with --activity-retention, older entries are exported (0600 JSON Lines)
// and then purged, newer ones kept.
func TestRetention(t *testing.T) {
	t.Parallel()
	clock := &testutil.Clock{}
	s := testutil.StartServer(t, testutil.WithClock(clock), func(c *server.Config) { c.ActivityRetention = 24 * time.Hour })
	admin := s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/old", admin, wire.ResourceGroupCreate{}, nil)
	resp, err := s.Client.PostForm(s.URL+wire.PathDeviceCode, url.Values{"subscription_id": {"default"}, "resource_group": {"old"}})
	if err != nil {
		t.Fatal(err)
	}
	var dc wire.DeviceCodeResponse
	json.NewDecoder(resp.Body).Decode(&dc)
	resp.Body.Close()

	clock.Advance(48 * time.Hour)
	s.ForgetAdminToken()
	admin = s.AdminToken(t)
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/new", admin, wire.ResourceGroupCreate{}, nil)
	res, err := s.Srv.RunRetention(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.DeviceCodes != 1 || res.Activity < 2 || res.ExportFile == "" {
		t.Fatalf("retention pass: %+v", res)
	}
	form := url.Values{"grant_type": {wire.GrantDeviceCode}, "device_code": {dc.DeviceCode}}
	resp, err = s.Client.PostForm(s.URL+wire.PathToken, form)
	if err != nil {
		t.Fatal(err)
	}
	var oe wire.OAuthError
	json.NewDecoder(resp.Body).Decode(&oe)
	resp.Body.Close()
	if !strings.Contains(oe.ErrorDescription, "unknown device code") {
		t.Errorf("a purged device code: %+v", oe)
	}
	fi, err := os.Stat(res.ExportFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v %v", err, fi)
	}
	raw, _ := os.ReadFile(res.ExportFile)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != res.Activity {
		t.Errorf("export holds %d entries, %d purged", len(lines), res.Activity)
	}
	if !strings.Contains(string(raw), "resourceGroups/old") || strings.Contains(string(raw), "resourceGroups/new") {
		t.Error("the export does not hold exactly the old entries")
	}
	var acts wire.List[wire.ActivityEntry]
	s.MustDo(t, 200, "GET", "/api/v1/activityLogs?$top=1000", admin, nil, &acts)
	for _, e := range acts.Value {
		if strings.HasSuffix(e.Scope, "resourceGroups/old") {
			t.Errorf("an entry older than the retention is still listed: %+v", e)
		}
	}
	if !strings.Contains(fmt.Sprint(acts.Value), "resourceGroups/new") {
		t.Error("a recent entry was purged")
	}
}

// TestDiskFullFailsClosed (issue 7, finding 13): with the store's disk
// full, changes get 507 with a clear message, a sign-in is refused rather
// than served without its activity entry, readiness says the store cannot
// write — and all recover once space is freed, with nothing acknowledged
// before lost and the activity chain intact. SQLite runs on a small tmpfs
// mounted in a private mount namespace of a child process
// (TestDiskFullOnPostgres does the same on PostgreSQL).
func TestDiskFullFailsClosed(t *testing.T) {
	testutil.NeedRoot(t)
	if !testutil.InChild(t, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}) {
		return
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) }) // after the server stopped (cleanups run last first)
	s := testutil.StartServer(t, func(c *server.Config) {
		c.DataDir, c.Limits.StoreProbeInterval = filepath.Join(dir, "data"), 50*time.Millisecond
	})
	diskFullRoundTrip(t, s, filepath.Join(dir, "filler"), nil)
	s.Stop(t)
	sqliteIntegrityCheck(t, filepath.Join(dir, "data", "corral.db"))
}
