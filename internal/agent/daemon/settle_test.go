package daemon_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/daemon"
	"github.com/corralhq/corral/internal/testutil/agenttest"
	"github.com/corralhq/corral/internal/testutil/evilcp"
	"github.com/corralhq/corral/internal/wire"
)

// reportedStates lists the states delivered for extension name, in order.
func reportedStates(evil *evilcp.Server, name string) []string {
	var out []string
	for _, b := range evil.Reports(wire.ReportExtension) {
		var st wire.ExtensionStatus
		if json.Unmarshal(b, &st) == nil && st.Name == name {
			out = append(out, st.State)
		}
	}
	return out
}

// The reports of one change go together: an install quicker than the
// settle is reported once, Succeeded (its Creating superseded before
// delivery); one that takes longer shows Creating while it runs.
func TestReportsOfOneChangeGoTogether(t *testing.T) {
	t.Parallel()
	evil := evilcp.Start(t)
	state := filepath.Join(t.TempDir(), "state")
	evil.Enroll(t, state)
	acme := evilcp.NewPublisher(t, "Acme")
	handlers := func(install string) wire.ExtensionHandlers {
		return wire.ExtensionHandlers{Install: install, Enable: "true", Disable: "true", Update: "true", Uninstall: "true"}
	}
	quick := acme.Package(t, evil, wire.ExtensionManifest{Publisher: "Acme", Type: "Quick", Version: "1.0.0", Handlers: handlers("true")})
	slow := acme.Package(t, evil, wire.ExtensionManifest{Publisher: "Acme", Type: "Slow", Version: "1.0.0", Handlers: handlers("sleep 5")})
	acme.Catalog(t, evil, 1, time.Now().Add(time.Hour), quick, slow)
	evil.SetDesired(wire.DesiredState{Generation: 1, Publishers: []wire.PublisherKey{acme.Key()}, Extensions: []wire.DesiredExtension{
		{Name: "quick", Publisher: "Acme", Type: "Quick", Version: "1.0.0", Digest: quick.Digest, SeqNo: 1},
	}})
	// Bounds far from the figures: the quick install takes milliseconds,
	// the slow one ten times the settle.
	agenttest.StartAgent(t, daemon.Config{StateDir: state, ReportSettle: 500 * time.Millisecond})
	if st := waitExtension(t, evil, "quick", 1); st.State != wire.ExtSucceeded {
		t.Fatalf("quick install: %+v", st)
	}
	if got := reportedStates(evil, "quick"); len(got) != 1 || got[0] != wire.ExtSucceeded {
		t.Errorf("quick install reported %v, want only Succeeded", got)
	}

	evil.SetDesired(wire.DesiredState{Generation: 2, Publishers: []wire.PublisherKey{acme.Key()}, Extensions: []wire.DesiredExtension{
		{Name: "quick", Publisher: "Acme", Type: "Quick", Version: "1.0.0", Digest: quick.Digest, SeqNo: 1},
		{Name: "slow", Publisher: "Acme", Type: "Slow", Version: "1.0.0", Digest: slow.Digest, SeqNo: 2},
	}})
	if st := waitExtension(t, evil, "slow", 2); st.State != wire.ExtSucceeded {
		t.Fatalf("slow install: %+v", st)
	}
	if got := reportedStates(evil, "slow"); len(got) != 2 || got[0] != wire.ExtCreating || got[1] != wire.ExtSucceeded {
		t.Errorf("slow install reported %v, want Creating while it ran, then Succeeded", got)
	}
}
