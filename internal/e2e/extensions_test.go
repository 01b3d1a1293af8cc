package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/wire"
)

// TestKilledMidInstallConverges kills the agent process (SIGKILL) while an
// extension's install handler runs; the restarted agent redoes the
// operation and the control plane ends with Succeeded.
func TestKilledMidInstallConverges(t *testing.T) {
	c := startServer(t)
	clientID, secret := c.api.OnboardingPrincipal(t, "rg1")
	secretFile := testutil.WriteSecretFile(t, secret)
	state, root := t.TempDir(), t.TempDir()
	agentArgs := func(args ...string) []string { return append([]string{"--state-dir", state, "--root", root}, args...) }
	if out, err := run(t, nil, nil, c.agent, agentArgs("connect", "--server", c.api.URL, "--subscription-id", "default",
		"--resource-group", "rg1", "--service-principal-id", clientID, "--service-principal-secret-file", secretFile,
		"--ca-file", c.api.CAFile, "--name", "db-01")...); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	work := t.TempDir()
	started, finished := filepath.Join(work, "started"), filepath.Join(work, "finished")
	pub := c.api.NewPublisher(t, "Acme")
	pub.Publish(t, c.api, wire.ExtensionManifest{Publisher: "Acme", Type: "Slow", Version: "1.0.0", Handlers: wire.ExtensionHandlers{
		// The first attempt hangs; the agent is killed during it.
		Install: fmt.Sprintf(`if [ ! -e %[1]s ]; then sleep 60 & echo $! > %[1]s; wait; fi; touch %[2]s`, started, finished),
		Enable:  "echo enabled",
	}})
	daemon := start(t, nil, c.agent, agentArgs("run")...)
	path := "/api/v1/subscriptions/default/resourceGroups/rg1/machines/db-01/extensions/slow"
	var e wire.MachineExtension
	c.api.MustDo(t, 201, "PUT", path, c.api.AdminToken(t), wire.MachineExtensionSet{Publisher: "Acme", Type: "Slow"}, &e)
	eventually(t, 15*time.Second, func() string {
		if _, err := os.Stat(started); err != nil {
			return "install handler not started"
		}
		return ""
	})
	if err := daemon.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-daemon.done
	start(t, nil, c.agent, agentArgs("run")...)
	eventually(t, 20*time.Second, func() string {
		var cur wire.MachineExtension
		c.api.MustDo(t, 200, "GET", path, c.api.AdminToken(t), nil, &cur)
		if cur.State != wire.ExtSucceeded || cur.SeqNo != e.SeqNo {
			b, _ := json.Marshal(cur)
			return string(b)
		}
		return ""
	})
	if _, err := os.Stat(finished); err != nil {
		t.Error("the install handler never completed")
	}
	// What the killed agent's handler started is gone too.
	b, _ := os.ReadFile(started)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q", b)
	}
	eventually(t, 5*time.Second, func() string {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") { // gone, or a zombie waiting for its reaper
			return ""
		}
		return fmt.Sprintf("the first attempt's handler process %d outlived the agent: %s", pid, stat)
	})
}
