package patch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAptList(t *testing.T) {
	t.Parallel()
	out := `Listing...
libc6/bookworm-security,stable-security 2.36-9+deb12u4 amd64 [upgradable from: 2.36-9+deb12u3]
perl/bookworm 5.36.0-7+deb12u1 amd64 [upgradable from: 5.36.0-7]
libfoo/jammy-updates 1:2.0-1 i386 [upgradable from: 1:1.9-1]
`
	got, err := parseAptList(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []Update{
		{Name: "libc6", Arch: "amd64", InstalledVersion: "2.36-9+deb12u3", CandidateVersion: "2.36-9+deb12u4", Source: "bookworm-security,stable-security"},
		{Name: "perl", Arch: "amd64", InstalledVersion: "5.36.0-7", CandidateVersion: "5.36.0-7+deb12u1", Source: "bookworm"},
		{Name: "libfoo", Arch: "i386", InstalledVersion: "1:1.9-1", CandidateVersion: "1:2.0-1", Source: "jammy-updates"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	_, err = parseAptList("Listing...\nperl/bookworm 5.36 amd64\n")
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a malformed line: %v, want an error naming line 2", err)
	}
}

const policyFiles = `Package files:
 100 /var/lib/dpkg/status
     release a=now
 500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     release v=12,o=Debian,a=stable-security,n=bookworm-security,l=Debian-Security,c=main,b=amd64
     origin deb.debian.org
 500 http://deb.debian.org/debian bookworm/main amd64 Packages
     release v=12.8,o=Debian,a=stable,n=bookworm,l=Debian,c=main,b=amd64
     origin deb.debian.org
 500 http://archive.example/ubuntu jammy-security/main amd64 Packages
     release v=22.04,o=Ubuntu,a=jammy-security,n=jammy,l=Ubuntu,c=main,b=amd64
     origin archive.example
 500 http://archive.example/old buster/updates/main amd64 Packages
     release v=10,o=Debian,a=oldoldstable,n=buster,l=Debian-Security,c=main,b=amd64
Pinned packages:
`

const policyPackages = `libc6:
  Installed: 2.36-9+deb12u3
  Candidate: 2.36-9+deb12u4
  Version table:
     2.36-9+deb12u4 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *** 2.36-9+deb12u3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
perl:
  Installed: 5.36.0-7
  Candidate: 5.36.0-7+deb12u1
  Version table:
     5.36.0-7+deb12u1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
 *** 5.36.0-7 100
        100 /var/lib/dpkg/status
libfoo:i386:
  Installed: 1.9
  Candidate: 2.0
  Version table:
     2.0 500
        500 http://archive.example/ubuntu jammy-security/main amd64 Packages
`

func TestParseAptPolicy(t *testing.T) {
	t.Parallel()
	files := parseAptPolicyFiles(policyFiles)
	sec := files["http://deb.debian.org/debian-security bookworm-security/main amd64 Packages"]
	if sec["l"] != "Debian-Security" || sec["n"] != "bookworm-security" || sec["o"] != "Debian" {
		t.Errorf("security file = %v", sec)
	}
	pk := parseAptPolicyPackages(policyPackages)
	want := map[string]aptCandidate{
		"libc6":       {version: "2.36-9+deb12u4", sources: []string{"http://deb.debian.org/debian-security bookworm-security/main amd64 Packages"}},
		"perl":        {version: "5.36.0-7+deb12u1", sources: []string{"http://deb.debian.org/debian bookworm/main amd64 Packages"}},
		"libfoo:i386": {version: "2.0", sources: []string{"http://archive.example/ubuntu jammy-security/main amd64 Packages"}},
	}
	if diff := cmp.Diff(want, pk, cmp.AllowUnexported(aptCandidate{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for src, want := range map[string]bool{
		"http://deb.debian.org/debian-security bookworm-security/main amd64 Packages": true,
		"http://deb.debian.org/debian bookworm/main amd64 Packages":                   false,
		"http://archive.example/ubuntu jammy-security/main amd64 Packages":            true,
		"http://archive.example/old buster/updates/main amd64 Packages":               true,
		"/var/lib/dpkg/status": false,
	} {
		if got := aptSourceIsSecurity(src, files[src]); got != want {
			t.Errorf("aptSourceIsSecurity(%s) = %v, want %v", src, got, want)
		}
	}
	// A label alone makes a security archive.
	if !aptSourceIsSecurity("file:/r corral/main amd64 Packages", map[string]string{"l": "Debian-Security"}) {
		t.Error("label Debian-Security not security")
	}
}

func TestDnfClassification(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Classification{
		"Critical/Sec.": Critical, "Important/Sec.": Security, "Moderate/Sec.": Security, "Low/Sec.": Security,
		"Sec.": Security, "bugfix": Other, "enhancement": Other, "newpackage": Other, "unknown": Other,
	} {
		if got := dnfClassification(in); got != want {
			t.Errorf("dnfClassification(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestSplitNEVRA(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][3]string{
		"bar-2.0-1.noarch":                   {"bar", "noarch", "2.0-1"},
		"kernel-core-5.14.0-427.el9.x86_64":  {"kernel-core", "x86_64", "5.14.0-427.el9"},
		"openssl-libs-1:3.0.7-27.el9.x86_64": {"openssl-libs", "x86_64", "1:3.0.7-27.el9"},
	} {
		n, a, evr, err := splitNEVRA(in)
		if err != nil || [3]string{n, a, evr} != want {
			t.Errorf("splitNEVRA(%q) = %s %s %s %v, want %v", in, n, a, evr, err, want)
		}
	}
	if _, _, _, err := splitNEVRA("nonsense"); err == nil {
		t.Error("splitNEVRA(nonsense) gave no error")
	}
}

func TestParseZypperPatchInfo(t *testing.T) {
	t.Parallel()
	out := `Loading repository data...
Reading installed packages...


Information for patch SUSE-2026-1:
----------------------------------
Repository  : updates
Name        : SUSE-2026-1
Category    : security
Severity    : critical
Provides    : patch:SUSE-2026-1 = 1
Conflicts   : [3]
    openssl-3.x86_64 < 3.1.4-1
    libopenssl3.x86_64 < 3.1.4-1
    srcpackage:openssl-3 < 3.1.4-1

Information for patch SUSE-2026-2:
----------------------------------
Name        : SUSE-2026-2
Conflicts   : bar < 2.0-1
`
	got := parseZypperPatchInfo(out)
	want := map[string][]string{
		"SUSE-2026-1": {"openssl-3", "libopenssl3", "openssl-3"},
		"SUSE-2026-2": {"bar"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestOSRelease(t *testing.T) {
	t.Parallel()
	for content, want := range map[string]Kind{
		"ID=debian\nVERSION_ID=\"12\"\n":                    Apt,
		"ID=ubuntu\nID_LIKE=debian\n":                       Apt,
		"ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n":    Dnf,
		"ID=amzn\nID_LIKE=\"centos rhel fedora\"\n":         Dnf,
		"ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n": Zypper,
		"ID=sles\n": Zypper,
		"ID=\"myos\"\nID_LIKE=\"debian\"\n# comment\n": Apt,
	} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		os.WriteFile(filepath.Join(root, "etc/os-release"), []byte(content), 0o644)
		got, err := DetectKind(root)
		if err != nil || got != want {
			t.Errorf("DetectKind(%q) = %s, %v; want %s", content, got, err, want)
		}
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=alpine\n"), 0o644)
	if _, err := DetectKind(root); !errors.Is(err, ErrUnsupportedOS) || !strings.Contains(err.Error(), "alpine") {
		t.Errorf("alpine: %v, want ErrUnsupportedOS naming it", err)
	}
	if _, err := New(t.TempDir(), Options{}); !errors.Is(err, ErrUnsupportedOS) {
		t.Errorf("a root without os-release: %v, want ErrUnsupportedOS", err)
	}
}

func TestSelectionStatus(t *testing.T) {
	t.Parallel()
	s := Selection{Classifications: []Classification{Security, Critical}, Include: []string{"lib*", "openssl"}, Exclude: []string{"libc6"}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		u    Update
		want PackageStatus
	}{
		{Update{Name: "libssl3", Classification: Security}, Pending},
		{Update{Name: "openssl", Classification: Critical}, Pending},
		{Update{Name: "libc6", Classification: Security}, Excluded},
		{Update{Name: "libxml2", Classification: Other}, NotSelected},
		{Update{Name: "perl", Classification: Security}, NotSelected},
	} {
		if got := s.status(tc.u); got != tc.want {
			t.Errorf("%s/%s: %s, want %s", tc.u.Name, tc.u.Classification, got, tc.want)
		}
	}
}

func TestCapTextAndErrorLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 3000) + "\nE: the end"
	c := capText(long, 100)
	if len(c) > 100+40 || !strings.HasSuffix(c, "E: the end") || !strings.HasPrefix(c, "[") {
		t.Errorf("capText kept %d bytes: %q", len(c), c)
	}
	if !strings.Contains(c, "bytes before this cut") {
		t.Errorf("capText does not say it cut: %q", c)
	}
	out := "Reading package lists...\nBuilding dependency tree...\nE: Unable to locate package nope\n"
	if got := errorLines(out); got != "E: Unable to locate package nope" {
		t.Errorf("errorLines = %q", got)
	}
	if got := errorLines("a\nb\nc\nd\n"); got != "b\nc\nd" {
		t.Errorf("errorLines without error lines = %q, want the last three", got)
	}
}
