package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testutil"
)

// copyInto copies repository files into dir, keeping their relative paths.
func copyInto(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(src)
		p := filepath.Join(dir, dst)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAgentPackages builds the .deb and .rpm the way packaging/build.sh
// does (nfpm from go.mod's tool directive, in a scratch copy so the
// checkout is not written), then reads them back: files, modes, scripts,
// a binary that runs, and a systemd unit that systemd-analyze accepts.
func TestAgentPackages(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "rpm", "systemd-analyze"} {
		testutil.NeedTool(t, tool)
	}
	_, agent := binaries(t)
	work := t.TempDir()
	nfpm := filepath.Join(work, "nfpm")
	build := exec.Command("go", "build", "-o", nfpm, "github.com/goreleaser/nfpm/v2/cmd/nfpm")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build nfpm: %v\n%s", err, out)
	}
	copyInto(t, work, map[string]string{
		"packaging/nfpm.yaml": "../../packaging/nfpm.yaml", "packaging/corral-agent.service": "../../packaging/corral-agent.service",
		"packaging/postinstall.sh": "../../packaging/postinstall.sh", "packaging/preremove.sh": "../../packaging/preremove.sh",
		"LICENSE": "../../LICENSE", "dist/corral-agent": agent,
	})
	for _, format := range []string{"deb", "rpm"} {
		cmd := exec.Command(nfpm, "package", "-f", "packaging/nfpm.yaml", "-p", format, "-t", "dist/")
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "CORRAL_VERSION=2026.11.0", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nfpm %s: %v\n%s", format, err, out)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(work, "dist", "*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(work, "dist", "*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("packages: %v %v", debs, rpms)
	}
	output := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	info := output("dpkg-deb", "--info", debs[0])
	for _, want := range []string{"Package: corral-agent", "Version: 2026.11.0", "postinst", "prerm"} {
		if !strings.Contains(info, want) {
			t.Errorf("deb info lacks %q:\n%s", want, info)
		}
	}
	contents := output("dpkg-deb", "--contents", debs[0])
	for _, want := range []string{"-rwxr-xr-x root/root", "./usr/bin/corral-agent", "./usr/lib/systemd/system/corral-agent.service", "drwx------ root/root", "./var/lib/corral-agent/"} {
		if !strings.Contains(contents, want) {
			t.Errorf("deb contents lack %q:\n%s", want, contents)
		}
	}
	rpmFiles := output("rpm", "-qpl", rpms[0])
	for _, want := range []string{"/usr/bin/corral-agent", "/usr/lib/systemd/system/corral-agent.service"} {
		if !strings.Contains(rpmFiles, want) {
			t.Errorf("rpm lacks %s:\n%s", want, rpmFiles)
		}
	}

	// Unpacked, the binary runs and the unit verifies (pointing at it).
	root := filepath.Join(work, "root")
	output("dpkg-deb", "-x", debs[0], root)
	if v := output(filepath.Join(root, "usr/bin/corral-agent"), "version"); !strings.Contains(v, "corral-agent 2026.11.0") {
		t.Errorf("packaged binary says %q", v)
	}
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/corral-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(work, "corral-agent.service")
	os.WriteFile(local, []byte(strings.ReplaceAll(string(unit), "/usr/bin/corral-agent", filepath.Join(root, "usr/bin/corral-agent"))), 0o644)
	verify := exec.Command("systemd-analyze", "verify", local)
	verify.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
	if out, err := verify.CombinedOutput(); err != nil || strings.Contains(string(out), "corral-agent.service:") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
