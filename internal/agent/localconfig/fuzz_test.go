package localconfig

import (
	"maps"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/wire"
)

// checkConfig asserts what every configuration the agent loads or sets
// must satisfy: each value is in its canonical form (checking it again
// changes nothing), it saves and loads back the same (with a matching
// marker), and the effective configuration is one the control plane
// accepts when the agent reports it (onboarding refuses a machine whose
// reported configuration it cannot store).
func checkConfig(t *testing.T, c Config) {
	t.Helper()
	for name, v := range c.values {
		k, ok := lookup(name)
		if !ok {
			t.Fatalf("unknown key %q stored", name)
		}
		if canon, err := k.parse(v); err != nil || canon != v {
			t.Fatalf("%s=%q is not canonical: %q, %v", name, v, canon, err)
		}
	}
	dir := t.TempDir()
	if err := Save(dir, c); err != nil {
		t.Fatalf("save: %v", err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatalf("a saved configuration does not load: %v", err)
	}
	if !maps.Equal(back.values, c.values) || back.changedOutside != "" {
		t.Fatalf("saved %v, loaded %v (%s)", c.values, back.values, back.changedOutside)
	}
	if _, err := wire.EncodeAgentConfig(c.Effective().Wire()); err != nil {
		t.Fatalf("the control plane would refuse this configuration when reported (%v): %v", c.values, err)
	}
}

// FuzzParseFile: a configuration file root (or anything else on the
// machine) wrote either fails to load — the agent then fails closed — or
// loads as a valid configuration (checkConfig).
func FuzzParseFile(f *testing.F) {
	for _, s := range []string{
		`{}`, `null`, `{"config.mode":"monitor","extensions.blocklist":["Acme/Shell"],"extensions.enabled":false,"incomingconnections.ports":["22","2222"],"extensions.agent.cpulimit":7}`,
		`{"extensions.allowlist":["Allow/None"],"proxy.url":"http://proxy:3128","proxy.bypass":[".corp","10.0.0.0/8","::1"]}`,
		`{"extensions.publisherkeys":["Acme=ed25519:` + strings.Repeat("A", 43) + `="],"protection.signaturekey":"ed25519:` + strings.Repeat("B", 43) + `="}`,
		`{"update.rebootcommand":"shutdown -r now","ssh.manage":true,"ssh.adminuser":"ops","ssh.user":"dev"}`,
		`{"extensions.allowlist": [`, `{"nope":1}`, `{"config.mode":"full"} trailing`, `{"config.mode":"full"}}`,
		`{"proxy.bypass":["\u0001host"]}`, `{"incomingconnections.ports":["+22"," 0022"]}`, `{"_written-by-corral-agent-config":"sha256:00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseFile(b)
		if err != nil {
			return
		}
		checkConfig(t, c)
	})
}

// FuzzSet: whatever root types after `corral-agent config set KEY`, the
// value is refused or stored as a valid configuration (checkConfig).
func FuzzSet(f *testing.F) {
	for i, k := range keys {
		f.Add(uint8(i), k.def)
	}
	for _, s := range []string{"Acme/Tool, Acme/Tool ,Other/X", "allow/none", "http://proxy:3128/", "https://u:p@proxy", "a,\x7fb,c", "22,65535",
		"Acme=ed25519:" + strings.Repeat("A", 43) + "=", "MONITOR", " true ", strings.Repeat("h,", 300), strings.Repeat("x", 300)} {
		f.Add(uint8(0), s)
		f.Add(uint8(len(keys)-1), s)
	}
	f.Fuzz(func(t *testing.T, key uint8, value string) {
		var c Config
		if err := c.Set(keys[int(key)%len(keys)].name, value); err != nil {
			return
		}
		checkConfig(t, c)
	})
}
