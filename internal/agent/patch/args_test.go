package patch

import (
	"strings"
	"testing"
)

// A repository is trusted as root, but a name, version or architecture
// shaped like an option never reaches a package manager's command line.
func TestUnsafeArgs(t *testing.T) {
	ok := []Update{
		{Name: "libc6", Arch: "amd64", CandidateVersion: "2.36-9+deb12u7"},
		{Name: "g++-12", Arch: "all", CandidateVersion: "1:12.2.0-14~bpo1"},
		{Name: "kernel-core", Arch: "x86_64", CandidateVersion: "5.14.0-427.el9"},
		{Name: "perl-Foo_Bar", CandidateVersion: "1.0^20240101"},
	}
	for _, u := range ok {
		if why := unsafeArgs(u); why != "" {
			t.Errorf("%+v refused: %s", u, why)
		}
	}
	bad := []Update{
		{Name: "-oDpkg::Pre-Invoke::=touch /tmp/x", CandidateVersion: "1"},
		{Name: "--allow-downgrades", CandidateVersion: "1"},
		{Name: "", CandidateVersion: "1"},
		{Name: "ok", CandidateVersion: "-1"},
		{Name: "ok", CandidateVersion: "1 --force-yes"},
		{Name: "ok", Arch: "amd64 -y", CandidateVersion: "1"},
		{Name: "a\x00b", CandidateVersion: "1"},
		{Name: strings.Repeat("a", 201), CandidateVersion: "1"},
	}
	for _, u := range bad {
		if why := unsafeArgs(u); !strings.HasPrefix(why, "refused: ") {
			t.Errorf("%q accepted", u.Name+" "+u.CandidateVersion+" "+u.Arch)
		}
	}
}
