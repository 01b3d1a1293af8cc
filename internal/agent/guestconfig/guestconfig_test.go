package guestconfig

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/agent/feature"
	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/wire"
)

// harness runs the feature on a small tree with a local configuration the
// test changes and the reports it makes collected.
type harness struct {
	t       *testing.T
	f       *Feature
	root    string
	mu      sync.Mutex
	cfg     localconfig.Effective
	reports []wire.Report
}

func newHarness(t *testing.T, hostChangesOff string) *harness {
	t.Helper()
	h := &harness{t: t, root: t.TempDir(), cfg: localconfig.Config{}.Effective()}
	if err := os.MkdirAll(filepath.Join(h.root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.f = New()
	h.f.Debounce = 20 * time.Millisecond
	env := feature.Env{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Dir: t.TempDir(), HostRoot: h.root, HostChangesOff: hostChangesOff,
		Report: func(kind string, body any, _ string) {
			b, _ := json.Marshal(body)
			h.mu.Lock()
			h.reports = append(h.reports, wire.Report{Kind: kind, Body: b})
			h.mu.Unlock()
		},
		Config: func() localconfig.Effective { h.mu.Lock(); defer h.mu.Unlock(); return h.cfg }}
	if err := h.f.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.f.Close() })
	return h
}

func (h *harness) assign(typ string) {
	h.t.Helper()
	slice, _ := json.Marshal(wire.GuestConfigurationDesired{Assignments: []wire.GuestAssignment{{ID: "/subscriptions/s/providers/Corral.Authorization/policyAssignments/a",
		Name: "a", Definition: "linux-passwd-0644", Configuration: "linux-passwd-0644", AssignmentType: typ}}})
	if err := h.f.Apply(context.Background(), feature.Desired{State: wire.DesiredState{Features: map[string]json.RawMessage{Name: slice}}, Fresh: true}); err != nil {
		h.t.Fatal(err)
	}
}

// waitRule waits for a compliance report whose rule is in state want with
// evidence holding text.
func (h *harness) waitRule(want, text string) wire.GuestRuleResult {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		h.mu.Lock()
		for i := len(h.reports) - 1; i >= 0; i-- {
			if h.reports[i].Kind != wire.ReportGuestCompliance {
				continue
			}
			var rep wire.GuestComplianceReport
			_ = json.Unmarshal(h.reports[i].Body, &rep)
			if len(rep.Rules) == 1 {
				last = rep.Rules[0].ComplianceState + ": " + rep.Rules[0].Evidence
				if rep.Rules[0].ComplianceState == want && strings.Contains(rep.Rules[0].Evidence, text) {
					h.mu.Unlock()
					return rep.Rules[0]
				}
			}
			break
		}
		h.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("no %s report with %q; last: %s", want, text, last)
	return wire.GuestRuleResult{}
}

func (h *harness) mode() os.FileMode {
	fi, err := os.Stat(filepath.Join(h.root, "etc/passwd"))
	if err != nil {
		h.t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// Host changes refused (corral dev without --allow-host-changes): an apply
// mode only reports, and says why it did not remediate.
func TestHostChangesRefusedOnlyReports(t *testing.T) {
	h := newHarness(t, "host changes are off: corral dev without --allow-host-changes")
	if err := os.Chmod(filepath.Join(h.root, "etc/passwd"), 0o666); err != nil {
		t.Fatal(err)
	}
	h.assign(wire.AssignmentTypeApplyAndAutoCorrect)
	h.waitRule(wire.ComplianceNonCompliant, "not remediated: host changes are off")
	if h.mode() != 0o666 {
		t.Errorf("mode changed to %o with host changes off", h.mode())
	}
}

// The local off switch: every rule Unknown with the reason, nothing
// applied; back on, the file is evaluated and corrected again; a file
// change is seen through inotify.
func TestLocalOffSwitchAndWatch(t *testing.T) {
	h := newHarness(t, "")
	h.assign(wire.AssignmentTypeApplyAndAutoCorrect)
	h.waitRule(wire.ComplianceCompliant, "")

	h.mu.Lock()
	h.cfg.Mode = localconfig.ModeMonitor
	h.cfg.GuestConfigEnabled = false
	h.mu.Unlock()
	h.f.ConfigChanged(context.Background(), h.cfg)
	h.waitRule(wire.ComplianceUnknown, "monitor mode")
	if err := os.Chmod(filepath.Join(h.root, "etc/passwd"), 0o666); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if h.mode() != 0o666 {
		t.Errorf("monitor mode, yet the file was corrected: %o", h.mode())
	}

	h.mu.Lock()
	h.cfg = localconfig.Config{}.Effective()
	h.mu.Unlock()
	h.f.ConfigChanged(context.Background(), h.cfg)
	h.waitRule(wire.ComplianceCompliant, "")
	if h.mode() != 0o644 {
		t.Errorf("back on: mode %o, want 644", h.mode())
	}
	if err := os.Chmod(filepath.Join(h.root, "etc/passwd"), 0o664); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.mode() != 0o644 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if h.mode() != 0o644 {
		t.Errorf("a chmod was not corrected through the file watch: %o", h.mode())
	}
}
