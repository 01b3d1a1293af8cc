package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// FileCheck checks a file's existence, permission bits, owner and group.
// Path may be a glob; every match must satisfy the check.
type FileCheck struct {
	Path string `json:"path"`
	// Exists false: the file must not exist (other settings are ignored).
	Exists *bool `json:"exists,omitempty"`
	// Mode is the exact permission (octal, e.g. "0644"); MaxMode allows
	// this or stricter (no bit outside it), as CIS and SSG do.
	Mode    string `json:"mode,omitempty"`
	MaxMode string `json:"maxMode,omitempty"`
	// Owner and Group: a name (resolved through the tree's /etc/passwd and
	// /etc/group) or a number.
	Owner string `json:"owner,omitempty"`
	Group string `json:"group,omitempty"`
	// WhenMissing is the state when no file matches (default NonCompliant;
	// Compliant for optional files such as /etc/shadow-).
	WhenMissing State `json:"whenMissing,omitempty"`

	mode, maxMode uint32
}

func parseMode(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 07777 {
		return 0, fmt.Errorf("%q is not an octal permission such as 0644", s)
	}
	return uint32(n), nil
}

func checkWhenMissing(p string, s State) error {
	switch s {
	case "", Compliant, NonCompliant, Unknown:
		return nil
	}
	return cfgErr(p, "must be Compliant, NonCompliant or Unknown, got %q", s)
}

func checkAbs(p, v string) error {
	if !strings.HasPrefix(v, "/") || strings.Contains(v, "\x00") {
		return cfgErr(p, "must be an absolute path, got %q", v)
	}
	return nil
}

func (c *FileCheck) validate(p string) error {
	if err := checkAbs(p+".path", c.Path); err != nil {
		return err
	}
	var err error
	if c.Mode != "" {
		if c.mode, err = parseMode(c.Mode); err != nil {
			return cfgErr(p+".mode", "%v", err)
		}
	}
	if c.MaxMode != "" {
		if c.maxMode, err = parseMode(c.MaxMode); err != nil {
			return cfgErr(p+".maxMode", "%v", err)
		}
	}
	if c.Mode != "" && c.MaxMode != "" {
		return cfgErr(p, "mode and maxMode exclude each other")
	}
	if c.Exists != nil && !*c.Exists && (c.Mode != "" || c.MaxMode != "" || c.Owner != "" || c.Group != "") {
		return cfgErr(p, "a file that must not exist has no mode, owner or group")
	}
	if c.Exists == nil && c.Mode == "" && c.MaxMode == "" && c.Owner == "" && c.Group == "" {
		return cfgErr(p, "a file check needs at least one of exists, mode, maxMode, owner, group")
	}
	return checkWhenMissing(p+".whenMissing", c.WhenMissing)
}

func (c *FileCheck) watch(*snapshot) []string { return []string{c.Path} }

func fmtMode(m uint32) string { return fmt.Sprintf("%04o", m) }

func (c *FileCheck) evaluate(s *snapshot) (State, string) {
	matches, err := s.env.glob(c.Path)
	if err != nil {
		return Unknown, describeErr(c.Path, err)
	}
	if c.Exists != nil && !*c.Exists {
		if len(matches) == 0 {
			return Compliant, c.Path + " does not exist"
		}
		return NonCompliant, strings.Join(matches, ", ") + " exists, want absent"
	}
	if len(matches) == 0 {
		st := c.WhenMissing
		if st == "" {
			st = NonCompliant
		}
		return st, c.Path + " does not exist"
	}
	var bad, good []string
	for _, m := range matches {
		st, ev := c.evaluateOne(s, m)
		switch st {
		case Unknown:
			return Unknown, ev
		case NonCompliant:
			bad = append(bad, ev)
		default:
			good = append(good, ev)
		}
	}
	if len(bad) > 0 {
		return NonCompliant, strings.Join(bad, "; ")
	}
	return Compliant, strings.Join(good, "; ")
}

// fileMeta is what a file check looks at.
type fileMeta struct {
	perm     uint32
	uid, gid int
}

func (s *snapshot) meta(p string) (fileMeta, error) {
	fi, err := s.env.stat(p)
	if err != nil {
		return fileMeta{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileMeta{}, errors.New("no ownership information")
	}
	return fileMeta{perm: uint32(st.Mode) & 07777, uid: int(st.Uid), gid: int(st.Gid)}, nil
}

func (c *FileCheck) evaluateOne(s *snapshot, p string) (State, string) {
	m, err := s.meta(p)
	if err != nil {
		return Unknown, describeErr(p, err)
	}
	var bad, good []string
	switch {
	case c.Mode != "":
		if m.perm != c.mode {
			bad = append(bad, fmt.Sprintf("mode %s, want %s", fmtMode(m.perm), c.Mode))
		} else {
			good = append(good, "mode "+fmtMode(m.perm))
		}
	case c.MaxMode != "":
		if m.perm&^c.maxMode != 0 {
			bad = append(bad, fmt.Sprintf("mode %s, want %s or stricter", fmtMode(m.perm), c.MaxMode))
		} else {
			good = append(good, "mode "+fmtMode(m.perm))
		}
	}
	for _, o := range []struct {
		what, want string
		have       int
		db         *accountDB
	}{{"owner", c.Owner, m.uid, s.passwd()}, {"group", c.Group, m.gid, s.group()}} {
		if o.want == "" {
			continue
		}
		if o.db.err != nil {
			return Unknown, fmt.Sprintf("cannot resolve %s %q: %s", o.what, o.want, describeErr(o.db.path, o.db.err))
		}
		id, ok := o.db.lookupID(o.want)
		if !ok {
			return Unknown, fmt.Sprintf("cannot resolve %s %q: not in %s", o.what, o.want, o.db.path)
		}
		have := strconv.Itoa(o.have)
		if n := o.db.nameOf(o.have); n != "" {
			have = fmt.Sprintf("%s (%d)", n, o.have)
		}
		if id != o.have {
			bad = append(bad, fmt.Sprintf("%s %s, want %s (%d)", o.what, have, o.want, id))
		} else {
			good = append(good, o.what+" "+have)
		}
	}
	if c.Exists != nil && *c.Exists && len(bad) == 0 && len(good) == 0 {
		good = append(good, "exists")
	}
	if len(bad) > 0 {
		return NonCompliant, p + " " + strings.Join(bad, ", ")
	}
	return Compliant, p + " " + strings.Join(good, ", ")
}

func (c *FileCheck) remediate(s *snapshot, tx *changeTx) error {
	if c.Exists != nil && !*c.Exists {
		return ErrNotRemediable // deleting files is not automated
	}
	matches, err := s.env.glob(c.Path)
	if err != nil {
		return err
	}
	if len(matches) == 0 {
		return fmt.Errorf("%s does not exist: creating files is not automated", c.Path)
	}
	for _, p := range matches {
		m, err := s.meta(p)
		if err != nil {
			return err
		}
		perm := m.perm
		switch {
		case c.Mode != "":
			perm = c.mode
		case c.MaxMode != "":
			perm = m.perm & c.maxMode
		}
		uid, gid := -1, -1
		if c.Owner != "" {
			id, ok := s.passwd().lookupID(c.Owner)
			if !ok {
				return fmt.Errorf("cannot resolve owner %q in /etc/passwd", c.Owner)
			}
			uid = id
		}
		if c.Group != "" {
			id, ok := s.group().lookupID(c.Group)
			if !ok {
				return fmt.Errorf("cannot resolve group %q in /etc/group", c.Group)
			}
			gid = id
		}
		if err := tx.setMeta(p, perm, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// FileContentCheck checks lines of files against regular expressions (RE2,
// matched per line).
type FileContentCheck struct {
	// Paths are files or globs, read in order.
	Paths []string `json:"paths"`
	// Patterns are regular expressions matched against each line.
	Patterns []string `json:"patterns"`
	// Expect "present": every pattern matches at least one line; "absent":
	// no line matches any pattern.
	Expect string `json:"expect"`
	// WhenMissing is the state when no file exists (default: NonCompliant
	// for present, Compliant for absent).
	WhenMissing State `json:"whenMissing,omitempty"`

	res []*regexp.Regexp
}

func (c *FileContentCheck) validate(p string) error {
	if len(c.Paths) == 0 {
		return cfgErr(p+".paths", "needs at least one path")
	}
	for i, x := range c.Paths {
		if err := checkAbs(fmt.Sprintf("%s.paths[%d]", p, i), x); err != nil {
			return err
		}
	}
	if len(c.Patterns) == 0 {
		return cfgErr(p+".patterns", "needs at least one pattern")
	}
	for i, x := range c.Patterns {
		re, err := regexp.Compile(x)
		if err != nil {
			return cfgErr(fmt.Sprintf("%s.patterns[%d]", p, i), "invalid regular expression: %v", err)
		}
		c.res = append(c.res, re)
	}
	if c.Expect != "present" && c.Expect != "absent" {
		return cfgErr(p+".expect", "must be present or absent, got %q", c.Expect)
	}
	return checkWhenMissing(p+".whenMissing", c.WhenMissing)
}

func (c *FileContentCheck) watch(s *snapshot) []string {
	var out []string
	for _, p := range c.Paths {
		if strings.ContainsAny(p, "*?[") {
			out = append(out, path.Dir(p))
			continue
		}
		out = append(out, p)
	}
	return out
}

type lineHit struct {
	file string
	line int
	text string
}

func (c *FileContentCheck) evaluate(s *snapshot) (State, string) {
	var files []string
	for _, p := range c.Paths {
		m, err := s.env.glob(p)
		if err != nil {
			return Unknown, describeErr(p, err)
		}
		files = append(files, m...)
	}
	where := strings.Join(c.Paths, ", ")
	if len(files) == 0 {
		st := c.WhenMissing
		if st == "" {
			st = NonCompliant
			if c.Expect == "absent" {
				st = Compliant
			}
		}
		return st, "no file matches " + where
	}
	hits := make([]*lineHit, len(c.res))
	for _, f := range files {
		b, err := s.read(f)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return Unknown, describeErr(f, err)
		}
		for n, line := range strings.Split(string(b), "\n") {
			for i, re := range c.res {
				if hits[i] == nil && re.MatchString(line) {
					hits[i] = &lineHit{file: f, line: n + 1, text: strings.TrimSpace(line)}
				}
			}
		}
	}
	var missing, found []string
	for i, h := range hits {
		if h == nil {
			missing = append(missing, c.Patterns[i])
			continue
		}
		found = append(found, fmt.Sprintf("%s line %d: %s", h.file, h.line, h.text))
	}
	if c.Expect == "absent" {
		if len(found) > 0 {
			return NonCompliant, "found " + strings.Join(found, "; ")
		}
		return Compliant, "no line of " + where + " matches " + strings.Join(c.Patterns, " or ")
	}
	if len(missing) > 0 {
		return NonCompliant, "no line of " + where + " matches " + strings.Join(missing, " nor ")
	}
	return Compliant, strings.Join(found, "; ")
}
