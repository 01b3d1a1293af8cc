package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// protectedHost is an agent whose host root is a tmpfs of the test's
// private mount namespace: real-time protection marks only that tmpfs.
type protectedHost struct {
	name, rg    string
	state, root string
	daemon      *proc
}

func (h *protectedHost) args(args ...string) []string {
	return append([]string{"--state-dir", h.state, "--root", h.root}, args...)
}

func mountTmpfs(t *testing.T, dir, opts string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

// TestEndpointProtectionEndToEnd is the acceptance story with the real
// corral and corral-agent binaries: protection enabled on a resource group
// quarantines an EICAR file written into a watched directory of a machine
// in it at once and the alert reaches the server, while the same file on a
// machine outside the group stays; alerts are listed and acknowledged,
// files restored, machines scanned, signature sets imported, a set signed
// with a key the agent does not trust is refused with the previous one
// kept, and a full disk while quarantining leaves the file where it was
// and says so on the alert.
func TestEndpointProtectionEndToEnd(t *testing.T) {
	testutil.NeedRoot(t)
	corralBin, _ := binaries(t)
	t.Setenv(binDirEnv, filepath.Dir(corralBin))
	if !testutil.InChild(t, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}) {
		return
	}
	// Nothing mounted here propagates back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
	serverKeys := t.TempDir()
	// A key given with --signature-signing-key must exist: make both now.
	for _, k := range []string{"good.key", "other.key"} {
		if _, err := authn.LoadOrCreateSigningKey(filepath.Join(serverKeys, k)); err != nil {
			t.Fatal(err)
		}
	}
	c := startServer(t, "--signature-signing-key", filepath.Join(serverKeys, "good.key"))
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}
	corral := func(args ...string) (string, error) {
		t.Helper()
		return run(t, nil, env, c.corral, args...)
	}
	mustCorral := func(args ...string) string {
		t.Helper()
		out, err := corral(args...)
		if err != nil {
			t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	if out, err := run(t, strings.NewReader(adminPassword+"\n"), env, c.corral, "login", "--server", c.api.URL, "--username", "admin",
		"--password-stdin", "--ca-file", c.api.CAFile); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	hosts := map[string]*protectedHost{}
	for _, h := range []*protectedHost{{name: "prot-01", rg: "protected"}, {name: "plain-01", rg: "plain"}} {
		h.state, h.root = t.TempDir(), t.TempDir()
		mountTmpfs(t, h.root, "size=64m,mode=0755")
		for _, d := range []string{"watched", "srv"} {
			if err := os.MkdirAll(filepath.Join(h.root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		clientID, secret := c.api.OnboardingPrincipal(t, h.rg)
		if out, err := run(t, nil, nil, c.agent, h.args("connect", "--server", c.api.URL, "--subscription-id", "default",
			"--resource-group", h.rg, "--service-principal-id", clientID, "--service-principal-secret-file", testutil.WriteSecretFile(t, secret),
			"--ca-file", c.api.CAFile, "--name", h.name)...); err != nil {
			t.Fatalf("connect %s: %v\n%s", h.name, err, out)
		}
		h.daemon = start(t, nil, c.agent, h.args("run", "--log-level", "debug", "--max-backoff", "1s")...)
		hosts[h.name] = h
	}
	prot, plain := hosts["prot-01"], hosts["plain-01"]
	admin := c.api.AdminToken(t)
	status := func(h *protectedHost) wire.MachineProtection {
		var p wire.MachineProtection
		c.api.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/resourceGroups/"+h.rg+"/machines/"+h.name+"/protection", admin, nil, &p)
		return p
	}
	waitStatus := func(h *protectedHost, what string, ok func(wire.MachineProtection) bool) wire.MachineProtection {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, func() string {
			if p := status(h); !ok(p) {
				b, _ := json.Marshal(p)
				return what + ": " + string(b)
			}
			return ""
		})
		return status(h)
	}
	alerts := func(query string) []wire.Alert {
		var l wire.List[wire.Alert]
		c.api.MustDo(t, 200, "GET", "/api/v1/protection/alerts"+query, admin, nil, &l)
		return l.Value
	}

	// Protection on for the resource group, real time on /watched.
	out := mustCorral("protection", "enable", "--scope", "/subscriptions/default/resourceGroups/protected", "--realtime",
		"--action", "quarantine", "--path", "/watched")
	if !strings.Contains(out, "1 machines") {
		t.Errorf("enable: %s", out)
	}
	p := waitStatus(prot, "real-time protection running", func(p wire.MachineProtection) bool {
		return p.ExtensionState == wire.ExtSucceeded && p.Status != nil && p.Status.State == wire.ProtectionRunning && p.Status.RealtimeEnabled
	})
	if p.Status.RealtimeMode != "fanotify" || p.Status.Action != "quarantine" || p.Scope != "/subscriptions/default/resourceGroups/protected" {
		t.Errorf("protection status %+v %+v", p, p.Status)
	}
	t.Logf("daemon limits: %s", p.Status.Limits)

	// EICAR written into the watched directory: gone at once, alert on the
	// server naming machine, path and signature.
	type timing struct{ gone, alert time.Duration }
	var timings []timing
	for i := range 10 {
		name := fmt.Sprintf("eicar-%d.com", i)
		path := filepath.Join(prot.root, "watched", name)
		before := len(alerts("?machine=prot-01"))
		if err := os.WriteFile(path, scan.EICAR(), 0o644); err != nil {
			t.Fatal(err)
		}
		closed := time.Now()
		var tm timing
		for time.Since(closed) < 10*time.Second {
			if _, err := os.Lstat(path); err != nil {
				tm.gone = time.Since(closed)
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		if tm.gone == 0 {
			t.Fatalf("%s still there 10 s after it was written", path)
		}
		for time.Since(closed) < 20*time.Second {
			if as := alerts("?machine=prot-01"); len(as) > before {
				tm.alert = time.Since(closed)
				a := as[0]
				if a.Machine != "prot-01" || a.Path != "/watched/"+name || a.Signature != "Eicar-Test-Signature" ||
					a.Action != wire.DetectionQuarantined || a.State != wire.AlertActive || a.QuarantineID == "" || a.Process == "" {
					t.Errorf("alert %+v", a)
				}
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if tm.alert == 0 {
			t.Fatalf("no alert for %s on the server 20 s after it was written", name)
		}
		timings = append(timings, tm)
	}
	median := func(f func(timing) time.Duration) time.Duration {
		var ds []time.Duration
		for _, tm := range timings {
			ds = append(ds, f(tm))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	goneMedian, alertMedian := median(func(t timing) time.Duration { return t.gone }), median(func(t timing) time.Duration { return t.alert })
	t.Logf("EICAR written -> gone: median %v; -> alert on the server: median %v (10 writes: %v)", goneMedian, alertMedian, timings)
	if goneMedian > 100*time.Millisecond || alertMedian > time.Second {
		t.Errorf("EICAR gone after %v (contract: 100 ms), alert after %v (contract: 1 s), medians of 10 writes", goneMedian, alertMedian)
	}

	// Without protection it stays, and no alert names that machine.
	stays := filepath.Join(plain.root, "watched", "eicar.com")
	if err := os.WriteFile(stays, scan.EICAR(), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := os.Stat(stays); err != nil {
		t.Errorf("the file vanished on a machine without protection: %v", err)
	}
	if as := alerts("?machine=plain-01"); len(as) != 0 {
		t.Errorf("alerts for a machine without protection: %+v", as)
	}
	if p := status(plain); p.ExtensionState != "" || p.Scope != "" {
		t.Errorf("the unprotected machine has protection: %+v", p)
	}

	// The CLI lists alerts with the contract's fields and filters.
	var listed []map[string]any
	if err := json.Unmarshal([]byte(mustCorral("alert", "list", "--machine", "prot-01", "--scope", "/subscriptions/default/resourceGroups/protected",
		"--state", "Active", "-o", "json")), &listed); err != nil || len(listed) != 10 {
		t.Fatalf("alert list: %v %d", err, len(listed))
	}
	for _, f := range []string{"id", "machine", "path", "sha256", "signature", "action", "time", "state"} {
		if listed[0][f] == nil || listed[0][f] == "" {
			t.Errorf("alert list -o json lacks %q: %v", f, listed[0])
		}
	}
	if out, err := corral("alert", "list", "--state", "Open"); err == nil || !strings.Contains(out, "--state must be") {
		t.Errorf("alert list --state Open: %v %s", err, out)
	}
	first := listed[0]["id"].(string)
	mustCorral("alert", "ack", first)
	if as := alerts("?state=Active&machine=prot-01"); len(as) != 9 || slices.ContainsFunc(as, func(a wire.Alert) bool { return a.ID == first }) {
		t.Errorf("after acknowledging %s: %d active", first, len(as))
	}

	// A custom scan of a directory real time does not watch.
	dropped := filepath.Join(prot.root, "srv", "dropped.com")
	if err := os.WriteFile(dropped, scan.EICAR(), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustCorral("scan", "start", "--machine", "prot-01", "--type", "custom", "--path", "/srv", "--wait")
	if !strings.Contains(out, "succeeded") || !strings.Contains(out, "1 infected") {
		t.Errorf("scan: %s", out)
	}
	if _, err := os.Stat(dropped); err == nil {
		t.Error("the scan's detection was not quarantined")
	}
	if as := alerts("?machine=prot-01"); as[0].Source != "scan" || as[0].Path != "/srv/dropped.com" || as[0].ScanID == "" {
		t.Errorf("scan alert %+v", as[0])
	}
	if out, err := corral("scan", "start", "--machine", "plain-01", "--type", "quick"); err == nil || !strings.Contains(out, "not enabled") {
		t.Errorf("scan of an unprotected machine: %v %s", err, out)
	}

	// Quarantine list and restore from the server: back where it was, not
	// quarantined again (its SHA-256 is excluded from now on).
	var q []wire.QuarantineEntry
	testutil.Eventually(t, 10*time.Second, func() string {
		_ = json.Unmarshal([]byte(mustCorral("protection", "quarantine", "list", "--machine", "prot-01", "-o", "json")), &q)
		if len(q) != 11 {
			return fmt.Sprintf("%d quarantined", len(q))
		}
		return ""
	})
	restored := q[0]
	out = mustCorral("protection", "quarantine", "restore", restored.ID, "--machine", "prot-01")
	if !strings.Contains(out, "Restored "+restored.Path) {
		t.Errorf("restore: %s", out)
	}
	time.Sleep(500 * time.Millisecond)
	if b, err := os.ReadFile(filepath.Join(prot.root, restored.Path)); err != nil || string(b) != string(scan.EICAR()) {
		t.Errorf("restored file: %v", err)
	}

	// A signature set imported on the server reaches the machine.
	sigs := t.TempDir()
	marker1, marker2 := "corral-e2e-marker-one", "corral-e2e-marker-two"
	ndb1, ndb2 := filepath.Join(sigs, "one.ndb"), filepath.Join(sigs, "two.ndb")
	os.WriteFile(ndb1, []byte("Corral.Test.One:0:*:"+hex.EncodeToString([]byte(marker1))+"\n"), 0o644)
	os.WriteFile(ndb2, []byte("Corral.Test.Two:0:*:"+hex.EncodeToString([]byte(marker2))+"\n"), 0o644)
	out = mustCorral("signatures", "import", ndb1)
	if !strings.Contains(out, "Imported signature set 1") {
		t.Errorf("import: %s", out)
	}
	waitStatus(prot, "set 1 installed", func(p wire.MachineProtection) bool { return p.Status != nil && p.Status.SignatureVersion == 1 })
	detected := func(name, content, signature string) {
		t.Helper()
		path := filepath.Join(prot.root, "watched", name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() string {
			if as := alerts("?machine=prot-01"); as[0].Path != "/watched/"+name || as[0].Signature != signature {
				return "no alert for " + name
			}
			return ""
		})
	}
	detected("m1.txt", "xx "+marker1+" xx", "Corral.Test.One")
	// Bad input: malformed files are refused with their line, nothing stored.
	bad := filepath.Join(sigs, "bad.ndb")
	os.WriteFile(bad, []byte("Good:0:*:41424344\nBroken:0:*:4G\n"), 0o644)
	if out, err := corral("signatures", "import", bad); err == nil || !strings.Contains(out, "bad.ndb line 2") {
		t.Errorf("import of a malformed file: %v %s", err, out)
	}
	if out := mustCorral("signatures", "list", "-o", "json"); strings.Count(out, `"version"`) != 1 {
		t.Errorf("a refused import was stored: %s", out)
	}

	// The control plane now signs with a key the agent did not pin: set 2
	// is refused, set 1 stays in use.
	restartServer(t, c, "--signature-signing-key", filepath.Join(serverKeys, "other.key"))
	mustCorral("signatures", "import", ndb2)
	p = waitStatus(prot, "set 2 refused", func(p wire.MachineProtection) bool {
		return p.Status != nil && strings.Contains(p.Status.SignatureError, "signature set 2 refused, version 1 kept")
	})
	if p.Status.SignatureVersion != 1 {
		t.Errorf("status after a set signed with another key: %+v", p.Status)
	}
	detected("m1-again.txt", "yy "+marker1+" yy", "Corral.Test.One")
	notDetected := filepath.Join(prot.root, "watched", "m2.txt")
	os.WriteFile(notDetected, []byte("zz "+marker2+" zz"), 0o644)
	time.Sleep(time.Second)
	if _, err := os.Stat(notDetected); err != nil {
		t.Errorf("a signature of the refused set was used: %v", err)
	}

	// A full disk while quarantining: the file stays where it was and the
	// alert says so.
	qdir := filepath.Join(prot.state, "quarantine")
	mountTmpfs(t, qdir, "size=64k,mode=0700")
	if f, err := os.Create(filepath.Join(qdir, "filler")); err == nil {
		io.Copy(f, io.LimitReader(zeros{}, 1<<20))
		f.Close()
	}
	full := filepath.Join(prot.root, "watched", "full.txt")
	fullContent := "ww " + marker1 + " ww"
	if err := os.WriteFile(full, []byte(fullContent), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		if as := alerts("?machine=prot-01"); as[0].Path != "/watched/full.txt" {
			return "no alert for the file written on a full quarantine"
		}
		return ""
	})
	a := alerts("?machine=prot-01")[0]
	if a.Action != wire.DetectionNotRemoved || !strings.Contains(a.Error, "the file stays where it was") || !strings.Contains(a.Error, "no space left") {
		t.Errorf("alert of a full quarantine: %+v", a)
	}
	if b, err := os.ReadFile(full); err != nil || string(b) != fullContent {
		t.Errorf("the file did not stay where it was: %v", err)
	}

	// Protection off: the extension goes, the daemon stops, files stay.
	mustCorral("protection", "disable", "--scope", "protected")
	waitStatus(prot, "stopped", func(p wire.MachineProtection) bool {
		return p.ExtensionState == "" && p.Status != nil && p.Status.State == wire.ProtectionStopped
	})
	after := filepath.Join(prot.root, "watched", "after.txt")
	os.WriteFile(after, []byte("vv "+marker1+" vv"), 0o644)
	time.Sleep(time.Second)
	if _, err := os.Stat(after); err != nil {
		t.Errorf("a file was removed after protection was disabled: %v", err)
	}

	// The activity log holds the enable, the scan and its outcome, the
	// import, the restore and its outcome, and the acknowledgement.
	var acts wire.List[wire.ActivityEntry]
	c.api.MustDo(t, 200, "GET", "/api/v1/activityLogs?action=Corral.Security/*", admin, nil, &acts)
	got := map[string]int{}
	for _, e := range acts.Value {
		got[e.Action+" "+e.Method]++
	}
	for _, want := range []string{"Corral.Security/protection/write PUT", "Corral.Security/scans/write POST", "Corral.Security/scans/write AGENT",
		"Corral.Security/signatures/write POST", "Corral.Security/quarantine/restore/action POST", "Corral.Security/quarantine/restore/action AGENT",
		"Corral.Security/alerts/acknowledge/action POST", "Corral.Security/protection/delete DELETE"} {
		if got[want] == 0 {
			t.Errorf("no activity entry %q in %v", want, got)
		}
	}
}

// restartServer stops c's server and starts it again on the same address
// and data directory with extra flags.
func restartServer(t *testing.T, c *cluster, extra ...string) {
	t.Helper()
	c.server.stop(t)
	u, err := url.Parse(c.api.URL)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--data-dir", c.dataDir, "--listen", u.Host, "--heartbeat-interval", "300ms",
		"--disconnect-after", "2s", "--sweep-interval", "200ms", "--log-format", "json", "--log-level", "debug"}, extra...)
	c.server = start(t, []string{"CORRAL_ADMIN_PASSWORD=" + adminPassword}, c.corral, args...)
	c.server.waitFor(t, "Corral control plane at ", 30*time.Second)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
