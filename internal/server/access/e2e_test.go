package access_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	agentaccess "github.com/corralhq/corral/internal/agent/access"
	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/hostinfo"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/server"
	"github.com/corralhq/corral/internal/sshcert"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/wire"
)

// The namespaces of the end-to-end tests: "outside" has two sources, the
// machine listens on port 22.
const (
	srcA    = "10.80.0.1"
	srcB    = "10.80.0.3"
	machIP  = "10.80.0.2"
	machSSH = machIP + ":22"
)

// steadyLifecycle has fast heartbeats but a disconnect threshold a busy
// shared machine does not cross by accident while sshd restarts and
// accounts are made.
func steadyLifecycle(c *server.Config) {
	testutil.FastLifecycle()(c)
	c.DisconnectAfter = 15 * time.Second
}

type world struct {
	outside, machine *testutil.NetNS
}

func newWorld(t *testing.T) *world {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedTool(t, "nft")
	w := &world{outside: testutil.NewNetNS(t), machine: testutil.NewNetNS(t)}
	testutil.ConnectNetNS(t, w.outside, []string{srcA + "/24", srcB + "/24"}, w.machine, []string{machIP + "/24"})
	return w
}

func (w *world) open(t testing.TB, src string) bool {
	return testutil.CanConnect(t, w.outside, src, machSSH)
}

func (w *world) eventually(t testing.TB, src string, want bool) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() string {
		if got := w.open(t, src); got != want {
			return fmt.Sprintf("connection from %s to port 22: open = %v, want %v", src, got, want)
		}
		return ""
	})
}

func setLocal(t *testing.T, state string, kv ...string) {
	t.Helper()
	c, err := localconfig.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if err := c.Set(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := localconfig.Save(state, c); err != nil {
		t.Fatal(err)
	}
}

// startAgent onboards and runs a real agent whose access feature manages
// the machine namespace's nftables and, under root, the tree's sshd.
func startAgent(t *testing.T, api *testutil.API, name string, w *world, root string, local ...string) string {
	t.Helper()
	state := agenttest.ConnectAgent(t, api, "rg1", name, root)
	setLocal(t, state, local...)
	if root == "" {
		root = t.TempDir()
	}
	agenttest.StartAgent(t, daemon.Config{StateDir: state, Host: hostinfo.Host{Root: root},
		Features: []feature.Feature{agentaccess.NewWith(agentaccess.Options{NetNS: w.machine.Fd(), CheckInterval: 200 * time.Millisecond})}})
	testutil.Eventually(t, 15*time.Second, func() string {
		if st, _ := daemon.ReadStatus(state); !st.Connected {
			return "the agent's push channel is not up"
		}
		return ""
	})
	return state
}

func apiClient(t *testing.T, api *testutil.API, token string) *client.Client {
	t.Helper()
	c, err := client.New(api.URL, client.WithCAFile(api.CAFile), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitState polls a request until it leaves Approved.
func waitState(t *testing.T, c *client.Client, id string) wire.JITRequest {
	t.Helper()
	var r wire.JITRequest
	testutil.Eventually(t, 15*time.Second, func() string {
		var err error
		if r, err = c.GetJITRequest(t.Context(), id); err != nil {
			return err.Error()
		}
		if r.State == wire.JITApproved {
			return "the machine has not confirmed grant " + id
		}
		return ""
	})
	return r
}

func apiError(t *testing.T, err error) *wire.APIError {
	t.Helper()
	ae, ok := err.(*wire.APIError)
	if !ok {
		t.Fatalf("error %v (%T), want an API error", err, err)
	}
	return ae
}

// JIT end to end through the server and a real agent: the managed port is
// closed to the outside, a grant opens it to its one source, the kernel
// closes it on time, bad requests are refused with the reason, and the
// machine's confirmation is the request's outcome in the activity log.
func TestJITEndToEnd(t *testing.T) {
	w := newWorld(t)
	testutil.ServeEcho(t, w.machine, 22)
	s := testutil.StartServer(t, testutil.FastLifecycle())
	startAgent(t, s.API, "web-01", w, "")
	admin := apiClient(t, s.API, s.AdminToken(t))
	ctx := t.Context()
	machineScope := "/subscriptions/default/resourceGroups/rg1/machines/web-01"
	w.eventually(t, srcA, true)

	if _, err := admin.SetJITPolicy(ctx, machineScope, wire.JITPolicySet{Ports: []string{"22"}, AllowedSources: []string{"10.80.0.0/24"},
		MaxDuration: wire.Duration(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	w.eventually(t, srcA, false)
	testutil.Eventually(t, 10*time.Second, func() string {
		st, err := admin.JITStatus(ctx, "default", "rg1", "web-01")
		if err != nil || st.State != wire.JITStateApplied {
			return fmt.Sprintf("machine JIT state %+v, %v", st, err)
		}
		return ""
	})

	requester := apiClient(t, s.API, s.API.RolePrincipal(t, "JIT Requester", "/subscriptions/default/resourceGroups/rg1"))
	r, err := requester.RequestJIT(ctx, "default", "rg1", "web-01", wire.JITRequestCreate{Port: "22", SourceIP: srcA,
		Duration: wire.Duration(3 * time.Second), Justification: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	if r = waitState(t, requester, r.ID); r.State != wire.JITApplied {
		t.Fatalf("grant %+v", r)
	}
	if !w.open(t, srcA) {
		t.Fatal("the granted source cannot connect")
	}
	if w.open(t, srcB) {
		t.Fatal("another source connects through a grant that is not its own")
	}
	w.eventually(t, srcA, false) // the kernel closed it on time

	// Bad requests, each refused with the reason; nothing stored.
	for _, tc := range []struct {
		name string
		in   wire.JITRequestCreate
		want string
	}{
		{"source outside the allowed ranges", wire.JITRequestCreate{Port: "22", SourceIP: "192.0.2.1", Duration: wire.Duration(time.Minute)}, "outside the allowed source ranges"},
		{"the caller's own address by default", wire.JITRequestCreate{Port: "22", Duration: wire.Duration(time.Minute)}, "127.0.0.1 is outside the allowed source ranges"},
		{"duration over the maximum", wire.JITRequestCreate{Port: "22", SourceIP: srcA, Duration: wire.Duration(2 * time.Hour)}, "is over the maximum of 1h0m0s"},
		{"duration zero", wire.JITRequestCreate{Port: "22", SourceIP: srcA}, "must be positive"},
		{"port out of range", wire.JITRequestCreate{Port: "0", SourceIP: srcA, Duration: wire.Duration(time.Minute)}, "1 to 65535"},
	} {
		_, err := requester.RequestJIT(ctx, "default", "rg1", "web-01", tc.in)
		if ae := apiError(t, err); ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.name, ae.Status, ae.Message, tc.want)
		}
	}
	reader := apiClient(t, s.API, s.API.RolePrincipal(t, "Reader", "/"))
	_, err = reader.RequestJIT(ctx, "default", "rg1", "web-01", wire.JITRequestCreate{Port: "22", SourceIP: srcA, Duration: wire.Duration(time.Minute)})
	if ae := apiError(t, err); ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, "jitRequests/write") {
		t.Errorf("a Reader's request: %d %s", ae.Status, ae.Message)
	}
	// A request id is not confirmed to callers who may not read at its
	// machine (404), while a Reader there who may not revoke gets 403.
	s.MustDo(t, http.StatusCreated, "PUT", "/api/v1/subscriptions/default/resourceGroups/rg2", s.AdminToken(t), wire.ResourceGroupCreate{}, nil)
	elsewhere := apiClient(t, s.API, s.API.RolePrincipal(t, "JIT Requester", "/subscriptions/default/resourceGroups/rg2"))
	if _, err := elsewhere.GetJITRequest(ctx, r.ID); apiError(t, err).Status != http.StatusNotFound {
		t.Errorf("a JIT Requester of another group reads the request: %v", err)
	}
	if _, err := reader.JITRequestAction(ctx, r.ID, "revoke"); apiError(t, err).Status != http.StatusForbidden {
		t.Errorf("a Reader revokes a request: %v", err)
	}

	// Revoking closes it early.
	r, err = requester.RequestJIT(ctx, "default", "rg1", "web-01", wire.JITRequestCreate{Port: "22", SourceIP: srcB, Duration: wire.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, requester, r.ID)
	w.eventually(t, srcB, true)
	if _, err := requester.JITRequestAction(ctx, r.ID, "revoke"); err != nil {
		t.Fatal(err)
	}
	w.eventually(t, srcB, false)

	// The machine's confirmations are the requests' outcomes.
	entries, err := admin.ListActivity(ctx, client.ActivityQuery{Action: "Corral.Security/jitRequests/write", Result: wire.ResultSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := 0
	for _, e := range entries {
		if e.Method == "AGENT" && strings.Contains(e.Message, "open to "+srcA) && strings.Contains(e.Caller, "JIT-Requester") {
			outcomes++
		}
	}
	if outcomes != 1 {
		t.Errorf("outcome entries for the first grant: %d, want 1:\n%+v", outcomes, entries)
	}

	// Approval by another user.
	if _, err := admin.SetJITPolicy(ctx, machineScope, wire.JITPolicySet{Ports: []string{"22"}, RequireApproval: true}); err != nil {
		t.Fatal(err)
	}
	r, err = requester.RequestJIT(ctx, "default", "rg1", "web-01", wire.JITRequestCreate{Port: "22", SourceIP: srcA, Duration: wire.Duration(time.Hour)})
	if err != nil || r.State != wire.JITPending {
		t.Fatalf("request under approval: %+v, %v", r, err)
	}
	time.Sleep(500 * time.Millisecond)
	if w.open(t, srcA) {
		t.Fatal("a request waiting for approval opened the port")
	}
	if _, err := requester.JITRequestAction(ctx, r.ID, "approve"); err == nil {
		t.Error("a JIT Requester approved a request")
	}
	if _, err := admin.JITRequestAction(ctx, r.ID, "approve"); err != nil {
		t.Fatal(err)
	}
	w.eventually(t, srcA, true)
}

// sshClient logs in to the machine's sshd through a tunnel of the control
// plane with a certificate from it, checking the host key the agent
// reported.
func sshClient(t *testing.T, c *client.Client, port int, login string) (*ssh.Client, wire.SSHCertificate) {
	t.Helper()
	k, err := sshcert.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.SSHCertificate(t.Context(), "default", "rg1", "web-01", wire.SSHCertificateRequest{PublicKey: string(k.AuthorizedKey()), Login: login})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := k.ParseCertificate([]byte(cert.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := k.Signer(parsed)
	if err != nil {
		t.Fatal(err)
	}
	var hostKeys []ssh.PublicKey
	for _, h := range cert.HostKeys {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h))
		if err != nil {
			t.Fatal(err)
		}
		hostKeys = append(hostKeys, pk)
	}
	tun, err := c.OpenStream(t.Context(), client.TunnelPath("default", "rg1", "web-01", port, cert.ID))
	if err != nil {
		t.Fatal(err)
	}
	conn, chans, reqs, err := ssh.NewClientConn(tunnelConn{tun}, "web-01", &ssh.ClientConfig{User: cert.Login, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			for _, h := range hostKeys {
				if bytes.Equal(h.Marshal(), key.Marshal()) {
					return nil
				}
			}
			return fmt.Errorf("host key %s is not one the agent reported", ssh.FingerprintSHA256(key))
		}, Timeout: 15 * time.Second})
	if err != nil {
		t.Fatalf("ssh login as %s: %v", cert.Login, err)
	}
	cl := ssh.NewClient(conn, chans, reqs)
	t.Cleanup(func() { cl.Close() })
	return cl, cert
}

func runSSH(t *testing.T, cl *ssh.Client, command string) string {
	t.Helper()
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, _ := sess.CombinedOutput(command)
	return strings.TrimSpace(string(out))
}

// tunnelConn makes a tunnel a net.Conn for the SSH client.
type tunnelConn struct{ *client.Tunnel }

func (tunnelConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (tunnelConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (tunnelConn) SetDeadline(time.Time) error      { return nil }
func (tunnelConn) SetReadDeadline(time.Time) error  { return nil }
func (tunnelConn) SetWriteDeadline(time.Time) error { return nil }

// With two replicas on PostgreSQL: a grant made through one is applied by
// the agent connected to the other; SSH sessions work whichever replica
// the user and the agent reached, with the login the role gives; a session
// relayed by one replica is ended from the other.
func TestAcrossReplicas(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	w := newWorld(t)
	tree := testutil.SSHTree(t)
	testutil.StartSSHD(t, w.machine, tree)
	a := testutil.StartServer(t, steadyLifecycle, testutil.WithStore(dsn))
	b := testutil.StartServer(t, steadyLifecycle, testutil.WithStore(dsn), testutil.WithCAFrom(a))
	// The agent runs in this process: it reaches the namespace's sshd
	// through a forwarder on this process's loopback.
	fwd := testutil.ForwardToNetNS(t, w.machine, "127.0.0.1:22")
	startAgent(t, b.API, "web-01", w, tree, localconfig.KeyIncomingPorts, strconv.Itoa(fwd), localconfig.KeySSHManage, "true")
	adminA, adminB := apiClient(t, a.API, a.AdminToken(t)), apiClient(t, b.API, b.AdminToken(t))
	ctx := t.Context()

	// A grant through replica a, applied by the agent connected to b.
	if _, err := adminA.SetJITPolicy(ctx, "/subscriptions/default/resourceGroups/rg1", wire.JITPolicySet{Ports: []string{"22"}}); err != nil {
		t.Fatal(err)
	}
	w.eventually(t, srcA, false)
	r, err := adminA.RequestJIT(ctx, "default", "rg1", "web-01", wire.JITRequestCreate{Port: "22", SourceIP: srcA, Duration: wire.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if r = waitState(t, adminA, r.ID); r.State != wire.JITApplied {
		t.Fatalf("grant %+v", r)
	}
	w.eventually(t, srcA, true)

	// SSH: the machine reports it manages certificate logins.
	testutil.Eventually(t, 60*time.Second, func() string {
		_, err := adminA.SSHCertificate(ctx, "default", "rg1", "web-01", wire.SSHCertificateRequest{PublicKey: "x"})
		if ae, ok := err.(*wire.APIError); ok && ae.Code == "SSHNotManaged" {
			return ae.Message
		}
		return ""
	})
	userA := apiClient(t, a.API, a.API.RolePrincipal(t, "Virtual Machine User Login", "/subscriptions/default/resourceGroups/rg1"))
	userB := apiClient(t, b.API, b.API.RolePrincipal(t, "Virtual Machine User Login", "/subscriptions/default/resourceGroups/rg1"))
	for name, c := range map[string]*client.Client{"user on the other replica": userA, "user on the agent's replica": userB} {
		cl, cert := sshClient(t, c, fwd, "")
		if cert.Login != localconfig.DefaultSSHUser || !strings.HasPrefix(cert.Principal, "user@") {
			t.Errorf("%s: certificate for %s (%s), want the unprivileged account", name, cert.Login, cert.Principal)
		}
		out := runSSH(t, cl, "id -un; id -u; sudo -n true 2>/dev/null && echo SUDO-OK || echo SUDO-REFUSED")
		if f := strings.Fields(out); len(f) < 3 || f[0] != "corral-user" || f[1] == "0" || f[len(f)-1] != "SUDO-REFUSED" {
			t.Errorf("%s: %q, want corral-user with a non-zero uid and sudo refused", name, out)
		}
		cl.Close()
	}
	cl, cert := sshClient(t, adminB, fwd, "")
	if out := runSSH(t, cl, "id -un; sudo -n id -u 2>/dev/null"); out != "corral-admin\n0" {
		t.Errorf("administrator login: %q, want corral-admin and sudo to uid 0", out)
	}
	if cert.Login != localconfig.DefaultSSHAdminUser {
		t.Errorf("administrator certificate for %s", cert.Login)
	}
	cl.Close()

	// A session relayed by replica b (user and agent there) is ended from a.
	cl, _ = sshClient(t, userB, fwd, "")
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	if err := sess.Start("echo started; sleep 120"); err != nil {
		t.Fatal(err)
	}
	var running wire.SSHSession
	testutil.Eventually(t, 15*time.Second, func() string {
		xs, err := adminA.ListSSHSessions(ctx, "/subscriptions/default", true)
		if err != nil || len(xs) != 1 {
			return fmt.Sprintf("active sessions %+v, %v", xs, err)
		}
		running = xs[0]
		return ""
	})
	if running.Login != "corral-user" || !strings.Contains(running.User, "Virtual-Machine-User-Login") {
		t.Errorf("running session %+v", running)
	}
	ended := make(chan error, 1)
	go func() { ended <- sess.Wait() }()
	start := time.Now()
	if _, err := adminA.EndSSHSession(ctx, running.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the session relayed by the other replica did not end")
	}
	took := time.Since(start)
	var x wire.SSHSession
	testutil.Eventually(t, 10*time.Second, func() string {
		var err error
		if x, err = adminB.GetSSHSession(ctx, running.ID); err != nil || x.State != wire.SessionEnded {
			return fmt.Sprintf("session %+v, %v", x, err)
		}
		return ""
	})
	if x.EndReason != "ended by admin" || x.BytesToMachine == 0 || x.BytesFromMachine == 0 {
		t.Errorf("ended session %+v", x)
	}
	t.Logf("a session relayed by replica b ended %s after replica a was asked", took.Round(time.Millisecond))
	entries, err := adminA.ListActivity(ctx, client.ActivityQuery{Action: "Corral.HybridCompute/machines/login/action"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		found = found || strings.Contains(e.Message, "SSH session "+running.ID+":") && strings.Contains(e.Message, "as corral-user") &&
			strings.Contains(e.Message, "bytes to the machine") && strings.Contains(e.Message, "ended by admin")
	}
	if !found {
		t.Errorf("no activity entry for the ended session:\n%+v", entries)
	}
}
