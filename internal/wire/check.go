package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what an agent reports about its machine. A machine is a
// resource any reader lists by the thousand, so every reported string has a
// bound, and the stored documents too: a machine (or a leaked onboarding
// secret) cannot make the inventory large.
const (
	// MaxIPAddresses is the most addresses MachineProperties may list.
	MaxIPAddresses = 256
	// MaxPropertyLen bounds every reported string not listed below.
	MaxPropertyLen = 256
	// MaxHostnameLen bounds hostname and FQDN (RFC 1035's 253).
	MaxHostnameLen = 253
	// MaxIPAddressLen bounds one reported address (with a zone).
	MaxIPAddressLen = 64
	// MaxPropertiesBytes bounds the stored properties document.
	MaxPropertiesBytes = 32 << 10
	// MaxAgentConfigBytes bounds the stored agent configuration document.
	MaxAgentConfigBytes = 32 << 10
	// MaxConfigListLen bounds each list of the agent configuration, and
	// MaxConfigValueLen each of its strings but the proxy URL.
	MaxConfigListLen  = 256
	MaxConfigValueLen = 256
	// MaxProxyURLLen bounds the reported proxy URL.
	MaxProxyURLLen = 2048
)

// FieldError is a refused reported value: the JSON field at fault and why.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// FieldOf is the JSON field of a FieldError in err's chain ("" if none).
func FieldOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// UnsafeRune is a rune the server refuses in names and reported strings,
// and clients escape when they show text: control characters (C0, DEL, C1),
// which a terminal acts on, and the bidirectional overrides and isolates,
// which reorder what is shown.
func UnsafeRune(r rune) bool {
	return unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200E || r == 0x200F
}

// CheckText explains why s is not acceptable as a one-line reported or
// named value of at most max bytes: invalid UTF-8, an unsafe rune (see
// UnsafeRune; NUL included) or too long. Nil when it is.
func CheckText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("is longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	if i := strings.IndexFunc(s, UnsafeRune); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Errorf("contains the control character %U at byte %d", r, i)
	}
	return nil
}

// CleanReported returns s without invalid UTF-8 and unsafe runes, cut to at
// most max bytes on a rune boundary: what an agent sends of a value read
// from the host (an os-release with a NUL, a DMI string with escapes), and
// what the server keeps of a value it cannot refuse (a heartbeat's agent
// version).
func CleanReported(s string, max int) string {
	s = strings.ToValidUTF8(s, "")
	if strings.IndexFunc(s, UnsafeRune) >= 0 {
		s = strings.Map(func(r rune) rune {
			if UnsafeRune(r) {
				return -1
			}
			return r
		}, s)
	}
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Check reports the first thing the server refuses in agent-reported
// properties: the JSON field at fault and why. It is the one rule for
// onboarding (ConnectRequest.Properties) and properties reports.
func (p MachineProperties) Check() (field string, err error) {
	if err := p.check(); err != nil {
		return FieldOf(err), err
	}
	return "", nil
}

func (p MachineProperties) check() error {
	if p.Environment != "" {
		known := false
		for _, e := range Environments {
			known = known || strings.EqualFold(e, p.Environment)
		}
		if !known {
			return &FieldError{"environment", fmt.Errorf("environment must be one of %s", strings.Join(Environments, ", "))}
		}
	}
	if len(p.IPAddresses) > MaxIPAddresses {
		return &FieldError{"ipAddresses", fmt.Errorf("too many IP addresses (at most %d)", MaxIPAddresses)}
	}
	type text struct {
		field, v string
		max      int
	}
	texts := []text{
		{"osName", p.OSName, MaxPropertyLen}, {"osVersion", p.OSVersion, MaxPropertyLen}, {"osPrettyName", p.OSPrettyName, MaxPropertyLen},
		{"osType", p.OSType, MaxPropertyLen}, {"kernel", p.Kernel, MaxPropertyLen}, {"arch", p.Arch, MaxPropertyLen},
		{"hostname", p.Hostname, MaxHostnameLen}, {"fqdn", p.FQDN, MaxHostnameLen}, {"cpuModel", p.CPUModel, MaxPropertyLen},
		{"manufacturer", p.Manufacturer, MaxPropertyLen}, {"model", p.Model, MaxPropertyLen},
	}
	for i, ip := range p.IPAddresses {
		texts = append(texts, text{fmt.Sprintf("ipAddresses[%d]", i), ip, MaxIPAddressLen})
	}
	if c := p.Cloud; c != nil {
		for _, f := range []struct{ field, v string }{
			{"cloud.instanceId", c.InstanceID}, {"cloud.region", c.Region}, {"cloud.zone", c.Zone},
			{"cloud.accountId", c.AccountID}, {"cloud.instanceType", c.InstanceType},
		} {
			texts = append(texts, text{f.field, f.v, MaxPropertyLen})
		}
	}
	for _, t := range texts {
		if err := CheckText(t.v, t.max); err != nil {
			return &FieldError{t.field, fmt.Errorf("%s %w", t.field, err)}
		}
	}
	return nil
}

// EncodeProperties checks p and returns the document the server stores,
// refusing one larger than MaxPropertiesBytes. Errors are *FieldError.
func EncodeProperties(p MachineProperties) ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPropertiesBytes {
		return nil, &FieldError{"", fmt.Errorf("the properties document is larger than %d bytes", MaxPropertiesBytes)}
	}
	return b, nil
}

// check reports the first thing the server refuses in a reported agent
// configuration.
func (c AgentConfig) check() error {
	if err := CheckText(c.Mode, MaxConfigValueLen); err != nil {
		return &FieldError{"config.mode", fmt.Errorf("config.mode %w", err)}
	}
	if err := CheckText(c.ProxyURL, MaxProxyURLLen); err != nil {
		return &FieldError{"proxy.url", fmt.Errorf("proxy.url %w", err)}
	}
	for _, l := range []struct {
		field string
		v     []string
	}{
		{"extensions.allowlist", c.ExtensionsAllowlist}, {"extensions.blocklist", c.ExtensionsBlocklist},
		{"incomingconnections.ports", c.IncomingConnectionsPorts}, {"proxy.bypass", c.ProxyBypass},
	} {
		if len(l.v) > MaxConfigListLen {
			return &FieldError{l.field, fmt.Errorf("%s has more than %d entries", l.field, MaxConfigListLen)}
		}
		for i, v := range l.v {
			if err := CheckText(v, MaxConfigValueLen); err != nil {
				return &FieldError{fmt.Sprintf("%s[%d]", l.field, i), fmt.Errorf("%s[%d] %w", l.field, i, err)}
			}
		}
	}
	return nil
}

// EncodeAgentConfig checks c and returns the document the server stores,
// refusing one larger than MaxAgentConfigBytes. Errors are *FieldError.
func EncodeAgentConfig(c AgentConfig) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxAgentConfigBytes {
		return nil, &FieldError{"", fmt.Errorf("the agent configuration document is larger than %d bytes", MaxAgentConfigBytes)}
	}
	return b, nil
}

// NULInJSON returns the offset of the first NUL character a JSON document
// holds — a raw 0 byte or the escape \u0000 inside a string — or -1. It
// reads escapes exactly ("\\u0000" is a backslash and text, not a NUL), so
// it never refuses a document that holds no NUL.
func NULInJSON(b []byte) int {
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == 0:
			return i
		case !inString:
			if c == '"' {
				inString = true
			}
		case c == '"':
			inString = false
		case c == '\\' && i+1 < len(b):
			if b[i+1] == 'u' && i+5 < len(b) && string(b[i+2:i+6]) == "0000" {
				return i
			}
			if b[i+1] == 0 {
				return i + 1 // a raw NUL, escaped (malformed, but a NUL all the same)
			}
			i++ // the escaped character is not a quote or a backslash
		}
	}
	return -1
}

// Cleaned returns p as an agent reports it: every string cleaned and cut to
// its limit (CleanReported) and at most MaxIPAddresses addresses, so that a
// host with an odd os-release or DMI string (a NUL, an escape sequence, a
// megabyte) still reports what it can instead of being refused.
func (p MachineProperties) Cleaned() MachineProperties {
	for _, f := range []struct {
		v   *string
		max int
	}{
		{&p.OSName, MaxPropertyLen}, {&p.OSVersion, MaxPropertyLen}, {&p.OSPrettyName, MaxPropertyLen}, {&p.OSType, MaxPropertyLen},
		{&p.Kernel, MaxPropertyLen}, {&p.Arch, MaxPropertyLen}, {&p.Hostname, MaxHostnameLen}, {&p.FQDN, MaxHostnameLen},
		{&p.CPUModel, MaxPropertyLen}, {&p.Manufacturer, MaxPropertyLen}, {&p.Model, MaxPropertyLen},
	} {
		*f.v = CleanReported(*f.v, f.max)
	}
	if len(p.IPAddresses) > MaxIPAddresses {
		p.IPAddresses = p.IPAddresses[:MaxIPAddresses]
	}
	ips := make([]string, 0, len(p.IPAddresses))
	for _, ip := range p.IPAddresses {
		if ip = CleanReported(ip, MaxIPAddressLen); ip != "" {
			ips = append(ips, ip)
		}
	}
	p.IPAddresses = ips
	if p.Cloud != nil {
		c := *p.Cloud
		for _, v := range []*string{&c.InstanceID, &c.Region, &c.Zone, &c.AccountID, &c.InstanceType} {
			*v = CleanReported(*v, MaxPropertyLen)
		}
		p.Cloud = &c
	}
	return p
}
