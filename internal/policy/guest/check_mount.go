package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// MountCheck checks a mount point's options: from /etc/fstab (or the
// point's .mount unit in /etc/systemd/system) in a tree, from the kernel's
// mount table on the live system.
type MountCheck struct {
	MountPoint string `json:"mountPoint"`
	// Options that must be set; empty: the point must only be a separate
	// mount.
	Options []string `json:"options"`
	// ImplicitOptions are in force when fstab has no entry because the
	// system mounts the point itself (systemd mounts /dev/shm nosuid,nodev).
	ImplicitOptions []string `json:"implicitOptions,omitempty"`
	// WhenNotMounted is the state when the point is not a separate mount
	// (default NonCompliant).
	WhenNotMounted State `json:"whenNotMounted,omitempty"`
}

func (c *MountCheck) validate(p string) error {
	if err := checkAbs(p+".mountPoint", c.MountPoint); err != nil {
		return err
	}
	if len(c.Options) == 0 && c.WhenNotMounted == Compliant {
		return cfgErr(p, "a check without options only checks the point is a separate mount, so whenNotMounted cannot be Compliant")
	}
	return checkWhenMissing(p+".whenNotMounted", c.WhenNotMounted)
}

func (c *MountCheck) watch(*snapshot) []string {
	return []string{"/etc/fstab", "/etc/systemd/system/" + mountUnitName(c.MountPoint)}
}

// mountUnitName is systemd-escape --path --suffix=mount.
func mountUnitName(mp string) string {
	p := strings.Trim(mp, "/")
	if p == "" {
		return "-.mount"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		ch := p[i]
		switch {
		case ch == '/':
			b.WriteByte('-')
		case ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '.' && i > 0:
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, `\x%02x`, ch)
		}
	}
	return b.String() + ".mount"
}

// unescapeMount decodes fstab/mounts octal escapes (\040 is a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// findMount returns the options of the last entry for mp in a mount table
// (fstab or /proc/self/mounts format).
func findMount(b []byte, mp string) (opts string, line int, ok bool) {
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		if path.Clean(unescapeMount(f[1])) == path.Clean(mp) {
			opts, line, ok = f[3], i+1, true
		}
	}
	return opts, line, ok
}

func (c *MountCheck) evaluate(s *snapshot) (State, string) {
	var opts, where string
	if s.env.Live {
		p := s.env.procPath("self/mounts")
		b, err := os.ReadFile(p)
		if err != nil {
			return Unknown, describeErr(p, err)
		}
		o, _, ok := findMount(b, c.MountPoint)
		if !ok {
			return c.notMounted(c.MountPoint + " is not a separate mount")
		}
		opts, where = o, "mounted"
	} else {
		b, err := s.read("/etc/fstab")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Unknown, describeErr("/etc/fstab", err)
		}
		o, line, ok := findMount(b, c.MountPoint)
		switch {
		case ok:
			opts, where = o, fmt.Sprintf("/etc/fstab line %d", line)
		default:
			unit := "/etc/systemd/system/" + mountUnitName(c.MountPoint)
			ub, err := s.read(unit)
			switch {
			case err == nil:
				for _, l := range strings.Split(string(ub), "\n") {
					if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && strings.TrimSpace(k) == "Options" {
						opts = strings.TrimSpace(v)
					}
				}
				where = unit
			case !errors.Is(err, fs.ErrNotExist):
				return Unknown, describeErr(unit, err)
			case c.ImplicitOptions != nil:
				opts, where = strings.Join(c.ImplicitOptions, ","), "mounted by the system when fstab has no entry"
			default:
				return c.notMounted(c.MountPoint + " has no entry in /etc/fstab")
			}
		}
	}
	have := map[string]bool{}
	for _, o := range strings.Split(opts, ",") {
		have[o] = true
	}
	var missing []string
	for _, o := range c.Options {
		if !have[o] {
			missing = append(missing, o)
		}
	}
	if len(missing) > 0 {
		return NonCompliant, fmt.Sprintf("%s options %s (%s), missing %s", c.MountPoint, opts, where, strings.Join(missing, ","))
	}
	return Compliant, fmt.Sprintf("%s options %s (%s)", c.MountPoint, opts, where)
}

func (c *MountCheck) notMounted(ev string) (State, string) {
	st := c.WhenNotMounted
	if st == "" {
		st = NonCompliant
	}
	switch st {
	case NonCompliant:
		ev += ", want a separate mount"
		if len(c.Options) > 0 {
			ev += " with " + strings.Join(c.Options, ",")
		}
	case Compliant:
		ev += ": the options rule does not apply"
	}
	return st, ev
}
