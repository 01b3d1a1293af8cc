package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/server/inventory"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/wire"
)

// Issue 7, finding 9: a local configuration written by corral-agent config
// is reported as configuration only; one changed any other way — here as a
// run command in full mode would, by writing the file — is in force and
// also lands in the control plane's activity log, in the machine's name.
func TestConfigChangedOutsideCorralAgentIsReported(t *testing.T) {
	t.Parallel()
	s := testutil.StartServer(t, testutil.FastLifecycle())
	state := agenttest.ConnectAgent(t, s.API, "rg1", "m1", "")
	c, _ := localconfig.Load(state)
	if err := c.Set(localconfig.KeyBlocklist, "Acme/Tool"); err != nil {
		t.Fatal(err)
	}
	if err := localconfig.Save(state, c); err != nil {
		t.Fatal(err)
	}
	agenttest.StartAgent(t, daemon.Config{StateDir: state})
	entries := func() []wire.ActivityEntry {
		var acts wire.List[wire.ActivityEntry]
		s.MustDo(t, 200, "GET", "/api/v1/activityLogs?action="+inventory.ActLocalConfigChanged, s.AdminToken(t), nil, &acts)
		return acts.Value
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		if m := getMachine(t, s, "rg1", "m1"); m.AgentConfig == nil || len(m.AgentConfig.ExtensionsBlocklist) != 1 {
			return "the configuration set with corral-agent config has not arrived"
		}
		return ""
	})
	if es := entries(); len(es) != 0 {
		t.Fatalf("a configuration written by corral-agent config was reported as changed outside: %+v", es)
	}
	// Root (or a command run as root) rewrites the file without the tool.
	if err := os.WriteFile(filepath.Join(state, localconfig.FileName), []byte(`{"extensions.blocklist": ["Acme/Tool", "Corral/Other"]}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() string {
		es := entries()
		if len(es) == 0 {
			return "no activity entry for the configuration changed outside corral-agent config"
		}
		e := es[0]
		if e.Result != wire.ResultFailed || e.Caller != "m1" || e.CallerType != wire.PrincipalMachine ||
			!strings.HasSuffix(e.Scope, "/machines/m1") || !strings.Contains(e.Message, "no marker") {
			return fmt.Sprintf("entry %+v", e)
		}
		return ""
	})
	// The changed file is in force all the same.
	testutil.Eventually(t, 10*time.Second, func() string {
		if m := getMachine(t, s, "rg1", "m1"); m.AgentConfig == nil || len(m.AgentConfig.ExtensionsBlocklist) != 2 {
			return "the changed configuration is not reported"
		}
		return ""
	})
}
