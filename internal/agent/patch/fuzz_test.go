package patch

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// The package managers' output is read as text an agent cannot trust
// (a repository names its packages, versions and suites): these targets
// check that no output makes the parsers fail or produce fields that break
// the report built from them. docs/security.md, "Fuzzing".

// FuzzParseAptList: `apt list --upgradable` lines parse into updates whose
// name, version and architecture are single non-empty words, or are refused.
func FuzzParseAptList(f *testing.F) {
	f.Add("Listing...\nlibc6/bookworm-security,stable-security 2.36-9+deb12u4 amd64 [upgradable from: 2.36-9+deb12u3]\n")
	f.Add("perl/bookworm 5.36.0-7+deb12u1 amd64 [upgradable from: 5.36.0-7]\nWARNING: apt does not have a stable CLI interface.\n")
	f.Add("perl/bookworm 5.36 amd64\n")
	f.Add("/x a b [upgradable from: ]")
	f.Fuzz(func(t *testing.T, out string) {
		ups, err := parseAptList(out)
		if err != nil {
			return
		}
		for _, u := range ups {
			for _, w := range []string{u.CandidateVersion, u.Arch} {
				if w == "" || strings.ContainsFunc(w, unicode.IsSpace) {
					t.Fatalf("update %+v from %q has a field that is not one word", u, out)
				}
			}
			if strings.ContainsAny(u.Name, " \t\n/") || strings.ContainsAny(u.InstalledVersion, "\n") || strings.ContainsAny(u.Source, " \t\n") {
				t.Fatalf("update %+v from %q", u, out)
			}
		}
	})
}

// FuzzParseAptPolicy: `apt-cache policy` output (package files with their
// Release fields, then candidates and the files offering them) parses
// without a panic, and classifying any source is total.
func FuzzParseAptPolicy(f *testing.F) {
	f.Add(policyFiles, policyPackages)
	f.Add("Package files:\n 100 /var/lib/dpkg/status\n     release a=now\n", "libc6:\n  Candidate: 1\n  Version table:\n *** 1 500\n        500 x y\n")
	f.Add(" release a=b\n-1 x\n", "x:\n *** \n   a b\n        1 y z\n")
	f.Fuzz(func(t *testing.T, files, pkgs string) {
		fs := parseAptPolicyFiles(files)
		for _, c := range parseAptPolicyPackages(pkgs) {
			for _, src := range c.sources {
				_ = aptSourceIsSecurity(src, fs[src])
			}
		}
	})
}

// FuzzZypperAndRPM: zypper's patch information and rpm's NEVRA strings
// parse without a panic; a NEVRA that splits rebuilds from its parts.
func FuzzZypperAndRPM(f *testing.F) {
	f.Add("Information for patch SUSE-2024-1:\nConflicts : [2]\n  bar < 2.0-1\n  srcpackage:bar.x86_64 < 2.0-1\n", "bash-0:5.2.15-2.el9.x86_64")
	f.Add("Information for patch p:\nConflicts: baz < 1\nName: x\n", "a-1-2.noarch")
	f.Add("", "nodots")
	f.Fuzz(func(t *testing.T, info, nevra string) {
		for _, names := range parseZypperPatchInfo(info) {
			for _, n := range names {
				if strings.Contains(n, " <") {
					t.Fatalf("package name %q holds the version constraint", n)
				}
			}
		}
		name, arch, evr, err := splitNEVRA(nevra)
		if err == nil && name+"-"+evr+"."+arch != nevra {
			t.Fatalf("splitNEVRA(%q) = %q %q %q", nevra, name, arch, evr)
		}
		_ = dnfClassification(info)
		_, _ = ParseClassification(nevra)
	})
}

// FuzzOutputText: what the agent keeps of a package manager's output for a
// report is at most its bound, valid UTF-8 when the output was.
func FuzzOutputText(f *testing.F) {
	f.Add("E: Unable to locate package x\nW: y\n", 2048)
	f.Add(strings.Repeat("é", 3000), 100)
	f.Fuzz(func(t *testing.T, out string, n int) {
		lines := errorLines(out)
		if len(lines) > 2048+64 {
			t.Fatalf("errorLines kept %d bytes", len(lines))
		}
		if n < 64 || n > 1<<20 {
			return
		}
		c := capText(out, n)
		if len(c) > n {
			t.Fatalf("capText(%d) kept %d bytes", n, len(c))
		}
		if utf8.ValidString(out) && !utf8.ValidString(c) {
			t.Fatalf("capText cut a character: %q", c)
		}
	})
}
