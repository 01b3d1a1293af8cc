package jit_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/agent/jit"
)

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    jit.Port
		wantErr string
	}{
		{in: "22", want: jit.Port{Number: 22, Proto: jit.TCP}},
		{in: "22/tcp", want: jit.Port{Number: 22, Proto: jit.TCP}},
		{in: " 53/UDP ", want: jit.Port{Number: 53, Proto: jit.UDP}},
		{in: "65535/udp", want: jit.Port{Number: 65535, Proto: jit.UDP}},
		{in: "0", wantErr: "1 to 65535"},
		{in: "65536/tcp", wantErr: "1 to 65535"},
		{in: "-1", wantErr: "1 to 65535"},
		{in: "ssh", wantErr: "not a number"},
		{in: "22/sctp", wantErr: "tcp or udp"},
		{in: "", wantErr: "not a number"},
	} {
		got, err := jit.ParsePort(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePort(%q) = %v, %v; want error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePort(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParsePrefixAndSource(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "192.0.2.7", want: "192.0.2.7/32"},
		{in: "10.0.0.1/8", wantErr: "host bits set: did you mean 10.0.0.0/8"},
		{in: "10.0.0.0/33", wantErr: "not a CIDR range"},
		{in: "10.0.0/8", wantErr: "not a CIDR range"},
		{in: "example.com", wantErr: "not a CIDR range or IP address"},
	} {
		got, err := jit.ParsePrefix(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePrefix(%q) = %v, %v; want error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in, wantErr string
	}{
		{in: "192.0.2.7"}, {in: "2001:db8::7"},
		{in: "10.0.0.0/24", wantErr: "one address, not a range"},
		{in: "0.0.0.0", wantErr: "unspecified"},
		{in: "::", wantErr: "unspecified"},
		{in: "224.0.0.1", wantErr: "multicast"},
		{in: "fe80::1%eth0", wantErr: "zone"},
		{in: "300.1.1.1", wantErr: "not an IP address"},
	} {
		_, err := jit.ParseSource(tc.in)
		if (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseSource(%q) = %v; want error %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       jit.Policy
		wantErr []string
	}{
		{name: "ok", p: jit.Policy{Ports: []jit.Port{{22, jit.TCP}}, AllowedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, MaxDuration: 3 * time.Hour}},
		{name: "empty manages nothing", p: jit.Policy{}},
		{name: "bad everything", p: jit.Policy{
			Ports:          []jit.Port{{0, jit.TCP}, {22, 1}, {22, jit.TCP}, {22, jit.TCP}},
			AllowedSources: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 8)},
			MaxDuration:    -time.Second,
		}, wantErr: []string{"0/tcp: port numbers run from 1 to 65535", "only tcp and udp", "22/tcp listed twice", "10.0.0.1/8", "maximum duration -1s"}},
	} {
		err := tc.p.Validate()
		if len(tc.wantErr) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		for _, w := range tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v does not say %q", tc.name, err, w)
			}
		}
	}
}

func TestStateJSONRoundTrip(t *testing.T) {
	st := jit.State{
		Policy: jit.Policy{Ports: []jit.Port{{22, jit.TCP}, {53, jit.UDP}}, AllowedSources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, MaxDuration: 3 * time.Hour},
		Grants: []jit.Grant{{ID: "g1", Source: netip.MustParseAddr("10.1.2.3"), Port: jit.Port{22, jit.TCP}, Expires: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}},
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"22/tcp"`, `"53/udp"`, `"3h0m0s"`, `"10.1.2.3"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("state JSON %s lacks %s", b, want)
		}
	}
	var got jit.State
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := json.Unmarshal([]byte(`{"policy":{"ports":["99999/tcp"]}}`), &got); err == nil || !strings.Contains(err.Error(), "1 to 65535") {
		t.Errorf("bad port in state: %v", err)
	}
}

func TestGrantRefusals(t *testing.T) {
	e := newEnv(t)
	limited := jit.Policy{Ports: policy.Ports, AllowedSources: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/31")}, MaxDuration: time.Hour}
	if err := e.m.Apply(t.Context(), limited); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		r       jit.GrantRequest
		refused bool // ErrRefused: policy, not malformed input
		wantErr string
	}{
		{name: "zero duration", r: jit.GrantRequest{Source: outA, Port: ssh}, wantErr: "must be positive"},
		{name: "negative duration", r: jit.GrantRequest{Source: outA, Port: ssh, Duration: -time.Minute}, wantErr: "must be positive"},
		{name: "sub-millisecond", r: jit.GrantRequest{Source: outA, Port: ssh, Duration: time.Microsecond}, wantErr: "milliseconds"},
		{name: "over the policy maximum", r: jit.GrantRequest{Source: outA, Port: ssh, Duration: 2 * time.Hour}, refused: true, wantErr: "over the policy's maximum of 1h0m0s"},
		{name: "over the hard limit", r: jit.GrantRequest{Source: outA, Port: ssh, Duration: 31 * 24 * time.Hour}, wantErr: "over the limit"},
		{name: "port not managed", r: jit.GrantRequest{Source: outA, Port: web, Duration: time.Minute}, refused: true, wantErr: "8080/tcp is not managed"},
		{name: "port zero", r: jit.GrantRequest{Source: outA, Port: jit.Port{Proto: jit.TCP}, Duration: time.Minute}, wantErr: "1 to 65535"},
		{name: "source outside allowed ranges", r: jit.GrantRequest{Source: outB, Port: ssh, Duration: time.Minute}, refused: true, wantErr: "10.77.0.3 is outside the allowed source ranges"},
		{name: "no source", r: jit.GrantRequest{Port: ssh, Duration: time.Minute}, wantErr: "source address missing"},
		{name: "unspecified source", r: jit.GrantRequest{Source: netip.IPv4Unspecified(), Port: ssh, Duration: time.Minute}, wantErr: "unspecified"},
		{name: "id too long", r: jit.GrantRequest{ID: strings.Repeat("x", 129), Source: outA, Port: ssh, Duration: time.Minute}, wantErr: "at most 128"},
		{name: "id not printable", r: jit.GrantRequest{ID: "a\nb", Source: outA, Port: ssh, Duration: time.Minute}, wantErr: "printable ASCII"},
	} {
		_, err := e.m.Grant(t.Context(), tc.r)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: grant = %v; want error with %q", tc.name, err, tc.wantErr)
		}
		if got := errors.Is(err, jit.ErrRefused); got != tc.refused {
			t.Errorf("%s: errors.Is(err, ErrRefused) = %v, want %v", tc.name, got, tc.refused)
		}
	}
	if list, err := e.m.List(t.Context()); err != nil || len(list) != 0 {
		t.Fatalf("refused grants left %+v, %v", list, err)
	}
	e.wantOpen(t, outA, ssh, false)
	// A mapped IPv4 source is the IPv4 source.
	if _, err := e.m.Grant(t.Context(), jit.GrantRequest{Source: netip.AddrFrom16(outA.As16()), Port: ssh, Duration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	e.wantOpen(t, outA, ssh, true)

	// A bad policy is refused whole and the applied one stays.
	if err := e.m.Apply(t.Context(), jit.Policy{Ports: []jit.Port{{0, jit.TCP}}}); err == nil {
		t.Fatal("apply of port 0 succeeded")
	}
	e.wantOpen(t, outB, ssh, false)
	e.wantOpen(t, outA, ssh, true)
}
