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
	state string // enabled, disabled, masked, not-found
	where string
}

// unitIndex is what the unit directories say, read once per snapshot.
type unitIndex struct {
	masked  map[string]string // unit -> link
	enabled map[string]string // unit -> .wants/.requires link
	files   map[string]string // unit -> unit file
	err     error
}

func (s *snapshot) units() *unitIndex {
	if s.unitIdx != nil {
		return s.unitIdx
	}
	idx := &unitIndex{masked: map[string]string{}, enabled: map[string]string{}, files: map[string]string{}}
	s.unitIdx = idx
	list := func(d string) ([]os.DirEntry, string, bool) {
		hp, err := s.env.HostPath(d)
		if err != nil {
			idx.err = err
			return nil, "", false
		}
		ents, err := os.ReadDir(hp)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && !isNotDir(err) {
				idx.err = errors.New(describeErr(d, err))
			}
			return nil, hp, false
		}
		return ents, hp, true
	}
	for _, d := range unitConfigDirs {
		ents, hp, ok := list(d)
		if !ok {
			continue
		}
		for _, e := range ents {
			n := e.Name()
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				if target, err := os.Readlink(path.Join(hp, n)); err == nil && (target == "/dev/null" || strings.HasSuffix(target, "/dev/null")) {
					if _, seen := idx.masked[n]; !seen {
						idx.masked[n] = path.Join(d, n) + " -> /dev/null"
					}
				}
			case e.IsDir() && (strings.HasSuffix(n, ".wants") || strings.HasSuffix(n, ".requires")):
				sub, _, ok := list(path.Join(d, n))
				if !ok {
					continue
				}
				for _, u := range sub {
					if _, seen := idx.enabled[u.Name()]; !seen {
						idx.enabled[u.Name()] = path.Join(d, n, u.Name())
					}
				}
			}
		}
	}
	for _, d := range unitDirs {
		ents, _, ok := list(d)
		if !ok {
			continue
		}
		for _, e := range ents {
			if _, seen := idx.files[e.Name()]; !seen {
				idx.files[e.Name()] = path.Join(d, e.Name())
			}
		}
	}
	return idx
}

func (s *snapshot) unitState(unit string) (unitState, error) {
	idx := s.units()
	if idx.err != nil {
		return unitState{}, idx.err
	}
	if w, ok := idx.masked[unit]; ok {
		return unitState{"masked", w}, nil
	}
	if w, ok := idx.enabled[unit]; ok {
		return unitState{"enabled", w}, nil
	}
	if w, ok := idx.files[unit]; ok {
		return unitState{"disabled", w}, nil
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
