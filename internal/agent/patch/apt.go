package patch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// aptDriver drives apt and dpkg. On a tree it writes an APT_CONFIG that
// points every apt directory into the tree and makes apt call dpkg with
// --root and a log inside the tree (dpkg's default log is the host's).
type aptDriver struct {
	root string
}

func (d *aptDriver) kind() Kind { return Apt }

func (d *aptDriver) setup(s *session) error {
	if isRealRoot(d.root) {
		return nil
	}
	r := d.root
	conf := fmt.Sprintf(`Dir "%[1]s/";
Dir::State::status "%[1]s/var/lib/dpkg/status";
Dir::Log "%[1]s/var/log/apt";
DPkg::Options { "--root=%[1]s"; "--log=%[1]s/var/log/dpkg.log"; };
`, r)
	p := filepath.Join(s.tmp, "apt.conf")
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write apt config: %w", err)
	}
	s.env = append(s.env, "APT_CONFIG="+p)
	return nil
}

// dpkgArgs is dpkg with the tree's root and log.
func (d *aptDriver) dpkgArgs(args ...string) []string {
	a := []string{"dpkg"}
	if !isRealRoot(d.root) {
		a = append(a, "--root="+d.root, "--log="+filepath.Join(d.root, "var/log/dpkg.log"))
	}
	return append(a, args...)
}

// aptGetOpts keep the machine's configuration files on upgrades and never
// prompt.
var aptGetOpts = []string{"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
	"-o", "Dpkg::Use-Pty=0", "-o", "APT::Color=0"}

func (d *aptDriver) refresh(ctx context.Context, s *session) ([]string, error) {
	// Error-Mode=any: a repository that cannot be read fails the refresh
	// instead of leaving its old lists in place with a warning.
	res, err := s.run(ctx, cmdSpec{args: []string{"apt-get", "update", "-q", "-o", "APT::Update::Error-Mode=any", "-o", "APT::Color=0"}})
	if err != nil {
		return nil, err
	}
	return prefixedLines(res.Stderr+"\n"+res.Stdout, "W: "), nil
}

// prefixedLines returns the lines of s that start with prefix, deduplicated.
func prefixedLines(s, prefix string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, prefix) && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

func (d *aptDriver) pending(ctx context.Context, s *session) ([]Update, error) {
	res, err := s.run(ctx, cmdSpec{args: []string{"apt", "list", "--upgradable", "-o", "APT::Color=0"}})
	if err != nil {
		return nil, err
	}
	ups, err := parseAptList(res.Stdout)
	if err != nil || len(ups) == 0 {
		return ups, err
	}
	// The candidate's origins (archive, codename, label) come from apt's
	// policy: the package files with their Release fields, then each
	// candidate's package files.
	res, err = s.run(ctx, cmdSpec{args: []string{"apt-cache", "policy"}})
	if err != nil {
		return nil, err
	}
	files := parseAptPolicyFiles(res.Stdout)
	var names []string
	for _, u := range ups {
		n := u.Name + ":" + u.Arch
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	res, err = s.run(ctx, cmdSpec{args: append([]string{"apt-cache", "policy"}, names...)})
	if err != nil {
		return nil, err
	}
	cands := parseAptPolicyPackages(res.Stdout)
	for i := range ups {
		u := &ups[i]
		c, ok := cands[u.Name+":"+u.Arch]
		if !ok {
			c = cands[u.Name]
		}
		u.Classification = Other
		if c.version != u.CandidateVersion {
			continue // apt list and policy disagree: never call it Security on a guess
		}
		for _, src := range c.sources {
			if aptSourceIsSecurity(src, files[src]) {
				u.Classification = Security
			}
		}
	}
	return ups, nil
}

// parseAptList reads `apt list --upgradable`:
//
//	name/suite1,suite2 candidate arch [upgradable from: installed]
func parseAptList(out string) ([]Update, error) {
	var ups []Update
	for i, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line == "Listing..." || strings.HasPrefix(line, "WARNING:") {
			continue
		}
		f := strings.Fields(line)
		from := strings.Index(line, "[upgradable from: ")
		if len(f) < 5 || from < 0 || !strings.HasSuffix(line, "]") {
			return nil, fmt.Errorf("apt list line %d: unexpected %q", i+1, line)
		}
		name, suites, _ := strings.Cut(f[0], "/")
		ups = append(ups, Update{
			Name: name, CandidateVersion: f[1], Arch: f[2],
			InstalledVersion: strings.TrimSuffix(line[from+len("[upgradable from: "):], "]"),
			Source:           suites,
		})
	}
	return ups, nil
}

// parseAptPolicyFiles reads the "Package files:" part of `apt-cache
// policy`: each package file ("file:/repo bookworm-security/main amd64
// Packages") with its Release fields (o=, a=, n=, l=, c=, b=).
func parseAptPolicyFiles(out string) map[string]map[string]string {
	files := map[string]map[string]string{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "Package files:" || t == "":
		case t == "Pinned packages:":
			return files
		case strings.HasPrefix(t, "release "):
			if cur == "" {
				continue
			}
			for _, kv := range strings.Split(strings.TrimPrefix(t, "release "), ",") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					files[cur][k] = v
				}
			}
		case strings.HasPrefix(t, "origin "):
		default:
			if _, rest, ok := strings.Cut(t, " "); ok && isNumber(strings.Fields(t)[0]) {
				cur = strings.TrimSpace(rest)
				files[cur] = map[string]string{}
			}
		}
	}
	return files
}

func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// aptCandidate is one package's candidate in `apt-cache policy NAME`.
type aptCandidate struct {
	version string
	sources []string // package files offering the candidate version
}

// parseAptPolicyPackages reads `apt-cache policy NAME...`, keyed by the
// package name as apt prints it (native architecture omitted).
func parseAptPolicyPackages(out string) map[string]aptCandidate {
	res := map[string]aptCandidate{}
	var name, curVer string
	var c aptCandidate
	flush := func() {
		if name != "" {
			res[name] = c
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":") {
			flush()
			name, c, curVer = strings.TrimSuffix(line, ":"), aptCandidate{}, ""
			continue
		}
		t := strings.TrimSpace(line)
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case strings.HasPrefix(t, "Candidate:"):
			c.version = strings.TrimSpace(strings.TrimPrefix(t, "Candidate:"))
		case strings.HasPrefix(t, "Installed:") || t == "Version table:":
		case strings.HasPrefix(t, "*** ") || (indent < 8 && len(strings.Fields(t)) == 2):
			curVer = strings.Fields(strings.TrimPrefix(t, "*** "))[0]
		case indent >= 8 && curVer != "" && curVer == c.version:
			if f := strings.Fields(t); len(f) > 1 && isNumber(f[0]) {
				c.sources = append(c.sources, strings.TrimSpace(strings.TrimPrefix(t, f[0])))
			}
		}
	}
	flush()
	return res
}

// aptSourceIsSecurity says whether a package file is a security archive:
// its suite, archive or codename ends in -security (Debian, Ubuntu), or
// "/updates" (Debian before 11), or its Release label is a security one
// ("Debian-Security").
func aptSourceIsSecurity(src string, rel map[string]string) bool {
	suite := ""
	if f := strings.Fields(src); len(f) > 1 {
		suite, _, _ = strings.Cut(f[1], "/")
		if strings.HasSuffix(f[1], "/updates/main") || strings.Contains(f[1], "/updates/") {
			return true
		}
	}
	for _, v := range []string{suite, rel["a"], rel["n"]} {
		if strings.HasSuffix(v, "-security") {
			return true
		}
	}
	return strings.Contains(strings.ToLower(rel["l"]), "security")
}

func (d *aptDriver) installed(ctx context.Context, s *session) (map[pkgID]string, error) {
	args := []string{"dpkg-query"}
	if !isRealRoot(d.root) {
		args = append(args, "--admindir="+filepath.Join(d.root, "var/lib/dpkg"))
	}
	args = append(args, "-W", "-f=${Package}\t${Architecture}\t${Version}\t${db:Status-Abbrev}\n")
	res, err := s.run(ctx, cmdSpec{args: args})
	if err != nil {
		return nil, err
	}
	m := map[pkgID]string{}
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Split(line, "\t")
		// Status "ii", "iU", "iF", "hi"...: anything with files unpacked.
		if len(f) != 4 || f[2] == "" || len(f[3]) < 2 || f[3][1] == 'n' || f[3][1] == 'c' {
			continue
		}
		m[pkgID{f[0], f[1]}] = f[2]
		if _, ok := m[pkgID{Name: f[0]}]; !ok || f[1] == "all" {
			m[pkgID{Name: f[0]}] = f[2]
		}
	}
	return m, nil
}

func (d *aptDriver) install(ctx context.Context, s *session, u Update) (string, error) {
	args := append([]string{"apt-get", "install", "-y", "-q", "--only-upgrade", "--no-remove"}, aptGetOpts...)
	args = append(args, u.Name+":"+u.Arch+"="+u.CandidateVersion)
	if u.Arch == "all" {
		args[len(args)-1] = u.Name + "=" + u.CandidateVersion
	}
	res, err := s.run(ctx, cmdSpec{args: args})
	return joinOutput(res.Stderr, res.Stdout), err
}

func (d *aptDriver) audit(ctx context.Context, s *session) (string, error) {
	res, err := s.run(ctx, cmdSpec{args: d.dpkgArgs("--audit"), okCodes: []int{1}})
	return strings.TrimSpace(res.Stdout), err
}

func (d *aptDriver) repair(ctx context.Context, s *session) (string, error) {
	res, err := s.run(ctx, cmdSpec{args: d.dpkgArgs("--configure", "-a", "--force-confdef", "--force-confold")})
	return joinOutput(res.Stderr, res.Stdout), err
}

func (d *aptDriver) rebootPending(ctx context.Context, s *session) bool {
	// var/run is usually an absolute symlink to /run: inside a tree, the
	// tree's run/ is meant, never the host's.
	if _, err := os.Stat(filepath.Join(d.root, "run/reboot-required")); err == nil {
		return true
	}
	vr := filepath.Join(d.root, "var/run")
	if fi, err := os.Lstat(vr); err == nil && fi.IsDir() {
		if _, err := os.Stat(filepath.Join(vr, "reboot-required")); err == nil {
			return true
		}
	}
	return false
}

var _ driver = (*aptDriver)(nil)
