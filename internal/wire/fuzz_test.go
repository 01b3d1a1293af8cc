package wire

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The fuzz targets of the wire package: the checks the server applies to
// what agents and API callers send. Their seeds run in plain `go test`;
// `go test -run XXX -fuzz FuzzNULInJSON ./internal/wire` explores further
// (docs/security.md, "Fuzzing").

// FuzzNULInJSON: NULInJSON finds a NUL exactly when the document, decoded,
// holds one in a key or a string, and never refuses a document without.
func FuzzNULInJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":"b"}`, `{"a":"\u0000"}`, `{"a":"x\\u0000"}`, `{"a":"x\\\u0000"}`, `{"\u0000":1}`,
		`["\\", "\u0000"]`, `{"a":"\"\u0000"}`, "{\"a\":\"x\x00\"}", `{"a":"\u000"}`, `"\\\\\u0000"`,
		`{"a":["\ud800\u0000"]}`, `{"a":{"b":"\u0000"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		at := NULInJSON(b)
		if at >= len(b) || at < -1 {
			t.Fatalf("NULInJSON = %d out of range for %d bytes", at, len(b))
		}
		if bytes.IndexByte(b, 0) >= 0 && at < 0 {
			t.Fatalf("a raw NUL byte in %q not found", b)
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			return // malformed: the decoder refuses it anyway
		}
		if has := holdsNUL(v); has != (at >= 0) {
			t.Fatalf("NULInJSON(%q) = %d, but the decoded document holds a NUL: %v", b, at, has)
		}
	})
}

func holdsNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, 0)
	case []any:
		for _, e := range v {
			if holdsNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.ContainsRune(k, 0) || holdsNUL(e) {
				return true
			}
		}
	}
	return false
}

// FuzzCheckText: what CleanReported keeps passes CheckText, cleaning is
// idempotent, and CheckText accepts exactly the strings cleaning leaves
// alone.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{"debian", "Debian\x00", "\x1b]0;owned\a", "abc\u202Egnp.exe", "\xff\xfe", "é", strings.Repeat("é", 200), "a\u0085b"} {
		f.Add(s, 256)
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		c := CleanReported(s, max)
		if err := CheckText(c, max); err != nil {
			t.Fatalf("CleanReported(%q, %d) = %q, which CheckText refuses: %v", s, max, c, err)
		}
		if again := CleanReported(c, max); again != c {
			t.Fatalf("CleanReported is not idempotent: %q then %q", c, again)
		}
		if ok := CheckText(s, max) == nil; ok != (c == s) {
			t.Fatalf("CheckText(%q, %d) ok=%v but CleanReported gives %q", s, max, ok, c)
		}
	})
}

// FuzzMachineProperties: properties as an agent sends them (onboarding,
// properties reports). What the server accepts is within every limit and
// stores as a document that reads back the same; what an agent cleans is
// always accepted.
func FuzzMachineProperties(f *testing.F) {
	f.Add([]byte(`{"osName":"debian","osVersion":"12","hostname":"web-1","ipAddresses":["10.0.0.1","fe80::1%eth0"],"environment":"aws","cloud":{"region":"eu-west-1"}}`))
	f.Add([]byte(`{"osPrettyName":"Debian\u0000","model":"abc\u202egnp"}`))
	f.Add([]byte(`{"kernel":"\xff","ipAddresses":[""]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p MachineProperties
		if json.Unmarshal(b, &p) != nil {
			return
		}
		if _, err := EncodeProperties(p.Cleaned()); err != nil && !strings.Contains(err.Error(), "document is larger") && FieldOf(err) != "environment" {
			t.Fatalf("cleaned properties refused: %v", err)
		}
		doc, err := EncodeProperties(p)
		if err != nil {
			if FieldOf(err) == "" && !strings.Contains(err.Error(), "larger than") {
				t.Fatalf("refusal without a field: %v", err)
			}
			return
		}
		if len(doc) > MaxPropertiesBytes || len(p.IPAddresses) > MaxIPAddresses {
			t.Fatalf("accepted properties exceed the limits")
		}
		for _, s := range []string{p.OSName, p.OSVersion, p.Hostname, p.Kernel, p.Model, p.Manufacturer} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, UnsafeRune) {
				t.Fatalf("accepted properties hold unsafe text %q", s)
			}
		}
		var back MachineProperties
		if err := json.Unmarshal(doc, &back); err != nil {
			t.Fatalf("stored document does not read back: %v", err)
		}
		if !reflect.DeepEqual(normProps(back), normProps(p)) {
			t.Fatalf("stored properties read back as %+v, want %+v", back, p)
		}
	})
}

// normProps makes an empty and a nil list compare equal (omitempty).
func normProps(p MachineProperties) MachineProperties {
	if len(p.IPAddresses) == 0 {
		p.IPAddresses = nil
	}
	return p
}

// FuzzAgentConfig: a reported agent configuration the server accepts is
// within the limits and reads back the same.
func FuzzAgentConfig(f *testing.F) {
	f.Add([]byte(`{"config.mode":"full","extensions.allowlist":["Corral/RunCommand"],"proxy.url":"http://proxy:3128","proxy.bypass":[".corp","10.0.0.0/8"],"incomingconnections.ports":["22"]}`))
	f.Add([]byte(`{"config.mode":"\u0000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c AgentConfig
		if json.Unmarshal(b, &c) != nil {
			return
		}
		doc, err := EncodeAgentConfig(c)
		if err != nil {
			return
		}
		if len(doc) > MaxAgentConfigBytes || len(c.ProxyBypass) > MaxConfigListLen || strings.ContainsRune(c.ProxyURL, 0) {
			t.Fatalf("accepted agent configuration exceeds the limits")
		}
		var back AgentConfig
		if err := json.Unmarshal(doc, &back); err != nil {
			t.Fatalf("stored document does not read back: %v", err)
		}
		if d2, err := EncodeAgentConfig(back); err != nil || !bytes.Equal(d2, doc) {
			t.Fatalf("stored document re-encodes as %s (%v), want %s", d2, err, doc)
		}
	})
}

// FuzzParseProtectionSettings: accepted settings are valid, hold exactly
// one JSON value, and parse back the same from their encoding.
func FuzzParseProtectionSettings(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"action":"report"}`,
		`{"realtime":{"enabled":true,"paths":["/srv","/home"]},"action":"delete","exclusions":{"paths":["/proc"],"extensions":["iso",".log"]}}`,
		`{"realtime":{"enabled":true,"paths":[]}}`, `{"exclusions":{"paths":["/a/../b"]}}`, `{"action":"report"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := ParseProtectionSettings(raw)
		if err != nil {
			return
		}
		if tr := bytes.TrimSpace(raw); len(tr) > 0 && !json.Valid(tr) {
			t.Fatalf("accepted settings %q are not one JSON value", raw)
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted settings do not validate: %v", err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseProtectionSettings(b)
		if err != nil || !reflect.DeepEqual(back, s) {
			t.Fatalf("settings %s parse back as %+v (%v), want %+v", b, back, err, s)
		}
	})
}

// FuzzParseJIT: the canonical forms of a port, a source and a range parse
// back to themselves, and what is accepted is what a grant may hold.
func FuzzParseJIT(f *testing.F) {
	for _, s := range []string{"22", "22/tcp", "53/UDP", "+22", "0", "65536", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0", "10.0.0.0/8",
		"10.0.0.1/8", "2001:db8::/32", "0.0.0.0", "224.0.0.1", " 1.2.3.4 ", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParseJITPort(s); err == nil {
			if again, err := ParseJITPort(p); err != nil || again != p {
				t.Fatalf("port %q canonical %q parses back as %q (%v)", s, p, again, err)
			}
		}
		if a, err := ParseJITSource(s); err == nil {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() {
				t.Fatalf("source %q accepted as %s", s, a)
			}
			if again, err := ParseJITSource(a.String()); err != nil || again != a {
				t.Fatalf("source %s parses back as %s (%v)", a, again, err)
			}
		}
		if p, err := ParseJITRange(s); err == nil {
			if !p.IsValid() || p.Masked() != p || p.Addr().Zone() != "" {
				t.Fatalf("range %q accepted as %s", s, p)
			}
			if again, err := ParseJITRange(p.String()); err != nil || again != p {
				t.Fatalf("range %s parses back as %s (%v)", p, again, err)
			}
		}
	})
}

// FuzzValidResourceName: a name the agent accepts from the control plane
// (extensions, run commands, tunnels) names a directory entry directly
// under where the agent puts it, whatever a compromised control plane
// sends.
func FuzzValidResourceName(f *testing.F) {
	for _, s := range []string{"rc", "a..", "..", ".", "a/b", "a\\b", "a\x00", strings.Repeat("a", 64), "web-1.prod"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidResourceName(s) {
			return
		}
		j := filepath.Join("/var/lib/corral/extensions", s)
		if filepath.Dir(j) != "/var/lib/corral/extensions" || filepath.Base(j) != s || len(s) > 63 || strings.ContainsAny(s, "\x00\\/ ") {
			t.Fatalf("name %q accepted, which is not one path component (%s)", s, j)
		}
	})
}

// FuzzDuration: every duration in an API body or manifest ("timeout":
// "5m") that reads encodes back to a string that reads as the same value.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{`"5m"`, `"1h30m"`, `"-2s"`, `"0"`, `"2562047h47m16.854775807s"`, `"9223372036854775807ns"`, `5`, `"1e3s"`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Duration
		if json.Unmarshal(b, &d) != nil {
			return
		}
		enc, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var back Duration
		if err := json.Unmarshal(enc, &back); err != nil || back != d {
			t.Fatalf("duration %s encodes as %s, which reads back as %v (%v)", b, enc, time.Duration(back), err)
		}
	})
}
