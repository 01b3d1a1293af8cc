package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"syscall"
)

// SysctlCheck checks a kernel parameter: the value the configuration files
// set at boot (systemd-sysctl's order: /etc/sysctl.d, /run/sysctl.d,
// /usr/local/lib/sysctl.d, /usr/lib/sysctl.d, /lib/sysctl.d, a file name
// in an earlier directory masking the same name in a later one, files
// applied in name order, the last assignment winning; /etc/sysctl.conf
// last) and, on the live system, the running value in /proc/sys.
type SysctlCheck struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

var sysctlKeyPattern = regexp.MustCompile(`^[a-zA-Z0-9_.\-/]+$`)

func (c *SysctlCheck) validate(p string) error {
	if !sysctlKeyPattern.MatchString(c.Key) {
		return cfgErr(p+".key", "%q is not a sysctl key such as net.ipv4.ip_forward", c.Key)
	}
	c.Key = strings.ReplaceAll(c.Key, "/", ".")
	if strings.TrimSpace(c.Value) == "" {
		return cfgErr(p+".value", "needs the wanted value")
	}
	return nil
}

var sysctlDirs = []string{"/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"}

const sysctlConf = "/etc/sysctl.conf"

// corralSysctlFile is where remediation writes; "99-zz" sorts after
// Debian's 99-sysctl.conf link to /etc/sysctl.conf.
const corralSysctlFile = "/etc/sysctl.d/99-zz-corral.conf"

func (c *SysctlCheck) watch(s *snapshot) []string {
	return append(append([]string(nil), sysctlDirs...), sysctlConf)
}

type sysctlAssign struct {
	file  string
	line  int
	key   string // normalised with dots; may hold * globs
	value string
}

type sysctlConfig struct {
	assigns []sysctlAssign
	files   []string
	err     error
}

func normSysctlValue(v string) string { return strings.Join(strings.Fields(v), " ") }

func (s *snapshot) sysctlConfig() *sysctlConfig {
	if s.sysctl != nil {
		return s.sysctl
	}
	cfg := &sysctlConfig{}
	s.sysctl = cfg
	chosen := map[string]string{} // basename -> path
	for _, d := range sysctlDirs {
		names, err := s.env.readDirNames(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
				continue
			}
			cfg.err = fmt.Errorf("%s", describeErr(d, err))
			return cfg
		}
		for _, n := range names {
			if !strings.HasSuffix(n, ".conf") || strings.HasPrefix(n, ".") {
				continue
			}
			if _, ok := chosen[n]; !ok {
				chosen[n] = path.Join(d, n)
			}
		}
	}
	var names []string
	for n := range chosen {
		names = append(names, n)
	}
	sortStrings(names)
	seenHost := map[string]bool{}
	for _, n := range names {
		cfg.files = append(cfg.files, chosen[n])
		if hp, err := s.env.HostPath(chosen[n]); err == nil {
			seenHost[hp] = true
		}
	}
	if hp, err := s.env.HostPath(sysctlConf); err == nil && !seenHost[hp] {
		cfg.files = append(cfg.files, sysctlConf)
	}
	for _, f := range cfg.files {
		b, err := s.read(f)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			cfg.err = fmt.Errorf("%s", describeErr(f, err))
			return cfg
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			line = strings.TrimPrefix(line, "-")
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			cfg.assigns = append(cfg.assigns, sysctlAssign{file: f, line: i + 1, key: strings.ReplaceAll(strings.TrimSpace(k), "/", "."), value: normSysctlValue(v)})
		}
	}
	return cfg
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// effective returns the assignment in force for key (the last one).
func (cfg *sysctlConfig) effective(key string) (sysctlAssign, bool) {
	for i := len(cfg.assigns) - 1; i >= 0; i-- {
		a := cfg.assigns[i]
		if a.key == key {
			return a, true
		}
		if strings.Contains(a.key, "*") {
			if ok, _ := path.Match(strings.ReplaceAll(a.key, ".", "/"), strings.ReplaceAll(key, ".", "/")); ok {
				return a, true
			}
		}
	}
	return sysctlAssign{}, false
}

func (e Env) sysctlProcPath(key string) string {
	return e.procPath(path.Join("sys", strings.ReplaceAll(key, ".", "/")))
}

func (e Env) readSysctlRuntime(key string) (string, error) {
	b, err := os.ReadFile(e.sysctlProcPath(key))
	if err != nil {
		return "", err
	}
	return normSysctlValue(string(b)), nil
}

func (e Env) writeSysctlRuntime(key, value string) error {
	return os.WriteFile(e.sysctlProcPath(key), []byte(value+"\n"), 0o644)
}

func (c *SysctlCheck) evaluate(s *snapshot) (State, string) {
	cfg := s.sysctlConfig()
	if cfg.err != nil {
		return Unknown, cfg.err.Error()
	}
	want := normSysctlValue(c.Value)
	a, ok := cfg.effective(c.Key)
	var ev string
	switch {
	case !ok:
		return NonCompliant, fmt.Sprintf("%s is not set in any sysctl configuration file, want %s", c.Key, want)
	case a.value != want:
		return NonCompliant, fmt.Sprintf("%s = %s in %s line %d, want %s", c.Key, a.value, a.file, a.line, want)
	}
	ev = fmt.Sprintf("%s = %s in %s line %d", c.Key, a.value, a.file, a.line)
	if !s.env.Live {
		return Compliant, ev
	}
	cur, err := s.env.readSysctlRuntime(c.Key)
	if err != nil {
		return Unknown, ev + "; " + describeErr("runtime value "+s.env.sysctlProcPath(c.Key), err)
	}
	if cur != want {
		return NonCompliant, fmt.Sprintf("%s; runtime value %s, want %s", ev, cur, want)
	}
	return Compliant, ev + "; runtime value " + cur
}

func (c *SysctlCheck) remediate(s *snapshot, tx *changeTx) error {
	cfg := s.sysctlConfig()
	if cfg.err != nil {
		return cfg.err
	}
	want := normSysctlValue(c.Value)
	// Comment out conflicting assignments in /etc (package files under
	// /usr/lib are left alone: the drop-in sorts after them).
	byFile := map[string][]int{}
	for _, a := range cfg.assigns {
		if a.key == c.Key && a.value != want && strings.HasPrefix(a.file, "/etc/") && a.file != corralSysctlFile {
			byFile[a.file] = append(byFile[a.file], a.line)
		}
	}
	for _, f := range cfg.files {
		lines, ok := byFile[f]
		if !ok {
			continue
		}
		b, err := s.read(f)
		if err != nil {
			return err
		}
		if err := tx.writeFile(f, commentOut(b, lines, "corral: overridden by "+corralSysctlFile), 0o644); err != nil {
			return err
		}
	}
	b, err := s.read(corralSysctlFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := tx.writeFile(corralSysctlFile, setKeyLine(b, c.Key, c.Key+" = "+want, "=", "# Managed by Corral guest configuration remediation.\n"), 0o644); err != nil {
		return err
	}
	if s.env.Live {
		return tx.setSysctl(c.Key, want)
	}
	return nil
}

// commentOut prefixes the given 1-based lines with "# " and a note.
func commentOut(b []byte, lines []int, note string) []byte {
	set := map[int]bool{}
	for _, l := range lines {
		set[l] = true
	}
	in := strings.Split(string(b), "\n")
	for i := range in {
		if set[i+1] {
			in[i] = "# " + in[i] + " # " + note
		}
	}
	return []byte(strings.Join(in, "\n"))
}

// setKeyLine replaces the first active "key<sep>..." line with newLine, or
// appends it; header starts a new file.
func setKeyLine(b []byte, key, newLine, sep, header string) []byte {
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		var k string
		if sep == "=" {
			k, _, _ = strings.Cut(t, "=")
		} else {
			f := strings.Fields(t)
			k = f[0]
		}
		if strings.EqualFold(strings.TrimSpace(k), key) {
			lines[i] = newLine
			return []byte(strings.Join(lines, "\n"))
		}
	}
	out := string(b)
	if out == "" {
		out = header
	}
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return []byte(out + newLine + "\n")
}
