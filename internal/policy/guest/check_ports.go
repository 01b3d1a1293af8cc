package guest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PortsCheck checks the sockets listening on the live system
// (/proc/net/tcp, tcp6, udp, udp6). In a tree it is Unknown.
type PortsCheck struct {
	// Forbidden ports must not be listened on.
	Forbidden []PortSpec `json:"forbidden,omitempty"`
	// Allowed: when set, every listening port must be one of these.
	Allowed []PortSpec `json:"allowed,omitempty"`
	// Loopback: also count sockets bound to loopback addresses only
	// (default: they are not reachable from the network and ignored).
	Loopback bool `json:"loopback,omitempty"`
}

// PortSpec is a port and protocol (tcp or udp).
type PortSpec struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

func (c *PortsCheck) validate(p string) error {
	if len(c.Forbidden) == 0 && c.Allowed == nil {
		return cfgErr(p, "set forbidden or allowed ports")
	}
	for _, list := range []struct {
		name string
		l    []PortSpec
	}{{"forbidden", c.Forbidden}, {"allowed", c.Allowed}} {
		for i, ps := range list.l {
			if ps.Port < 1 || ps.Port > 65535 {
				return cfgErr(fmt.Sprintf("%s.%s[%d].port", p, list.name, i), "must be 1-65535")
			}
			if ps.Protocol != "tcp" && ps.Protocol != "udp" {
				return cfgErr(fmt.Sprintf("%s.%s[%d].protocol", p, list.name, i), "must be tcp or udp")
			}
		}
	}
	return nil
}

func (c *PortsCheck) watch(*snapshot) []string { return nil }

type listener struct {
	proto string
	addr  string
	port  int
}

func (e Env) listeners(loopback bool) ([]listener, error) {
	var out []listener
	for _, f := range []struct{ file, proto, state string }{{"net/tcp", "tcp", "0A"}, {"net/tcp6", "tcp", "0A"}, {"net/udp", "udp", "07"}, {"net/udp6", "udp", "07"}} {
		b, err := os.ReadFile(e.procPath(f.file))
		if err != nil {
			if os.IsNotExist(err) && strings.HasSuffix(f.file, "6") {
				continue // no IPv6
			}
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != f.state {
				continue
			}
			host, portHex, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			port, err := strconv.ParseUint(portHex, 16, 16)
			if err != nil {
				continue
			}
			if !loopback && isLoopbackHex(host) {
				continue
			}
			out = append(out, listener{proto: f.proto, addr: host, port: int(port)})
		}
	}
	return out, nil
}

// isLoopbackHex: 127.0.0.0/8 (little-endian hex 7F last) or ::1.
func isLoopbackHex(h string) bool {
	switch len(h) {
	case 8:
		return strings.HasSuffix(h, "7F")
	case 32:
		return h == "00000000000000000000000001000000" || strings.HasPrefix(h, "0000000000000000FFFF0000") && strings.HasSuffix(h, "7F")
	}
	return false
}

func (c *PortsCheck) evaluate(s *snapshot) (State, string) {
	if !s.env.Live {
		return Unknown, "listening ports are only visible on the live system, not in a tree"
	}
	ls, err := s.env.listeners(c.Loopback)
	if err != nil {
		return Unknown, "cannot read listening sockets: " + err.Error()
	}
	in := func(list []PortSpec, l listener) bool {
		for _, p := range list {
			if p.Port == l.port && p.Protocol == l.proto {
				return true
			}
		}
		return false
	}
	var bad []string
	seen := map[string]bool{}
	for _, l := range ls {
		key := fmt.Sprintf("%s/%d", l.proto, l.port)
		if seen[key] {
			continue
		}
		if in(c.Forbidden, l) || c.Allowed != nil && !in(c.Allowed, l) {
			seen[key] = true
			bad = append(bad, key)
		}
	}
	if len(bad) > 0 {
		return NonCompliant, "listening on " + strings.Join(bad, ", ") + ", which this rule does not allow"
	}
	return Compliant, fmt.Sprintf("%d listening sockets, none forbidden", len(ls))
}
