package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// SSHDCheck checks sshd's effective settings, computed from the
// configuration files as `sshd -T` does (see sshd_config.go: first value
// wins, Include'd drop-ins read in place, Match blocks do not change the
// global value). When the server package is not installed the settings do
// not apply and the rule is Compliant.
type SSHDCheck struct {
	// Config is the main configuration (default /etc/ssh/sshd_config).
	Config string `json:"config,omitempty"`
	// Package is the server package (default openssh-server).
	Package string `json:"package,omitempty"`
	// Explicit: a value left to sshd's compiled-in default is
	// NonCompliant; the setting must be written in the configuration (what
	// the SCAP Security Guide checks).
	Explicit bool          `json:"explicit,omitempty"`
	Settings []SSHDSetting `json:"settings"`
}

// SSHDSetting is one keyword and the condition its effective value must meet.
type SSHDSetting struct {
	Keyword string `json:"keyword"`
	// Equals: the value as sshd -T prints it (yes, no, INFO, 300...;
	// PermitRootLogin prohibit-password is printed without-password).
	Equals string   `json:"equals,omitempty"`
	In     []string `json:"in,omitempty"`
	// Min/Max bound a number (times in seconds).
	Min *int `json:"min,omitempty"`
	Max *int `json:"max,omitempty"`
	// Parts bound each number of a colon-separated value (MaxStartups
	// start:rate:full).
	Parts []SSHDPart `json:"parts,omitempty"`
	// Excludes: a list value (Ciphers, MACs, KexAlgorithms) holds none of these.
	Excludes []string `json:"excludes,omitempty"`
	// NotEmpty: the value must be set (AllowUsers, AllowGroups...).
	NotEmpty bool `json:"notEmpty,omitempty"`

	kw sshdKeyword
}

// SSHDPart bounds one number of a colon-separated value.
type SSHDPart struct {
	Min *int `json:"min,omitempty"`
	Max *int `json:"max,omitempty"`
}

func (c *SSHDCheck) validate(p string) error {
	if c.Config == "" {
		c.Config = sshdMainConfig
	}
	if err := checkAbs(p+".config", c.Config); err != nil {
		return err
	}
	if c.Package == "" {
		c.Package = "openssh-server"
	}
	if len(c.Settings) == 0 {
		return cfgErr(p+".settings", "needs at least one setting")
	}
	for i := range c.Settings {
		st := &c.Settings[i]
		sp := fmt.Sprintf("%s.settings[%d]", p, i)
		k, ok := sshdKeywords[strings.ToLower(st.Keyword)]
		if !ok {
			return cfgErr(sp+".keyword", "unsupported sshd keyword %q: supported are %s", st.Keyword, strings.Join(SupportedSSHDKeywords(), ", "))
		}
		st.kw = k
		n := 0
		for _, set := range []bool{st.Equals != "", st.In != nil, st.Min != nil || st.Max != nil, st.Parts != nil, st.Excludes != nil, st.NotEmpty} {
			if set {
				n++
			}
		}
		if n != 1 {
			return cfgErr(sp, "a setting takes exactly one condition: equals, in, min/max, parts, excludes or notEmpty")
		}
		switch {
		case (st.Min != nil || st.Max != nil) && k.kind != "int" && k.kind != "time":
			return cfgErr(sp, "min/max apply to numbers; %s is not one", k.name)
		case st.Parts != nil && k.kind != "startups":
			return cfgErr(sp+".parts", "parts apply to MaxStartups")
		case st.Excludes != nil && k.kind != "list":
			return cfgErr(sp+".excludes", "excludes applies to algorithm lists (Ciphers, MACs, KexAlgorithms)")
		case st.NotEmpty && k.kind != "multi":
			return cfgErr(sp+".notEmpty", "notEmpty applies to AllowUsers, AllowGroups, DenyUsers, DenyGroups")
		case st.Equals != "" && k.alias != nil:
			if _, ok := k.alias[strings.ToLower(st.Equals)]; !ok {
				return cfgErr(sp+".equals", "%q is not a value of %s", st.Equals, k.name)
			}
		}
	}
	return nil
}

func (c *SSHDCheck) watch(s *snapshot) []string {
	out := []string{c.Config, dpkgStatus}
	cfg := s.sshdConfig(c.Config)
	out = append(out, cfg.files...)
	out = append(out, cfg.dirs...)
	return out
}

func (st *SSHDSetting) want() string {
	switch {
	case st.Equals != "":
		return st.Equals
	case st.In != nil:
		return "one of " + strings.Join(st.In, ", ")
	case st.Min != nil && st.Max != nil:
		return fmt.Sprintf("%d to %d", *st.Min, *st.Max)
	case st.Min != nil:
		return fmt.Sprintf("%d or more", *st.Min)
	case st.Max != nil:
		return fmt.Sprintf("%d or less", *st.Max)
	case st.Parts != nil:
		var p []string
		for _, x := range st.Parts {
			switch {
			case x.Min != nil && x.Max != nil:
				p = append(p, fmt.Sprintf("%d-%d", *x.Min, *x.Max))
			case x.Min != nil:
				p = append(p, fmt.Sprintf(">=%d", *x.Min))
			case x.Max != nil:
				p = append(p, fmt.Sprintf("<=%d", *x.Max))
			default:
				p = append(p, "any")
			}
		}
		return strings.Join(p, ":")
	case st.Excludes != nil:
		return "none of " + strings.Join(st.Excludes, ", ")
	}
	return "a value"
}

func (st *SSHDSetting) ok(val string) bool {
	norm := func(s string) string {
		if n, ok := st.kw.alias[strings.ToLower(s)]; ok {
			return n
		}
		return s
	}
	switch {
	case st.Equals != "":
		return strings.EqualFold(val, norm(st.Equals))
	case st.In != nil:
		for _, x := range st.In {
			if strings.EqualFold(val, norm(x)) {
				return true
			}
		}
		return false
	case st.Min != nil || st.Max != nil:
		n, err := strconv.Atoi(val)
		return err == nil && (st.Min == nil || n >= *st.Min) && (st.Max == nil || n <= *st.Max)
	case st.Parts != nil:
		parts := strings.Split(val, ":")
		if len(parts) != len(st.Parts) {
			return false
		}
		for i, x := range st.Parts {
			n, err := strconv.Atoi(parts[i])
			if err != nil || x.Min != nil && n < *x.Min || x.Max != nil && n > *x.Max {
				return false
			}
		}
		return true
	case st.Excludes != nil:
		for _, alg := range strings.Split(val, ",") {
			for _, bad := range st.Excludes {
				if strings.EqualFold(alg, bad) {
					return false
				}
			}
		}
		return true
	case st.NotEmpty:
		return val != ""
	}
	return false
}

func (c *SSHDCheck) evaluate(s *snapshot) (State, string) {
	installed, err := s.packageInstalled(c.Package)
	if err != nil {
		return Unknown, err.Error()
	}
	if !installed {
		return Compliant, c.Package + " is not installed: sshd settings do not apply"
	}
	cfg := s.sshdConfig(c.Config)
	if cfg.err != nil {
		return Unknown, cfg.err.Error()
	}
	if !cfg.exists {
		return Unknown, fmt.Sprintf("%s is installed but %s does not exist", c.Package, c.Config)
	}
	var bad, good []string
	for i := range c.Settings {
		st := &c.Settings[i]
		e := cfg.effective(strings.ToLower(st.kw.name))
		if e.err != "" {
			bad = append(bad, e.err)
			continue
		}
		where := "default"
		if e.explicit {
			where = e.from.where()
		}
		shown := e.value
		if shown == "" {
			shown = "(not set)"
		}
		switch {
		case c.Explicit && !e.explicit:
			bad = append(bad, fmt.Sprintf("%s is not set in the configuration (sshd default %s), want it set to %s", st.kw.name, shown, st.want()))
		case !st.ok(e.value):
			bad = append(bad, fmt.Sprintf("%s %s (%s), want %s", st.kw.name, shown, where, st.want()))
		default:
			good = append(good, fmt.Sprintf("%s %s (%s)", st.kw.name, shown, where))
		}
	}
	if len(bad) > 0 {
		return NonCompliant, "sshd " + strings.Join(bad, "; ")
	}
	return Compliant, "sshd " + strings.Join(good, "; ")
}

// corralSSHDDropIn is where remediation writes; "00-" sorts first among
// drop-ins, so its values win under sshd's first-value rule.
const corralSSHDDropIn = "/etc/ssh/sshd_config.d/00-corral.conf"

// target is the value remediation writes for a setting that fails.
func (st *SSHDSetting) target(cur string) (string, error) {
	switch {
	case st.Equals != "":
		return st.Equals, nil
	case st.In != nil:
		return st.In[0], nil
	case st.Max != nil:
		return strconv.Itoa(*st.Max), nil
	case st.Min != nil:
		return strconv.Itoa(*st.Min), nil
	case st.Parts != nil:
		cp := strings.Split(cur, ":")
		var out []string
		for i, x := range st.Parts {
			n := 0
			if i < len(cp) {
				n, _ = strconv.Atoi(cp[i])
			}
			if x.Max != nil && n > *x.Max {
				n = *x.Max
			}
			if x.Min != nil && n < *x.Min {
				n = *x.Min
			}
			out = append(out, strconv.Itoa(n))
		}
		return strings.Join(out, ":"), nil
	case st.Excludes != nil:
		var keep []string
		for _, alg := range strings.Split(cur, ",") {
			ok := true
			for _, bad := range st.Excludes {
				if strings.EqualFold(alg, bad) {
					ok = false
				}
			}
			if ok {
				keep = append(keep, alg)
			}
		}
		if len(keep) == 0 {
			return "", fmt.Errorf("no %s would be left", st.kw.name)
		}
		return strings.Join(keep, ","), nil
	}
	return "", ErrNotRemediable
}

// remediate writes the failing settings into a drop-in read first (when
// the main configuration includes sshd_config.d/*.conf) or at the top of
// the main configuration, and comments out earlier global values that
// would still win.
func (c *SSHDCheck) remediate(s *snapshot, tx *changeTx) error {
	cfg := s.sshdConfig(c.Config)
	if cfg.err != nil || !cfg.exists {
		return fmt.Errorf("cannot read the sshd configuration")
	}
	type fix struct{ kw, name, value string }
	var fixes []fix
	for i := range c.Settings {
		st := &c.Settings[i]
		lkw := strings.ToLower(st.kw.name)
		e := cfg.effective(lkw)
		if e.err == "" && st.ok(e.value) && (e.explicit || !c.Explicit) {
			continue
		}
		if st.kw.kind == "multi" {
			return fmt.Errorf("%s needs a site-specific value: %w", st.kw.name, ErrNotRemediable)
		}
		val, err := st.target(e.value)
		if err != nil {
			return err
		}
		fixes = append(fixes, fix{lkw, st.kw.name, val})
	}
	dropIn := false
	for _, f := range cfg.files {
		if f == corralSSHDDropIn {
			dropIn = true
		}
	}
	if !dropIn {
		// Is the drop-in directory included (before the keywords are set)?
		b, _ := s.read(c.Config)
		for _, raw := range strings.Split(string(b), "\n") {
			kw, args, ok := splitSSHDLine(raw)
			if !ok {
				continue
			}
			if kw == "match" {
				break
			}
			if kw == "include" {
				for _, a := range args {
					if a == "/etc/ssh/sshd_config.d/*.conf" || a == "sshd_config.d/*.conf" {
						dropIn = true
					}
				}
			}
		}
	}
	target := c.Config
	if dropIn {
		target = corralSSHDDropIn
	}
	b, err := s.read(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	content := b
	for _, f := range fixes {
		line := f.name + " " + f.value
		if dropIn {
			content = setKeyLine(content, f.kw, line, " ", "# Managed by Corral guest configuration remediation.\n")
		} else {
			content = append([]byte(line+" # set by Corral remediation\n"), content...)
		}
	}
	if err := tx.writeFile(target, content, 0o644); err != nil {
		return err
	}
	// Other global values of the keywords (earlier ones would still win,
	// later ones are dead duplicates that confuse readers and scanners):
	// comment them out, keeping the line just written.
	s.forget()
	cfg = s.sshdConfig(c.Config)
	if cfg.err != nil {
		return cfg.err
	}
	lines := map[string][]int{}
	for _, f := range fixes {
		kept := false
		for _, v := range cfg.all[f.kw] {
			if !kept && v.file == target && strings.Join(v.args, " ") == f.value {
				kept = true
				continue
			}
			lines[v.file] = append(lines[v.file], v.line)
		}
	}
	for _, f := range cfg.files {
		if l, ok := lines[f]; ok {
			b, err := s.read(f)
			if err != nil {
				return err
			}
			if err := tx.writeFile(f, commentOut(b, l, "corral: overridden by "+target), 0o644); err != nil {
				return err
			}
			delete(lines, f)
		}
	}
	return nil
}
