package patch

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// zypperDriver drives zypper (SUSE). On a tree it passes --root and points
// ZYPP_LOGFILE into the tree (zypper's log is the host's otherwise).
type zypperDriver struct {
	root string
}

func (d *zypperDriver) kind() Kind { return Zypper }

func (d *zypperDriver) setup(s *session) error {
	if !isRealRoot(d.root) {
		s.env = append(s.env, "ZYPP_LOGFILE="+filepath.Join(d.root, "var/log/zypper.log"))
	}
	return nil
}

func (d *zypperDriver) args(args ...string) []string {
	a := []string{"zypper", "--non-interactive", "--no-color"}
	if !isRealRoot(d.root) {
		a = append(a, "--root", d.root)
	}
	return append(a, args...)
}

func (d *zypperDriver) refresh(ctx context.Context, s *session) ([]string, error) {
	res, err := s.run(ctx, cmdSpec{args: d.args("refresh")})
	if err != nil {
		return nil, err
	}
	return prefixedLines(res.Stderr+"\n"+res.Stdout, "Warning:"), nil
}

// zypperUpdates is zypper's --xmlout list-updates / list-patches.
type zypperUpdates struct {
	Updates []struct {
		Kind       string `xml:"kind,attr"`
		Name       string `xml:"name,attr"`
		Edition    string `xml:"edition,attr"`
		EditionOld string `xml:"edition-old,attr"`
		Arch       string `xml:"arch,attr"`
		Category   string `xml:"category,attr"`
		Severity   string `xml:"severity,attr"`
		Source     struct {
			Alias string `xml:"alias,attr"`
		} `xml:"source"`
	} `xml:"update-status>update-list>update"`
}

func (d *zypperDriver) list(ctx context.Context, s *session, what ...string) (zypperUpdates, error) {
	var z zypperUpdates
	res, err := s.run(ctx, cmdSpec{args: d.args(append([]string{"--xmlout", "--no-refresh"}, what...)...)})
	if err != nil {
		return z, err
	}
	if err := xml.Unmarshal([]byte(res.Stdout), &z); err != nil {
		return z, fmt.Errorf("zypper %s output: %w", what, err)
	}
	return z, nil
}

func (d *zypperDriver) pending(ctx context.Context, s *session) ([]Update, error) {
	// --all: every package with a newer version, installable or not (as
	// apt list --upgradable): an update blocked by a conflict is still
	// pending, and its deployment says why it cannot go in.
	pkgs, err := d.list(ctx, s, "list-updates", "--all")
	if err != nil {
		return nil, err
	}
	var ups []Update
	idx := map[string]int{}
	for _, u := range pkgs.Updates {
		if u.Kind != "package" {
			continue
		}
		idx[u.Name] = len(ups)
		ups = append(ups, Update{Name: u.Name, Arch: u.Arch, CandidateVersion: u.Edition, InstalledVersion: u.EditionOld,
			Source: u.Source.Alias, Classification: Other})
	}
	if len(ups) == 0 {
		return ups, nil
	}
	patches, err := d.list(ctx, s, "list-patches")
	if err != nil {
		return nil, err
	}
	// Which packages a patch updates is in its "Conflicts" (name < edition):
	// zypper's own relation, read from `zypper info -t patch`.
	class := map[string]Classification{}
	var ids []string
	for _, p := range patches.Updates {
		if p.Kind != "patch" {
			continue
		}
		c := Other
		if strings.EqualFold(p.Category, "security") {
			c = Security
			if strings.EqualFold(p.Severity, "critical") {
				c = Critical
			}
		}
		class[p.Name] = c
		ids = append(ids, p.Name)
	}
	if len(ids) == 0 {
		return ups, nil
	}
	res, err := s.run(ctx, cmdSpec{args: d.args(append([]string{"--no-refresh", "info", "-t", "patch"}, ids...)...)})
	if err != nil {
		return nil, err
	}
	for id, names := range parseZypperPatchInfo(res.Stdout) {
		for _, n := range names {
			i, ok := idx[n]
			if !ok {
				continue
			}
			ups[i].Advisories = append(ups[i].Advisories, id)
			if class[id].rank() < ups[i].Classification.rank() {
				ups[i].Classification = class[id]
			}
		}
	}
	return ups, nil
}

// parseZypperPatchInfo maps each patch of `zypper info -t patch` to the
// package names in its Conflicts ("bar < 2.0-1", "bar.x86_64 < 2.0-1").
func parseZypperPatchInfo(out string) map[string][]string {
	res := map[string][]string{}
	cur, inConf := "", false
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "Information for patch ") {
			cur, inConf = strings.TrimSuffix(strings.TrimPrefix(t, "Information for patch "), ":"), false
			continue
		}
		if cur == "" {
			continue
		}
		k, v, isField := strings.Cut(t, ":")
		if isField && !strings.HasPrefix(line, " ") && strings.TrimSpace(k) != "" && !strings.Contains(k, "<") {
			inConf = strings.TrimSpace(k) == "Conflicts"
			t = strings.TrimSpace(v)
			if strings.HasPrefix(t, "[") { // "[3]": the entries follow, one a line
				continue
			}
		}
		if !inConf || t == "" {
			continue
		}
		name, _, ok := strings.Cut(t, " <")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(strings.TrimSpace(name), "srcpackage:")
		if i := strings.LastIndex(name, "."); i > 0 && isRPMArch(name[i+1:]) {
			name = name[:i]
		}
		res[cur] = append(res[cur], name)
	}
	return res
}

func isRPMArch(a string) bool {
	switch a {
	case "noarch", "x86_64", "aarch64", "i586", "i686", "ppc64le", "s390x", "armv7hl":
		return true
	}
	return false
}

func (d *zypperDriver) installed(ctx context.Context, s *session) (map[pkgID]string, error) {
	m, _, err := rpmInstalled(ctx, s, d.root)
	return m, err
}

func (d *zypperDriver) install(ctx context.Context, s *session, u Update) (string, error) {
	res, err := s.run(ctx, cmdSpec{args: d.args("--no-refresh", "install", "--no-recommends", u.Name+"="+u.CandidateVersion)})
	return joinOutput(res.Stderr, res.Stdout), err
}

func (d *zypperDriver) audit(ctx context.Context, s *session) (string, error) {
	_, dups, err := rpmInstalled(ctx, s, d.root)
	if err != nil || len(dups) == 0 {
		return "", err
	}
	return "packages installed twice (an interrupted transaction): " + strings.Join(dups, ", "), nil
}

// repair: rpm transactions leave at worst a package recorded twice, which
// zypper's next transaction on that package resolves; zypper has no
// equivalent of dpkg --configure -a to run. The audit still reports it.
func (d *zypperDriver) repair(context.Context, *session) (string, error) { return "", nil }

func (d *zypperDriver) rebootPending(ctx context.Context, s *session) bool {
	if _, err := os.Stat(filepath.Join(d.root, "run/reboot-needed")); err == nil {
		return true
	}
	if !isRealRoot(d.root) {
		return false
	}
	_, err := s.run(ctx, cmdSpec{args: d.args("needs-rebooting")})
	var me *ManagerError
	return errors.As(err, &me) && me.ExitCode == 102
}

var _ driver = (*zypperDriver)(nil)
