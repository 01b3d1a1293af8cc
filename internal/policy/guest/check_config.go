package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// ConfigValueCheck checks a key in a key/value configuration file such as
// /etc/login.defs ("KEY value") or /etc/audit/auditd.conf ("key = value").
type ConfigValueCheck struct {
	Path string `json:"path"`
	Key  string `json:"key"`
	// Separator: "space" (KEY value) or "=" (key = value).
	Separator string `json:"separator"`
	// Occurrence that counts when a key appears more than once: "last"
	// (login.defs, auditd.conf: later lines override) or "first".
	Occurrence string `json:"occurrence,omitempty"`
	// CaseSensitiveKey: keys compare exactly (default: case-insensitively).
	CaseSensitiveKey bool `json:"caseSensitiveKey,omitempty"`
	// Exactly one condition: Equals (case-insensitive), In, Min/Max
	// (numbers), HasBits (octal: every bit of the value is set, as a umask
	// of 027 or stricter).
	Equals  string   `json:"equals,omitempty"`
	In      []string `json:"in,omitempty"`
	Min     *int     `json:"min,omitempty"`
	Max     *int     `json:"max,omitempty"`
	HasBits string   `json:"hasBits,omitempty"`
	// WhenMissing: state when the file or key is absent (default NonCompliant).
	WhenMissing State `json:"whenMissing,omitempty"`

	bits uint64
}

func (c *ConfigValueCheck) validate(p string) error {
	if err := checkAbs(p+".path", c.Path); err != nil {
		return err
	}
	if strings.TrimSpace(c.Key) == "" || strings.ContainsAny(c.Key, " \t=") {
		return cfgErr(p+".key", "needs a key without spaces or '='")
	}
	if c.Separator != "space" && c.Separator != "=" {
		return cfgErr(p+".separator", "must be space or =, got %q", c.Separator)
	}
	switch c.Occurrence {
	case "":
		c.Occurrence = "last"
	case "first", "last":
	default:
		return cfgErr(p+".occurrence", "must be first or last, got %q", c.Occurrence)
	}
	n := 0
	for _, set := range []bool{c.Equals != "", c.In != nil, c.Min != nil || c.Max != nil, c.HasBits != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return cfgErr(p, "a configValue check takes exactly one condition: equals, in, min/max or hasBits")
	}
	if c.HasBits != "" {
		b, err := strconv.ParseUint(c.HasBits, 8, 32)
		if err != nil {
			return cfgErr(p+".hasBits", "%q is not an octal number", c.HasBits)
		}
		c.bits = b
	}
	return checkWhenMissing(p+".whenMissing", c.WhenMissing)
}

func (c *ConfigValueCheck) watch(*snapshot) []string { return []string{c.Path} }

type cfgHit struct {
	value string
	line  int
}

func (c *ConfigValueCheck) find(b []byte) (cfgHit, bool) {
	var hit cfgHit
	found := false
	for i, raw := range strings.Split(string(b), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		var k, v string
		if c.Separator == "=" {
			var ok bool
			if k, v, ok = strings.Cut(line, "="); !ok {
				continue
			}
		} else {
			f := strings.Fields(line)
			k = f[0]
			v = strings.TrimSpace(strings.TrimPrefix(line, k))
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k != c.Key && (c.CaseSensitiveKey || !strings.EqualFold(k, c.Key)) {
			continue
		}
		hit, found = cfgHit{value: v, line: i + 1}, true
		if c.Occurrence == "first" {
			break
		}
	}
	return hit, found
}

func (c *ConfigValueCheck) want() string {
	switch {
	case c.Equals != "":
		return c.Equals
	case c.In != nil:
		return "one of " + strings.Join(c.In, ", ")
	case c.Min != nil && c.Max != nil:
		return fmt.Sprintf("%d to %d", *c.Min, *c.Max)
	case c.Min != nil:
		return fmt.Sprintf("%d or more", *c.Min)
	case c.Max != nil:
		return fmt.Sprintf("%d or less", *c.Max)
	}
	return c.HasBits + " or stricter"
}

func (c *ConfigValueCheck) ok(v string) bool {
	switch {
	case c.Equals != "":
		return strings.EqualFold(v, c.Equals)
	case c.In != nil:
		for _, x := range c.In {
			if strings.EqualFold(v, x) {
				return true
			}
		}
		return false
	case c.Min != nil || c.Max != nil:
		n, err := strconv.Atoi(v)
		return err == nil && (c.Min == nil || n >= *c.Min) && (c.Max == nil || n <= *c.Max)
	}
	n, err := strconv.ParseUint(v, 8, 32)
	return err == nil && n&c.bits == c.bits
}

func (c *ConfigValueCheck) evaluate(s *snapshot) (State, string) {
	b, err := s.read(c.Path)
	missing := func(ev string) (State, string) {
		st := c.WhenMissing
		if st == "" {
			st = NonCompliant
		}
		if st == NonCompliant {
			ev += ", want " + c.Key + " " + c.want()
		}
		return st, ev
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return missing(c.Path + " does not exist")
		}
		return Unknown, describeErr(c.Path, err)
	}
	hit, ok := c.find(b)
	if !ok {
		return missing(c.Key + " is not set in " + c.Path)
	}
	if !c.ok(hit.value) {
		return NonCompliant, fmt.Sprintf("%s %s (%s line %d), want %s", c.Key, hit.value, c.Path, hit.line, c.want())
	}
	return Compliant, fmt.Sprintf("%s %s (%s line %d)", c.Key, hit.value, c.Path, hit.line)
}

// remediate sets the key in place (the counting occurrence) or appends it.
func (c *ConfigValueCheck) remediate(s *snapshot, tx *changeTx) error {
	var val string
	switch {
	case c.Equals != "":
		val = c.Equals
	case c.In != nil:
		val = c.In[0]
	case c.Max != nil:
		val = strconv.Itoa(*c.Max)
	case c.Min != nil:
		val = strconv.Itoa(*c.Min)
	default:
		val = "0" + strconv.FormatUint(c.bits, 8)
		if b, err := s.read(c.Path); err == nil {
			if hit, ok := c.find(b); ok {
				if cur, err := strconv.ParseUint(hit.value, 8, 32); err == nil {
					val = fmt.Sprintf("%03o", cur|c.bits)
				}
			}
		}
	}
	b, err := s.read(c.Path)
	if err != nil {
		return fmt.Errorf("%s: %w", describeErr(c.Path, err), ErrNotRemediable)
	}
	line := c.Key + " " + val
	if c.Separator == "=" {
		line = c.Key + " = " + val
	}
	hit, ok := c.find(b)
	lines := strings.Split(string(b), "\n")
	if ok {
		lines[hit.line-1] = line
	} else {
		if n := len(lines); n > 0 && lines[n-1] == "" {
			lines = lines[:n-1]
		}
		lines = append(lines, line, "")
	}
	return tx.writeFile(c.Path, []byte(strings.Join(lines, "\n")), 0o644)
}
