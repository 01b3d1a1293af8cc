package guest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
)

// KernelModuleCheck checks that a kernel module cannot be loaded: an
// "install MODULE /bin/false" (or /bin/true) line in modprobe.d
// (Disabled), a "blacklist MODULE" line (Blacklisted), and on the live
// system that it is not loaded (NotLoaded).
type KernelModuleCheck struct {
	Name        string `json:"name"`
	Disabled    bool   `json:"disabled,omitempty"`
	Blacklisted bool   `json:"blacklisted,omitempty"`
	NotLoaded   bool   `json:"notLoaded,omitempty"`
}

var moduleNamePattern = regexp.MustCompile(`^[A-Za-z0-9_\-]+$`)

func (c *KernelModuleCheck) validate(p string) error {
	if !moduleNamePattern.MatchString(c.Name) {
		return cfgErr(p+".name", "%q is not a kernel module name", c.Name)
	}
	if !c.Disabled && !c.Blacklisted && !c.NotLoaded {
		return cfgErr(p, "set at least one of disabled, blacklisted, notLoaded")
	}
	return nil
}

var modprobeDirs = []string{"/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"}

const modprobeConf = "/etc/modprobe.conf"

func (c *KernelModuleCheck) watch(*snapshot) []string {
	return append(append([]string(nil), modprobeDirs...), modprobeConf)
}

type modprobeLine struct {
	file string
	line int
	verb string // install, blacklist
	mod  string // with underscores
	rest string
}

type modprobeConfig struct {
	lines []modprobeLine
	err   error
}

func modKey(m string) string { return strings.ReplaceAll(m, "-", "_") }

// modprobeConfig reads modprobe.d: *.conf files by name, a name in an
// earlier directory masking the same name later; /etc/modprobe.conf last.
func (s *snapshot) modprobeConfig() *modprobeConfig {
	if s.modprobe != nil {
		return s.modprobe
	}
	cfg := &modprobeConfig{}
	s.modprobe = cfg
	chosen := map[string]string{}
	for _, d := range modprobeDirs {
		names, err := s.env.readDirNames(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
				continue
			}
			cfg.err = errors.New(describeErr(d, err))
			return cfg
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".conf") && !strings.HasPrefix(n, ".") {
				if _, ok := chosen[n]; !ok {
					chosen[n] = path.Join(d, n)
				}
			}
		}
	}
	var names []string
	for n := range chosen {
		names = append(names, n)
	}
	sortStrings(names)
	files := make([]string, 0, len(names)+1)
	for _, n := range names {
		files = append(files, chosen[n])
	}
	files = append(files, modprobeConf)
	for _, f := range files {
		b, err := s.read(f)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			cfg.err = errors.New(describeErr(f, err))
			return cfg
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		n := 0
		for sc.Scan() {
			n++
			line := strings.TrimSpace(sc.Text())
			if line == "" || line[0] == '#' {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			verb := strings.ToLower(fields[0])
			if verb != "install" && verb != "blacklist" {
				continue
			}
			cfg.lines = append(cfg.lines, modprobeLine{file: f, line: n, verb: verb, mod: modKey(fields[1]), rest: strings.Join(fields[2:], " ")})
		}
	}
	return cfg
}

var disablingCommands = map[string]bool{"/bin/false": true, "/bin/true": true, "/usr/bin/false": true, "/usr/bin/true": true}

func (c *KernelModuleCheck) evaluate(s *snapshot) (State, string) {
	cfg := s.modprobeConfig()
	if cfg.err != nil {
		return Unknown, cfg.err.Error()
	}
	mod := modKey(c.Name)
	var bad, good []string
	unknown := ""
	if c.Disabled {
		var install *modprobeLine
		for i := range cfg.lines {
			if l := &cfg.lines[i]; l.verb == "install" && l.mod == mod {
				install = l // modprobe uses the first install command
				break
			}
		}
		switch {
		case install == nil:
			bad = append(bad, fmt.Sprintf("no \"install %s /bin/false\" line in modprobe.d, want one", c.Name))
		case !disablingCommands[install.rest]:
			bad = append(bad, fmt.Sprintf("install %s %s (%s line %d), want /bin/false or /bin/true", c.Name, install.rest, install.file, install.line))
		default:
			good = append(good, fmt.Sprintf("install %s %s (%s line %d)", c.Name, install.rest, install.file, install.line))
		}
	}
	if c.Blacklisted {
		found := false
		for _, l := range cfg.lines {
			if l.verb == "blacklist" && l.mod == mod {
				good = append(good, fmt.Sprintf("blacklist %s (%s line %d)", c.Name, l.file, l.line))
				found = true
				break
			}
		}
		if !found {
			bad = append(bad, fmt.Sprintf("%s is not blacklisted in modprobe.d", c.Name))
		}
	}
	if c.NotLoaded {
		if !s.env.Live {
			good = append(good, "loaded state not checked (not the live system)")
		} else {
			b, err := os.ReadFile(s.env.procPath("modules"))
			if err != nil {
				unknown = "loaded state unknown: " + describeErr(s.env.procPath("modules"), err)
			}
			loaded := false
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] == mod {
					loaded = true
				}
			}
			switch {
			case err != nil:
			case loaded:
				bad = append(bad, c.Name+" is loaded, want not loaded")
			default:
				good = append(good, c.Name+" is not loaded")
			}
		}
	}
	// A definite failure outweighs a part that could not be read.
	if len(bad) > 0 {
		if unknown != "" {
			bad = append(bad, unknown)
		}
		return NonCompliant, strings.Join(bad, "; ")
	}
	if unknown != "" {
		return Unknown, strings.Join(append(good, unknown), "; ")
	}
	return Compliant, strings.Join(good, "; ")
}

// remediate writes a modprobe.d file that sorts first (modprobe honours
// the first install command). It does not unload a loaded module.
func (c *KernelModuleCheck) remediate(s *snapshot, tx *changeTx) error {
	if c.NotLoaded && s.env.Live {
		st, _ := (&KernelModuleCheck{Name: c.Name, NotLoaded: true}).evaluate(s)
		if st != Compliant {
			return fmt.Errorf("%s is loaded; unloading modules is not automated: %w", c.Name, ErrNotRemediable)
		}
	}
	var b strings.Builder
	b.WriteString("# Managed by Corral guest configuration remediation.\n")
	if c.Disabled {
		fmt.Fprintf(&b, "install %s /bin/false\n", c.Name)
	}
	if c.Blacklisted {
		fmt.Fprintf(&b, "blacklist %s\n", c.Name)
	}
	return tx.writeFile("/etc/modprobe.d/00-corral-"+c.Name+".conf", []byte(b.String()), 0o644)
}
