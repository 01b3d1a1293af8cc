package patch

import (
	"context"
	"errors"
	"os/exec"
	"strings"
)

// dnfDriver drives dnf (RHEL family). On a tree it passes --installroot
// (dnf then keeps its cache, logs and history inside the tree and reads the
// tree's repositories) and the tree's VERSION_ID as --releasever, which dnf
// cannot find in a tree without a release package.
type dnfDriver struct {
	root       string
	releasever string
}

func (d *dnfDriver) kind() Kind { return Dnf }

func (d *dnfDriver) setup(*session) error { return nil }

func (d *dnfDriver) args(args ...string) []string {
	a := []string{"dnf", "-y", "--setopt=color=never"}
	if !isRealRoot(d.root) {
		a = append(a, "--installroot="+d.root)
		if d.releasever != "" {
			a = append(a, "--releasever="+d.releasever)
		}
	}
	return append(a, args...)
}

func (d *dnfDriver) refresh(ctx context.Context, s *session) ([]string, error) {
	// --refresh expires the cached metadata, so this is a real fetch; a
	// repository that cannot be read fails it (skip_if_unavailable=False).
	res, err := s.run(ctx, cmdSpec{args: d.args("--refresh", "--setopt=skip_if_unavailable=False", "makecache")})
	if err != nil {
		return nil, err
	}
	return prefixedLines(res.Stderr, "Warning:"), nil
}

func (d *dnfDriver) pending(ctx context.Context, s *session) ([]Update, error) {
	res, err := s.run(ctx, cmdSpec{args: d.args("-q", "-C", "repoquery", "--upgrades", "--latest-limit=1",
		"--qf", `%{name}\t%{arch}\t%{evr}\t%{reponame}`)})
	if err != nil {
		return nil, err
	}
	inst, _, err := rpmInstalled(ctx, s, d.root)
	if err != nil {
		return nil, err
	}
	var ups []Update
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Split(strings.TrimSpace(line), "\t")
		if len(f) != 4 {
			continue
		}
		ups = append(ups, Update{Name: f[0], Arch: f[1], CandidateVersion: evrNoZeroEpoch(f[2]), Source: f[3],
			InstalledVersion: evrNoZeroEpoch(inst[pkgID{f[0], f[1]}]), Classification: Other})
	}
	if len(ups) == 0 {
		return ups, nil
	}
	// Advisories about newer versions of installed packages, with dnf's
	// own type and severity: "Critical/Sec.", "Important/Sec.", "Sec.",
	// "bugfix", "enhancement".
	res, err = s.run(ctx, cmdSpec{args: d.args("-q", "-C", "updateinfo", "list", "--updates")})
	if err != nil {
		return nil, err
	}
	idx := map[string]int{}
	for i, u := range ups {
		idx[u.Name+"."+u.Arch] = i
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		name, arch, _, err := splitNEVRA(f[2])
		if err != nil {
			continue
		}
		i, ok := idx[name+"."+arch]
		if !ok {
			continue
		}
		u := &ups[i]
		u.Advisories = append(u.Advisories, f[0])
		if c := dnfClassification(f[1]); c.rank() < u.Classification.rank() {
			u.Classification = c
		}
	}
	return ups, nil
}

// dnfClassification maps dnf's advisory type column.
func dnfClassification(t string) Classification {
	sev, typ, ok := strings.Cut(t, "/")
	if !ok {
		typ = sev
		sev = ""
	}
	if !strings.EqualFold(typ, "Sec.") && !strings.EqualFold(typ, "security") {
		return Other
	}
	if strings.EqualFold(sev, "Critical") {
		return Critical
	}
	return Security
}

func (d *dnfDriver) installed(ctx context.Context, s *session) (map[pkgID]string, error) {
	m, _, err := rpmInstalled(ctx, s, d.root)
	for k, v := range m {
		m[k] = evrNoZeroEpoch(v)
	}
	return m, err
}

func (d *dnfDriver) install(ctx context.Context, s *session, u Update) (string, error) {
	res, err := s.run(ctx, cmdSpec{args: d.args("-C", "--best", "upgrade", u.Name+"-"+u.CandidateVersion+"."+u.Arch)})
	return joinOutput(res.Stderr, res.Stdout), err
}

func (d *dnfDriver) audit(ctx context.Context, s *session) (string, error) {
	_, dups, err := rpmInstalled(ctx, s, d.root)
	if err != nil || len(dups) == 0 {
		return "", err
	}
	return "packages installed twice (an interrupted transaction): " + strings.Join(dups, ", "), nil
}

func (d *dnfDriver) repair(ctx context.Context, s *session) (string, error) {
	if out, err := d.audit(ctx, s); err != nil || out == "" {
		return "", err
	}
	res, err := s.run(ctx, cmdSpec{args: d.args("-C", "remove", "--duplicates")})
	return joinOutput(res.Stderr, res.Stdout), err
}

func (d *dnfDriver) rebootPending(ctx context.Context, s *session) bool {
	// needs-restarting compares running processes with the boot time: it
	// has a meaning only for the machine's own root, and only where the
	// plugin is installed (exit 1 = reboot needed).
	if !isRealRoot(d.root) {
		return false
	}
	if _, err := exec.LookPath("needs-restarting"); err != nil {
		return false
	}
	_, err := s.run(ctx, cmdSpec{args: []string{"needs-restarting", "-r"}})
	var me *ManagerError
	return errors.As(err, &me) && me.ExitCode == 1
}

var _ driver = (*dnfDriver)(nil)
