package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
)

// SystemdUnitCheck checks units' enablement from the unit files and
// symlinks in the tree, as `systemctl is-enabled` reports it: masked (a
// link to /dev/null in /etc or /run), enabled (a link in a .wants or
// .requires directory under /etc or /run), disabled or not installed. The
// running state is not read (that needs the service manager).
type SystemdUnitCheck struct {
	Units []string `json:"units"`
	// State: enabled (every unit enabled), disabled (no unit enabled:
	// disabled, masked or not installed) or masked.
	State string `json:"state"`
}

var unitNamePattern = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+\.(service|socket|timer|mount|target|path)$`)

func (c *SystemdUnitCheck) validate(p string) error {
	if len(c.Units) == 0 {
		return cfgErr(p+".units", "needs at least one unit")
	}
	for i, u := range c.Units {
		if !unitNamePattern.MatchString(u) {
			return cfgErr(fmt.Sprintf("%s.units[%d]", p, i), "%q is not a unit name such as rsync.service", u)
		}
	}
	switch c.State {
	case "enabled", "disabled", "masked":
	default:
		return cfgErr(p+".state", "must be enabled, disabled or masked, got %q", c.State)
	}
	return nil
}

var unitConfigDirs = []string{"/etc/systemd/system", "/run/systemd/system"}
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

func (c *SystemdUnitCheck) watch(*snapshot) []string { return append([]string(nil), unitDirs...) }

type unitState struct {
	state string // enabled, disabled, masked, static, not-found
	where string
}

func (s *snapshot) unitState(unit string) (unitState, error) {
	for _, d := range unitConfigDirs {
		hp, err := s.env.HostPath(d)
		if err != nil {
			return unitState{}, err
		}
		target, err := os.Readlink(path.Join(hp, unit))
		if err == nil && (target == "/dev/null" || strings.HasSuffix(target, "/dev/null")) {
			return unitState{"masked", path.Join(d, unit) + " -> /dev/null"}, nil
		}
	}
	for _, d := range unitConfigDirs {
		names, err := s.env.readDirNames(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || isNotDir(err) {
				continue
			}
			return unitState{}, errors.New(describeErr(d, err))
		}
		for _, n := range names {
			if !strings.HasSuffix(n, ".wants") && !strings.HasSuffix(n, ".requires") {
				continue
			}
			if _, err := s.env.stat(path.Join(d, n, unit)); err == nil {
				return unitState{"enabled", path.Join(d, n, unit)}, nil
			} else if hp, _ := s.env.HostPath(path.Join(d, n)); hp != "" {
				if _, lerr := os.Lstat(path.Join(hp, unit)); lerr == nil {
					return unitState{"enabled", path.Join(d, n, unit)}, nil
				}
			}
		}
	}
	for _, d := range unitDirs {
		if _, err := s.env.stat(path.Join(d, unit)); err == nil {
			return unitState{"disabled", path.Join(d, unit)}, nil
		}
	}
	return unitState{"not-found", ""}, nil
}

func (c *SystemdUnitCheck) evaluate(s *snapshot) (State, string) {
	var bad, good []string
	for _, u := range c.Units {
		st, err := s.unitState(u)
		if err != nil {
			return Unknown, err.Error()
		}
		desc := u + " is " + st.state
		if st.where != "" {
			desc += " (" + st.where + ")"
		}
		ok := false
		switch c.State {
		case "enabled":
			ok = st.state == "enabled"
		case "masked":
			ok = st.state == "masked"
		case "disabled":
			ok = st.state != "enabled"
		}
		if ok {
			good = append(good, desc)
		} else {
			bad = append(bad, desc+", want "+c.State)
		}
	}
	if len(bad) > 0 {
		return NonCompliant, strings.Join(bad, "; ")
	}
	return Compliant, strings.Join(good, "; ")
}
