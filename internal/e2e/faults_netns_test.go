package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// linkCut is how long the agent's link stays down: as long as the issue
// asks, and as long as the agent's default longest backoff.
const linkCut = 60 * time.Second

// outsideChangeLog is what the agent logs once per outside change of its
// local configuration (each one also an event report).
const outsideChangeLog = "the local configuration was changed outside corral-agent config"

// TestAgentLinkCutFor60s (issue 15.4): a real corral-agent in its own
// network namespace, linked to the control plane's namespace by a veth pair,
// loses its link for 60 s. Meanwhile it makes reports — three run commands
// started before the cut finish, and its local configuration is changed by
// hand three times — and the server marks it Disconnected and takes a tag
// change for it. The server closes the silent connection (an HTTP/2 PING
// after --disconnect-after, unanswered). The agent gives it up by itself (its
// HTTP/2 PING goes unanswered: localconfig.PingAfterSilence + PingTimeout,
// 45 s, shorter than the cut) and, once the link is back, reconnects on a
// new connection (no restart, default backoff, at most a minute apart);
// the tag change reaches it, and every report made during the cut arrives
// exactly once: each run Succeeded with its output and one outcome entry,
// three "changed outside" entries.
//
// Both processes run in namespaces the test creates (ip netns, veth): the
// host's network is never touched. The test dials the server inside its
// namespace. It needs root and ip.
func TestAgentLinkCutFor60s(t *testing.T) {
	srvNS, agentNS := testutil.NewNetNS(t), testutil.NewNetNS(t)
	const serverIP, agentIP = "10.77.0.1", "10.77.0.2"
	testutil.ConnectNetNS(t, srvNS, []string{serverIP + "/24"}, agentNS, []string{agentIP + "/24"})
	corral, agentBin := binaries(t)

	// The server, inside its namespace, with short lifecycle thresholds so
	// that the cut shows on it (Disconnected after 15 s of silence).
	dataDir := t.TempDir()
	srv := start(t, []string{"CORRAL_ADMIN_PASSWORD=" + adminPassword}, "ip", "netns", "exec", srvNS.Name, corral, "server",
		"--data-dir", dataDir, "--listen", serverIP+":0", "--host", serverIP, "--heartbeat-interval", "5s",
		"--disconnect-after", "15s", "--sweep-interval", "1s", "--log-format", "json")
	url := srv.waitFor(t, "Corral control plane at ", 30*time.Second)
	api := testutil.NewAPI(t, url, filepath.Join(dataDir, "ca.crt"), adminPassword)
	api.Client.Transport = &http.Transport{TLSClientConfig: api.TLSConfig(t), ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := srvNS.Do(func() (err error) {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}
	admin := api.AdminToken(t)
	machinePath := "/api/v1/subscriptions/default/resourceGroups/edge/machines/edge-01"
	machine := func() wire.Machine {
		var m wire.Machine
		api.MustDo(t, 200, "GET", machinePath, admin, nil, &m)
		return m
	}

	// The agent, inside its namespace.
	clientID, secret := api.OnboardingPrincipal(t, "edge")
	state, root := t.TempDir(), t.TempDir()
	agentArgs := func(args ...string) []string {
		return append([]string{"netns", "exec", agentNS.Name, agentBin, "--state-dir", state, "--root", root, "--imds-endpoint", "none"}, args...)
	}
	if out, err := run(t, nil, nil, "ip", agentArgs("connect", "--server", url, "--ca-file", api.CAFile, "--subscription-id", "default",
		"--resource-group", "edge", "--service-principal-id", clientID, "--service-principal-secret-file", testutil.WriteSecretFile(t, secret),
		"--name", "edge-01")...); err != nil {
		t.Fatalf("connect from the agent's namespace: %v\n%s", err, out)
	}
	agent := start(t, nil, "ip", agentArgs("run")...)
	t.Cleanup(func() {
		if t.Failed() {
			out := agent.out.String()
			t.Logf("agent output (last 8 KiB):\n%s", out[max(0, len(out)-8192):])
		}
	})
	testutil.Eventually(t, 30*time.Second, func() string {
		if st, _ := daemon.ReadStatus(state); !st.Connected || machine().Status != wire.StatusConnected {
			return "the agent is not connected: " + st.LastError
		}
		return ""
	})

	// Three runs that finish only when the test says, during the cut.
	flags := t.TempDir()
	runs := []string{"cut-1", "cut-2", "cut-3"}
	for _, name := range runs {
		flag := filepath.Join(flags, name)
		api.MustDo(t, 201, "PUT", machinePath+"/runCommands/"+name, admin, wire.RunCommandCreate{
			Script:  fmt.Sprintf("while [ ! -e %s ]; do sleep 0.1; done\necho %s finished during the cut\n", flag, name),
			Timeout: wire.Duration(10 * time.Minute)}, nil)
	}
	for _, name := range runs {
		testutil.Eventually(t, 30*time.Second, func() string {
			var rc wire.RunCommand
			api.MustDo(t, 200, "GET", machinePath+"/runCommands/"+name, admin, nil, &rc)
			if rc.State != wire.RunRunning {
				return "run " + name + " is " + rc.State
			}
			return ""
		})
	}

	// The cut: the agent's end of the link goes down.
	agentNS.IP(t, "link", "set", "veth-b", "down")
	cut := time.Now()
	t.Logf("link cut at %s", cut.Format(time.TimeOnly))

	// Reports made during the cut: the runs end, one after the other, and
	// the local configuration is edited by hand three times; each is
	// waited for in the agent's outbox or log, so it is made while the
	// link is down.
	for i, name := range runs {
		if err := os.WriteFile(filepath.Join(flags, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, func() string {
			if !outboxHolds(t, state, wire.ReportRunCommand, `"name":"`+name+`"`, `"state":"Succeeded"`) {
				return "the result of " + name + " is not in the agent's outbox"
			}
			return ""
		})
		editConfigByHand(t, state, fmt.Sprintf("Vendor/Cut%d", i+1))
		testutil.Eventually(t, 30*time.Second, func() string {
			if n := strings.Count(agent.out.String(), outsideChangeLog); n != i+1 {
				return fmt.Sprintf("the agent logged %d outside changes, want %d", n, i+1)
			}
			return ""
		})
	}
	// The server sees the agent gone, and takes a change for it.
	testutil.Eventually(t, 45*time.Second, func() string {
		if s := machine().Status; s != wire.StatusDisconnected {
			return "the machine is " + s + " during the cut"
		}
		return ""
	})
	api.MustDo(t, 200, "PATCH", machinePath, admin, wire.MachineUpdate{Tags: map[string]string{"during": "the-cut"}}, nil)
	// The server gives the silent connection up too (an HTTP/2 PING after
	// --disconnect-after, unanswered for 15 s: 30 s into the cut).
	deadline := cut.Add(linkCut - 2*time.Second)
	for established(t, srv.cmd.Process.Pid, agentIP) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server still holds an established connection from the agent at the end of the cut")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the server closed its connection from the agent %s into the cut", time.Since(cut).Round(time.Second))
	if d := time.Since(cut); d >= linkCut {
		t.Fatalf("the reports took %s to make, longer than the cut", d)
	}
	time.Sleep(time.Until(cut.Add(linkCut)))
	agentNS.IP(t, "link", "set", "veth-b", "up")
	restored := time.Now()
	t.Logf("link restored after %s", restored.Sub(cut).Round(time.Millisecond))

	// Back by itself: connected on both sides, the change made during the
	// cut on disk, the outbox empty.
	var back time.Duration
	testutil.Eventually(t, 4*time.Minute, func() string {
		st, _ := daemon.ReadStatus(state)
		if !st.Connected || !st.ConnectedSince.After(cut) {
			return "the agent's push channel is not back on a new connection: " + st.LastError
		}
		if s := machine().Status; s != wire.StatusConnected {
			return "the server has the machine " + s
		}
		if back == 0 {
			back = st.ConnectedSince.Sub(restored)
		}
		if b, _ := os.ReadFile(filepath.Join(state, statedir.DesiredFile)); !bytes.Contains(b, []byte(`"the-cut"`)) {
			return "the tag change made during the cut is not in the agent's desired state"
		}
		if n := outboxLen(t, state); n != 0 {
			return fmt.Sprintf("%d reports still in the agent's outbox", n)
		}
		return ""
	})
	t.Logf("LINK CUT %s: the agent's push channel was back on a new connection %s after the link came back; outbox delivered and the change made meanwhile applied %s after",
		linkCut, back.Round(time.Millisecond), time.Since(restored).Round(time.Millisecond))
	if !strings.Contains(agent.out.String(), "push channel down") {
		t.Error("the agent never said its push channel was down")
	}

	// Every report made during the cut arrived, once.
	for _, name := range runs {
		var rc wire.RunCommand
		api.MustDo(t, 200, "GET", machinePath+"/runCommands/"+name, admin, nil, &rc)
		if rc.State != wire.RunSucceeded || !strings.Contains(rc.Stdout, name+" finished during the cut") {
			t.Errorf("run %s: %s %q %s", name, rc.State, rc.Stdout, rc.Message)
		}
		wantOneOutcome(t, api, admin, "edge", "edge-01", name)
	}
	var acts wire.List[wire.ActivityEntry]
	api.MustDo(t, 200, "GET", "/api/v1/activityLogs?$top=1000&scope=/subscriptions/default/resourceGroups/edge/machines/edge-01", admin, nil, &acts)
	outside := 0
	for _, e := range acts.Value {
		if strings.Contains(e.Message, "changed outside corral-agent config") {
			outside++
		}
	}
	if outside != len(runs) {
		t.Errorf("%d activity entries for the 3 outside changes of the local configuration made during the cut, want 3", outside)
	}
	var m wire.Machine
	api.MustDo(t, 200, "GET", machinePath, admin, nil, &m)
	if m.AgentConfig == nil || len(m.AgentConfig.ExtensionsBlocklist) != 1 || m.AgentConfig.ExtensionsBlocklist[0] != "Vendor/Cut3" {
		t.Errorf("the local configuration the server holds: %+v, want the last one made during the cut", m.AgentConfig)
	}
}

// editConfigByHand sets extensions.blocklist in the agent's local
// configuration file the way an editor would, without corral-agent config
// (so its marker no longer matches).
func editConfigByHand(t *testing.T, state, blocked string) {
	t.Helper()
	p := filepath.Join(state, statedir.ConfigFile)
	cfg := map[string]any{}
	if b, err := os.ReadFile(p); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	cfg["extensions.blocklist"] = []string{blocked}
	if _, ok := cfg[localconfig.MarkerKey]; !ok {
		cfg[localconfig.MarkerKey] = "edited-by-hand"
	}
	b, _ := json.Marshal(cfg)
	// Written aside and renamed over, as editors save: the agent watches
	// the file, and a read between a truncation and the write would find
	// it damaged and fail closed (stopping the runs this test waits for).
	tmp := p + ".edit"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// outboxHolds reports whether a pending report of kind in the agent's
// outbox holds every one of parts.
func outboxHolds(t *testing.T, state, kind string, parts ...string) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(state, statedir.OutboxDir, "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // delivered meanwhile
		}
		var r wire.Report
		if json.Unmarshal(b, &r) != nil || r.Kind != kind {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && bytes.Contains(r.Body, []byte(p))
		}
		if all {
			return true
		}
	}
	return false
}

// established counts the TCP connections in ESTABLISHED state from
// remoteIP that process pid's network namespace holds (/proc/PID/net/tcp).
func established(t *testing.T, pid int, remoteIP string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatalf("read the server's sockets: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fs := strings.Fields(line)
		// sl local rem st ...; 01: ESTABLISHED
		if len(fs) > 3 && fs[3] == "01" {
			if host, _, err := net.SplitHostPort(procAddr(fs[2])); err == nil && host == remoteIP {
				n++
			}
		}
	}
	return n
}

// outboxLen counts the reports waiting in the agent's outbox.
func outboxLen(t *testing.T, state string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(state, statedir.OutboxDir, "[0-9]*.json"))
	return len(files)
}
