package guest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/testutil/hosttools"
)

func TestParseConfigurationErrors(t *testing.T) {
	head := `{"name":"t","rules":[{"id":"r1","title":"T","severity":"medium",`
	tests := []struct{ name, src, want string }{
		{"invalid JSON", "{\n \"name\": \"t\",\n \"rules\": [,]\n}", "invalid JSON at line 3, column 12"},
		{"no name", `{"rules":[]}`, "name: a machine configuration needs a name"},
		{"no rules", `{"name":"t","rules":[]}`, "rules: must hold at least one rule"},
		{"unknown top property", `{"name":"t","colour":1,"rules":[{"id":"r1","title":"T","severity":"low","file":{"path":"/a","mode":"0644"}}]}`, `unsupported property "colour"`},
		{"unknown rule property", head + `"file":{"path":"/a","mode":"0644"},"weight":3}]}`, `rules[0]: unsupported property "weight"`},
		{"no check", head + `"rationale":"x"}]}`, "rules[0]: a rule needs exactly one check"},
		{"two checks", head + `"file":{"path":"/a","mode":"0644"},"sysctl":{"key":"a.b","value":"1"}}]}`, "found file and sysctl"},
		{"bad severity", `{"name":"t","rules":[{"id":"r1","title":"T","severity":"urgent","file":{"path":"/a","mode":"0644"}}]}`, "rules[0].severity: severity must be low, medium or high"},
		{"bad id", `{"name":"t","rules":[{"id":"a b","title":"T","severity":"low","file":{"path":"/a","mode":"0644"}}]}`, "rules[0].id"},
		{"bad mode", head + `"file":{"path":"/a","mode":"0999"}}]}`, `rules[0].file.mode: "0999" is not an octal permission`},
		{"relative path", head + `"file":{"path":"etc/a","mode":"0644"}}]}`, "rules[0].file.path: must be an absolute path"},
		{"bad regex", head + `"fileContent":{"paths":["/a"],"patterns":["("],"expect":"present"}}]}`, "rules[0].fileContent.patterns[0]: invalid regular expression"},
		{"unknown sshd keyword", head + `"sshd":{"settings":[{"keyword":"PermitRootLogon","equals":"no"}]}}]}`, `rules[0].sshd.settings[0].keyword: unsupported sshd keyword "PermitRootLogon"`},
		{"bad sshd value", head + `"sshd":{"settings":[{"keyword":"PermitRootLogin","equals":"never"}]}}]}`, `"never" is not a value of PermitRootLogin`},
		{"unknown accounts check", head + `"accounts":{"check":"noRoot"}}]}`, `unsupported accounts check "noRoot"`},
		{"wrong type", head + `"file":{"path":5}}]}`, "rules[0].file.path: must be a string"},
		{"duplicate id", `{"name":"t","rules":[{"id":"r1","title":"T","severity":"low","file":{"path":"/a","mode":"0644"}},{"id":"r1","title":"T","severity":"low","file":{"path":"/a","mode":"0644"}}]}`, `rules[1].id: rule id "r1" is used twice`},
		{"bad unit", head + `"systemdUnit":{"units":["rsync"],"state":"disabled"}}]}`, `"rsync" is not a unit name`},
		{"bad version op", head + `"package":{"name":"openssh-server","state":"installed","version":"~> 7"}}]}`, `unsupported operator "~>"`},
		{"bad ssg id", head + `"ssgRuleId":"file_permissions_etc_passwd","file":{"path":"/a","mode":"0644"}}]}`, "an SSG rule id starts with"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfiguration([]byte(tc.src))
			if err == nil || !errors.Is(err, ErrInvalidConfiguration) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrInvalidConfiguration containing %q", err, tc.want)
			}
		})
	}
}

func TestFileCheck(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/passwd": basePasswd, "/etc/group": baseGroup, "/etc/shadow": "root:*:19000:0:99999:7:::\n",
		"/etc/issue": "hello", "/boot/grub/grub.cfg": "x", "/etc/shadow-link": "->/etc/shadow",
	})
	env := treeEnv(root)
	chmod(t, root, "/etc/shadow", 0o640)
	if err := os.Chown(filepath.Join(root, "etc/shadow"), 0, 42); err != nil {
		t.Fatal(err)
	}
	passwd := rule(t, `"file":{"path":"/etc/passwd","maxMode":"0644","owner":"root","group":"root"}`)
	expect(t, eval(t, passwd, env), Compliant, "/etc/passwd mode 0644, owner root (0), group root (0)")
	chmod(t, root, "/etc/passwd", 0o666)
	expect(t, eval(t, passwd, env), NonCompliant, "/etc/passwd mode 0666, want 0644 or stricter")
	chmod(t, root, "/etc/passwd", 0o600)
	expect(t, eval(t, passwd, env), Compliant, "mode 0600")

	exact := rule(t, `"file":{"path":"/etc/passwd","mode":"0644"}`)
	expect(t, eval(t, exact, env), NonCompliant, "/etc/passwd mode 0600, want 0644")

	// Owner and group names resolve through the tree's own databases.
	shadow := rule(t, `"file":{"path":"/etc/shadow-link","maxMode":"0640","owner":"root","group":"shadow"}`)
	expect(t, eval(t, shadow, env), Compliant, "group shadow (42)")
	wrongGroup := rule(t, `"file":{"path":"/etc/shadow","group":"alice"}`)
	expect(t, eval(t, wrongGroup, env), NonCompliant, "/etc/shadow group shadow (42), want alice (1000)")
	noSuchUser := rule(t, `"file":{"path":"/etc/shadow","owner":"mallory"}`)
	expect(t, eval(t, noSuchUser, env), Unknown, `cannot resolve owner "mallory": not in /etc/passwd`)

	missing := rule(t, `"file":{"path":"/etc/gshadow-","maxMode":"0640"}`)
	expect(t, eval(t, missing, env), NonCompliant, "/etc/gshadow- does not exist")
	optional := rule(t, `"file":{"path":"/etc/gshadow-","maxMode":"0640","whenMissing":"Compliant"}`)
	expect(t, eval(t, optional, env), Compliant, "does not exist")
	absent := rule(t, `"file":{"path":"/etc/hosts.equiv","exists":false}`)
	expect(t, eval(t, absent, env), Compliant, "does not exist")
	glob := rule(t, `"file":{"path":"/boot/grub/*.cfg","maxMode":"0600"}`)
	expect(t, eval(t, glob, env), NonCompliant, "/boot/grub/grub.cfg mode 0644, want 0600 or stricter")
}

func TestUnreadableIsUnknownNeverCompliant(t *testing.T) {
	root := tree(t, map[string]string{"/etc/passwd": basePasswd, "/etc/group": baseGroup})
	if err := os.MkdirAll(filepath.Join(root, "etc/login.defs"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := treeEnv(root)
	r := rule(t, `"configValue":{"path":"/etc/login.defs","key":"PASS_MAX_DAYS","separator":"space","max":365}`)
	expect(t, eval(t, r, env), Unknown, "cannot read /etc/login.defs: it is a directory")
	content := rule(t, `"fileContent":{"paths":["/etc/login.defs"],"patterns":["^x"],"expect":"absent"}`)
	expect(t, eval(t, content, env), Unknown, "cannot read /etc/login.defs")
	accounts := rule(t, `"accounts":{"check":"noEmptyPasswords"}`)
	expect(t, eval(t, accounts, env), Unknown, "/etc/shadow does not exist")
	// A tree with an RPM database but no rpm tool: Unknown, not "absent".
	rpmRoot := tree(t, map[string]string{"/var/lib/rpm/rpmdb.sqlite": "x"})
	rpmEnv := treeEnv(rpmRoot)
	rpmEnv.RPM = "rpm-not-installed-here"
	pkg := rule(t, `"package":{"name":"telnet-server","state":"absent"}`)
	expect(t, eval(t, pkg, rpmEnv), Unknown, "the rpm tool is not available")
	noDB := rule(t, `"package":{"name":"telnetd","state":"absent"}`)
	expect(t, eval(t, noDB, treeEnv(t.TempDir())), Unknown, "no package database")
	ports := rule(t, `"listeningPorts":{"forbidden":[{"port":23,"protocol":"tcp"}]}`)
	expect(t, eval(t, ports, env), Unknown, "only visible on the live system")
}

func TestSymlinksStayInsideTheRoot(t *testing.T) {
	// An absolute link in a tree points into the tree, never at the host.
	root := tree(t, map[string]string{
		"/etc/passwd": basePasswd, "/etc/group": baseGroup,
		"/real/sshd_config": "PermitRootLogin no\n", "/etc/ssh/sshd_config": "->/real/sshd_config",
		"/etc/escape": "->../../../../../../etc/hostname",
	})
	env := treeEnv(root)
	hp, err := env.HostPath("/etc/ssh/sshd_config")
	if err != nil || hp != filepath.Join(root, "real/sshd_config") {
		t.Fatalf("HostPath = %q, %v", hp, err)
	}
	hp, err = env.HostPath("/etc/escape")
	if err != nil || hp != filepath.Join(root, "etc/hostname") {
		t.Fatalf("a .. link escaped the root: %q, %v", hp, err)
	}
}

func TestFileContentCheck(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/audit/rules.d/10-base.rules": "-D\n-b 8192\n",
		"/etc/audit/rules.d/99-end.rules":  "-w /etc/sudoers -p wa -k scope\n-e 2\n",
	})
	env := treeEnv(root)
	present := rule(t, `"fileContent":{"paths":["/etc/audit/rules.d/*.rules"],"patterns":["^-e\\s+2\\s*$","^-w\\s+/etc/sudoers\\s+-p\\s+wa"],"expect":"present"}`)
	expect(t, eval(t, present, env), Compliant, "/etc/audit/rules.d/99-end.rules line 2: -e 2")
	missing := rule(t, `"fileContent":{"paths":["/etc/audit/rules.d/*.rules"],"patterns":["^-a always,exit .*adjtimex"],"expect":"present"}`)
	expect(t, eval(t, missing, env), NonCompliant, "no line of /etc/audit/rules.d/*.rules matches ^-a always,exit .*adjtimex")
	absent := rule(t, `"fileContent":{"paths":["/etc/audit/rules.d/*.rules"],"patterns":["^-b"],"expect":"absent"}`)
	expect(t, eval(t, absent, env), NonCompliant, "10-base.rules line 2: -b 8192")
	none := rule(t, `"fileContent":{"paths":["/etc/nothing/*.rules"],"patterns":["x"],"expect":"present"}`)
	expect(t, eval(t, none, env), NonCompliant, "no file matches /etc/nothing/*.rules")
}

func TestSysctlCheck(t *testing.T) {
	root := tree(t, map[string]string{
		"/usr/lib/sysctl.d/50-default.conf": "net.ipv4.conf.all.rp_filter = 2\nkernel.randomize_va_space=1\n",
		"/etc/sysctl.d/50-default.conf":     "# masks the /usr/lib file of the same name\nkernel.randomize_va_space = 2\n",
		"/etc/sysctl.d/60-net.conf":         "net/ipv4/ip_forward = 0\n-net.ipv4.conf.*.accept_redirects = 0\n",
		"/etc/sysctl.d/99-sysctl.conf":      "->../sysctl.conf",
		"/etc/sysctl.conf":                  "; comment\nnet.ipv4.ip_forward=1\n",
	})
	env := treeEnv(root)
	expect(t, eval(t, rule(t, `"sysctl":{"key":"kernel.randomize_va_space","value":"2"}`), env), Compliant, "kernel.randomize_va_space = 2 in /etc/sysctl.d/50-default.conf line 2")
	// /etc/sysctl.d/50-default.conf masks /usr/lib/sysctl.d/50-default.conf.
	expect(t, eval(t, rule(t, `"sysctl":{"key":"net.ipv4.conf.all.rp_filter","value":"1"}`), env), NonCompliant, "net.ipv4.conf.all.rp_filter is not set in any sysctl configuration file, want 1")
	// 99-sysctl.conf (a link to /etc/sysctl.conf) is read once, last.
	expect(t, eval(t, rule(t, `"sysctl":{"key":"net.ipv4.ip_forward","value":"0"}`), env), NonCompliant, "net.ipv4.ip_forward = 1 in /etc/sysctl.d/99-sysctl.conf line 2, want 0")
	expect(t, eval(t, rule(t, `"sysctl":{"key":"net.ipv4.conf.default.accept_redirects","value":"0"}`), env), Compliant, "in /etc/sysctl.d/60-net.conf line 2")
	expect(t, eval(t, rule(t, `"sysctl":{"key":"fs.suid_dumpable","value":"0"}`), env), NonCompliant, "fs.suid_dumpable is not set in any sysctl configuration file, want 0")

	// Live: the running value must match too (a fake /proc).
	proc := tree(t, map[string]string{"/sys/kernel/randomize_va_space": "0\n"})
	live := env
	live.Live, live.Proc = true, proc
	expect(t, eval(t, rule(t, `"sysctl":{"key":"kernel.randomize_va_space","value":"2"}`), live), NonCompliant, "runtime value 0, want 2")
	expect(t, eval(t, rule(t, `"sysctl":{"key":"fs.protected_fifos","value":"1"}`), live), NonCompliant, "not set")
	os.WriteFile(filepath.Join(root, "etc/sysctl.d/70-fifo.conf"), []byte("fs.protected_fifos=1\n"), 0o644)
	expect(t, eval(t, rule(t, `"sysctl":{"key":"fs.protected_fifos","value":"1"}`), live), Unknown, "runtime value "+proc+"/sys/fs/protected_fifos does not exist")
}

func TestSystemdUnitCheck(t *testing.T) {
	root := tree(t, map[string]string{
		"/lib/systemd/system/cron.service":                         "[Unit]\n",
		"/lib/systemd/system/rsync.service":                        "[Unit]\n",
		"/lib/systemd/system/avahi-daemon.service":                 "[Unit]\n",
		"/etc/systemd/system/multi-user.target.wants/cron.service": "->/lib/systemd/system/cron.service",
		"/etc/systemd/system/avahi-daemon.service":                 "->/dev/null",
	})
	env := treeEnv(root)
	expect(t, eval(t, rule(t, `"systemdUnit":{"units":["cron.service"],"state":"enabled"}`), env), Compliant, "cron.service is enabled (/etc/systemd/system/multi-user.target.wants/cron.service)")
	expect(t, eval(t, rule(t, `"systemdUnit":{"units":["rsync.service"],"state":"enabled"}`), env), NonCompliant, "rsync.service is disabled (/lib/systemd/system/rsync.service), want enabled")
	expect(t, eval(t, rule(t, `"systemdUnit":{"units":["rsync.service","avahi-daemon.service","slapd.service"],"state":"disabled"}`), env), Compliant, "avahi-daemon.service is masked")
	expect(t, eval(t, rule(t, `"systemdUnit":{"units":["cron.service"],"state":"disabled"}`), env), NonCompliant, "want disabled")
	expect(t, eval(t, rule(t, `"systemdUnit":{"units":["avahi-daemon.service"],"state":"masked"}`), env), Compliant, "masked")
}

const dpkgStatusSample = `Package: openssh-server
Status: install ok installed
Architecture: amd64
Version: 1:9.2p1-2+deb12u3
Description: secure shell (SSH) server
 long description: Status: deinstall ok config-files

Package: telnetd
Status: deinstall ok config-files
Version: 0.17-44

Package: libfoo
Status: install ok installed
Architecture: i386
Version: 1.0
`

func TestPackageCheck(t *testing.T) {
	root := tree(t, map[string]string{"/var/lib/dpkg/status": dpkgStatusSample})
	env := treeEnv(root)
	expect(t, eval(t, rule(t, `"package":{"name":"openssh-server","state":"installed","version":">= 1:7.4"}`), env), Compliant, "openssh-server 1:9.2p1-2+deb12u3 is installed (>= 1:7.4)")
	expect(t, eval(t, rule(t, `"package":{"name":"openssh-server","state":"installed","version":"< 1:9.2p1-2+deb12u4"}`), env), Compliant, "installed")
	expect(t, eval(t, rule(t, `"package":{"name":"openssh-server","state":"installed","version":">= 1:9.3"}`), env), NonCompliant, "want >= 1:9.3")
	expect(t, eval(t, rule(t, `"package":{"name":"openssh-server","state":"absent"}`), env), NonCompliant, "is installed, want absent")
	expect(t, eval(t, rule(t, `"package":{"name":"telnetd","state":"absent"}`), env), Compliant, "telnetd is not installed")
	expect(t, eval(t, rule(t, `"package":{"name":"telnetd","state":"installed"}`), env), NonCompliant, `dpkg status "deinstall ok config-files"`)
	expect(t, eval(t, rule(t, `"package":{"name":"nis","state":"absent"}`), env), Compliant, "nis is not installed")
}

// TestDebianVersionOrderMatchesDpkg compares with dpkg --compare-versions.
func TestDebianVersionOrderMatchesDpkg(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg is not installed")
	}
	vs := []string{"1.0", "1.0-1", "1.0~rc1", "1.0+b1", "1:0.9", "0:1.0", "1.0a", "1.0.1", "2", "10", "1.0-1ubuntu1", "1.0-1+deb12u1", "9.2p1-2+deb12u3", "1:9.2p1-2+deb12u3", "1:7.4", "1.0~~", "1.0~", "3.0pl1-162", "3.0pl1-16"}
	for _, a := range vs {
		for _, b := range vs {
			want := 0
			if exec.Command(dpkg, "--compare-versions", a, "lt", b).Run() == nil {
				want = -1
			} else if exec.Command(dpkg, "--compare-versions", a, "gt", b).Run() == nil {
				want = 1
			}
			if got := compareDebian(a, b); got != want {
				t.Errorf("compareDebian(%q, %q) = %d, dpkg says %d", a, b, got, want)
			}
		}
	}
}

func TestRPMVersionOrder(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"0:1.0-1", "0:1.0-1", 0}, {"1.0-1", "1.0-2", -1}, {"1:1.0", "0:2.0", 1}, {"1.0~rc1", "1.0", -1},
		{"1.0a", "1.0", 1}, {"1.10", "1.9", 1}, {"2.0.1", "2.0", 1}, {"1.0^git1", "1.0", 1}, {"1.0^git1", "1.01", -1},
	}
	for _, tc := range tests {
		if got := compareRPM(tc.a, tc.b); got != tc.want {
			t.Errorf("compareRPM(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestKernelModuleCheck(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/modprobe.d/cramfs.conf":  "install cramfs /bin/false\nblacklist cramfs\n",
		"/etc/modprobe.d/00-sctp.conf": "install sctp /sbin/modprobe --ignore-install sctp\n",
		"/etc/modprobe.d/sctp.conf":    "install sctp /bin/true\n",
		"/lib/modprobe.d/usb.conf":     "blacklist usb-storage\n",
	})
	env := treeEnv(root)
	expect(t, eval(t, rule(t, `"kernelModule":{"name":"cramfs","disabled":true,"blacklisted":true}`), env), Compliant, "install cramfs /bin/false (/etc/modprobe.d/cramfs.conf line 1)")
	// modprobe honours the first install command (files in name order).
	expect(t, eval(t, rule(t, `"kernelModule":{"name":"sctp","disabled":true}`), env), NonCompliant, "install sctp /sbin/modprobe --ignore-install sctp (/etc/modprobe.d/00-sctp.conf line 1), want /bin/false")
	expect(t, eval(t, rule(t, `"kernelModule":{"name":"usb_storage","blacklisted":true}`), env), Compliant, "blacklist usb_storage")
	expect(t, eval(t, rule(t, `"kernelModule":{"name":"dccp","disabled":true}`), env), NonCompliant, `no "install dccp /bin/false" line`)
	proc := tree(t, map[string]string{"/modules": "cramfs 16384 0 - Live 0x0\next4 1 0 - Live 0x0\n"})
	live := env
	live.Live, live.Proc = true, proc
	expect(t, eval(t, rule(t, `"kernelModule":{"name":"cramfs","disabled":true,"notLoaded":true}`), live), NonCompliant, "cramfs is loaded")
	// Without /proc/modules: Unknown, unless the configuration already fails.
	noProc := env
	noProc.Live, noProc.Proc = true, t.TempDir()
	expect(t, eval(t, rule(t, `"kernelModule":{"name":"cramfs","disabled":true,"notLoaded":true}`), noProc), Unknown, "loaded state unknown")
	expect(t, eval(t, rule(t, `"kernelModule":{"name":"dccp","disabled":true,"notLoaded":true}`), noProc), NonCompliant, "no \"install dccp")
}

func TestMountCheck(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/fstab": "UUID=1 / ext4 errors=remount-ro 0 1\ntmpfs /tmp tmpfs defaults,nodev,nosuid 0 0\n/dev/sdb1 /mnt/my\\040disk ext4 nodev 0 0\n",
	})
	env := treeEnv(root)
	expect(t, eval(t, rule(t, `"mount":{"mountPoint":"/tmp","options":["nodev","nosuid"]}`), env), Compliant, "/tmp options defaults,nodev,nosuid (/etc/fstab line 2)")
	expect(t, eval(t, rule(t, `"mount":{"mountPoint":"/tmp","options":["nodev","noexec"]}`), env), NonCompliant, "missing noexec")
	expect(t, eval(t, rule(t, `"mount":{"mountPoint":"/mnt/my disk","options":["nodev"]}`), env), Compliant, "nodev")
	expect(t, eval(t, rule(t, `"mount":{"mountPoint":"/var/tmp","options":["nodev"]}`), env), NonCompliant, "/var/tmp has no entry in /etc/fstab, want a separate mount with nodev")
	expect(t, eval(t, rule(t, `"mount":{"mountPoint":"/dev/shm","options":["nodev","nosuid"],"implicitOptions":["nosuid","nodev"]}`), env), Compliant, "mounted by the system")
	os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/systemd/system/var-tmp.mount"), []byte("[Mount]\nWhat=tmpfs\nOptions=mode=1777,nosuid,nodev\n"), 0o644)
	expect(t, eval(t, rule(t, `"mount":{"mountPoint":"/var/tmp","options":["nodev"]}`), env), Compliant, "/etc/systemd/system/var-tmp.mount")
	proc := tree(t, map[string]string{"/self/mounts": "/dev/sda1 / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n"})
	live := env
	live.Live, live.Proc = true, proc
	expect(t, eval(t, rule(t, `"mount":{"mountPoint":"/dev/shm","options":["noexec"]}`), live), NonCompliant, "/dev/shm options rw,nosuid,nodev (mounted), missing noexec")
	expect(t, eval(t, rule(t, `"mount":{"mountPoint":"/tmp","options":["nodev"]}`), live), NonCompliant, "/tmp is not a separate mount")
}

func TestAccountsCheck(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/passwd": basePasswd + "toor:x:0:0::/root:/bin/sh\nbin:x:2:2::/bin:/bin/sh\nbob:pw:1001:5000::/home/bob:/bin/bash\nalice:x:1002:1000::/:/bin/sh\n",
		"/etc/shadow": "root:*:1::::::\nbob::1::::::\n",
		"/etc/group":  baseGroup + "shadow:x:43:alice\n",
	})
	env := treeEnv(root)
	tests := []struct {
		check string
		state State
		ev    string
	}{
		{"uid0OnlyRoot", NonCompliant, "accounts with UID 0 other than root: toor (line 5)"},
		{"rootGid0", Compliant, "root's primary GID is 0"},
		{"noEmptyPasswords", NonCompliant, "bob (line 2)"},
		{"allShadowed", NonCompliant, "bob (line 7)"},
		{"uniqueNames", NonCompliant, "name alice (lines 4 and 8)"},
		{"uniqueUids", NonCompliant, "ID 0 (lines 1 and 5)"},
		{"groupsExist", NonCompliant, "bob (GID 5000)"},
		{"systemAccountsNoLogin", NonCompliant, "bin (UID 2) has shell /bin/sh"},
		{"uniqueGroupNames", NonCompliant, "name shadow (lines 3 and 5)"},
		{"shadowGroupEmpty", NonCompliant, "the shadow group has members: alice"},
	}
	for _, tc := range tests {
		expect(t, eval(t, rule(t, `"accounts":{"check":"`+tc.check+`"}`), env), tc.state, tc.ev)
	}
}

func TestPortsCheck(t *testing.T) {
	proc := tree(t, map[string]string{
		"/net/tcp": "  sl  local_address rem_address   st\n   0: 00000000:0016 00000000:0000 0A\n   1: 0100007F:0CEA 00000000:0000 0A\n   2: 00000000:0017 0100007F:0000 01\n",
		"/net/udp": "  sl  local_address rem_address   st\n   0: 00000000:0045 00000000:0000 07\n",
	})
	env := treeEnv(t.TempDir())
	env.Live, env.Proc = true, proc
	expect(t, eval(t, rule(t, `"listeningPorts":{"forbidden":[{"port":23,"protocol":"tcp"},{"port":69,"protocol":"udp"}]}`), env), NonCompliant, "listening on udp/69")
	expect(t, eval(t, rule(t, `"listeningPorts":{"allowed":[{"port":22,"protocol":"tcp"},{"port":69,"protocol":"udp"}]}`), env), Compliant, "none forbidden")
	expect(t, eval(t, rule(t, `"listeningPorts":{"allowed":[{"port":22,"protocol":"tcp"},{"port":69,"protocol":"udp"}],"loopback":true}`), env), NonCompliant, "tcp/3306")
}

func TestConfigValueCheck(t *testing.T) {
	root := tree(t, map[string]string{
		"/etc/login.defs":        "#PASS_MAX_DAYS 1\nPASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nUMASK 022\nPASS_MAX_DAYS 365\n",
		"/etc/audit/auditd.conf": "max_log_file_action = ROTATE\nspace_left_action = email\n",
	})
	env := treeEnv(root)
	expect(t, eval(t, rule(t, `"configValue":{"path":"/etc/login.defs","key":"PASS_MAX_DAYS","separator":"space","max":365}`), env), Compliant, "PASS_MAX_DAYS 365 (/etc/login.defs line 5)")
	expect(t, eval(t, rule(t, `"configValue":{"path":"/etc/login.defs","key":"PASS_MAX_DAYS","separator":"space","occurrence":"first","max":365}`), env), NonCompliant, "PASS_MAX_DAYS 99999 (/etc/login.defs line 2), want 365 or less")
	expect(t, eval(t, rule(t, `"configValue":{"path":"/etc/login.defs","key":"UMASK","separator":"space","hasBits":"027"}`), env), NonCompliant, "UMASK 022 (/etc/login.defs line 4), want 027 or stricter")
	expect(t, eval(t, rule(t, `"configValue":{"path":"/etc/audit/auditd.conf","key":"max_log_file_action","separator":"=","equals":"keep_logs"}`), env), NonCompliant, "max_log_file_action ROTATE")
	expect(t, eval(t, rule(t, `"configValue":{"path":"/etc/audit/auditd.conf","key":"space_left_action","separator":"=","equals":"EMAIL"}`), env), Compliant, "space_left_action email")
	expect(t, eval(t, rule(t, `"configValue":{"path":"/etc/audit/auditd.conf","key":"action_mail_acct","separator":"=","equals":"root"}`), env), NonCompliant, "action_mail_acct is not set in /etc/audit/auditd.conf, want action_mail_acct root")
}

func TestWatchPaths(t *testing.T) {
	root := tree(t, map[string]string{"/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n"})
	c, err := ParseConfiguration([]byte(`{"name":"t","rules":[
		{"id":"a","title":"A","severity":"low","file":{"path":"/etc/passwd","maxMode":"0644"}},
		{"id":"b","title":"B","severity":"low","sshd":{"settings":[{"keyword":"PermitRootLogin","equals":"no"}]}},
		{"id":"c","title":"C","severity":"low","sysctl":{"key":"kernel.randomize_va_space","value":"2"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.WatchPaths(treeEnv(root)), " ")
	for _, want := range []string{"/etc/passwd", "/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d", "/var/lib/dpkg/status", "/etc/sysctl.d", "/etc/sysctl.conf"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("watch paths %q lack %s", got, want)
		}
	}
}

// TestPackageCheckRPM reads a real RPM database in a tree through rpm --root.
func TestPackageCheckRPM(t *testing.T) {
	rpm := hosttools.NeedTool(t, "rpm")
	rpmbuild := hosttools.NeedTool(t, "rpmbuild")
	root := t.TempDir()
	if out, err := exec.Command(rpm, "--root", root, "--dbpath", "/var/lib/rpm", "--initdb").CombinedOutput(); err != nil {
		t.Fatalf("rpm --initdb: %v\n%s", err, out)
	}
	top := t.TempDir()
	spec := filepath.Join(top, "t.spec")
	os.WriteFile(spec, []byte("Name: corral-test-pkg\nVersion: 1.2\nRelease: 3\nEpoch: 1\nSummary: test\nLicense: MIT\nBuildArch: noarch\n%description\ntest\n%files\n"), 0o644)
	if out, err := exec.Command(rpmbuild, "-bb", "--define", "_topdir "+top, spec).CombinedOutput(); err != nil {
		t.Fatalf("rpmbuild: %v\n%s", err, out)
	}
	pkgs, _ := filepath.Glob(filepath.Join(top, "RPMS/noarch/*.rpm"))
	if len(pkgs) != 1 {
		t.Fatalf("built %v", pkgs)
	}
	if out, err := exec.Command(rpm, "--root", root, "--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps", "--noscripts", pkgs[0]).CombinedOutput(); err != nil {
		t.Fatalf("rpm -i --justdb: %v\n%s", err, out)
	}
	env := treeEnv(root)
	expect(t, eval(t, rule(t, `"package":{"name":"corral-test-pkg","state":"installed","version":">= 1:1.2-1"}`), env), Compliant, "corral-test-pkg 1:1.2-3 is installed")
	expect(t, eval(t, rule(t, `"package":{"name":"corral-test-pkg","state":"installed","version":">= 1:1.10"}`), env), NonCompliant, "want >= 1:1.10")
	expect(t, eval(t, rule(t, `"package":{"name":"telnet-server","state":"absent"}`), env), Compliant, "telnet-server is not installed")
}
