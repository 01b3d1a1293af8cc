package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/loadgen"
	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/replicas"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// Timing of the replicas under test. The real agent heartbeats at least
// every daemon.MinHeartbeatInterval (5 s) whatever it is told, so a machine
// goes Disconnected after 12 s of silence; the sweeper runs every 500 ms.
const (
	replicaHeartbeat  = 5 * time.Second
	replicaDisconnect = 12 * time.Second
	simHeartbeat      = 2 * time.Second
	simAgents         = 200
	quietAgents       = 20 // stopped to watch the sweeper
)

// TestThreeReplicasBehindHAProxy is issue 15's topology for real: a fresh
// PostgreSQL database, three `corral server` replicas sharing the CA and the
// three signing keys made with openssl as docs/deploy.md says, HAProxy with
// packaging/haproxy/corral.cfg in TCP pass-through, 200 simulated agents and
// two real `corral-agent`s, all through HAProxy. It proves that
//
//	(a) a change made through any replica's API reaches agents held by the
//	    others in well under a second (tag changes, an extension, run
//	    commands);
//	(b) a replica killed with SIGKILL loses its agents to the others within
//	    seconds, and every report made before, during and after is stored
//	    exactly once;
//	(c) the singleton jobs (the status sweeper and the run-command expiry it
//	    carries) honour one advisory lock across the replicas and record each
//	    transition once;
//	(d) an SSH tunnel works when the user's replica is not the agent's
//	    (relayed to the --advertise-url of the user's replica).
func TestThreeReplicasBehindHAProxy(t *testing.T) {
	haproxy := testutil.NeedTool(t, "haproxy")
	openssl := testutil.NeedTool(t, "openssl")
	dsn := testutil.PostgresDatabase(t) // dropped last: registered first
	corral, agentBin := binaries(t)
	began := time.Now()
	ctx := t.Context()

	// The shipped HAProxy configuration is valid as it is.
	shipped, err := os.ReadFile(shippedHAProxyConfig)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, nil, nil, haproxy, "-c", "-f", shippedHAProxyConfig); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", shippedHAProxyConfig, err, out)
	}

	// The CA and the signing keys, made once and shared (docs/deploy.md).
	keys := t.TempDir()
	for _, args := range [][]string{
		{"req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
			"-keyout", filepath.Join(keys, "ca.key"), "-out", filepath.Join(keys, "ca.crt"), "-days", "3650",
			"-subj", "/O=Corral/CN=Corral CA", "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
			"-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"},
		{"genpkey", "-algorithm", "ed25519", "-out", filepath.Join(keys, "token-signing.key")},
		{"genpkey", "-algorithm", "ed25519", "-out", filepath.Join(keys, "extension-signing.key")},
		{"genpkey", "-algorithm", "ed25519", "-out", filepath.Join(keys, "signature-signing.key")},
	} {
		if out, err := run(t, nil, nil, openssl, args...); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	caFile := filepath.Join(keys, "ca.crt")

	// Three replicas, started together (they race to migrate and bootstrap).
	lbPort := freePort(t, lbIP)
	lbAddr := net.JoinHostPort(lbIP, strconv.Itoa(lbPort))
	lbURL := "https://" + lbAddr
	reps := make([]*replica, len(replicaIPs))
	// Each replica is configured as packaging/corral-server.env says, with
	// this test's values; only the lifecycle timings are flags.
	startReplica := func(r *replica) {
		env := serverEnv(t, map[string]string{
			"CORRAL_DATA_DIR": r.dataDir, "CORRAL_LISTEN": strings.TrimPrefix(r.url, "https://"), "CORRAL_STORE": dsn,
			"CORRAL_CA_CERT": caFile, "CORRAL_CA_KEY": filepath.Join(keys, "ca.key"),
			"CORRAL_TOKEN_SIGNING_KEY":     filepath.Join(keys, "token-signing.key"),
			"CORRAL_EXTENSION_SIGNING_KEY": filepath.Join(keys, "extension-signing.key"),
			"CORRAL_SIGNATURE_SIGNING_KEY": filepath.Join(keys, "signature-signing.key"),
			"CORRAL_HOST":                  lbIP, "CORRAL_ADVERTISE_URL": r.url, "CORRAL_LOG_FORMAT": "json",
		})
		r.proc = start(t, append(env, "CORRAL_ADMIN_PASSWORD="+adminPassword), corral, "server",
			"--heartbeat-interval", replicaHeartbeat.String(), "--disconnect-after", replicaDisconnect.String(),
			"--sweep-interval", "500ms")
	}
	for i, ip := range replicaIPs {
		addr := net.JoinHostPort(ip, strconv.Itoa(freePort(t, ip)))
		reps[i] = &replica{name: fmt.Sprintf("corral-%d", i+1), url: "https://" + addr, dataDir: t.TempDir()}
		startReplica(reps[i])
	}
	for _, r := range reps {
		r.proc.waitFor(t, "Corral control plane at ", 60*time.Second)
		r.api = testutil.NewAPI(t, r.url, caFile, adminPassword)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range reps {
				out := r.proc.out.String()
				t.Logf("%s log (last 4 KiB):\n%s", r.name, out[max(0, len(out)-4096):])
			}
		}
	})

	// HAProxy in front of them, with the shipped configuration.
	servers := make([]string, len(reps))
	for i, r := range reps {
		servers[i] = strings.TrimPrefix(r.url, "https://")
	}
	cfg := writeTestFile(t, t.TempDir(), "haproxy.cfg", haproxyConfig(t, string(shipped), lbAddr, servers))
	if out, err := run(t, nil, nil, haproxy, "-c", "-f", cfg); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	lb := start(t, nil, haproxy, "-db", "-f", cfg)
	lbAPI := testutil.NewAPI(t, lbURL, caFile, adminPassword)
	testutil.Eventually(t, 15*time.Second, func() string {
		resp, err := lbAPI.Client.Get(lbURL + "/readyz")
		if err != nil {
			return fmt.Sprintf("readyz through HAProxy: %v\n%s", err, lb.out.String())
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Sprintf("readyz through HAProxy: %s", resp.Status)
		}
		return ""
	})

	// One token, issued by replica 1, works on every replica: they share
	// the token signing key.
	admin := reps[0].api.AdminToken(t)
	for _, r := range append(reps[1:], &replica{name: "lb", api: lbAPI}) {
		r.api.MustDo(t, 200, "GET", "/api/v1/subscriptions", admin, nil, nil)
	}
	t.Logf("setup: 3 replicas and HAProxy ready in %s", time.Since(began).Round(time.Millisecond))

	// 200 simulated agents through HAProxy.
	watch := newFleetWatch()
	fleet, err := loadgen.NewFleet(ctx, loadgen.Options{Server: lbURL, CAFile: caFile, Username: "admin", Password: adminPassword,
		ResourceGroup: "fleet", HeartbeatInterval: simHeartbeat}, watch.on)
	if err != nil {
		t.Fatalf("fleet: %v", err)
	}
	sims := make([]*loadgen.Agent, simAgents)
	stops := make([]context.CancelFunc, simAgents)
	var running sync.WaitGroup
	t.Cleanup(func() {
		for _, stop := range stops {
			if stop != nil {
				stop()
			}
		}
		running.Wait()
	})
	onboarded := time.Now()
	parallel(t, simAgents, 16, func(i int) error {
		a, err := fleet.Onboard(ctx, fmt.Sprintf("sim-%03d", i))
		if err != nil {
			return err
		}
		actx, stop := context.WithCancel(ctx)
		sims[i], stops[i] = a, stop
		running.Go(func() { a.Run(actx) })
		return nil
	})
	simIDs := make([]string, simAgents)
	for i, a := range sims {
		simIDs[i] = a.MachineID()
	}
	testutil.Eventually(t, 60*time.Second, func() string {
		if n := watch.connected(simIDs); n < simAgents {
			return fmt.Sprintf("%d of %d simulated agents connected", n, simAgents)
		}
		return ""
	})
	t.Logf("%d simulated agents onboarded and connected through HAProxy in %s", simAgents, time.Since(onboarded).Round(time.Millisecond))

	// Two real agents through HAProxy; the first lets tunnels reach an echo
	// server on its loopback.
	echoPort := echoServer(t)
	clientID, secret := lbAPI.OnboardingPrincipal(t, "real")
	secretFile := testutil.WriteSecretFile(t, secret)
	type realAgent struct {
		name, state string
		proc        *proc
	}
	reals := make([]*realAgent, 2)
	for i := range reals {
		ra := &realAgent{name: fmt.Sprintf("real-%d", i+1), state: t.TempDir()}
		root := t.TempDir()
		agentArgs := func(args ...string) []string {
			return append([]string{"--state-dir", ra.state, "--root", root, "--imds-endpoint", "none"}, args...)
		}
		if out, err := run(t, nil, nil, agentBin, agentArgs("connect", "--server", lbURL, "--ca-file", caFile,
			"--subscription-id", "default", "--resource-group", "real", "--service-principal-id", clientID,
			"--service-principal-secret-file", secretFile, "--name", ra.name)...); err != nil {
			t.Fatalf("connect %s through HAProxy: %v\n%s", ra.name, err, out)
		}
		if out, err := run(t, nil, nil, agentBin, agentArgs("config", "set", "incomingconnections.ports", strconv.Itoa(echoPort))...); err != nil {
			t.Fatalf("config set: %v\n%s", err, out)
		}
		ra.proc = start(t, nil, agentBin, agentArgs("run")...)
		reals[i] = ra
	}
	for _, ra := range reals {
		testutil.Eventually(t, 20*time.Second, func() string {
			if st, _ := daemon.ReadStatus(ra.state); !st.Connected {
				return ra.name + "'s push channel is not up:\n" + ra.proc.out.String()
			}
			return ""
		})
	}
	holder := func(id string) string {
		addr, up, _ := watch.state(id)
		if !up {
			return ""
		}
		return holderOf(t, lb, addr)
	}
	realHolder := map[string]string{}
	for _, ra := range reals {
		realHolder[ra.name] = realAgentHolder(t, lb, ra.proc, lbAddr)
	}
	perReplica := map[string]int{}
	for _, id := range simIDs {
		perReplica[holder(id)]++
	}
	t.Logf("agents per replica: %v (real agents: %v)", perReplica, realHolder)
	for _, r := range reps {
		if perReplica[r.name] == 0 {
			t.Fatalf("HAProxy gave replica %s no agent: %v", r.name, perReplica)
		}
	}

	// (c), part 1: 20 agents fall silent while the test holds the sweeper's
	// advisory lock, and two run commands (timeout 2 s) wait on one of them
	// for an agent that never takes them. No replica may sweep meanwhile.
	quiet, live := sims[:quietAgents], sims[quietAgents:]
	for i := range quietAgents {
		stops[i]()
	}
	lockConn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Close(context.WithoutCancel(ctx))
	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_lock($1)", replicas.SweeperLockKey); err != nil {
		t.Fatalf("take the sweeper lock: %v", err)
	}
	locked := time.Now()
	machinePath := func(rg, name string) string {
		return "/api/v1/subscriptions/default/resourceGroups/" + rg + "/machines/" + name
	}
	expiring := map[string]*replica{"expire-1": reps[1], "expire-2": reps[2]}
	for name, r := range expiring {
		r.api.MustDo(t, 201, "PUT", machinePath("fleet", quiet[0].Name())+"/runCommands/"+name, admin,
			wire.RunCommandCreate{Command: "true", Timeout: wire.Duration(2 * time.Second)}, nil)
	}

	// (a) Pushes: a tag change on every live simulated agent through each
	// replica's own API in turn; each is timed until the agent's channel
	// announces the new desired state, and classed by whether the agent's
	// replica is the one that made the change.
	var cross, local latency
	var mu sync.Mutex
	for _, r := range reps {
		parallel(t, len(live), 8, func(i int) error {
			a := live[i]
			h := holder(a.MachineID())
			d, ok, err := watch.timePush(a.MachineID(), func() error {
				status, b := r.api.Do(t, "PATCH", machinePath("fleet", a.Name()), admin,
					wire.MachineUpdate{Tags: map[string]string{"via": r.name}})
				if status != 200 {
					return fmt.Errorf("PATCH through %s: %d %s", r.name, status, b)
				}
				return nil
			})
			switch {
			case err != nil:
				return err
			case !ok:
				return fmt.Errorf("a tag change through %s never reached %s (on %s)", r.name, a.Name(), h)
			}
			mu.Lock()
			defer mu.Unlock()
			if h == r.name {
				local = append(local, d)
			} else {
				cross = append(cross, d)
			}
			return nil
		})
	}
	t.Logf("PUSH tag change -> simulated agent, made on another replica: %s", cross)
	t.Logf("PUSH tag change -> simulated agent, made on the agent's replica: %s", local)
	if len(cross) < len(live) || cross.p99() >= time.Second {
		t.Errorf("pushes across replicas: %s; want at least %d, p99 under 1 s", cross, len(live))
	}

	// The real agents: a tag change and a run command through every
	// replica, an extension through one that does not hold the agent; each
	// change timed until it is in the agent's desired state on disk.
	var realCross latency
	for _, ra := range reals {
		var ext *replica
		for i, r := range reps {
			d := waitDesired(t, ra.state, `"via-`+r.name+`"`, func() {
				r.api.MustDo(t, 200, "PATCH", machinePath("real", ra.name), admin,
					wire.MachineUpdate{Tags: map[string]string{"via": "via-" + r.name}}, nil)
			})
			// Run commands are not kept on disk: timed until the agent
			// reported the run started or done, an upper bound of the push.
			run := fmt.Sprintf("hello-%d", i+1)
			d2 := waitStarted(t, r.api, admin, machinePath("real", ra.name)+"/runCommands/"+run, func() {
				r.api.MustDo(t, 201, "PUT", machinePath("real", ra.name)+"/runCommands/"+run, admin,
					wire.RunCommandCreate{Command: "echo hello from " + r.name}, nil)
			})
			if realHolder[ra.name] != r.name {
				realCross = append(realCross, d, d2)
				ext = r
			}
		}
		d := waitDesired(t, ra.state, `"runcommand"`, func() {
			ext.api.MustDo(t, 201, "PUT", machinePath("real", ra.name)+"/extensions/runcommand", admin,
				wire.MachineExtensionSet{Publisher: wire.PublisherCorral, Type: "RunCommand"}, nil)
		})
		realCross = append(realCross, d)
		for i, r := range reps {
			waitRun(t, lbAPI, admin, machinePath("real", ra.name), fmt.Sprintf("hello-%d", i+1), "hello from "+r.name)
		}
		testutil.Eventually(t, 20*time.Second, func() string {
			var e wire.MachineExtension
			lbAPI.MustDo(t, 200, "GET", machinePath("real", ra.name)+"/extensions/runcommand", admin, nil, &e)
			if e.State != wire.ExtSucceeded {
				return ra.name + ": extension set through " + ext.name + " is " + e.State
			}
			return ""
		})
	}
	t.Logf("PUSH change -> real agent (tags and extension: in its desired state on disk; runs: reported started), made on another replica: %s", realCross)
	if realCross.p99() >= time.Second {
		t.Errorf("pushes to the real agents across replicas: %s; want p99 under 1 s", realCross)
	}

	// (d) A tunnel to the first real agent's echo server, opened by a user
	// on each replica and through HAProxy; the agent's channel is on one of
	// them, so at least two are relayed between replicas.
	payload := bytes.Repeat([]byte("relayed across replicas\n"), 4096)
	tunnelPath := machinePath("real", reals[0].name) + "/tunnel?port=" + strconv.Itoa(echoPort)
	for _, target := range []struct{ name, url string }{
		{reps[0].name, reps[0].url}, {reps[1].name, reps[1].url}, {reps[2].name, reps[2].url}, {"HAProxy", lbURL},
	} {
		c, err := client.New(target.url, client.WithCAFile(caFile), client.WithToken(admin))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := tunnelRoundTrip(ctx, c, tunnelPath, payload); err != nil {
			t.Errorf("tunnel opened on %s to %s (held by %s): %v", target.name, reals[0].name, realHolder[reals[0].name], err)
			continue
		}
		how := "on the agent's replica"
		if target.name != realHolder[reals[0].name] {
			how = "relayed from " + realHolder[reals[0].name]
		}
		t.Logf("TUNNEL user on %s -> %s (%s): %d bytes both ways in %s", target.name, reals[0].name, how, len(payload), time.Since(start).Round(time.Millisecond))
	}

	// (c), part 2: past the disconnect threshold and the run commands'
	// timeout, nothing moved while the lock was held.
	time.Sleep(time.Until(locked.Add(replicaDisconnect + 2*time.Second)))
	counts := machineStatuses(t, lbAPI, admin, "fleet")
	for _, a := range quiet {
		if s := counts[a.Name()]; s != wire.StatusConnected {
			t.Errorf("%s became %s while the test held the sweeper's lock: a replica swept without it", a.Name(), s)
		}
	}
	for name := range expiring {
		var rc wire.RunCommand
		lbAPI.MustDo(t, 200, "GET", machinePath("fleet", quiet[0].Name())+"/runCommands/"+name, admin, nil, &rc)
		if rc.State != wire.RunPending {
			t.Errorf("run %s is %s while the test held the sweeper's lock: a replica expired it without the lock", name, rc.State)
		}
	}
	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_unlock($1)", replicas.SweeperLockKey); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	testutil.Eventually(t, 10*time.Second, func() string {
		counts = machineStatuses(t, lbAPI, admin, "fleet")
		for _, a := range quiet {
			if s := counts[a.Name()]; s != wire.StatusDisconnected {
				return a.Name() + " is " + s
			}
		}
		return ""
	})
	t.Logf("SWEEP lock released: the %d silent machines went Disconnected in %s", quietAgents, time.Since(released).Round(time.Millisecond))
	for name := range expiring {
		testutil.Eventually(t, 10*time.Second, func() string {
			var rc wire.RunCommand
			lbAPI.MustDo(t, 200, "GET", machinePath("fleet", quiet[0].Name())+"/runCommands/"+name, admin, nil, &rc)
			if rc.State != wire.RunFailed {
				return "run " + name + " is " + rc.State
			}
			return ""
		})
	}

	// (b) Failover with reports in flight. Every live simulated agent keeps
	// an outbox of detection reports (ids it made before, during and after
	// the kill) and sends it every ~700 ms until acknowledged; the real
	// agents run commands before, across and after it.
	victim := realHolder[reals[0].name]
	var victimRep *replica
	for _, r := range reps {
		if r.name == victim {
			victimRep = r
		}
	}
	onVictim := map[string]bool{}
	for _, a := range live {
		if holder(a.MachineID()) == victim {
			onVictim[a.MachineID()] = true
		}
	}
	outboxes := make([]*outbox, len(live))
	for i, a := range live {
		outboxes[i] = &outbox{agent: a}
		outboxes[i].add("b")
	}
	parallel(t, len(live), 16, func(i int) error { return outboxes[i].flush(ctx) })
	for _, ra := range reals {
		lbAPI.MustDo(t, 201, "PUT", machinePath("real", ra.name)+"/runCommands/before", admin, wire.RunCommandCreate{Command: "echo before"}, nil)
		waitRun(t, lbAPI, admin, machinePath("real", ra.name), "before", "before")
		// Started now, finished after the kill: its result is reported to
		// whichever replica the agent reaches then.
		lbAPI.MustDo(t, 201, "PUT", machinePath("real", ra.name)+"/runCommands/across", admin, wire.RunCommandCreate{Command: "sleep 3; echo across"}, nil)
	}
	reportCtx, stopReports := context.WithCancel(ctx)
	var reporters sync.WaitGroup
	var sendErrors sync.Map
	for _, ob := range outboxes {
		reporters.Go(func() {
			seq := 0
			for reportCtx.Err() == nil {
				seq++
				ob.add("d" + strconv.Itoa(seq))
				if err := ob.flush(reportCtx); err != nil && reportCtx.Err() == nil {
					sendErrors.Store(ob.agent.Name(), err.Error())
				}
				select {
				case <-reportCtx.Done():
				case <-time.After(500*time.Millisecond + rand.N(400*time.Millisecond)):
				}
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	rssBefore := map[string]string{}
	for _, r := range reps {
		rss, cpu := usage(r.proc.cmd.Process.Pid)
		n := perReplicaCount(live, holder, r.name)
		for _, ra := range reals {
			if realHolder[ra.name] == r.name {
				n++
			}
		}
		rssBefore[r.name] = fmt.Sprintf("%d agents, %.0f MiB RSS, %s CPU since start", n, rss, cpu.Round(10*time.Millisecond))
	}
	killed := time.Now()
	if err := victimRep.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victimRep.proc.done
	var failover latency
	testutil.Eventually(t, 30*time.Second, func() string {
		failover = failover[:0]
		for id := range onVictim {
			addr, up, upAt := watch.state(id)
			if !up || !upAt.After(killed) {
				return fmt.Sprintf("%s's agent is not back", id)
			}
			if h := lbHolders(lb)[addr]; h == "" || h == victim {
				return fmt.Sprintf("%s's agent came back on %q", id, h)
			}
			failover = append(failover, upAt.Sub(killed))
		}
		return ""
	})
	testutil.Eventually(t, 30*time.Second, func() string {
		st, _ := daemon.ReadStatus(reals[0].state)
		if !st.Connected || !st.ConnectedSince.After(killed) {
			return "the real agent on the killed replica is not back: " + st.LastError
		}
		return ""
	})
	realBack := time.Since(killed)
	newHolder := realAgentHolder(t, lb, reals[0].proc, lbAddr)
	if newHolder == victim {
		t.Fatalf("the real agent is back on the killed replica %s", victim)
	}
	t.Logf("FAILOVER %s SIGKILLed holding %d simulated agents and %s: all back on the others in %s (%s); the real agent back on %s in %s",
		victim, len(onVictim), reals[0].name, failover.max().Round(time.Millisecond), failover, newHolder, realBack.Round(time.Millisecond))
	time.Sleep(3 * time.Second) // reports keep coming after the failover
	stopReports()
	reporters.Wait()
	for _, ob := range outboxes {
		ob.add("a")
	}
	testutil.Eventually(t, 30*time.Second, func() string {
		var errs []string
		parallel(t, len(outboxes), 16, func(i int) error {
			if err := outboxes[i].flush(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
			return nil
		})
		if len(errs) > 0 {
			return fmt.Sprintf("%d outboxes not delivered: %s", len(errs), errs[0])
		}
		return ""
	})
	for _, ra := range reals {
		lbAPI.MustDo(t, 201, "PUT", machinePath("real", ra.name)+"/runCommands/after", admin, wire.RunCommandCreate{Command: "echo after"}, nil)
	}

	// Every report arrived exactly once.
	made, resent := 0, 0
	want := map[string]bool{}
	for _, ob := range outboxes {
		for _, id := range ob.made {
			want[ob.agent.MachineID()+"/"+id] = true
		}
		made += len(ob.made)
		resent += ob.resent
	}
	got := map[string]int{}
	rows, err := lockConn.Query(ctx, "SELECT machine_id, detection_id FROM protection_alerts")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m, d string
		if err := rows.Scan(&m, &d); err != nil {
			t.Fatal(err)
		}
		got[m+"/"+d]++
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	lost, dup := 0, 0
	for id := range want {
		switch got[id] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	t.Logf("REPORTS %d made by %d agents before, during and after the kill: %d stored, %d lost, %d stored twice (%d sent again after a failed delivery; agents that saw a delivery fail: %d)",
		made, len(outboxes), len(got), lost, dup, resent, countMap(&sendErrors))
	if lost != 0 || dup != 0 || len(got) != len(want) {
		t.Errorf("reports: %d made, %d stored, %d lost, %d duplicated", len(want), len(got), lost, dup)
	}
	for _, ra := range reals {
		for run, out := range map[string]string{"across": "across", "after": "after"} {
			waitRun(t, lbAPI, admin, machinePath("real", ra.name), run, out)
		}
		// Each run's outcome is in the activity log once, even where its
		// result was delivered twice.
		for _, run := range []string{"before", "across", "after"} {
			wantOneOutcome(t, lbAPI, admin, "real", ra.name, run)
		}
	}

	// Nothing went Disconnected in the failover: only the 20 silent
	// machines changed status during the whole run, each once, across the
	// three replicas' sweepers; the expired runs were logged once each.
	counts = machineStatuses(t, lbAPI, admin, "fleet")
	for _, a := range live {
		if s := counts[a.Name()]; s != wire.StatusConnected {
			t.Errorf("%s is %s after the failover", a.Name(), s)
		}
	}
	changes, byReplica := 0, map[string]int{}
	for _, r := range reps {
		n := statusChanges(r)
		changes += n
		byReplica[r.name] = n
	}
	t.Logf("SWEEP status changes logged by the replicas' sweepers: %v (total %d, want %d)", byReplica, changes, quietAgents)
	if changes != quietAgents {
		t.Errorf("the sweepers recorded %d status changes, want %d (one per silent machine)", changes, quietAgents)
	}
	for name := range expiring {
		wantOneOutcome(t, lbAPI, admin, "fleet", quiet[0].Name(), name)
	}

	// Pushes still cross the two survivors.
	var after latency
	moved := 0
	for _, a := range live {
		if !onVictim[a.MachineID()] || moved == 20 {
			continue
		}
		moved++
		h := holder(a.MachineID())
		for _, r := range reps {
			if r == victimRep || r.name == h {
				continue
			}
			d, ok, err := watch.timePush(a.MachineID(), func() error {
				status, b := r.api.Do(t, "PATCH", machinePath("fleet", a.Name()), admin, wire.MachineUpdate{Tags: map[string]string{"after": "failover"}})
				if status != 200 {
					return fmt.Errorf("%d %s", status, b)
				}
				return nil
			})
			if err != nil || !ok {
				t.Errorf("push to moved agent %s through %s: arrived %v, %v", a.Name(), r.name, ok, err)
				continue
			}
			after = append(after, d)
		}
	}
	t.Logf("PUSH after the failover, to moved agents from the other survivor: %s", after)

	// An upgrade, one replica at a time: the killed replica comes back
	// (same data directory and flags) and HAProxy sends it new connections;
	// then another replica stops gracefully (SIGTERM, as systemd stops it
	// for an upgrade): its agents are told to go and reconnect through
	// HAProxy, the restarted replica among the ones taking them.
	startReplica(victimRep)
	victimRep.proc.waitFor(t, "Corral control plane at ", 60*time.Second)
	var upgraded *replica
	for _, r := range reps {
		if r != victimRep && (upgraded == nil || perReplicaCount(live, holder, r.name) > perReplicaCount(live, holder, upgraded.name)) {
			upgraded = r
		}
	}
	onUpgraded := map[string]bool{}
	for _, a := range live {
		if holder(a.MachineID()) == upgraded.name {
			onUpgraded[a.MachineID()] = true
		}
	}
	time.Sleep(3 * time.Second) // HAProxy's health check: rise 2, inter 1s
	stopped := time.Now()
	upgraded.proc.stop(t)
	stopTook := time.Since(stopped)
	var moved2 latency
	landed := map[string]int{}
	testutil.Eventually(t, 30*time.Second, func() string {
		moved2, landed = moved2[:0], map[string]int{}
		for id := range onUpgraded {
			addr, up, upAt := watch.state(id)
			if !up || !upAt.After(stopped) {
				return fmt.Sprintf("%s's agent is not back", id)
			}
			h := lbHolders(lb)[addr]
			if h == "" || h == upgraded.name {
				return fmt.Sprintf("%s's agent came back on %q", id, h)
			}
			landed[h]++
			moved2 = append(moved2, upAt.Sub(stopped))
		}
		return ""
	})
	t.Logf("UPGRADE %s restarted after the kill; %s stopped gracefully in %s: its %d agents back in %s (%s), on %v",
		victimRep.name, upgraded.name, stopTook.Round(time.Millisecond), len(onUpgraded), moved2.max().Round(time.Millisecond), moved2, landed)
	if landed[victimRep.name] == 0 {
		t.Errorf("HAProxy sent none of the moving agents to the restarted replica %s: %v", victimRep.name, landed)
	}
	counts = machineStatuses(t, lbAPI, admin, "fleet")
	for _, a := range live {
		if s := counts[a.Name()]; s != wire.StatusConnected {
			t.Errorf("%s is %s after the graceful stop", a.Name(), s)
		}
	}

	// Figures for the sizing table: each replica while it held its third
	// of the agents, reporting, with the pushes and tunnels behind it.
	for _, r := range reps {
		t.Logf("SIZE %s before the kill: %s", r.name, rssBefore[r.name])
	}
	if n, first := fleet.Errors(); n > 0 {
		t.Logf("the simulated agents met %d errors (channels ended by the kill among them); first: %s", n, first)
	}
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// perReplicaCount counts the agents among live that replica holds.
func perReplicaCount(live []*loadgen.Agent, holder func(string) string, replica string) int {
	n := 0
	for _, a := range live {
		if holder(a.MachineID()) == replica {
			n++
		}
	}
	return n
}

// parallel runs f(0..n-1) on workers goroutines and fails on the first error.
func parallel(t *testing.T, n, workers int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// outbox is a simulated agent's undelivered reports, kept until the
// control plane acknowledges them, as the real agent's outbox does.
type outbox struct {
	agent   *loadgen.Agent
	mu      sync.Mutex
	pending []wire.Report
	made    []string
	resent  int // reports sent again after a delivery failed
	failed  map[string]bool
}

// add makes a detection report whose id ends in suffix.
func (o *outbox) add(suffix string) {
	id := o.agent.Name() + "-" + suffix
	det := wire.ProtectionDetection{ID: id, Time: time.Now().UTC(), Path: "/srv/e2e/" + id,
		SHA256: "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", Signature: "Eicar-Test-Signature",
		Source: "realtime", Event: "close-write", Action: wire.DetectionQuarantined, QuarantineID: "0123456789abcdef"}
	body, _ := json.Marshal(det)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = append(o.pending, wire.Report{ID: id, Kind: wire.ReportProtectionDetection, TakenAt: det.Time, Body: body})
	o.made = append(o.made, id)
}

// flush sends what is pending and drops what was acknowledged.
func (o *outbox) flush(ctx context.Context) error {
	o.mu.Lock()
	batch := append([]wire.Report(nil), o.pending...)
	if o.failed == nil {
		o.failed = map[string]bool{}
	}
	for _, r := range batch {
		if o.failed[r.ID] {
			o.resent++
			delete(o.failed, r.ID)
		}
	}
	o.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := o.agent.Report(rctx, batch)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		for _, r := range batch {
			o.failed[r.ID] = true
		}
		return err
	}
	done := map[string]bool{}
	for _, id := range ack.Accepted {
		done[id] = true
	}
	kept := o.pending[:0]
	for _, r := range o.pending {
		if !done[r.ID] {
			kept = append(kept, r)
		}
	}
	o.pending = kept
	return nil
}

// waitDesired runs change and returns how long until the real agent's
// desired state on disk holds want.
func waitDesired(t *testing.T, state, want string, change func()) time.Duration {
	t.Helper()
	sent := time.Now()
	change()
	deadline := sent.Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(filepath.Join(state, "desired.json")); bytes.Contains(b, []byte(want)) {
			return time.Since(sent)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s never reached the agent's desired state in %s", want, state)
	return 0
}

// waitStarted runs start and returns how long until the run command at
// path is no longer Pending.
func waitStarted(t *testing.T, api *testutil.API, token, path string, start func()) time.Duration {
	t.Helper()
	sent := time.Now()
	start()
	deadline := sent.Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var rc wire.RunCommand
		api.MustDo(t, 200, "GET", path, token, nil, &rc)
		if rc.State != wire.RunPending {
			return time.Since(sent)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("run command %s was never started", path)
	return 0
}

// waitRun waits until a run command succeeded with stdout holding out.
func waitRun(t *testing.T, api *testutil.API, token, machine, name, out string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() string {
		var rc wire.RunCommand
		api.MustDo(t, 200, "GET", machine+"/runCommands/"+name, token, nil, &rc)
		if rc.State != wire.RunSucceeded || !strings.Contains(rc.Stdout, out) {
			return fmt.Sprintf("run %s on %s: %s %q %s", name, machine, rc.State, rc.Stdout, rc.Message)
		}
		return ""
	})
}

// machineStatuses maps each machine of a resource group to its status.
func machineStatuses(t *testing.T, api *testutil.API, token, rg string) map[string]string {
	t.Helper()
	out := map[string]string{}
	path := "/api/v1/subscriptions/default/resourceGroups/" + rg + "/machines?$top=1000"
	for path != "" {
		var page wire.List[wire.Machine]
		api.MustDo(t, 200, "GET", path, token, nil, &page)
		for _, m := range page.Value {
			out[m.Name] = m.Status
		}
		path = page.NextLink
	}
	return out
}

// wantOneOutcome checks that a finished run command's outcome is in the
// activity log once (it is written just after the run's state).
func wantOneOutcome(t *testing.T, api *testutil.API, token, rg, machine, run string) {
	t.Helper()
	n := 0
	testutil.Eventually(t, 10*time.Second, func() string {
		if n = outcomeEntries(t, api, token, rg, machine, run); n == 0 {
			return "no outcome entry for run " + run + " on " + machine
		}
		return ""
	})
	if n != 1 {
		t.Errorf("%s run %s has %d outcome entries in the activity log, want 1", machine, run, n)
	}
}

// outcomeEntries counts the activity entries of a run command's outcome.
func outcomeEntries(t *testing.T, api *testutil.API, token, rg, machine, run string) int {
	t.Helper()
	m := resource.Machine("default", rg, machine)
	scope := m.RunCommand(run).String()
	path := "/api/v1/activityLogs?$top=1000&scope=" + url.QueryEscape(m.String())
	n := 0
	for path != "" {
		var entries wire.List[wire.ActivityEntry]
		api.MustDo(t, 200, "GET", path, token, nil, &entries)
		for _, e := range entries.Value {
			if e.Scope == scope && strings.HasPrefix(e.Message, "run command "+run+" on "+machine+": ") {
				n++
			}
		}
		path = entries.NextLink
	}
	return n
}

// tunnelRoundTrip sends payload through a tunnel to an echo server and
// checks it comes back unchanged.
func tunnelRoundTrip(ctx context.Context, c *client.Client, path string, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tun, err := c.OpenStream(ctx, path)
	if err != nil {
		return err
	}
	defer tun.Close()
	go func() { _, _ = tun.Write(payload) }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(tun, got); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("the tunnel changed the bytes")
	}
	return nil
}

// echoServer accepts on 127.0.0.1 and echoes every byte back.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func countMap(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// The replica's systemd unit is one systemd accepts (pointing at the
// binary built here).
func TestServerUnitVerifies(t *testing.T) {
	analyze := testutil.NeedTool(t, "systemd-analyze")
	corral, _ := binaries(t)
	unit, err := os.ReadFile(shippedServerUnit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/corral server\n") {
		t.Fatalf("%s does not run /usr/bin/corral server", shippedServerUnit)
	}
	local := filepath.Join(t.TempDir(), "corral-server.service")
	if err := os.WriteFile(local, bytes.ReplaceAll(unit, []byte("/usr/bin/corral "), []byte(corral+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, nil, []string{"SYSTEMD_LOG_LEVEL=warning"}, analyze, "verify", local)
	if err != nil || strings.Contains(out, "corral-server.service:") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
