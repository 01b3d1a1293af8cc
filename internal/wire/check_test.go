package wire

import (
	"strings"
	"testing"
)

func TestNULInJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		doc  string
		want int
	}{
		{`{"a":"b"}`, -1},
		{`{"a":"\u0000"}`, 6},
		{`{"a":"x\\u0000"}`, -1}, // a backslash, then text
		{`{"a":"x\\\u0000"}`, 9}, // a backslash, then a NUL
		{`{"\u0000":1}`, 2},      // in a key
		{`{"a":"\u00000"}`, 6},   // NUL then '0'
		{`{"a":"\u0001"}`, -1},   // another control character: not this check's business
		{`{"a":"\"\u0000"}`, 8},  // after an escaped quote
		{"{\"a\":\"x\x00\"}", 7}, // a raw NUL byte
		{`{"a":"\u000"}`, -1},    // malformed, left to the decoder
		{`["\\", "\u0000"]`, 8},  // an escaped backslash ends its string's escape
		{strings.Repeat(`"\\"`, 3), -1},
	} {
		if got := NULInJSON([]byte(tc.doc)); got != tc.want {
			t.Errorf("NULInJSON(%s) = %d, want %d", tc.doc, got, tc.want)
		}
	}
}

func TestPropertiesLimits(t *testing.T) {
	t.Parallel()
	ok := MachineProperties{OSName: "debian", Hostname: strings.Repeat("h", MaxHostnameLen), IPAddresses: []string{"10.0.0.1", "fe80::1%eth0"},
		Cloud: &CloudMetadata{Region: "eu-west-1"}, Environment: "aws"}
	if _, err := EncodeProperties(ok); err != nil {
		t.Fatalf("valid properties refused: %v", err)
	}
	for _, tc := range []struct {
		name  string
		p     MachineProperties
		field string
	}{
		{"4 MB hostname", MachineProperties{Hostname: strings.Repeat("x", 4<<20)}, "hostname"},
		{"long os name", MachineProperties{OSName: strings.Repeat("x", MaxPropertyLen+1)}, "osName"},
		{"escape in os name", MachineProperties{OSName: "\x1b]0;owned\a\x1b[2J"}, "osName"},
		{"NUL in pretty name", MachineProperties{OSPrettyName: "Debian\x00"}, "osPrettyName"},
		{"bidi override", MachineProperties{Model: "abc\u202Egnp.exe"}, "model"},
		{"invalid UTF-8", MachineProperties{Kernel: "\xff\xfe"}, "kernel"},
		{"long IP", MachineProperties{IPAddresses: []string{"1.2.3.4", strings.Repeat("1", 65)}}, "ipAddresses[1]"},
		{"too many IPs", MachineProperties{IPAddresses: make([]string, MaxIPAddresses+1)}, "ipAddresses"},
		{"cloud field", MachineProperties{Cloud: &CloudMetadata{AccountID: strings.Repeat("9", 300)}}, "cloud.accountId"},
		{"environment", MachineProperties{Environment: "Mars"}, "environment"},
	} {
		_, err := EncodeProperties(tc.p)
		if err == nil || FieldOf(err) != tc.field {
			t.Errorf("%s: err %v (field %q), want a refusal of %q", tc.name, err, FieldOf(err), tc.field)
		}
	}
	cfg := AgentConfig{ExtensionsAllowlist: make([]string, MaxConfigListLen+1)}
	if _, err := EncodeAgentConfig(cfg); err == nil || FieldOf(err) != "extensions.allowlist" {
		t.Errorf("long allowlist: %v", err)
	}
	if _, err := EncodeAgentConfig(AgentConfig{ProxyURL: "http://p\x1b[2J"}); err == nil {
		t.Error("escape in proxy.url accepted")
	}
}

func TestCleanReported(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Debian GNU/Linux 12":   "Debian GNU/Linux 12",
		"deb\x00ian":            "debian",
		"\x1b]0;x\a\x1b[2Jok":   "]0;x[2Jok",
		"a\u202Eb":              "ab",
		"\xffok":                "ok",
		strings.Repeat("é", 40): strings.Repeat("é", 32),
	} {
		if got := CleanReported(in, 64); got != want {
			t.Errorf("CleanReported(%q) = %q, want %q", in, got, want)
		}
	}
}
