package testutil

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Fixtures for update management: packages built with the real tools
// (dpkg-deb, rpmbuild), repositories indexed with the real tools
// (apt-ftparchive, createrepo_c, modifyrepo_c) and OS trees with their own
// package databases, so apt/dpkg, dnf/rpm and zypper run for real without
// touching the host's packages.

// Deb describes a .deb to build.
type Deb struct {
	Name, Version string
	Arch          string // default "all"
	Depends       string // control-field syntax, e.g. "libfoo (>= 2.0)"
	Conflicts     string
	Breaks        string
	// Postinst is the body of a postinst script, run by dpkg (chrooted
	// into the tree) on configure.
	Postinst string
	// Files are installed by the package: path inside the tree → content.
	Files map[string]string
}

// BuildDeb builds d with dpkg-deb into dir and returns the file's path.
func BuildDeb(t testing.TB, dir string, d Deb) string {
	t.Helper()
	NeedTool(t, "dpkg-deb")
	if d.Arch == "" {
		d.Arch = "all"
	}
	src := filepath.Join(t.TempDir(), d.Name+"_"+d.Version)
	must(t, os.MkdirAll(filepath.Join(src, "DEBIAN"), 0o755))
	var c strings.Builder
	fmt.Fprintf(&c, "Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: Corral tests <tests@corral.invalid>\n", d.Name, d.Version, d.Arch)
	for k, v := range map[string]string{"Depends": d.Depends, "Conflicts": d.Conflicts, "Breaks": d.Breaks} {
		if v != "" {
			fmt.Fprintf(&c, "%s: %s\n", k, v)
		}
	}
	fmt.Fprintf(&c, "Description: Corral test package %s\n", d.Name)
	must(t, os.WriteFile(filepath.Join(src, "DEBIAN/control"), []byte(c.String()), 0o644))
	if d.Postinst != "" {
		must(t, os.WriteFile(filepath.Join(src, "DEBIAN/postinst"), []byte("#!/bin/sh\nset -e\n"+d.Postinst+"\n"), 0o755))
	}
	for p, content := range d.Files {
		full := filepath.Join(src, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, []byte(content), 0o644))
	}
	must(t, os.MkdirAll(dir, 0o755))
	out := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", d.Name, strings.ReplaceAll(d.Version, ":", "%3a"), d.Arch))
	runTool(t, "", nil, "dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", src, out)
	return out
}

// AptSuite describes one suite of a local apt repository.
type AptSuite struct {
	Suite    string // e.g. "bookworm" or "bookworm-security"
	Codename string // default Suite
	Origin   string // default "Corral"
	Label    string // default Origin
	Debs     []Deb
	// Packages, when set, is a ready Packages index used instead of
	// building Debs (an index whose files are absent: for assessments only).
	Packages string
}

// AptRepo is a local apt repository with one suite.
type AptRepo struct {
	Dir   string
	Suite string
}

// SourcesLine is the repository's sources.list entry.
func (r AptRepo) SourcesLine() string {
	return fmt.Sprintf("deb [trusted=yes] file:%s %s main", r.Dir, r.Suite)
}

// NewAptRepo builds the suite's packages and indexes them with
// apt-ftparchive (Packages and a Release with Origin, Label, Suite).
func NewAptRepo(t testing.TB, s AptSuite) AptRepo {
	t.Helper()
	NeedTool(t, "apt-ftparchive")
	if s.Codename == "" {
		s.Codename = s.Suite
	}
	if s.Origin == "" {
		s.Origin = "Corral"
	}
	if s.Label == "" {
		s.Label = s.Origin
	}
	dir := filepath.Join(t.TempDir(), "repo-"+s.Suite)
	bin := filepath.Join(dir, "dists", s.Suite, "main", "binary-amd64")
	must(t, os.MkdirAll(bin, 0o755))
	if s.Packages != "" {
		copyFile(t, s.Packages, filepath.Join(bin, "Packages"))
	} else {
		for _, d := range s.Debs {
			BuildDeb(t, filepath.Join(dir, "pool"), d)
		}
		must(t, os.MkdirAll(filepath.Join(dir, "pool"), 0o755))
		idx := runTool(t, dir, nil, "apt-ftparchive", "packages", "pool")
		must(t, os.WriteFile(filepath.Join(bin, "Packages"), idx, 0o644))
	}
	rel := runTool(t, dir, nil, "apt-ftparchive",
		"-o", "APT::FTPArchive::Release::Origin="+s.Origin,
		"-o", "APT::FTPArchive::Release::Label="+s.Label,
		"-o", "APT::FTPArchive::Release::Suite="+s.Suite,
		"-o", "APT::FTPArchive::Release::Codename="+s.Codename,
		"-o", "APT::FTPArchive::Release::Architectures=amd64 all",
		"-o", "APT::FTPArchive::Release::Components=main",
		"release", filepath.Join("dists", s.Suite))
	must(t, os.WriteFile(filepath.Join(dir, "dists", s.Suite, "Release"), rel, 0o644))
	return AptRepo{Dir: dir, Suite: s.Suite}
}

// AptTree is a private Debian 12 tree (DebianRoot) whose apt sees only
// the repositories a test gives it, and an APT_CONFIG pointing apt at it.
type AptTree struct {
	Root   string
	Config string // APT_CONFIG for apt commands on the tree
	// DebianPackages is the bookworm main Packages index the tree was
	// built with (60,000+ packages), kept aside for realistic repositories.
	DebianPackages string
}

// NewAptTree returns a private DebianRoot copy with no sources and no
// package lists, and an apt configuration for it. Needs root and
// debootstrap (see DebianRoot).
func NewAptTree(t testing.TB) *AptTree {
	t.Helper()
	NeedTool(t, "apt-get")
	NeedTool(t, "dpkg")
	root := DebianRoot(t)
	a := &AptTree{Root: root}
	lists := filepath.Join(root, "var/lib/apt/lists")
	entries, err := os.ReadDir(lists)
	must(t, err)
	aside := t.TempDir()
	for _, e := range entries {
		p := filepath.Join(lists, e.Name())
		if strings.HasSuffix(e.Name(), "_main_binary-amd64_Packages") {
			a.DebianPackages = filepath.Join(aside, "Packages")
			must(t, os.Rename(p, a.DebianPackages))
			continue
		}
		if e.Name() != "partial" && e.Name() != "lock" {
			must(t, os.RemoveAll(p))
		}
	}
	must(t, os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), nil, 0o644))
	a.Config = filepath.Join(t.TempDir(), "apt.conf")
	conf := fmt.Sprintf("Dir \"%[1]s/\";\nDir::State::status \"%[1]s/var/lib/dpkg/status\";\nDir::Log \"%[1]s/var/log/apt\";\n"+
		"DPkg::Options { \"--root=%[1]s\"; \"--log=%[1]s/var/log/dpkg.log\"; };\n", root)
	must(t, os.WriteFile(a.Config, []byte(conf), 0o600))
	return a
}

// UseRepos makes repos the tree's only sources (the lists are fetched by
// the code under test, or by Apt(t, "apt-get", "update")).
func (a *AptTree) UseRepos(t testing.TB, repos ...AptRepo) {
	t.Helper()
	var b strings.Builder
	for _, r := range repos {
		b.WriteString(r.SourcesLine() + "\n")
	}
	must(t, os.WriteFile(filepath.Join(a.Root, "etc/apt/sources.list"), []byte(b.String()), 0o644))
}

// AddSource appends a raw sources.list line (a broken repository, say).
func (a *AptTree) AddSource(t testing.TB, line string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(a.Root, "etc/apt/sources.list"), os.O_APPEND|os.O_WRONLY, 0o644)
	must(t, err)
	defer f.Close()
	_, err = f.WriteString(line + "\n")
	must(t, err)
}

// Install installs .deb files into the tree with dpkg --root (its log in
// the tree, never the host's).
func (a *AptTree) Install(t testing.TB, debs ...string) {
	t.Helper()
	a.dpkg(t, append([]string{"-i"}, debs...)...)
}

// Hold marks packages held in the tree's dpkg database.
func (a *AptTree) Hold(t testing.TB, names ...string) {
	t.Helper()
	var in bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&in, "%s hold\n", n)
	}
	cmd := exec.Command("dpkg", "--root="+a.Root, "--log="+filepath.Join(a.Root, "var/log/dpkg.log"), "--set-selections")
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg --set-selections: %v\n%s", err, out)
	}
}

func (a *AptTree) dpkg(t testing.TB, args ...string) {
	t.Helper()
	runTool(t, "", nil, "dpkg", append([]string{"--root=" + a.Root, "--log=" + filepath.Join(a.Root, "var/log/dpkg.log"),
		"--force-confdef", "--force-confold"}, args...)...)
}

// Apt runs an apt command (apt, apt-get, apt-cache, apt-mark) on the tree
// and returns its standard output; the test fails when it fails.
func (a *AptTree) Apt(t testing.TB, args ...string) string {
	t.Helper()
	return string(runTool(t, "", []string{"APT_CONFIG=" + a.Config, "LANG=C", "DEBIAN_FRONTEND=noninteractive"}, args[0], args[1:]...))
}

// Versions maps each installed package of the tree to its version.
func (a *AptTree) Versions(t testing.TB) map[string]string {
	t.Helper()
	out := runTool(t, "", nil, "dpkg-query", "--admindir="+filepath.Join(a.Root, "var/lib/dpkg"), "-W",
		"-f=${Package}\t${Version}\t${db:Status-Abbrev}\n")
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Split(l, "\t")
		if len(f) == 3 && (strings.HasPrefix(f[2], "ii") || strings.HasPrefix(f[2], "hi")) {
			m[f[0]] = f[1]
		}
	}
	return m
}

// Audit is `dpkg --audit` on the tree: "" when every package is fully
// installed.
func (a *AptTree) Audit(t testing.TB) string {
	t.Helper()
	out, _ := exec.Command("dpkg", "--root="+a.Root, "--audit").CombinedOutput()
	return strings.TrimSpace(string(out))
}

// RPM describes an .rpm to build (no scriptlets: an rpm tree has no shell).
type RPM struct {
	Name, Version string
	Release       string // default "1"
	Arch          string // default "noarch"
	Requires      []string
	Conflicts     []string
}

// NEVRA is the package's name-version-release.arch.
func (p RPM) NEVRA() string {
	p = p.withDefaults()
	return fmt.Sprintf("%s-%s-%s.%s", p.Name, p.Version, p.Release, p.Arch)
}

func (p RPM) withDefaults() RPM {
	if p.Release == "" {
		p.Release = "1"
	}
	if p.Arch == "" {
		p.Arch = "noarch"
	}
	return p
}

// BuildRPM builds p with rpmbuild into dir and returns the file's path.
func BuildRPM(t testing.TB, dir string, p RPM) string {
	t.Helper()
	NeedTool(t, "rpmbuild")
	p = p.withDefaults()
	top := t.TempDir()
	var spec strings.Builder
	fmt.Fprintf(&spec, "Name: %s\nVersion: %s\nRelease: %s\nSummary: Corral test package %s\nLicense: MIT\nBuildArch: %s\n",
		p.Name, p.Version, p.Release, p.Name, p.Arch)
	for _, r := range p.Requires {
		fmt.Fprintf(&spec, "Requires: %s\n", r)
	}
	for _, c := range p.Conflicts {
		fmt.Fprintf(&spec, "Conflicts: %s\n", c)
	}
	spec.WriteString("%description\nCorral test package.\n%files\n")
	specPath := filepath.Join(top, p.Name+".spec")
	must(t, os.WriteFile(specPath, []byte(spec.String()), 0o644))
	must(t, os.MkdirAll(dir, 0o755))
	runTool(t, "", nil, "rpmbuild", "-bb", "--define", "_topdir "+top, "--define", "_rpmdir "+top+"/out",
		"--define", "_build_name_fmt %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm", specPath)
	out := filepath.Join(dir, p.NEVRA()+".rpm")
	must(t, os.Rename(filepath.Join(top, "out", p.NEVRA()+".rpm"), out))
	return out
}

// Advisory is an updateinfo entry of an rpm-md repository.
type Advisory struct {
	ID       string
	Type     string // "security", "bugfix", "enhancement"
	Severity string // "Critical", "Important", "Moderate", "Low" or ""
	Packages []RPM
}

// RPMRepo is a local rpm-md repository.
type RPMRepo struct{ Dir string }

// URL is the repository's baseurl.
func (r RPMRepo) URL() string { return "file://" + r.Dir }

// NewRPMRepo builds pkgs, indexes them with createrepo_c and adds the
// advisories as updateinfo with modifyrepo_c.
func NewRPMRepo(t testing.TB, pkgs []RPM, advisories []Advisory) RPMRepo {
	t.Helper()
	NeedTool(t, "createrepo_c")
	dir := filepath.Join(t.TempDir(), "rpmrepo")
	must(t, os.MkdirAll(dir, 0o755))
	for _, p := range pkgs {
		BuildRPM(t, filepath.Join(dir, "Packages"), p)
	}
	runTool(t, "", nil, "createrepo_c", "-q", dir)
	if len(advisories) > 0 {
		NeedTool(t, "modifyrepo_c")
		var b strings.Builder
		b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<updates>\n")
		for _, a := range advisories {
			fmt.Fprintf(&b, "<update from=\"tests@corral.invalid\" status=\"stable\" type=%q version=\"1\">\n<id>%s</id>\n<title>%s</title>\n", a.Type, a.ID, a.ID)
			if a.Severity != "" {
				fmt.Fprintf(&b, "<severity>%s</severity>\n", a.Severity)
			}
			b.WriteString("<issued date=\"2026-11-01 00:00:00\"/>\n<description>Corral test advisory.</description>\n<pkglist><collection short=\"c\"><name>c</name>\n")
			for _, p := range a.Packages {
				p = p.withDefaults()
				fmt.Fprintf(&b, "<package name=%q version=%q release=%q epoch=\"0\" arch=%q><filename>%s.rpm</filename></package>\n",
					p.Name, p.Version, p.Release, p.Arch, p.NEVRA())
			}
			b.WriteString("</collection></pkglist>\n</update>\n")
		}
		b.WriteString("</updates>\n")
		ui := filepath.Join(t.TempDir(), "updateinfo.xml")
		must(t, os.WriteFile(ui, []byte(b.String()), 0o644))
		runTool(t, "", nil, "modifyrepo_c", "--mdtype=updateinfo", ui, filepath.Join(dir, "repodata"))
	}
	return RPMRepo{Dir: dir}
}

// RPMTree is a minimal OS tree with its own rpm database and an
// os-release, for dnf --installroot and zypper --root.
type RPMTree struct{ Root string }

// RHELRelease and SUSERelease are os-release files for RPMTree.
const (
	RHELRelease = "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n"
	SUSERelease = "NAME=\"openSUSE Leap\"\nID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\nVERSION_ID=\"15.6\"\n"
)

// NewRPMTree makes an empty tree with an initialised rpm database and the
// given os-release.
func NewRPMTree(t testing.TB, osRelease string) *RPMTree {
	t.Helper()
	NeedTool(t, "rpm")
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"etc/yum.repos.d", "etc/zypp/repos.d", "var/log", "run", "tmp"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "etc/os-release"), []byte(osRelease), 0o644))
	runTool(t, "", nil, "rpm", "--root", root, "--initdb")
	return &RPMTree{Root: root}
}

// Install installs rpm files into the tree's database with rpm --root.
func (r *RPMTree) Install(t testing.TB, rpms ...string) {
	t.Helper()
	runTool(t, "", nil, "rpm", append([]string{"--root", r.Root, "-i", "--nodeps"}, rpms...)...)
}

// AddRepo writes a yum/dnf .repo file and a zypper .repo file for repo.
func (r *RPMTree) AddRepo(t testing.TB, name string, repo RPMRepo) {
	t.Helper()
	conf := fmt.Sprintf("[%s]\nname=%s\nbaseurl=%s\nenabled=1\ngpgcheck=0\nautorefresh=1\n", name, name, repo.URL())
	must(t, os.WriteFile(filepath.Join(r.Root, "etc/yum.repos.d", name+".repo"), []byte(conf), 0o644))
	zconf := fmt.Sprintf("[%s]\nname=%s\nenabled=1\nautorefresh=1\nbaseurl=%s\ntype=rpm-md\ngpgcheck=0\nkeeppackages=0\n", name, name, repo.URL())
	must(t, os.WriteFile(filepath.Join(r.Root, "etc/zypp/repos.d", name+".repo"), []byte(zconf), 0o644))
}

// Versions maps each installed package of the tree to its version-release.
func (r *RPMTree) Versions(t testing.TB) map[string]string {
	t.Helper()
	out := runTool(t, "", nil, "rpm", "--root", r.Root, "-qa", "--qf", `%{NAME}\t%{VERSION}-%{RELEASE}\n`)
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Split(l, "\t"); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

// runTool runs a fixture tool and returns its standard output; the test
// fails with the tool's output when it fails.
func runTool(t testing.TB, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stderr.Bytes(), stdout.Bytes())
	}
	return stdout.Bytes()
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.Create(to)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
