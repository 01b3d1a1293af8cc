package imagetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// Set by the parent test process for its child (testutil.InChild).
const (
	envArchive = "CORRAL_IMAGETEST_ARCHIVE"
	envLayout  = "CORRAL_IMAGETEST_LAYOUT"
	envDigest  = "CORRAL_IMAGETEST_DIGEST"
	envID      = "CORRAL_IMAGETEST_ID"
	envBinDir  = "CORRAL_IMAGETEST_BIN"
	envVersion = "CORRAL_IMAGETEST_VERSION"
)

// built is what packaging/image/build.sh printed and wrote.
type built struct {
	archive, layout          string
	digest, id               string
	compressed, uncompressed int64
	took                     time.Duration
}

var buildOutput = regexp.MustCompile(`(?m)^digest (sha256:[0-9a-f]{64})\nid ([0-9a-f]{64})\nsize (\d+) bytes compressed, (\d+) bytes uncompressed$`)

// buildImage runs packaging/image/build.sh in dir with OUT in a temp dir.
func buildImage(t *testing.T, dir string, umask string, env ...string) built {
	t.Helper()
	out := t.TempDir()
	start := time.Now()
	cmd := exec.Command("sh", "-c", "umask "+umask+" && exec sh packaging/image/build.sh")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "OUT="+out), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh in %s: %v\n%s", dir, err, b)
	}
	m := buildOutput.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("build.sh printed no digest and sizes:\n%s", b)
	}
	archives, _ := filepath.Glob(filepath.Join(out, "corral-server-*.oci.tar"))
	if len(archives) != 1 {
		t.Fatalf("build.sh wrote %v into %s", archives, out)
	}
	r := built{archive: archives[0], layout: strings.TrimSuffix(archives[0], ".tar"), digest: m[1], id: m[2], took: time.Since(start)}
	r.compressed, _ = strconv.ParseInt(m[3], 10, 64)
	r.uncompressed, _ = strconv.ParseInt(m[4], 10, 64)
	return r
}

func output(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b))
}

// copyCheckout copies the checkout's files (tracked and untracked, not
// ignored) to a new directory, with new modification times.
func copyCheckout(t *testing.T, repo string) string {
	t.Helper()
	dst := t.TempDir()
	for _, f := range strings.Split(output(t, repo, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"), "\x00") {
		if f == "" {
			continue
		}
		fi, err := os.Lstat(filepath.Join(repo, f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestServerImage builds the image twice — in the checkout, and in a copy of
// it elsewhere with another umask and new file times — and gets one digest;
// then, in a private mount namespace, loads it into podman, runs it
// read-only with all capabilities dropped on a named volume, waits for
// /readyz, logs in with the one-time admin password it printed, onboards a
// real agent and sees it Connected; stops it (gracefully: exit code 0),
// starts a new container on the same volume and finds the CA, the admin,
// the machine and its connection again.
func TestServerImage(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "podman")
	testutil.NeedTool(t, "crun")
	if os.Getenv(envArchive) == "" {
		testutil.NeedTool(t, "git")
		repo, err := filepath.Abs("../..")
		if err != nil {
			t.Fatal(err)
		}
		first := buildImage(t, repo, "022")
		epoch := output(t, repo, "git", "log", "-1", "--format=%ct")
		revision := output(t, repo, "git", "rev-parse", "HEAD")
		second := buildImage(t, copyCheckout(t, repo), "077", "SOURCE_DATE_EPOCH="+epoch, "CORRAL_REVISION="+revision)
		if first.digest != second.digest {
			t.Fatalf("the same source built twice gave two images: %s and %s", first.digest, second.digest)
		}
		a, _ := os.ReadFile(first.archive)
		b, _ := os.ReadFile(second.archive)
		if !bytes.Equal(a, b) {
			t.Errorf("the two archives of image %s differ", first.digest)
		}
		t.Logf("figures: image %s: %.1f MiB compressed, %.1f MiB uncompressed; build.sh took %s, then %s from the copy",
			first.digest, float64(first.compressed)/(1<<20), float64(first.uncompressed)/(1<<20), first.took.Round(time.Second), second.took.Round(time.Second))

		// The CLI and the agent, built as build.sh builds the server, so
		// that they reuse its compiled packages.
		bin := t.TempDir()
		for _, name := range []string{"corral", "corral-agent"} {
			cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-tags", "timetzdata", "-o", filepath.Join(bin, name), "./cmd/"+name)
			cmd.Dir = repo
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build %s: %v\n%s", name, err, out)
			}
		}
		t.Setenv(envArchive, first.archive)
		t.Setenv(envLayout, first.layout)
		t.Setenv(envDigest, first.digest)
		t.Setenv(envID, first.id)
		t.Setenv(envBinDir, bin)
		t.Setenv(envVersion, output(t, repo, "sed", "-n", `s/^[[:space:]]*Version = "\(.*\)"/\1/p`, "internal/version/version.go"))
	}
	if !testutil.InChild(t, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}) {
		return
	}
	runImage(t)
}

// runImage is the child's part: everything podman does stays in this mount
// namespace and the test's temp dirs.
func runImage(t *testing.T) {
	pm := testutil.NewPodman(t)
	version := os.Getenv(envVersion)
	image := "localhost/corral:" + version

	loadStart := time.Now()
	if out := pm.Must(t, "load", "--input", os.Getenv(envArchive)); !strings.Contains(out, "Loaded image: "+image) {
		t.Fatalf("podman load: %s", out)
	}
	loadTook := time.Since(loadStart)
	var inspect []struct {
		Digest string
		Config struct {
			User         string
			Entrypoint   []string
			Env          []string
			Volumes      map[string]struct{}
			ExposedPorts map[string]struct{}
			Labels       map[string]string
		}
	}
	if err := json.Unmarshal([]byte(pm.Must(t, "image", "inspect", image)), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	ic := inspect[0].Config
	if inspect[0].Digest != os.Getenv(envDigest) || ic.User != "65532:65532" || strings.Join(ic.Entrypoint, " ") != "/corral server" ||
		ic.Labels["org.opencontainers.image.version"] != version || len(ic.Labels["org.opencontainers.image.revision"]) != 40 ||
		ic.Labels["org.opencontainers.image.source"] == "" {
		t.Errorf("loaded image: digest %s, config %+v", inspect[0].Digest, ic)
	}
	if _, ok := ic.Volumes["/var/lib/corral"]; !ok {
		t.Errorf("volumes %v", ic.Volumes)
	}
	if _, ok := ic.ExposedPorts["8443/tcp"]; !ok {
		t.Errorf("exposed ports %v", ic.ExposedPorts)
	}
	// The layout directory is the same image, by its name in the index.
	// (podman names an image pulled from oci:PATH after PATH, which must
	// then be lower case: the test's temp dir is not.)
	lower, err := os.MkdirTemp("", "corral-layout-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(lower) })
	if err := os.Symlink(os.Getenv(envLayout), filepath.Join(lower, "layout")); err != nil {
		t.Fatal(err)
	}
	if out := pm.Must(t, "pull", "--quiet", "oci:"+filepath.Join(lower, "layout")+":corral:"+version); out != os.Getenv(envID) {
		t.Errorf("podman pull oci:LAYOUT gave image %s, want %s", out, os.Getenv(envID))
	}

	// Can containers run here at all? (A kernel or sandbox without the
	// namespaces podman needs is a reason to skip, not a failure of the image.)
	if out, err := pm.Run("run", "--rm", "--network", "host", image, "--help"); err != nil || !strings.Contains(out, "--data-dir") {
		testutil.SkipUnlessStrict(t, fmt.Sprintf("podman cannot run a container here: %v\n%s", err, out))
	}

	pm.Must(t, "volume", "create", "corral-data")
	port := freePort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	runServer := func(name string) time.Duration {
		t.Helper()
		start := time.Now()
		pm.Must(t, "run", "--detach", "--name", name, "--hostname", "cp",
			"--network", "host", "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",
			"--cap-drop", "ALL", "--security-opt", "no-new-privileges",
			"--volume", "corral-data:/var/lib/corral", "--env", "CORRAL_HOST=cp.example.test",
			image, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--heartbeat-interval", "300ms", "--disconnect-after", "2s", "--sweep-interval", "200ms")
		waitReady(t, pm, name, url)
		return time.Since(start)
	}
	firstReady := runServer("corral")

	// The CA fingerprint from the logs; the first admin's password from the
	// 0600 file on the volume the logs name (never the logs themselves).
	logs := pm.Must(t, "logs", "corral")
	fingerprint := valueOf(logs, "CA fingerprint: ")
	volumeDir := pm.Must(t, "volume", "inspect", "--format", "{{.Mountpoint}}", "corral-data")
	pwBytes, err := os.ReadFile(filepath.Join(strings.TrimSpace(volumeDir), "admin-password"))
	password := strings.TrimSpace(string(pwBytes))
	if err != nil || password == "" || fingerprint == "" || !strings.Contains(logs, "/var/lib/corral/admin-password") {
		t.Fatalf("the first start left no admin password file (%v) or printed no CA fingerprint:\n%s", err, logs)
	}

	// The server runs as corral (65532) without capabilities, on a data
	// volume it owns; the image has no shell.
	pid := pm.Must(t, "inspect", "--format", "{{.State.Pid}}", "corral")
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65532\t65532\t65532\t65532", "Gid:\t65532\t65532\t65532\t65532", "CapEff:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(status), want+"\n") {
			t.Errorf("the server process lacks %q:\n%s", want, status)
		}
	}
	volume := pm.Must(t, "volume", "inspect", "--format", "{{.Mountpoint}}", "corral-data")
	for _, f := range []string{"", "ca.crt", "corral.db", "token-signing.key"} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(volume, f), &st); err != nil {
			t.Errorf("volume: %v", err)
		} else if st.Uid != 65532 || st.Gid != 65532 || (f == "" && st.Mode&0o777 != 0o700) {
			t.Errorf("volume /%s: owner %d:%d mode %o", f, st.Uid, st.Gid, st.Mode&0o7777)
		}
	}
	if out, err := pm.Run("exec", "corral", "/bin/sh", "-c", "true"); err == nil || !strings.Contains(out, "/bin/sh") {
		t.Errorf("the image has a shell: %v %s", err, out)
	}
	if out := pm.Must(t, "exec", "corral", "/corral", "--version"); !strings.Contains(out, version) {
		t.Errorf("corral --version in the image: %s", out)
	}

	// The server certificate names the host given through the environment.
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	caPEM, err := os.ReadFile(filepath.Join(volume, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: pool, ServerName: "cp.example.test"})
	if err != nil {
		t.Errorf("TLS as cp.example.test (CORRAL_HOST): %v", err)
	} else {
		conn.Close()
	}

	// Log in with the CLI, onboard an agent, see it Connected.
	home := t.TempDir()
	corral := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(os.Getenv(envBinDir), "corral"), args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("corral %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	corral(password+"\n", "login", "--server", url, "--username", "admin", "--password-stdin", "--ca-file", caFile)
	corral("", "group", "create", "rg1")
	var sp wire.ServicePrincipalCreated
	if err := json.Unmarshal([]byte(corral("", "sp", "create", "--name", "onboard-rg1", "--role", "Connected Machine Onboarding",
		"--scope", "/subscriptions/default/resourceGroups/rg1", "--output", "json")), &sp); err != nil || sp.ClientSecret == "" {
		t.Fatalf("sp create: %v %+v", err, sp)
	}
	agent := filepath.Join(os.Getenv(envBinDir), "corral-agent")
	state, root := t.TempDir(), t.TempDir()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(sp.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(agent, "--state-dir", state, "--root", root, "connect", "--server", url, "--subscription-id", "default",
		"--resource-group", "rg1", "--service-principal-id", sp.ClientID, "--service-principal-secret-file", secretFile,
		"--ca-fingerprint", fingerprint, "--name", "img-01").CombinedOutput(); err != nil {
		t.Fatalf("corral-agent connect: %v\n%s", err, out)
	}
	daemon := startProcess(t, agent, "--state-dir", state, "--root", root, "run", "--max-backoff", "1s")
	machineStatus := func() string {
		var m wire.Machine
		if err := json.Unmarshal([]byte(corral("", "machine", "show", "img-01", "--resource-group", "rg1", "--output", "json")), &m); err != nil {
			t.Fatal(err)
		}
		return m.Status
	}
	waitStatus := func(want string) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, func() string {
			if s := machineStatus(); s != want {
				return "img-01 is " + s + "\nagent:\n" + daemon.String()
			}
			return ""
		})
	}
	waitStatus(wire.StatusConnected)

	// SIGTERM: a graceful stop, exit code 0; the agent is cut off.
	pm.Must(t, "stop", "--time", "30", "corral")
	if code := pm.Must(t, "inspect", "--format", "{{.State.ExitCode}}", "corral"); code != "0" {
		t.Errorf("the server exited with %s after SIGTERM:\n%s", code, pm.Must(t, "logs", "corral"))
	}
	pm.Must(t, "rm", "corral")

	// A new container on the same volume: same CA, same admin, the machine
	// is still there and its agent comes back by itself.
	secondReady := runServer("corral-2")
	logs = pm.Must(t, "logs", "corral-2")
	if strings.Contains(logs, "Created user") || valueOf(logs, "CA fingerprint: ") != fingerprint {
		t.Errorf("the second start did not find the first one's data:\n%s", logs)
	}
	corral(password+"\n", "login", "--server", url, "--username", "admin", "--password-stdin", "--ca-file", caFile)
	waitStatus(wire.StatusConnected)
	if out := corral("", "activity", "list"); !strings.Contains(out, "onboard-rg1") {
		t.Errorf("the activity log lost the first container's entries:\n%s", out)
	}
	t.Logf("figures: podman load %s; podman run to /readyz %s on the first start (CA and keys created), %s on a restart on the volume",
		loadTook.Round(time.Millisecond), firstReady.Round(time.Millisecond), secondReady.Round(time.Millisecond))
}

// waitReady polls /readyz until it answers 200 (the certificate is checked
// later, against the CA the server wrote).
func waitReady(t *testing.T, pm *testutil.Podman, name, url string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url + "/readyz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, _ := pm.Run("logs", name)
	t.Fatalf("%s: /readyz did not answer 200 within 60s:\n%s", name, out)
}

// valueOf is the rest of the first line of text that starts with prefix.
func valueOf(text, prefix string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess starts a process and stops it (SIGTERM) when the test ends;
// its output is returned by the buffer's String.
func startProcess(t *testing.T, name string, args ...string) *testutil.SyncBuffer {
	t.Helper()
	out := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	return out
}
