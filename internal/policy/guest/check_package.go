package guest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// PackageCheck checks that a package is installed (optionally at a
// version) or absent, from the tree's dpkg database
// (/var/lib/dpkg/status) or, on RPM systems, through `rpm --root`.
type PackageCheck struct {
	Name  string `json:"name"`
	State string `json:"state"` // installed | absent
	// Version constrains an installed package: "OP VERSION" with OP one of
	// >=, >, <=, <, =, e.g. ">= 1:7.4". Debian or RPM version ordering.
	Version string `json:"version,omitempty"`
	// WhenAbsent is the state of an "installed" rule when the package is
	// not installed (default NonCompliant; Compliant for a version floor
	// that only matters when the package is there).
	WhenAbsent State `json:"whenAbsent,omitempty"`

	op, ver string
}

var pkgNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+.\-_]*$`)

func (c *PackageCheck) validate(p string) error {
	if !pkgNamePattern.MatchString(c.Name) {
		return cfgErr(p+".name", "%q is not a package name", c.Name)
	}
	if c.State != "installed" && c.State != "absent" {
		return cfgErr(p+".state", "must be installed or absent, got %q", c.State)
	}
	if c.Version != "" {
		if c.State != "installed" {
			return cfgErr(p+".version", "a version applies to an installed package")
		}
		f := strings.Fields(c.Version)
		if len(f) != 2 {
			return cfgErr(p+".version", "must be \"OP VERSION\" such as \">= 1:7.4\", got %q", c.Version)
		}
		switch f[0] {
		case ">=", ">", "<=", "<", "=":
		default:
			return cfgErr(p+".version", "unsupported operator %q: use >=, >, <=, < or =", f[0])
		}
		c.op, c.ver = f[0], f[1]
	}
	if c.WhenAbsent != "" && c.State != "installed" {
		return cfgErr(p+".whenAbsent", "applies to state installed")
	}
	return checkWhenMissing(p+".whenAbsent", c.WhenAbsent)
}

const dpkgStatus = "/var/lib/dpkg/status"

var rpmDBDirs = []string{"/var/lib/rpm", "/usr/lib/sysimage/rpm"}

func (c *PackageCheck) watch(*snapshot) []string {
	return append([]string{dpkgStatus}, rpmDBDirs...)
}

type pkgInfo struct {
	name, version, status string
	installed             bool
}

type packageDB struct {
	kind string // dpkg | rpm
	pkgs map[string]pkgInfo
	err  error
	rpm  func(name string) (pkgInfo, error)
}

// dpkgInstalled: the status word of a package whose files are on disk.
var dpkgInstalled = map[string]bool{"installed": true, "half-configured": true, "unpacked": true, "half-installed": true, "triggers-awaited": true, "triggers-pending": true}

func parseDpkgStatus(b []byte) map[string]pkgInfo {
	out := map[string]pkgInfo{}
	var cur pkgInfo
	flush := func() {
		if cur.name != "" {
			// Multi-arch packages may appear once per architecture: any
			// installed instance counts.
			if prev, ok := out[cur.name]; !ok || !prev.installed {
				out[cur.name] = cur
			}
		}
		cur = pkgInfo{}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 256<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(k) {
		case "Package":
			cur.name = string(bytes.TrimSpace(v))
		case "Version":
			cur.version = string(bytes.TrimSpace(v))
		case "Status":
			cur.status = string(bytes.TrimSpace(v))
			f := strings.Fields(cur.status)
			cur.installed = len(f) == 3 && dpkgInstalled[f[2]]
		}
	}
	flush()
	return out
}

func (s *snapshot) packageDB() *packageDB {
	if s.packages != nil {
		return s.packages
	}
	db := &packageDB{}
	s.packages = db
	b, err := s.read(dpkgStatus)
	if err == nil {
		db.kind, db.pkgs = "dpkg", parseDpkgStatus(b)
		return db
	}
	if !errors.Is(err, fs.ErrNotExist) {
		db.err = errors.New(describeErr(dpkgStatus, err))
		return db
	}
	for _, d := range rpmDBDirs {
		if _, err := s.env.stat(d); err != nil {
			continue
		}
		rpm := s.env.RPM
		if rpm == "" {
			rpm = "rpm"
		}
		bin, err := exec.LookPath(rpm)
		if err != nil {
			db.err = fmt.Errorf("the tree has an RPM database (%s) but the rpm tool is not available: %v", d, err)
			return db
		}
		db.kind, db.pkgs = "rpm", map[string]pkgInfo{}
		root, dbpath := s.env.Root, d
		db.rpm = func(name string) (pkgInfo, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// --dbpath: rpm's compiled-in database path differs between
			// builds (Debian's rpm uses ~/.rpmdb); use the tree's own.
			out, err := exec.CommandContext(ctx, bin, "--root", root, "--dbpath", dbpath, "-q", "--qf", "%{EPOCHNUM}:%{VERSION}-%{RELEASE}\n", name).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) && strings.Contains(string(out), "is not installed") {
					return pkgInfo{name: name}, nil
				}
				if errors.As(err, &ee) && ee.ExitCode() == 1 {
					return pkgInfo{name: name}, nil
				}
				return pkgInfo{}, fmt.Errorf("rpm -q %s: %v", name, err)
			}
			v := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
			return pkgInfo{name: name, version: v, installed: true, status: "installed"}, nil
		}
		return db
	}
	db.err = fmt.Errorf("no package database: neither %s nor an RPM database exists", dpkgStatus)
	return db
}

func (db *packageDB) lookup(name string) (pkgInfo, error) {
	if db.err != nil {
		return pkgInfo{}, db.err
	}
	if p, ok := db.pkgs[name]; ok {
		return p, nil
	}
	if db.rpm != nil {
		p, err := db.rpm(name)
		if err == nil {
			db.pkgs[name] = p
		}
		return p, err
	}
	return pkgInfo{name: name}, nil
}

func (c *PackageCheck) evaluate(s *snapshot) (State, string) {
	db := s.packageDB()
	p, err := db.lookup(c.Name)
	if err != nil {
		return Unknown, err.Error()
	}
	if c.State == "absent" {
		if p.installed {
			return NonCompliant, fmt.Sprintf("%s %s is installed, want absent", c.Name, p.version)
		}
		return Compliant, c.Name + " is not installed"
	}
	if !p.installed {
		st := c.WhenAbsent
		if st == "" {
			st = NonCompliant
		}
		ev := c.Name + " is not installed"
		if p.status != "" {
			ev += fmt.Sprintf(" (dpkg status %q)", p.status)
		}
		if st == NonCompliant {
			ev += ", want installed"
		} else {
			ev += ": the rule does not apply"
		}
		return st, ev
	}
	if c.op == "" {
		return Compliant, fmt.Sprintf("%s %s is installed", c.Name, p.version)
	}
	cmp := compareVersions(db.kind, p.version, c.ver)
	ok := false
	switch c.op {
	case ">=":
		ok = cmp >= 0
	case ">":
		ok = cmp > 0
	case "<=":
		ok = cmp <= 0
	case "<":
		ok = cmp < 0
	case "=":
		ok = cmp == 0
	}
	if !ok {
		return NonCompliant, fmt.Sprintf("%s %s is installed, want %s %s", c.Name, p.version, c.op, c.ver)
	}
	return Compliant, fmt.Sprintf("%s %s is installed (%s %s)", c.Name, p.version, c.op, c.ver)
}

// packageInstalled reports whether a package is installed (for rules that
// apply only with a package, such as sshd settings).
func (s *snapshot) packageInstalled(name string) (bool, error) {
	p, err := s.packageDB().lookup(name)
	return p.installed, err
}

func compareVersions(kind, a, b string) int {
	if kind == "rpm" {
		return compareRPM(a, b)
	}
	return compareDebian(a, b)
}

// compareDebian orders Debian versions ([epoch:]upstream[-revision]) as
// dpkg --compare-versions does.
func compareDebian(a, b string) int {
	ea, ua, ra := splitDebian(a)
	eb, ub, rb := splitDebian(b)
	if ea != eb {
		if ea < eb {
			return -1
		}
		return 1
	}
	if c := debianPart(ua, ub); c != 0 {
		return c
	}
	return debianPart(ra, rb)
}

func splitDebian(v string) (int, string, string) {
	epoch := 0
	if i := strings.IndexByte(v, ':'); i >= 0 {
		for _, ch := range v[:i] {
			if ch >= '0' && ch <= '9' {
				epoch = epoch*10 + int(ch-'0')
			}
		}
		v = v[i+1:]
	}
	rev := ""
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v, rev = v[:i], v[i+1:]
	}
	return epoch, v, rev
}

func debianOrder(c byte) int {
	switch {
	case c == '~':
		return -1
	case c >= '0' && c <= '9':
		return 0
	case c == 0:
		return 0
	case unicode.IsLetter(rune(c)):
		return int(c)
	}
	return int(c) + 256
}

func debianPart(a, b string) int {
	for a != "" || b != "" {
		// Non-digit prefix.
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			var ca, cb byte
			if a != "" && !isDigit(a[0]) {
				ca = a[0]
			}
			if b != "" && !isDigit(b[0]) {
				cb = b[0]
			}
			oa, ob := debianOrder(ca), debianOrder(cb)
			if ca == 0 {
				oa = 0
			}
			if cb == 0 {
				ob = 0
			}
			if oa != ob {
				if oa < ob {
					return -1
				}
				return 1
			}
			if ca != 0 {
				a = a[1:]
			}
			if cb != 0 {
				b = b[1:]
			}
		}
		// Digit run.
		na, nb := 0, 0
		for a != "" && isDigit(a[0]) {
			na = na*10 + int(a[0]-'0')
			a = a[1:]
		}
		for b != "" && isDigit(b[0]) {
			nb = nb*10 + int(b[0]-'0')
			b = b[1:]
		}
		if na != nb {
			if na < nb {
				return -1
			}
			return 1
		}
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// compareRPM orders EPOCH:VERSION-RELEASE as rpmvercmp does.
func compareRPM(a, b string) int {
	ea, va := "0", a
	if i := strings.IndexByte(a, ':'); i >= 0 {
		ea, va = a[:i], a[i+1:]
	}
	eb, vb := "0", b
	if i := strings.IndexByte(b, ':'); i >= 0 {
		eb, vb = b[:i], b[i+1:]
	}
	if c := rpmvercmp(ea, eb); c != 0 {
		return c
	}
	return rpmvercmp(va, vb)
}

func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	isAlnum := func(c byte) bool { return isDigit(c) || unicode.IsLetter(rune(c)) }
	for a != "" || b != "" {
		for a != "" && !isAlnum(a[0]) && a[0] != '~' && a[0] != '^' {
			a = a[1:]
		}
		for b != "" && !isAlnum(b[0]) && b[0] != '~' && b[0] != '^' {
			b = b[1:]
		}
		if strings.HasPrefix(a, "~") || strings.HasPrefix(b, "~") {
			if !strings.HasPrefix(a, "~") {
				return 1
			}
			if !strings.HasPrefix(b, "~") {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if strings.HasPrefix(a, "^") || strings.HasPrefix(b, "^") {
			switch {
			case a == "":
				return -1
			case b == "":
				return 1
			case !strings.HasPrefix(a, "^"):
				return 1
			case !strings.HasPrefix(b, "^"):
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if a == "" || b == "" {
			break
		}
		num := isDigit(a[0])
		take := func(s string) (string, string) {
			i := 0
			for i < len(s) && (num && isDigit(s[i]) || !num && unicode.IsLetter(rune(s[i]))) {
				i++
			}
			return s[:i], s[i:]
		}
		var sa, sb string
		sa, a = take(a)
		sb, b = take(b)
		if sb == "" {
			if num {
				return 1
			}
			return -1
		}
		if num {
			sa = strings.TrimLeft(sa, "0")
			sb = strings.TrimLeft(sb, "0")
			if len(sa) != len(sb) {
				if len(sa) < len(sb) {
					return -1
				}
				return 1
			}
		}
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}
