package patch

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// rpmArgs is rpm on root.
func rpmArgs(root string, args ...string) []string {
	a := []string{"rpm"}
	if !isRealRoot(root) {
		a = append(a, "--root", root)
	}
	return append(a, args...)
}

// installOnly are packages rpm keeps several versions of on purpose.
var installOnly = []string{"kernel", "kernel-core", "kernel-modules", "kernel-modules-core", "kernel-modules-extra",
	"kernel-devel", "kernel-default", "kernel-default-devel", "kernel-uek", "kernel-rt", "installonlypkg(kernel)"}

// rpmInstalled maps {name, arch} and {name, ""} to the installed
// [epoch:]version-release (the last installed when several are); dups lists name.arch installed
// twice that are not install-only: what an interrupted rpm transaction leaves.
func rpmInstalled(ctx context.Context, s *session, root string) (map[pkgID]string, []string, error) {
	res, err := s.run(ctx, cmdSpec{args: rpmArgs(root, "-qa", "--qf", `%{NAME}\t%{ARCH}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n`)})
	if err != nil {
		return nil, nil, err
	}
	m := map[pkgID]string{}
	var dups []string
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] == "gpg-pubkey" {
			continue
		}
		na := pkgID{f[0], f[1]}
		if old, ok := m[na]; ok && !slices.Contains(installOnly, f[0]) && old != f[2] && !slices.Contains(dups, f[0]+"."+f[1]) {
			dups = append(dups, f[0]+"."+f[1])
		}
		// rpm lists in database order: the later of two installed
		// versions is the one installed last.
		m[na] = f[2]
		m[pkgID{Name: f[0]}] = f[2]
	}
	return m, dups, nil
}

// splitNEVRA splits "name-[epoch:]version-release.arch" into name.arch and
// evr.
func splitNEVRA(nevra string) (name, arch, evr string, err error) {
	dot := strings.LastIndex(nevra, ".")
	if dot < 0 {
		return "", "", "", fmt.Errorf("package %q: no architecture", nevra)
	}
	arch = nevra[dot+1:]
	nevr := nevra[:dot]
	rel := strings.LastIndex(nevr, "-")
	if rel < 0 {
		return "", "", "", fmt.Errorf("package %q: no release", nevra)
	}
	ver := strings.LastIndex(nevr[:rel], "-")
	if ver < 0 {
		return "", "", "", fmt.Errorf("package %q: no version", nevra)
	}
	return nevr[:ver], arch, nevr[ver+1:], nil
}

// evrNoZeroEpoch drops a "0:" epoch, which rpm and dnf print either way.
func evrNoZeroEpoch(evr string) string { return strings.TrimPrefix(evr, "0:") }
