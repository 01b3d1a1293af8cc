package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

const adminPassword = "e2e-admin-password-123"

// fakeAWSHost writes a host root whose DMI says Amazon EC2 and an os-release
// of Ubuntu, and starts a loopback IMDSv2 that answers like EC2's.
func fakeAWSHost(t *testing.T) (root, imds string) {
	t.Helper()
	root = t.TempDir()
	files := map[string]string{
		"etc/os-release":                  "ID=ubuntu\nVERSION_ID=\"22.04\"\nPRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n",
		"etc/hostname":                    "ip-10-0-0-12\n",
		"sys/class/dmi/id/sys_vendor":     "Amazon EC2\n",
		"sys/class/dmi/id/product_name":   "t3.medium\n",
		"sys/class/dmi/id/bios_vendor":    "Amazon EC2\n",
		"sys/class/dmi/id/product_uuid":   "ec2e1916-9099-7caf-fd21-012345abcdef\n",
		"proc/sys/kernel/osrelease":       "6.5.0-1014-aws\n",
		"proc/cpuinfo":                    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\n",
		"proc/meminfo":                    "MemTotal:        3964392 kB\n",
		"sys/class/dmi/id/chassis_vendor": "Amazon EC2\n",
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const token = "imds-session-token"
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "missing ttl", 400)
			return
		}
		fmt.Fprint(w, token)
	})
	mux.HandleFunc("GET /latest/dynamic/instance-identity/document", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-aws-ec2-metadata-token") != token {
			http.Error(w, "unauthorized", 401)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"instanceId": "i-096167ed7c25a630a", "region": "ap-northeast-1",
			"accountId": "123456789012", "instanceType": "t3.medium", "availabilityZone": "ap-northeast-1a"})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return root, srv.URL
}

type cluster struct {
	corral, agent string
	server        *proc
	api           *testutil.API
	dataDir       string
}

func startServer(t testing.TB, extra ...string) *cluster {
	t.Helper()
	return startServerIn(t, t.TempDir(), extra...)
}

// startServerIn starts `corral server` on data directory dir (a restart
// when it was used before).
func startServerIn(t testing.TB, dir string, extra ...string) *cluster {
	t.Helper()
	corral, agent := binaries(t)
	args := append([]string{"server", "--data-dir", dir, "--listen", "127.0.0.1:0", "--heartbeat-interval", "300ms",
		"--disconnect-after", "2s", "--sweep-interval", "200ms", "--log-format", "json", "--log-level", "debug"}, extra...)
	srv := start(t, []string{"CORRAL_ADMIN_PASSWORD=" + adminPassword}, corral, args...)
	url := srv.waitFor(t, "Corral control plane at ", 30*time.Second)
	return &cluster{corral: corral, agent: agent, server: srv, dataDir: dir,
		api: testutil.NewAPI(t, url, filepath.Join(dir, "ca.crt"), adminPassword)}
}

// fingerprint is the CA fingerprint the server printed at first start.
func (c *cluster) fingerprint(t testing.TB) string {
	t.Helper()
	return c.server.waitFor(t, "CA fingerprint: ", 5*time.Second)
}

func (c *cluster) machine(t testing.TB, rg, name string) (wire.Machine, int) {
	t.Helper()
	var m wire.Machine
	status, b := c.api.Do(t, "GET", "/api/v1/subscriptions/default/resourceGroups/"+rg+"/machines/"+name, c.api.AdminToken(t), nil)
	if status == 200 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
	}
	return m, status
}

func TestOnboardStatusLifecyclePushAndAudit(t *testing.T) {
	c := startServer(t)
	admin := c.api.AdminToken(t)
	clientID, secret := c.api.OnboardingPrincipal(t, "rg1")
	secretFile := testutil.WriteSecretFile(t, secret)
	root, imds := fakeAWSHost(t)
	state := t.TempDir()
	agentArgs := func(args ...string) []string {
		return append([]string{"--state-dir", state, "--root", root}, args...)
	}

	out, err := run(t, nil, nil, c.agent, agentArgs("connect", "--server", c.api.URL, "--subscription-id", "default",
		"--resource-group", "rg1", "--service-principal-id", clientID, "--service-principal-secret-file", secretFile,
		"--ca-file", c.api.CAFile, "--name", "web-01", "--tags", "env=prod,team=web", "--imds-endpoint", imds)...)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	m, status := c.machine(t, "rg1", "web-01")
	if status != 200 {
		t.Fatalf("machine not created: %d\n%s", status, out)
	}
	if m.Properties.Environment != wire.EnvAWS || m.Properties.Cloud == nil || m.Properties.Cloud.InstanceID != "i-096167ed7c25a630a" ||
		m.Properties.Cloud.Region != "ap-northeast-1" || m.Properties.Cloud.AccountID != "123456789012" {
		t.Errorf("environment not detected: %+v cloud %+v", m.Properties.Environment, m.Properties.Cloud)
	}
	if m.Properties.OSName != "ubuntu" || m.Tags["env"] != "prod" || m.CreatedBy != "onboard-rg1" {
		t.Errorf("machine %+v", m)
	}

	daemon := start(t, nil, c.agent, agentArgs("run", "--imds-endpoint", imds)...)
	testutil.Eventually(t, 10*time.Second, func() string {
		m, _ := c.machine(t, "rg1", "web-01")
		if m.Status != wire.StatusConnected || m.AgentVersion == "" {
			return "status " + m.Status
		}
		return ""
	})

	// Filters find it.
	var list wire.List[wire.Machine]
	c.api.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/machines?environment=AWS&status=Connected&tag=team=web&os=ubuntu", admin, nil, &list)
	if len(list.Value) != 1 {
		t.Errorf("filtered list: %d machines", len(list.Value))
	}
	c.api.MustDo(t, 200, "GET", "/api/v1/subscriptions/default/machines?environment=OnPrem", admin, nil, &list)
	if len(list.Value) != 0 {
		t.Errorf("OnPrem filter matched %d", len(list.Value))
	}

	// A change on the server reaches the agent's desired state quickly.
	sent := time.Now()
	c.api.MustDo(t, 200, "PATCH", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/web-01", admin,
		wire.MachineUpdate{Tags: map[string]string{"env": "prod", "pushed": "yes"}}, nil)
	testutil.Eventually(t, 5*time.Second, func() string {
		b, err := os.ReadFile(filepath.Join(state, "desired.json"))
		if err != nil || !strings.Contains(string(b), `"pushed"`) {
			return fmt.Sprintf("desired.json: %v %s", err, b)
		}
		return ""
	})
	t.Logf("push reached the agent's disk in %s", time.Since(sent))

	// Agent stopped -> Disconnected; restarted -> Connected.
	daemon.stop(t)
	testutil.Eventually(t, 10*time.Second, func() string {
		if m, _ := c.machine(t, "rg1", "web-01"); m.Status != wire.StatusDisconnected {
			return "status " + m.Status
		}
		return ""
	})
	daemon = start(t, nil, c.agent, agentArgs("run", "--imds-endpoint", imds)...)
	testutil.Eventually(t, 10*time.Second, func() string {
		if m, _ := c.machine(t, "rg1", "web-01"); m.Status != wire.StatusConnected {
			return "status " + m.Status
		}
		return ""
	})

	// A local config change reaches the server (read-only view).
	if out, err := run(t, nil, nil, c.agent, agentArgs("config", "set", "extensions.blocklist", "Corral/RunCommand")...); err != nil {
		t.Fatalf("config set: %v\n%s", err, out)
	}
	testutil.Eventually(t, 15*time.Second, func() string {
		m, _ := c.machine(t, "rg1", "web-01")
		if m.AgentConfig == nil || len(m.AgentConfig.ExtensionsBlocklist) != 1 {
			return fmt.Sprintf("agent config %+v", m.AgentConfig)
		}
		return ""
	})

	// Denied calls land in the activity log.
	onboardTok := c.api.ClientToken(t, clientID, secret)
	if status, _ := c.api.Do(t, "DELETE", "/api/v1/subscriptions/default/resourceGroups/rg1/machines/web-01", onboardTok, nil); status != 403 {
		t.Fatalf("onboarding principal could delete: %d", status)
	}
	var acts wire.List[wire.ActivityEntry]
	c.api.MustDo(t, 200, "GET", "/api/v1/activityLogs?result=Denied&scope=/subscriptions/default/resourceGroups/rg1", admin, nil, &acts)
	if len(acts.Value) == 0 || acts.Value[0].CallerID != clientID || acts.Value[0].Action != "Corral.HybridCompute/machines/delete" {
		t.Fatalf("denied delete not in the activity log: %+v", acts.Value)
	}

	// Support bundle, then a scan of everything for secrets.
	bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if out, err := run(t, nil, nil, c.agent, agentArgs("logs", "--output", bundle)...); err != nil {
		t.Fatalf("logs: %v\n%s", err, out)
	}
	daemon.stop(t)
	c.server.stop(t)
	key, err := os.ReadFile(filepath.Join(state, "key.pem"))
	if err != nil {
		t.Fatalf("agent key: %v", err)
	}
	secrets := map[string]string{"client secret": secret, "admin password": adminPassword, "agent private key": keyBody(string(key)), "admin token": admin}
	scanForSecrets(t, secrets, c.server.out.String(), "server log")
	scanForSecrets(t, secrets, daemon.out.String(), "agent output")
	scanTree(t, secrets, filepath.Join(state, "logs"))
	scanTarGz(t, secrets, bundle)
	scanTree(t, secrets, c.dataDir) // the store and its WAL
}
