package guest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fileMode(t *testing.T, root, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func readTree(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func apply(t *testing.T, r *Rule, env Env) *Change {
	t.Helper()
	ch, err := r.Apply(context.Background(), env)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if ch == nil {
		t.Fatal("Apply made no change")
	}
	// The record survives a JSON round trip (the agent persists it).
	b, err := json.Marshal(ch)
	if err != nil {
		t.Fatal(err)
	}
	var back Change
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return &back
}

func TestApplyAndRollbackFileMode(t *testing.T) {
	ctx := context.Background()
	root := tree(t, map[string]string{"/etc/passwd": basePasswd, "/etc/group": baseGroup})
	env := treeEnv(root)
	chmod(t, root, "/etc/passwd", 0o666)
	r := rule(t, `"file":{"path":"/etc/passwd","maxMode":"0644","owner":"root","group":"root"}`)
	ch := apply(t, r, env)
	if got := fileMode(t, root, "/etc/passwd"); got != 0o644 {
		t.Fatalf("mode after apply %o, want 644", got)
	}
	if ch.Before != "/etc/passwd mode 0666, want 0644 or stricter" || !strings.Contains(ch.After, "mode 0644") {
		t.Errorf("evidence before %q after %q", ch.Before, ch.After)
	}
	if len(ch.Files) != 1 || ch.Files[0].Before.Mode != 0o666 || ch.Files[0].Before.Content != nil {
		t.Errorf("change record %+v: want the old mode and no content copy for a chmod", ch.Files)
	}
	expect(t, eval(t, r, env), Compliant, "mode 0644")
	// Compliant already: nothing to do.
	if again, err := r.Apply(ctx, env); err != nil || again != nil {
		t.Errorf("second Apply = %v, %v; want nil, nil", again, err)
	}
	if err := Rollback(ctx, env, ch, false); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if got := fileMode(t, root, "/etc/passwd"); got != 0o666 {
		t.Fatalf("mode after rollback %o, want 666", got)
	}
	if readTree(t, root, "/etc/passwd") != basePasswd {
		t.Error("rollback changed the content")
	}
}

func TestRollbackRefusesAfterALaterChange(t *testing.T) {
	ctx := context.Background()
	root := tree(t, map[string]string{"/etc/passwd": basePasswd, "/etc/group": baseGroup})
	env := treeEnv(root)
	chmod(t, root, "/etc/passwd", 0o666)
	ch := apply(t, rule(t, `"file":{"path":"/etc/passwd","maxMode":"0644"}`), env)
	chmod(t, root, "/etc/passwd", 0o600) // someone changed it since
	err := Rollback(ctx, env, ch, false)
	if !errors.Is(err, ErrChangedSinceApply) || !strings.Contains(err.Error(), "/etc/passwd (mode 0600, remediation left 0644)") {
		t.Fatalf("Rollback = %v, want ErrChangedSinceApply naming the file", err)
	}
	if got := fileMode(t, root, "/etc/passwd"); got != 0o600 {
		t.Fatalf("a refused rollback changed the file: %o", got)
	}
	if err := Rollback(ctx, env, ch, true); err != nil {
		t.Fatalf("forced Rollback: %v", err)
	}
	if got := fileMode(t, root, "/etc/passwd"); got != 0o666 {
		t.Fatalf("mode after forced rollback %o, want 666", got)
	}
}

func TestApplyAndRollbackSysctl(t *testing.T) {
	ctx := context.Background()
	conf := "# site settings\nnet.ipv4.ip_forward = 1\nvm.swappiness = 10\n"
	root := tree(t, map[string]string{"/etc/sysctl.conf": conf, "/etc/sysctl.d/99-sysctl.conf": "->../sysctl.conf"})
	proc := tree(t, map[string]string{"/sys/net/ipv4/ip_forward": "1\n"})
	env := treeEnv(root)
	env.Live, env.Proc = true, proc
	r := rule(t, `"sysctl":{"key":"net.ipv4.ip_forward","value":"0"}`)
	expect(t, eval(t, r, env), NonCompliant, "net.ipv4.ip_forward = 1 in /etc/sysctl.d/99-sysctl.conf line 2, want 0")
	ch := apply(t, r, env)
	expect(t, eval(t, r, env), Compliant, "net.ipv4.ip_forward = 0 in /etc/sysctl.d/99-zz-corral.conf line 2; runtime value 0")
	if got := readTree(t, root, "/etc/sysctl.conf"); !strings.Contains(got, "# net.ipv4.ip_forward = 1 # corral: overridden by /etc/sysctl.d/99-zz-corral.conf") || !strings.Contains(got, "vm.swappiness = 10") {
		t.Errorf("sysctl.conf after apply:\n%s", got)
	}
	if len(ch.Runtime) != 1 || ch.Runtime[0].Before != "1" || ch.Runtime[0].After != "0" {
		t.Errorf("runtime change %+v", ch.Runtime)
	}
	if err := Rollback(ctx, env, ch, false); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if got := readTree(t, root, "/etc/sysctl.conf"); got != conf {
		t.Errorf("sysctl.conf after rollback %q, want %q", got, conf)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/sysctl.d/99-zz-corral.conf")); !os.IsNotExist(err) {
		t.Errorf("the drop-in survived the rollback: %v", err)
	}
	if got := readTree(t, proc, "/sys/net/ipv4/ip_forward"); strings.TrimSpace(got) != "1" {
		t.Errorf("runtime value after rollback %q", got)
	}
}

func TestApplyAndRollbackSSHD(t *testing.T) {
	ctx := context.Background()
	main := "PermitRootLogin yes\nInclude /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n"
	root := tree(t, map[string]string{"/var/lib/dpkg/status": sshdInstalled, "/etc/ssh/sshd_config": main})
	env := treeEnv(root)
	r := rule(t, `"sshd":{"explicit":true,"settings":[{"keyword":"PermitRootLogin","equals":"no"},{"keyword":"MaxAuthTries","max":4},{"keyword":"UsePAM","equals":"yes"}]}`)
	ch := apply(t, r, env)
	expect(t, eval(t, r, env), Compliant, "PermitRootLogin no (/etc/ssh/sshd_config.d/00-corral.conf line 2); MaxAuthTries 4 (/etc/ssh/sshd_config.d/00-corral.conf line 3); UsePAM yes (/etc/ssh/sshd_config line 3)")
	if got := readTree(t, root, "/etc/ssh/sshd_config"); !strings.HasPrefix(got, "# PermitRootLogin yes # corral: overridden") {
		t.Errorf("the earlier PermitRootLogin still wins:\n%s", got)
	}
	if len(ch.Dirs) != 1 || ch.Dirs[0] != "/etc/ssh/sshd_config.d" {
		t.Errorf("created dirs %v", ch.Dirs)
	}
	if err := Rollback(ctx, env, ch, false); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if got := readTree(t, root, "/etc/ssh/sshd_config"); got != main {
		t.Errorf("sshd_config after rollback %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ssh/sshd_config.d")); !os.IsNotExist(err) {
		t.Errorf("the drop-in directory the remediation created survived: %v", err)
	}

	// Without an Include of sshd_config.d, the main file gets the setting first.
	noInclude := tree(t, map[string]string{"/var/lib/dpkg/status": sshdInstalled, "/etc/ssh/sshd_config": "UsePAM yes\nPermitRootLogin yes\n"})
	ch2 := apply(t, rule(t, `"sshd":{"settings":[{"keyword":"PermitRootLogin","equals":"no"}]}`), treeEnv(noInclude))
	if got := readTree(t, noInclude, "/etc/ssh/sshd_config"); !strings.HasPrefix(got, "PermitRootLogin no # set by Corral remediation\n") || !strings.Contains(got, "# PermitRootLogin yes") {
		t.Errorf("sshd_config without Include after apply:\n%s", got)
	}
	os.WriteFile(filepath.Join(noInclude, "etc/ssh/sshd_config"), []byte("edited\n"), 0o644)
	if err := Rollback(ctx, treeEnv(noInclude), ch2, false); !errors.Is(err, ErrChangedSinceApply) || !strings.Contains(err.Error(), "content changed") {
		t.Errorf("rollback over an edited file: %v", err)
	}
}

func TestApplyKernelModuleAndConfigValue(t *testing.T) {
	ctx := context.Background()
	root := tree(t, map[string]string{"/etc/login.defs": "PASS_MAX_DAYS 99999\nUMASK 022\n"})
	env := treeEnv(root)
	km := rule(t, `"kernelModule":{"name":"cramfs","disabled":true,"blacklisted":true}`)
	ch := apply(t, km, env)
	expect(t, eval(t, km, env), Compliant, "install cramfs /bin/false (/etc/modprobe.d/00-corral-cramfs.conf line 2)")
	if err := Rollback(ctx, env, ch, false); err != nil {
		t.Fatal(err)
	}
	expect(t, eval(t, km, env), NonCompliant, "no \"install cramfs")

	maxDays := rule(t, `"configValue":{"path":"/etc/login.defs","key":"PASS_MAX_DAYS","separator":"space","max":365}`)
	apply(t, maxDays, env)
	umask := rule(t, `"configValue":{"path":"/etc/login.defs","key":"UMASK","separator":"space","hasBits":"027"}`)
	apply(t, umask, env)
	if got := readTree(t, root, "/etc/login.defs"); got != "PASS_MAX_DAYS 365\nUMASK 027\n" {
		t.Errorf("login.defs %q", got)
	}
}

func TestApplyAndRollbackDirectoryMode(t *testing.T) {
	ctx := context.Background()
	root := tree(t, map[string]string{"/etc/passwd": basePasswd, "/etc/group": baseGroup, "/etc/cron.d/job": "x"})
	env := treeEnv(root)
	chmod(t, root, "/etc/cron.d", 0o755)
	r := rule(t, `"file":{"path":"/etc/cron.d","maxMode":"0700","owner":"root"}`)
	ch := apply(t, r, env)
	if got := fileMode(t, root, "/etc/cron.d"); got != 0o700 {
		t.Fatalf("mode after apply %o", got)
	}
	if err := Rollback(ctx, env, ch, false); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, root, "/etc/cron.d"); got != 0o755 {
		t.Fatalf("mode after rollback %o", got)
	}
}

func TestApplyRefusals(t *testing.T) {
	ctx := context.Background()
	root := tree(t, map[string]string{"/etc/passwd": basePasswd + "toor:x:0:0::/:/bin/sh\n"})
	env := treeEnv(root)
	if _, err := rule(t, `"accounts":{"check":"uid0OnlyRoot"}`).Apply(ctx, env); !errors.Is(err, ErrNotRemediable) {
		t.Errorf("accounts Apply = %v, want ErrNotRemediable", err)
	}
	if _, err := rule(t, `"file":{"path":"/etc/passwd","owner":"nobody"}`).Apply(ctx, env); err == nil || !strings.Contains(err.Error(), "Unknown") {
		t.Errorf("Apply of an Unknown rule = %v", err)
	}
	if rule(t, `"sysctl":{"key":"a.b","value":"1"}`).Remediable() != true || rule(t, `"package":{"name":"nis","state":"absent"}`).Remediable() {
		t.Error("Remediable is wrong")
	}
}
