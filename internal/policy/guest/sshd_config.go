package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"strconv"
	"strings"
)

// sshd's effective global configuration, computed as `sshd -T` (without
// -C) does: the first value of a keyword wins; Include'd files are read in
// place (globs sorted, relative paths under /etc/ssh); everything after a
// Match line is inside that Match block and does not change the global
// value (the block ends at the end of the file it is in); keywords match
// case-insensitively; "Keyword=value" is accepted; a token starting with
// '#' starts a comment.

const sshdMainConfig = "/etc/ssh/sshd_config"

type sshdValue struct {
	args []string
	file string
	line int
}

func (v sshdValue) where() string { return fmt.Sprintf("%s line %d", v.file, v.line) }

type sshdConfig struct {
	main   string
	first  map[string]sshdValue   // first global value of a single-valued keyword
	all    map[string][]sshdValue // every global value (cumulative keywords, and for remediation)
	files  []string
	dirs   []string // directories of Include globs
	err    error
	exists bool
}

func (s *snapshot) sshdConfig(main string) *sshdConfig {
	if s.sshd != nil && s.sshd.main == main {
		return s.sshd
	}
	cfg := &sshdConfig{main: main, first: map[string]sshdValue{}, all: map[string][]sshdValue{}}
	s.sshd = cfg
	if _, err := s.read(main); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			cfg.err = errors.New(describeErr(main, err))
		}
		return cfg
	}
	cfg.exists = true
	cfg.err = s.parseSSHD(cfg, main, true, 0)
	return cfg
}

func (s *snapshot) parseSSHD(cfg *sshdConfig, file string, active bool, depth int) error {
	if depth > 16 {
		return fmt.Errorf("%s: Include nested too deeply", file)
	}
	b, err := s.read(file)
	if err != nil {
		return errors.New(describeErr(file, err))
	}
	cfg.files = append(cfg.files, file)
	for i, raw := range strings.Split(string(b), "\n") {
		kw, args, ok := splitSSHDLine(raw)
		if !ok {
			continue
		}
		switch kw {
		case "match":
			active = false
			continue
		case "include":
			for _, pat := range args {
				if !strings.HasPrefix(pat, "/") {
					pat = "/etc/ssh/" + pat
				}
				cfg.dirs = append(cfg.dirs, path.Dir(pat))
				files, err := s.env.glob(pat)
				if err != nil {
					return errors.New(describeErr(pat, err))
				}
				for _, f := range files {
					if err := s.parseSSHD(cfg, f, active, depth+1); err != nil {
						return err
					}
				}
			}
			continue
		}
		if !active {
			continue
		}
		v := sshdValue{args: args, file: file, line: i + 1}
		if alias, ok := sshdAliases[kw]; ok {
			kw = alias
		}
		cfg.all[kw] = append(cfg.all[kw], v)
		if _, set := cfg.first[kw]; !set {
			cfg.first[kw] = v
		}
	}
	return nil
}

var sshdAliases = map[string]string{
	"challengeresponseauthentication": "kbdinteractiveauthentication",
	"pubkeyacceptedkeytypes":          "pubkeyacceptedalgorithms",
	"hostbasedacceptedkeytypes":       "hostbasedacceptedalgorithms",
}

// splitSSHDLine returns the lower-case keyword and its arguments.
func splitSSHDLine(line string) (string, []string, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", nil, false
	}
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return strings.ToLower(line), nil, true
	}
	kw := strings.ToLower(line[:i])
	rest := strings.TrimLeft(line[i:], " \t")
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], " \t")
	}
	return kw, splitArgs(rest), true
}

// splitArgs splits arguments as sshd's argv_split does: whitespace
// separated, double quotes group, a token starting with '#' ends the line.
func splitArgs(s string) []string {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" || s[0] == '#' {
			return out
		}
		var tok strings.Builder
		quoted := false
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '"' {
				quoted = !quoted
				continue
			}
			if c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
				i++
				tok.WriteByte(s[i])
				continue
			}
			if !quoted && (c == ' ' || c == '\t') {
				break
			}
			tok.WriteByte(c)
		}
		out = append(out, tok.String())
		s = s[i:]
	}
}

// sshdKeyword describes how sshd -T prints a keyword and its default.
type sshdKeyword struct {
	name  string // as documented (PermitRootLogin)
	kind  string // flag, enum, int, time, list, string, startups, multi
	def   string // default as sshd -T prints it (OpenSSH 9.2p1, Debian 12)
	alias map[string]string
}

var sshdKeywords = func() map[string]sshdKeyword {
	m := map[string]sshdKeyword{}
	add := func(name, kind, def string, alias map[string]string) {
		m[strings.ToLower(name)] = sshdKeyword{name: name, kind: kind, def: def, alias: alias}
	}
	yes := map[string]string{"yes": "yes", "no": "no"}
	for _, f := range [][2]string{
		{"PermitEmptyPasswords", "no"}, {"HostbasedAuthentication", "no"}, {"X11Forwarding", "no"},
		{"StrictModes", "yes"}, {"GSSAPIAuthentication", "no"}, {"KerberosAuthentication", "no"}, {"UsePAM", "no"},
		{"PrintLastLog", "yes"}, {"IgnoreUserKnownHosts", "no"}, {"PasswordAuthentication", "yes"},
		{"PubkeyAuthentication", "yes"}, {"KbdInteractiveAuthentication", "yes"}, {"UseDNS", "no"},
		{"DisableForwarding", "no"}, {"AllowAgentForwarding", "yes"}, {"TCPKeepAlive", "yes"}, {"PrintMotd", "yes"},
		{"PermitTTY", "yes"}, {"PermitUserRC", "yes"}, {"X11UseLocalhost", "yes"},
	} {
		add(f[0], "flag", f[1], yes)
	}
	add("IgnoreRhosts", "enum", "yes", map[string]string{"yes": "yes", "no": "no", "shosts-only": "shosts-only"})
	add("PermitRootLogin", "enum", "without-password", map[string]string{"yes": "yes", "no": "no", "prohibit-password": "without-password", "without-password": "without-password", "forced-commands-only": "forced-commands-only"})
	add("AllowTcpForwarding", "enum", "yes", map[string]string{"yes": "yes", "all": "yes", "no": "no", "local": "local", "remote": "remote"})
	add("Compression", "enum", "yes", map[string]string{"yes": "yes", "delayed": "yes", "no": "no"})
	add("GatewayPorts", "enum", "no", map[string]string{"yes": "yes", "no": "no", "clientspecified": "clientspecified"})
	add("PermitTunnel", "enum", "no", map[string]string{"yes": "yes", "no": "no", "point-to-point": "point-to-point", "ethernet": "ethernet"})
	add("LogLevel", "enum", "INFO", map[string]string{"quiet": "QUIET", "fatal": "FATAL", "error": "ERROR", "info": "INFO", "verbose": "VERBOSE", "debug": "DEBUG1", "debug1": "DEBUG1", "debug2": "DEBUG2", "debug3": "DEBUG3"})
	add("PermitUserEnvironment", "string", "no", nil)
	add("MaxAuthTries", "int", "6", nil)
	add("MaxSessions", "int", "10", nil)
	add("ClientAliveCountMax", "int", "3", nil)
	add("ClientAliveInterval", "time", "0", nil)
	add("LoginGraceTime", "time", "120", nil)
	add("MaxStartups", "startups", "10:30:100", nil)
	add("Banner", "string", "none", nil)
	add("Ciphers", "list", "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com", nil)
	add("MACs", "list", "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1", nil)
	add("KexAlgorithms", "list", "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256", nil)
	for _, n := range []string{"AllowUsers", "AllowGroups", "DenyUsers", "DenyGroups"} {
		add(n, "multi", "", nil)
	}
	return m
}()

// SupportedSSHDKeywords lists the sshd keywords rules may check.
func SupportedSSHDKeywords() []string {
	var out []string
	for _, k := range sshdKeywords {
		out = append(out, k.name)
	}
	sortStrings(out)
	return out
}

// effectiveSSHD is a keyword's effective value as sshd -T prints it.
type effectiveSSHD struct {
	value    string
	explicit bool
	from     sshdValue
	err      string // an invalid configured value
}

func (cfg *sshdConfig) effective(kw string) effectiveSSHD {
	k := sshdKeywords[kw]
	if k.kind == "multi" {
		vals := cfg.all[kw]
		if len(vals) == 0 {
			return effectiveSSHD{value: ""}
		}
		var parts []string
		for _, v := range vals {
			parts = append(parts, v.args...)
		}
		return effectiveSSHD{value: strings.Join(parts, " "), explicit: true, from: vals[0]}
	}
	v, ok := cfg.first[kw]
	if !ok {
		return effectiveSSHD{value: k.def}
	}
	e := effectiveSSHD{explicit: true, from: v}
	if len(v.args) == 0 {
		e.err = fmt.Sprintf("%s has no value at %s", k.name, v.where())
		return e
	}
	arg := v.args[0]
	switch k.kind {
	case "flag", "enum":
		n, ok := k.alias[strings.ToLower(arg)]
		if !ok {
			e.err = fmt.Sprintf("%s %q at %s is not a valid value", k.name, arg, v.where())
			return e
		}
		e.value = n
	case "int":
		if _, err := strconv.Atoi(arg); err != nil {
			e.err = fmt.Sprintf("%s %q at %s is not a number", k.name, arg, v.where())
			return e
		}
		e.value = arg
	case "time":
		secs, err := parseSSHDTime(arg)
		if err != nil {
			e.err = fmt.Sprintf("%s %q at %s is not a time", k.name, arg, v.where())
			return e
		}
		e.value = strconv.Itoa(secs)
	case "startups":
		parts := strings.Split(arg, ":")
		switch len(parts) {
		case 1:
			e.value = parts[0] + ":30:" + parts[0] // as sshd -T prints a single number
		case 3:
			e.value = arg
		default:
			e.err = fmt.Sprintf("MaxStartups %q at %s is not start:rate:full", arg, v.where())
		}
	case "list":
		e.value = applyListChange(k.def, arg)
	case "string":
		e.value = arg
		if l := strings.ToLower(arg); l == "yes" || l == "no" || l == "none" {
			e.value = l
		}
	}
	return e
}

// parseSSHDTime reads sshd time formats: 90, 2m, 1h30m (s, m, h, d, w).
func parseSSHDTime(s string) (int, error) {
	total, num, have := 0, 0, false
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= '0' && c <= '9':
			num = num*10 + int(c-'0')
			have = true
			if num > math.MaxInt32 {
				return 0, fmt.Errorf("time value too large") // sshd refuses it too (convtime)
			}
		case have:
			mult := map[rune]int{'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}[c]
			if mult == 0 {
				return 0, fmt.Errorf("bad unit %q", c)
			}
			total += num * mult
			num, have = 0, false
			if total > math.MaxInt32 {
				return 0, fmt.Errorf("time value too large")
			}
		default:
			return 0, fmt.Errorf("bad time")
		}
	}
	if have {
		total += num
	}
	if total > math.MaxInt32 {
		return 0, fmt.Errorf("time value too large")
	}
	return total, nil
}

// applyListChange applies sshd's +append, -remove, ^prepend list syntax
// (duplicates dropped, first occurrence kept, as kex_assemble_names does).
func applyListChange(def, arg string) string {
	switch {
	case strings.HasPrefix(arg, "+"):
		return dedupeList(def + "," + arg[1:])
	case strings.HasPrefix(arg, "^"):
		return dedupeList(arg[1:] + "," + def)
	case strings.HasPrefix(arg, "-"):
		var keep []string
		pats := strings.Split(arg[1:], ",")
		for _, alg := range strings.Split(def, ",") {
			drop := false
			for _, p := range pats {
				if ok, _ := path.Match(p, alg); ok {
					drop = true
				}
			}
			if !drop {
				keep = append(keep, alg)
			}
		}
		return strings.Join(keep, ",")
	}
	return arg
}

func dedupeList(l string) string {
	seen := map[string]bool{}
	var out []string
	for _, x := range strings.Split(l, ",") {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return strings.Join(out, ",")
}
