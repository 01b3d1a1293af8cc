package localconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSetValidatesEveryKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, value string
		wantErr    string
	}{
		{KeyMode, "monitor", ""},
		{KeyMode, "FULL", ""},
		{KeyMode, "audit", `must be "full" or "monitor"`},
		{KeyAllowlist, "Corral/RunCommand, Acme/Monitor", ""},
		{KeyAllowlist, "Allow/None", ""},
		{KeyAllowlist, "Allow/None,Corral/RunCommand", "cannot be combined"},
		{KeyAllowlist, "RunCommand", "Publisher/Type"},
		{KeyAllowlist, "../etc/passwd", "Publisher/Type"},
		{KeyBlocklist, "Allow/None", "only meaningful in extensions.allowlist"},
		{KeyExtensionsEnabled, "false", ""},
		{KeyExtensionsEnabled, "nope", "true or false"},
		{KeyIncomingPorts, "22,2222", ""},
		{KeyIncomingPorts, "22,70000", "not a port number"},
		{KeyProxyURL, "http://proxy.example:3128", ""},
		{KeyProxyURL, "socks5://proxy", "must look like"},
		{KeyProxyURL, "http://user:pw@proxy:3128", "credentials"},
		{KeyProxyBypass, "10.0.0.0/8,.internal,cp.example", ""},
		{KeyProxyBypass, "http://x", "neither"},
		{KeyExtensionsCPULimit, "10", ""},
		{KeyExtensionsCPULimit, "0", "between 1 and 100"},
		{KeyGuestConfigCPULimit, "101", "between 1 and 100"},
		{"extensions.colour", "red", "unknown configuration key"},
	}
	for _, tt := range tests {
		var c Config
		err := c.Set(tt.key, tt.value)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Set(%s, %q) = %v, want nil", tt.key, tt.value, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Set(%s, %q) = %v, want an error containing %q", tt.key, tt.value, err, tt.wantErr)
		}
	}
}

func TestMonitorModeFreezesListsAndFixesAllowlist(t *testing.T) {
	t.Parallel()
	var c Config
	must(t, c.Set(KeyBlocklist, "Acme/Shell"))
	must(t, c.Set(KeyMode, "monitor"))
	for _, k := range []string{KeyAllowlist, KeyBlocklist, KeyGuestConfigEnabled} {
		if err := c.Set(k, "true"); !errors.Is(err, ErrFrozen) {
			t.Errorf("Set(%s) in monitor mode = %v, want ErrFrozen", k, err)
		}
		if err := c.Clear(k); !errors.Is(err, ErrFrozen) {
			t.Errorf("Clear(%s) in monitor mode = %v, want ErrFrozen", k, err)
		}
	}
	w := c.Effective().Wire()
	if diff := cmp.Diff(MonitorAllowlist, w.ExtensionsAllowlist); diff != "" {
		t.Errorf("monitor allowlist (-want +got):\n%s", diff)
	}
	if w.GuestConfigurationEnabled {
		t.Error("guest configuration is on in monitor mode")
	}
	// Other keys still change, and full mode unfreezes the lists.
	must(t, c.Set(KeyExtensionsCPULimit, "7"))
	must(t, c.Set(KeyMode, "full"))
	must(t, c.Set(KeyAllowlist, "Acme/Monitor"))
	if got := c.Effective().Wire().ExtensionsAllowlist; !cmp.Equal(got, []string{"Acme/Monitor"}) {
		t.Errorf("allowlist after full = %v", got)
	}
}

func TestCheckExtensionFollowsTheLockDownTable(t *testing.T) {
	t.Parallel()
	const ext = "Corral/RunCommand"
	lists := []struct {
		name       string
		allow      string
		block      string
		wantChange bool // install, update and upgrade
	}{
		{"neither list", "", "", true},
		{"in allowlist", ext, "", true},
		{"in blocklist", "", ext, false},
		{"in both", ext, ext, false},
		{"in neither, allowlist configured", "Acme/Monitor", "", false},
		{"in neither, blocklist configured", "", "Acme/Shell", true},
		{"Allow/None", AllowNone, "", false},
		{"allow/none in lower case is still Allow/None", "allow/none", "", false},
	}
	for _, l := range lists {
		var c Config
		if l.allow != "" {
			must(t, c.Set(KeyAllowlist, l.allow))
		}
		if l.block != "" {
			must(t, c.Set(KeyBlocklist, l.block))
		}
		for _, op := range []Operation{OpInstall, OpUpdate, OpUpgrade, OpRemove} {
			want := l.wantChange || op == OpRemove
			err := c.Effective().CheckExtension(op, ext)
			if got := err == nil; got != want {
				t.Errorf("%s: %s allowed = %v (%v), want %v", l.name, op, got, err, want)
			}
			if err != nil && !errors.Is(err, ErrExtensionBlocked) {
				t.Errorf("%s: %s error %v does not wrap ErrExtensionBlocked", l.name, op, err)
			}
		}
	}
}

func TestCheckExtensionMonitorAndDisabled(t *testing.T) {
	t.Parallel()
	var c Config
	must(t, c.Set(KeyMode, "monitor"))
	if err := c.Effective().CheckExtension(OpInstall, "Corral/RunCommand"); err == nil || !strings.Contains(err.Error(), "monitor") {
		t.Errorf("run command in monitor mode: %v", err)
	}
	if err := c.Effective().CheckExtension(OpInstall, "corral/endpointprotection"); err != nil {
		t.Errorf("endpoint protection in monitor mode: %v", err)
	}
	must(t, c.Set(KeyExtensionsEnabled, "false"))
	for _, op := range []Operation{OpInstall, OpRemove} {
		if err := c.Effective().CheckExtension(op, "Corral/EndpointProtection"); err == nil || !strings.Contains(err.Error(), "disabled") {
			t.Errorf("%s with the extension manager disabled: %v", op, err)
		}
	}
}

func TestSaveLoadRoundTripAndFailClosed(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	c, err := Load(dir)
	if err != nil || !cmp.Equal(c.Effective().Wire(), Config{}.Effective().Wire()) {
		t.Fatalf("missing file: %+v %v", c, err)
	}
	must(t, c.Set(KeyAllowlist, "Acme/Monitor"))
	must(t, c.Set(KeyExtensionsEnabled, "false"))
	must(t, Save(dir, c))
	fi, err := os.Stat(Path(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode: %v %v", fi.Mode(), err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.Effective().Wire(), got.Effective().Wire()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for name, body := range map[string]string{
		"truncated":    `{"extensions.allowlist": [`,
		"unknown key":  `{"extensions.colour": "red"}`,
		"invalid name": `{"extensions.allowlist": ["no slash"]}`,
		"wrong type":   `{"extensions.enabled": "yes"}`,
		"comma inside": `{"extensions.blocklist": ["Acme/A,Acme/B"]}`,
	} {
		must(t, os.WriteFile(Path(dir), []byte(body), 0o600))
		if _, err := Load(dir); err == nil {
			t.Errorf("%s config file loaded without error", name)
		}
	}
}

func TestListShowsEffectiveValues(t *testing.T) {
	t.Parallel()
	var c Config
	must(t, c.Set(KeyMode, "monitor"))
	entries := c.List()
	if len(entries) != len(Keys()) {
		t.Fatalf("%d entries, want %d", len(entries), len(Keys()))
	}
	byKey := map[string]Entry{}
	for _, e := range entries {
		byKey[e.Key] = e
	}
	if e := byKey[KeyAllowlist]; e.Set || e.Value != strings.Join(MonitorAllowlist, ",") || e.Note == "" {
		t.Errorf("allowlist entry %+v", e)
	}
	if e := byKey[KeyExtensionsCPULimit]; e.Set || e.Value != "5" {
		t.Errorf("cpulimit entry %+v", e)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Files written by earlier agents (typed JSON, omitted defaults) still load,
// and what Save writes loads back to the same values.
func TestFileFormatIsStable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old := `{
  "config.mode": "monitor",
  "extensions.blocklist": ["Acme/Shell"],
  "extensions.enabled": false,
  "incomingconnections.ports": ["22", "2222"],
  "extensions.agent.cpulimit": 7
}`
	must(t, os.WriteFile(Path(dir), []byte(old), 0o600))
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := c.Effective()
	if e.Mode != ModeMonitor || e.ExtensionsEnabled || e.ExtensionsCPULimit != 7 || !cmp.Equal(e.IncomingPorts, []int{22, 2222}) ||
		!cmp.Equal(e.Blocklist, []string{"Acme/Shell"}) {
		t.Errorf("loaded %+v", e)
	}
	must(t, Save(dir, c))
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.List(), again.List()); diff != "" {
		t.Errorf("save/load (-want +got):\n%s", diff)
	}
}

// A damaged file fails closed: Current refuses every extension operation,
// removal included, and turns guest configuration and incoming connections off.
func TestCurrentFailsClosed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	must(t, os.WriteFile(Path(dir), []byte(`{"extensions.allowlist": [`), 0o600))
	e, err := Current(dir)
	if err == nil || e.Damaged == nil {
		t.Fatalf("Current on a damaged file: %v %+v", err, e)
	}
	if e.ExtensionsEnabled || e.GuestConfigEnabled || e.IncomingEnabled {
		t.Errorf("fail-closed configuration enables something: %+v", e)
	}
	if err := e.CheckExtension(OpRemove, "Acme/Monitor"); err == nil || !strings.Contains(err.Error(), "cannot be read") {
		t.Errorf("remove under a damaged configuration: %v", err)
	}
}

// Issue 7, finding 9: Save marks the file; a file written any other way,
// or edited after, is loaded (it is in force) and says so.
func TestConfigChangedOutsideIsNoticed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var c Config
	if err := c.Set(KeyBlocklist, "Acme/Tool"); err != nil {
		t.Fatal(err)
	}
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	e, err := Current(dir)
	if err != nil || e.ChangedOutside != "" {
		t.Fatalf("a file written by Save: %v, changed outside %q", err, e.ChangedOutside)
	}
	raw, _ := os.ReadFile(Path(dir))
	for _, tc := range []struct {
		name, content, want string
	}{
		{"no marker", `{"extensions.blocklist": ["Acme/Tool"]}`, "no marker"},
		{"edited", strings.Replace(string(raw), "Acme/Tool", "Acme/Other", 1), "does not match"},
	} {
		if err := os.WriteFile(Path(dir), []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		e, err := Current(dir)
		if err != nil || !strings.Contains(e.ChangedOutside, tc.want) || len(e.Blocklist) != 1 {
			t.Errorf("%s: %v, changed outside %q, blocklist %v", tc.name, err, e.ChangedOutside, e.Blocklist)
		}
	}
	// `config set` marks it again.
	c, _ = Load(dir)
	if err := c.Set(KeyMode, ModeFull); err != nil {
		t.Fatal(err)
	}
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	if e, _ := Current(dir); e.ChangedOutside != "" {
		t.Errorf("after config set: %q", e.ChangedOutside)
	}
	// A missing file is the defaults, not a change.
	if e, _ := Current(t.TempDir()); e.ChangedOutside != "" {
		t.Errorf("no file: %q", e.ChangedOutside)
	}
}
