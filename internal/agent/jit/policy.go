package jit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// MaxGrantDuration bounds any grant whatever the policy says: a "just in
// time" opening of more than 30 days is a configuration mistake.
const MaxGrantDuration = 30 * 24 * time.Hour

// maxIDLen bounds a grant id, stored as the kernel element's comment (the
// kernel allows 256 bytes of user data per element).
const maxIDLen = 128

// Proto is a transport protocol whose ports can be managed.
type Proto uint8

// The protocols a policy can manage (IANA protocol numbers).
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// Port is a port number with its protocol; its text form is "22/tcp".
type Port struct {
	Number uint16
	Proto  Proto
}

func (p Port) String() string { return strconv.Itoa(int(p.Number)) + "/" + p.Proto.String() }

// Validate reports a port outside 1–65535 or a protocol other than tcp/udp.
func (p Port) Validate() error {
	if p.Number == 0 {
		return fmt.Errorf("port %s: port numbers run from 1 to 65535", p)
	}
	if p.Proto != TCP && p.Proto != UDP {
		return fmt.Errorf("port %s: only tcp and udp ports can be managed", p)
	}
	return nil
}

// ParsePort reads "22", "22/tcp" or "53/udp" (tcp when no protocol is given).
func ParsePort(s string) (Port, error) {
	num, proto, hasProto := strings.Cut(strings.TrimSpace(s), "/")
	p := Port{Proto: TCP}
	if hasProto {
		switch strings.ToLower(proto) {
		case "tcp":
		case "udp":
			p.Proto = UDP
		default:
			return Port{}, fmt.Errorf("port %q: protocol must be tcp or udp", s)
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return Port{}, fmt.Errorf("port %q: not a number", s)
	}
	if n < 1 || n > 65535 {
		return Port{}, fmt.Errorf("port %q: port numbers run from 1 to 65535", s)
	}
	p.Number = uint16(n)
	return p, nil
}

// MarshalText writes "22/tcp".
func (p Port) MarshalText() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads what ParsePort reads.
func (p *Port) UnmarshalText(b []byte) error {
	v, err := ParsePort(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParseSource reads one source address for a grant: a plain IPv4 or IPv6
// address, no prefix, no zone, not unspecified or multicast. An IPv4-mapped
// IPv6 address is read as the IPv4 address (that is how the kernel sees it).
func ParseSource(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		if strings.Contains(s, "/") {
			return netip.Addr{}, fmt.Errorf("source %q: a grant is for one address, not a range", s)
		}
		return netip.Addr{}, fmt.Errorf("source %q: not an IP address", s)
	}
	return a, validateSource(a)
}

func validateSource(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("source address missing")
	case a.Zone() != "":
		return fmt.Errorf("source %s: an address with a zone cannot be granted", a)
	case a.IsUnspecified():
		return fmt.Errorf("source %s: the unspecified address is never a packet's source", a)
	case a.IsMulticast():
		return fmt.Errorf("source %s: a multicast address is never a packet's source", a)
	}
	return nil
}

// ParsePrefix reads an allowed source range, "10.0.0.0/8" or "2001:db8::/32";
// a plain address is read as a single-address range. A range with host bits
// set ("10.0.0.1/8") is refused rather than silently widened.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("source range %q: not a CIDR range or IP address", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("source range %q: not a CIDR range (%v)", s, err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("source range %q has host bits set: did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// Policy is what the machine's JIT policy asks of the agent.
type Policy struct {
	// Ports are the managed ports: closed except to granted sources.
	Ports []Port `json:"ports"`
	// AllowedSources, when not empty, limits which sources may be granted
	// (the server checks this too; the agent refuses on its own).
	AllowedSources []netip.Prefix `json:"allowedSources,omitempty"`
	// MaxDuration, when not zero, limits a grant's duration.
	MaxDuration time.Duration `json:"maxDuration,omitempty"`
}

// Validate checks every field and reports all problems found.
func (p Policy) Validate() error {
	var errs []error
	seen := map[Port]bool{}
	for _, port := range p.Ports {
		if err := port.Validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[port] {
			errs = append(errs, fmt.Errorf("port %s listed twice", port))
		}
		seen[port] = true
	}
	for _, s := range p.AllowedSources {
		if !s.IsValid() || s.Masked() != s {
			errs = append(errs, fmt.Errorf("allowed source %s: not a CIDR range without host bits", s))
		}
	}
	if p.MaxDuration < 0 || p.MaxDuration > MaxGrantDuration {
		errs = append(errs, fmt.Errorf("maximum duration %s: must be between 0 (no limit) and %s", p.MaxDuration, MaxGrantDuration))
	}
	return errors.Join(errs...)
}

func (p Policy) manages(port Port) bool {
	for _, q := range p.Ports {
		if q == port {
			return true
		}
	}
	return false
}

// GrantRequest asks for one opening.
type GrantRequest struct {
	// ID names the grant (the control plane's grant id); the kernel keeps it
	// as the element's comment so List can give it back. Optional; at most
	// 128 printable ASCII bytes.
	ID       string
	Source   netip.Addr
	Port     Port
	Duration time.Duration
}

// Grant is one opening as the kernel holds it.
type Grant struct {
	ID      string     `json:"id,omitempty"`
	Source  netip.Addr `json:"source"`
	Port    Port       `json:"port"`
	Expires time.Time  `json:"expires"`
	// Remaining is the time left as the kernel reported it when listed
	// (zero in saved state).
	Remaining time.Duration `json:"-"`
}

func validateID(id string) error {
	if len(id) > maxIDLen {
		return fmt.Errorf("grant id is %d bytes long; at most %d", len(id), maxIDLen)
	}
	for _, r := range id {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("grant id %q: only printable ASCII is allowed", id)
		}
	}
	return nil
}

// check validates a request against the policy: the reason is in the error.
func (r GrantRequest) check(p Policy) error {
	var errs []error
	if err := validateID(r.ID); err != nil {
		errs = append(errs, err)
	}
	if err := validateSource(r.Source); err != nil {
		errs = append(errs, err)
	} else if len(p.AllowedSources) > 0 {
		allowed := false
		for _, s := range p.AllowedSources {
			if s.Contains(r.Source.Unmap()) {
				allowed = true
			}
		}
		if !allowed {
			errs = append(errs, fmt.Errorf("source %s is outside the allowed source ranges %v: %w", r.Source, p.AllowedSources, ErrRefused))
		}
	}
	if err := r.Port.Validate(); err != nil {
		errs = append(errs, err)
	} else if !p.manages(r.Port) {
		errs = append(errs, fmt.Errorf("port %s is not managed by the JIT policy: %w", r.Port, ErrRefused))
	}
	switch {
	case r.Duration <= 0:
		errs = append(errs, fmt.Errorf("duration %s: must be positive", r.Duration))
	case r.Duration < time.Millisecond:
		errs = append(errs, fmt.Errorf("duration %s: the kernel counts in milliseconds", r.Duration))
	case r.Duration > MaxGrantDuration:
		errs = append(errs, fmt.Errorf("duration %s is over the limit of %s", r.Duration, MaxGrantDuration))
	case p.MaxDuration > 0 && r.Duration > p.MaxDuration:
		errs = append(errs, fmt.Errorf("duration %s is over the policy's maximum of %s: %w", r.Duration, p.MaxDuration, ErrRefused))
	}
	return errors.Join(errs...)
}

// State is what the caller saves to restore the table after a reboot.
type State struct {
	Policy Policy  `json:"policy"`
	Grants []Grant `json:"grants,omitempty"`
}

// policyJSON keeps MaxDuration readable in saved state ("3h0m0s").
type policyJSON struct {
	Ports          []Port         `json:"ports"`
	AllowedSources []netip.Prefix `json:"allowedSources,omitempty"`
	MaxDuration    string         `json:"maxDuration,omitempty"`
}

// MarshalJSON writes MaxDuration as a Go duration string.
func (p Policy) MarshalJSON() ([]byte, error) {
	v := policyJSON{Ports: p.Ports, AllowedSources: p.AllowedSources}
	if p.MaxDuration != 0 {
		v.MaxDuration = p.MaxDuration.String()
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var v policyJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = Policy{Ports: v.Ports, AllowedSources: v.AllowedSources}
	if v.MaxDuration != "" {
		d, err := time.ParseDuration(v.MaxDuration)
		if err != nil {
			return fmt.Errorf("maxDuration %q: %w", v.MaxDuration, err)
		}
		p.MaxDuration = d
	}
	return nil
}
